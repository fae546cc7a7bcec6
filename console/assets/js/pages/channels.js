// Channel browser: read a channel's entries page by page, and reset it
// after a confirmation.

import { call, enc } from "../api.js";
import { h, replace, field, formError, showErrors, clearErrors, table, section, confirmDialog, fmtTime, json } from "../dom.js";
import { channelPicker } from "../picker.js";

const LIMITS = [20, 50, 100, 500];

export function render(root, params, ctx) {
  const picker = channelPicker(ctx, params);
  const after = h("input", { type: "number", min: "0", step: "1", value: params.after ?? "0" });
  const limitSel = h("select", {}, LIMITS.map((n) => h("option", { value: String(n), selected: String(n) === (params.limit ?? "50") }, String(n))));
  const form = h("form", { class: "card", id: "channel-form", novalidate: true },
    formError(),
    h("div", { class: "grid" }, picker.fields,
      field("After seq", "after", after, "entries with a higher seq; 0 is the start"),
      field("Per page", "limit", limitSel)),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Read")));
  const out = h("div", { id: "channel-out" });
  replace(root, form, out);

  let cur = null; // {biz, target}
  let history = []; // the after of each earlier page

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    clearErrors(form);
    try {
      cur = picker.value();
    } catch (err) {
      showErrors(form, err);
      return;
    }
    history = [];
    read(Number(after.value) || 0);
  });

  async function read(from) {
    const limit = Number(limitSel.value);
    ctx.setParams("channels", { biz: cur.biz, target: cur.target, after: from || undefined, limit: limit === 50 ? undefined : limit });
    let page;
    try {
      page = await call("GET", `/v1/channels/${enc(cur.biz)}/${enc(cur.target)}?after=${from}&limit=${limit}`);
    } catch (err) {
      showErrors(form, err);
      out.replaceChildren();
      return;
    }
    after.value = String(from);
    const last = page.entries.length ? page.entries[page.entries.length - 1].seq : from;
    const nav = h("div", { class: "pager" },
      h("button", { type: "button", class: "quiet", disabled: from === 0 && !history.length, on: { click: () => { history = []; read(0); } } }, "« First"),
      h("button", { type: "button", class: "quiet", disabled: !history.length, on: { click: () => read(history.pop()) } }, "‹ Previous"),
      h("span", { class: "pager-info" }, page.entries.length ? `seq ${page.entries[0].seq}–${last}` : "no entries here"),
      h("button", { type: "button", class: "quiet", disabled: !page.more, on: { click: () => { history.push(from); read(last); } } }, "Next ›"),
      h("button", { type: "button", class: "quiet", disabled: !page.more, on: { click: () => { history.push(from); read(Math.max(0, page.last_seq - limit)); } } }, "Last »"));
    const rows = page.entries.map((e) => h("tr", { dataset: { seq: String(e.seq) } },
      h("td", { class: "num" }, String(e.seq)),
      h("td", {}, e.op),
      h("td", {}, e.key ?? ""),
      h("td", {}, h("pre", { class: "data" }, json(e.data))),
      h("td", { class: "small" }, fmtTime(e.created_at), e.expires_at ? h("div", { class: "muted" }, `expires ${fmtTime(e.expires_at)}`) : null),
      h("td", { class: "small" }, e.origin, e.idempotency_key ? h("div", { class: "muted" }, `idempotency ${e.idempotency_key}`) : null),
      h("td", { class: "small" }, conditions(e.conditions))));
    replace(out,
      section(`${page.channel}`,
        h("dl", { class: "facts" },
          h("dt", {}, "Epoch"), h("dd", { class: "mono" }, page.epoch || "none yet"),
          h("dt", {}, "Retained"), h("dd", {}, page.last_seq ? `seq ${page.first_seq} to ${page.last_seq}` : "no entries"),
          h("dt", {}, "Live"), h("dd", {}, h("a", { href: `#/tail?biz=${enc(cur.biz)}&target=${enc(cur.target)}` }, "Tail this channel"))),
        nav,
        table(["#Seq", "Op", "Key", "Data", "Created", "Origin", "Conditions"], rows, { class: "entries", empty: "No entries after this seq." }),
        h("div", { class: "danger-zone" },
          h("button", { type: "button", class: "danger", id: "reset-channel", on: { click: reset } }, "Reset channel…"),
          h("small", { class: "muted" }, "Drops every entry and starts a new epoch; devices are told to resync."))));
  }

  async function reset() {
    const ch = `${cur.biz}/${cur.target}`;
    if (!(await confirmDialog(`Reset ${ch}? Every entry of the channel is dropped and it starts again at seq 1 in a new epoch. Devices that hold the old epoch are told to resync.`, "Reset channel"))) return;
    try {
      const info = await call("DELETE", `/v1/channels/${enc(cur.biz)}/${enc(cur.target)}`);
      history = [];
      await read(0);
      out.prepend(h("p", { class: "ok", role: "status" }, `Reset ${ch}: new epoch ${info.epoch}.`));
    } catch (err) {
      ctx.error(err);
    }
  }

  if (params.biz && params.target) {
    // Read as soon as the picker knows the bizzes.
    ctx.bizzes().then(() => {
      try {
        cur = picker.value();
        read(Number(params.after) || 0);
      } catch (err) {
        showErrors(form, err);
      }
    }).catch(() => {}); // the picker shows why the bizzes did not load
  }
}

function conditions(c) {
  if (!c) return "";
  const parts = [];
  if (c.platforms?.length) parts.push(`platforms ${c.platforms.join(", ")}`);
  if (c.min_app_version) parts.push(`app ≥ ${c.min_app_version}`);
  if (c.max_app_version) parts.push(`app ≤ ${c.max_app_version}`);
  return parts.join("; ");
}
