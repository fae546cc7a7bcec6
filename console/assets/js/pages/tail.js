// Live tail: the entries of any channel as they are published, over the
// API's Server-Sent Events tail (GET /v1/channels/{biz}/{target}/events),
// read with fetch so the API key goes in a header.

import { call, enc, tail } from "../api.js";
import { h, replace, field, formError, showErrors, clearErrors, fmtTime, json, describe } from "../dom.js";
import { channelPicker } from "../picker.js";

const KEEP = 300;

export function render(root, params, ctx) {
  const picker = channelPicker(ctx, params);
  const from = h("select", {},
    h("option", { value: "new" }, "new entries only"),
    h("option", { value: "20", selected: params.from === "20" }, "the last 20, then new ones"),
    h("option", { value: "100", selected: params.from === "100" }, "the last 100, then new ones"));
  const startBtn = h("button", { type: "submit", id: "tail-start" }, "Start");
  const stopBtn = h("button", { type: "button", class: "secondary", id: "tail-stop", disabled: true }, "Stop");
  const clearBtn = h("button", { type: "button", class: "quiet" }, "Clear");
  const form = h("form", { class: "card", id: "tail-form", novalidate: true },
    formError(),
    h("div", { class: "grid" }, picker.fields, field("Start with", "from", from)),
    h("div", { class: "actions" }, clearBtn, stopBtn, startBtn));
  const state = h("p", { class: "tail-state", id: "tail-state", role: "status" }, "Not tailing.");
  const events = h("ol", { class: "events", id: "tail-events", reversed: true });
  const empty = h("p", { class: "muted", id: "tail-empty" }, "Events show here, newest first.");
  replace(root, form, h("section", { class: "card" }, state, empty, events));

  let t = null;
  let count = 0;

  function stop() {
    t?.stop();
    t = null;
    startBtn.disabled = false;
    stopBtn.disabled = true;
  }

  function show(item) {
    empty.hidden = true;
    events.prepend(item);
    while (events.childElementCount > KEEP) events.lastElementChild.remove();
  }

  function onEvent(ev) {
    let data = null;
    try {
      data = JSON.parse(ev.data);
    } catch {
      data = ev.data;
    }
    const got = new Date().toLocaleTimeString();
    if (ev.type === "entry") {
      count++;
      show(h("li", { class: "event entry", dataset: { seq: String(data.seq ?? "") } },
        h("div", { class: "event-head" },
          h("span", { class: "seq" }, data.seq ? `#${data.seq}` : "live"),
          h("span", { class: "op" }, data.op),
          data.key ? h("span", { class: "key" }, data.key) : null,
          h("span", { class: "muted small" }, `${data.origin ?? ""} · created ${fmtTime(data.created_at)} · received ${got}`)),
        h("pre", { class: "data" }, json(data.data))));
    } else if (ev.type === "reset" || ev.type === "gap") {
      show(h("li", { class: `event notice ${ev.type}` },
        ev.type === "reset"
          ? `The channel was reset: new epoch ${data.epoch}; entries of the new history follow.`
          : `Gap: entries expired or were trimmed before the tail read them; it goes on after seq ${data.from}.`));
    } else if (ev.type === "close") {
      show(h("li", { class: "event notice close" }, `The server ended the stream: ${data.message ?? ""} (${data.code ?? ""} ${data.reason ?? ""})`));
    }
    state.textContent = `Live on ${ch}: ${count} entries received.`;
  }

  let ch = "";
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    let c;
    try {
      c = picker.value();
    } catch (err) {
      showErrors(form, err);
      return;
    }
    stop();
    ch = `${c.biz}/${c.target}`;
    ctx.setParams("tail", { biz: c.biz, target: c.target, from: from.value === "new" ? undefined : from.value });
    const base = `/v1/channels/${enc(c.biz)}/${enc(c.target)}`;
    let path = `${base}/events`;
    if (from.value !== "new") {
      try {
        // The head tells where the last N start.
        const page = await call("GET", `${base}?limit=1`);
        path += `?after=${Math.max(0, page.last_seq - Number(from.value))}`;
      } catch (err) {
        showErrors(form, err);
        return;
      }
    }
    count = 0;
    startBtn.disabled = true;
    stopBtn.disabled = false;
    t = tail(path, {
      onEvent,
      onState(s, why) {
        if (s === "connecting") state.textContent = `Connecting to ${ch}…`;
        else if (s === "live") state.textContent = `Live on ${ch}: ${count} entries received.`;
        else if (s === "reconnecting") state.textContent = `Reconnecting to ${ch} (${describe(why)})…`;
        else if (s === "stopped") {
          state.textContent = why ? `Stopped: ${describe(why)}` : "Stopped.";
          if (why) showErrors(form, why);
          stop();
        }
        state.dataset.state = s;
      },
    });
  });
  stopBtn.addEventListener("click", () => {
    stop();
    state.textContent = `Stopped; ${count} entries received.`;
    state.dataset.state = "stopped";
  });
  clearBtn.addEventListener("click", () => {
    events.replaceChildren();
    empty.hidden = false;
  });

  if (params.biz && params.target) {
    // The picker shows why the bizzes did not load.
    ctx.bizzes().then(() => form.requestSubmit()).catch(() => {});
  }
  return stop;
}
