// Bizzes: list, create, edit and delete. The form checks nothing itself:
// the API does, and its error is shown beside the field it names.

import { call, enc } from "../api.js";
import { h, replace, field, formError, showErrors, clearErrors, pager, table, section, confirmDialog } from "../dom.js";

const TARGETS = ["user", "device", "group", "global"];
const CONFLICTS = ["reject", "server_order", "merge"];

export function render(root, params, ctx) {
  const listBox = section("All bizzes");
  const formBox = h("div");
  const newBtn = h("button", { type: "button", id: "new-biz", on: { click: () => edit(null) } }, "New biz");
  const paged = pager(20, (items) => table(
    ["Name", "Target", "Retention", "Persistent", "Multi-device", "#Max backlog", "Compact", "Writable", "Conflict", ""],
    items.map((b) => h("tr", { dataset: { biz: b.name } },
      h("td", {}, h("a", { href: `#/channels?biz=${enc(b.name)}` }, b.name)),
      h("td", {}, b.target),
      h("td", {}, b.retention),
      h("td", {}, yes(b.persistent)),
      h("td", {}, b.target === "user" ? yes(b.multi_device) : "–"),
      h("td", { class: "num" }, b.max_backlog ? String(b.max_backlog) : "unlimited"),
      h("td", {}, yes(b.compact)),
      h("td", {}, yes(b.writable)),
      h("td", {}, b.writable ? b.conflict : "–"),
      h("td", { class: "row-actions" },
        h("button", { type: "button", class: "quiet", on: { click: () => edit(b) } }, "Edit"),
        h("button", { type: "button", class: "quiet danger-text", on: { click: () => remove(b) } }, "Delete")))),
    { empty: "No bizzes yet." }));
  listBox.append(h("div", { class: "toolbar" }, newBtn), paged.el);
  replace(root, formBox, listBox);

  async function load(keepPage) {
    try {
      ctx.bizzesChanged();
      const list = await ctx.bizzes();
      paged.update(list, keepPage);
      return list;
    } catch (err) {
      ctx.error(err);
      return [];
    }
  }

  async function remove(b) {
    if (!(await confirmDialog(`Delete biz ${b.name}? Its channels and entries are deleted with it, on every node, and cannot be brought back.`, "Delete biz"))) return;
    try {
      await call("DELETE", `/v1/bizzes/${enc(b.name)}`);
      formBox.replaceChildren();
      await load(true);
    } catch (err) {
      ctx.error(err);
    }
  }

  function edit(b) {
    const isNew = !b;
    b ??= { name: "", target: "user", retention: "720h", persistent: true, multi_device: true, max_backlog: 0, compact: false, writable: false, conflict: "reject", max_entry_bytes: 0 };
    const wh = b.webhook ?? {};
    const i = {
      name: h("input", { value: b.name, disabled: !isNew, required: true, autocomplete: "off", spellcheck: "false" }),
      target: h("select", {}, TARGETS.map((t) => h("option", { value: t, selected: t === b.target }, t))),
      retention: h("input", { value: b.retention, autocomplete: "off" }),
      persistent: h("input", { type: "checkbox", checked: b.persistent }),
      multi_device: h("input", { type: "checkbox", checked: b.multi_device }),
      max_backlog: h("input", { type: "number", step: "1", value: String(b.max_backlog ?? 0) }),
      compact: h("input", { type: "checkbox", checked: b.compact }),
      writable: h("input", { type: "checkbox", checked: b.writable }),
      conflict: h("select", {}, CONFLICTS.map((c) => h("option", { value: c, selected: c === b.conflict }, c))),
      max_entry_bytes: h("input", { type: "number", step: "1", value: String(b.max_entry_bytes ?? 0) }),
      validate_url: h("input", { type: "url", value: wh.validate_url ?? "", placeholder: "https://backend.example/validate" }),
      notify_url: h("input", { type: "url", value: wh.notify_url ?? "", placeholder: "https://backend.example/notify" }),
      secret: h("input", { type: "password", autocomplete: "new-password", placeholder: wh.secret_set ? "set; leave empty to keep it" : "none" }),
      timeout: h("input", { value: wh.timeout ?? "", placeholder: "5s" }),
    };
    const form = h("form", { class: "card", id: "biz-form", novalidate: true },
      h("h2", {}, isNew ? "New biz" : `Edit ${b.name}`),
      formError(),
      h("div", { class: "grid" },
        field("Name", "name", i.name, "a lowercase letter, then a-z 0-9 _ -"),
        field("Target", "target", i.target, "who each channel is for"),
        field("Retention", "retention", i.retention, "how long entries stay valid: 720h, 90m"),
        field("Max backlog", "max_backlog", i.max_backlog, "newest N entries per channel; 0 keeps all"),
        field("Max entry bytes", "max_entry_bytes", i.max_entry_bytes, "0: the server's default"),
        field("Conflict policy", "conflict", i.conflict, "for writable bizzes")),
      h("div", { class: "checks" },
        field("Persistent", "persistent", i.persistent, "off: delivered only to online devices"),
        field("Multi-device", "multi_device", i.multi_device, "user bizzes: every device, or the newest only"),
        field("Compact", "compact", i.compact, "a newer put/delete of a key replaces older ones"),
        field("Writable", "writable", i.writable, "devices may upload records")),
      h("fieldset", { "data-field": "webhook" },
        h("legend", {}, "Webhook (writable bizzes)"),
        h("small", { class: "field-error", role: "alert", hidden: true }),
        h("div", { class: "grid" },
          field("Validate URL", "webhook.validate_url", i.validate_url),
          field("Notify URL", "webhook.notify_url", i.notify_url),
          field("Secret", "webhook.secret", i.secret),
          field("Timeout", "webhook.timeout", i.timeout))),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "quiet", on: { click: () => formBox.replaceChildren() } }, "Cancel"),
        h("button", { type: "submit" }, isNew ? "Create biz" : "Save")));
    form.querySelector("fieldset").classList.add("field");

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const name = i.name.value.trim();
      if (!name) {
        showErrors(form, { field: "name", message: "Give the biz a name." });
        return;
      }
      const body = {
        target: i.target.value,
        retention: i.retention.value.trim(),
        persistent: i.persistent.checked,
        multi_device: i.multi_device.checked,
        max_backlog: num(i.max_backlog.value),
        compact: i.compact.checked,
        writable: i.writable.checked,
        conflict: i.conflict.value,
        max_entry_bytes: num(i.max_entry_bytes.value),
      };
      if (i.validate_url.value || i.notify_url.value || i.secret.value || i.timeout.value || b.webhook) {
        body.webhook = { validate_url: i.validate_url.value.trim(), notify_url: i.notify_url.value.trim() };
        if (i.timeout.value.trim()) body.webhook.timeout = i.timeout.value.trim();
        // An absent secret keeps the stored one.
        if (i.secret.value) body.webhook.secret = i.secret.value;
        if (!body.webhook.validate_url && !body.webhook.notify_url && !i.secret.value && !i.timeout.value.trim()) delete body.webhook;
      }
      const btn = form.querySelector("button[type=submit]");
      btn.disabled = true;
      try {
        const saved = await call("PUT", `/v1/bizzes/${enc(name)}`, body);
        formBox.replaceChildren(h("p", { class: "ok", role: "status" }, `${isNew ? "Created" : "Saved"} biz ${saved.name}.`));
        await load(true);
      } catch (err) {
        showErrors(form, err);
      } finally {
        btn.disabled = false;
      }
    });
    replace(formBox, form);
    (isNew ? i.name : i.target).focus();
  }

  load(false).then((list) => {
    if (params.edit) {
      const b = list.find((x) => x.name === params.edit);
      if (b) edit(b);
      else ctx.error(`No biz named ${params.edit}.`);
    } else if (params.new !== undefined) {
      edit(null);
    }
  });
}

function yes(v) {
  return v ? "yes" : "no";
}

// num reads a number input; what is not a number is sent as text, so that
// the API names the field.
function num(v) {
  const s = String(v).trim();
  if (s === "") return 0;
  const n = Number(s);
  return Number.isFinite(n) ? n : s;
}
