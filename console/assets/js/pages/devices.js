// Device lookup: who a device is, whether it is online, and how far it got
// in each of its channels, which answers "did device X get entry Y". A
// user's devices are listed too.

import { call, enc } from "../api.js";
import { h, replace, field, formError, showErrors, clearErrors, table, section, pager, fmtTime, ago } from "../dom.js";

export function render(root, params, ctx) {
  const deviceIn = h("input", { value: params.device ?? "", autocomplete: "off", spellcheck: "false", placeholder: "d1" });
  const userIn = h("input", { value: params.user ?? "", autocomplete: "off", spellcheck: "false", placeholder: "u1" });
  const byDevice = h("form", { class: "card", id: "device-form", novalidate: true },
    h("h2", {}, "Find a device"),
    formError(),
    field("Device id", "id", deviceIn),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Look up")));
  const byUser = h("form", { class: "card", id: "user-form", novalidate: true },
    h("h2", {}, "A user's devices"),
    formError(),
    field("User id", "user", userIn),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "secondary" }, "List devices")));
  const out = h("div", { id: "device-out" });
  replace(root, h("div", { class: "two" }, byDevice, byUser), out);

  byDevice.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = deviceIn.value.trim();
    if (!id) return showErrors(byDevice, { field: "id", message: "Enter a device id." });
    ctx.go("devices", { device: id });
  });
  byUser.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const id = userIn.value.trim();
    if (!id) return showErrors(byUser, { field: "user", message: "Enter a user id." });
    ctx.go("devices", { user: id });
  });

  async function showDevice(id) {
    clearErrors(byDevice);
    let d;
    try {
      d = await call("GET", `/v1/devices/${enc(id)}`);
    } catch (err) {
      showErrors(byDevice, err);
      return;
    }
    const channels = d.channels ?? [];
    const paged = pager(25, (items) => table(
      ["Channel", "Device's sync point", "#Channel's last seq", "#Lag", "Status", "Acked"],
      items.map((p) => {
        const [biz, ...rest] = p.channel.split("/");
        const target = rest.join("/");
        const lagText = p.lag === null || p.lag === undefined ? "unknown (other epoch)" : String(p.lag);
        return h("tr", { dataset: { channel: p.channel } },
          h("td", {}, h("a", { href: `#/channels?biz=${enc(biz)}&target=${enc(target)}` }, p.channel)),
          h("td", { class: "mono" }, `${p.seq}`, h("div", { class: "muted small" }, p.epoch ? `epoch ${p.epoch}` : "no epoch yet")),
          h("td", { class: "num" }, String(p.last_seq)),
          h("td", { class: `num lag ${p.lag > 0 ? "behind" : ""}` }, lagText),
          h("td", {}, h("span", { class: `badge ${p.status}` }, p.status)),
          h("td", { class: "small" }, p.updated_at ? ago(p.updated_at) : "never"));
      }),
      { empty: "No sync points yet: the device has acked nothing." }));
    paged.update(channels);

    // The question the page is for: did the device get entry seq N of a
    // channel? It did once its sync point in the same epoch reached N.
    const chSel = h("select", {}, channels.map((p) => h("option", { value: p.channel }, p.channel)));
    const seqIn = h("input", { type: "number", min: "1", step: "1", placeholder: "seq" });
    const answer = h("p", { class: "answer", role: "status" });
    const check = h("form", { class: "inline", id: "got-form", novalidate: true },
      formError(),
      field("Channel", "channel", chSel),
      field("Entry seq", "seq", seqIn),
      h("button", { type: "submit", class: "secondary" }, "Check"));
    check.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const p = channels.find((x) => x.channel === chSel.value);
      const n = Number(seqIn.value);
      if (!p) return showErrors(check, { field: "channel", message: "The device has no sync point in any channel." });
      if (!Number.isInteger(n) || n < 1) return showErrors(check, { field: "seq", message: "Enter the entry's seq, 1 or more." });
      clearErrors(check);
      if (p.epoch !== p.channel_epoch) {
        answer.textContent = `Not in this history: the device's position is of epoch ${p.epoch || "none"}, the channel is now in ${p.channel_epoch}. It will be told to resync (${p.status}).`;
        answer.className = "answer no";
      } else if (p.seq >= n) {
        answer.textContent = `Yes: the device acked ${p.channel} up to seq ${p.seq}, so it got entry ${n}${n > p.last_seq ? " (which is not published yet)" : ""}.`;
        answer.className = "answer yes";
      } else {
        answer.textContent = `Not yet: the device acked up to seq ${p.seq}; entry ${n} ${n > p.last_seq ? "is not published yet" : `is ${n - p.seq} after it`}. ${d.online ? "It is online now." : `It was last seen ${ago(d.last_seen)}.`}`;
        answer.className = "answer no";
      }
    });

    replace(out, section(`Device ${d.id}`,
      h("div", { class: "toolbar" },
        h("span", { class: `badge ${d.online ? "online" : "offline"}`, id: "device-online" }, d.online ? "online" : "offline"),
        h("button", { type: "button", class: "quiet", on: { click: () => showDevice(id) } }, "Refresh")),
      h("dl", { class: "facts", id: "device-facts" },
        h("dt", {}, "User"), h("dd", {}, h("a", { href: `#/devices?user=${enc(d.user_id)}` }, d.user_id)),
        h("dt", {}, "Platform"), h("dd", {}, d.platform || "not given"),
        h("dt", {}, "App version"), h("dd", {}, d.app_version || "not given"),
        h("dt", {}, "Last seen"), h("dd", {}, d.last_seen ? `${ago(d.last_seen)} (${fmtTime(d.last_seen)})` : "never"),
        h("dt", {}, "Channels"), h("dd", {}, String(channels.length))),
      h("h3", {}, "Sync point and lag per channel"),
      paged.el,
      h("h3", {}, "Did it get an entry?"),
      check, answer));
  }

  async function showUser(id) {
    clearErrors(byUser);
    let r;
    try {
      r = await call("GET", `/v1/users/${enc(id)}/devices`);
    } catch (err) {
      showErrors(byUser, err);
      return;
    }
    const paged = pager(25, (items) => table(["Device", "Platform", "App version", "Online", "Last seen"],
      items.map((d) => h("tr", {},
        h("td", {}, h("a", { href: `#/devices?device=${enc(d.id)}` }, d.id)),
        h("td", {}, d.platform || "–"),
        h("td", {}, d.app_version || "–"),
        h("td", {}, h("span", { class: `badge ${d.online ? "online" : "offline"}` }, d.online ? "online" : "offline")),
        h("td", { class: "small" }, ago(d.last_seen)))),
      { empty: "This user has no devices." }));
    paged.update(r.devices);
    replace(out, section(`Devices of user ${id}`, paged.el));
  }

  if (params.device) showDevice(params.device);
  else if (params.user) showUser(params.user);
}
