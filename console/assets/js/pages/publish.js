// Publish: one entry to one or more targets, with every field of
// POST /v1/publish. The answer lists each channel's seq, or its error.

import { call, enc } from "../api.js";
import { h, replace, field, formError, showErrors, clearErrors, table, section, list } from "../dom.js";

export function render(root, params, ctx) {
  const biz = h("select", { required: true }, h("option", { value: "" }, "Loading…"));
  const i = {
    users: h("input", { value: params.users ?? "", autocomplete: "off", spellcheck: "false", placeholder: "u1, u2" }),
    devices: h("input", { value: params.devices ?? "", autocomplete: "off", spellcheck: "false", placeholder: "d1" }),
    groups: h("input", { value: params.groups ?? "", autocomplete: "off", spellcheck: "false", placeholder: "g1" }),
    global: h("input", { type: "checkbox" }),
    op: h("select", {}, ["msg", "put", "delete"].map((o) => h("option", { value: o }, o))),
    key: h("input", { autocomplete: "off", spellcheck: "false", placeholder: "record id, for put and delete" }),
    data: h("textarea", { rows: "6", spellcheck: "false", placeholder: '{"text": "hello"}' }),
    ttl: h("input", { autocomplete: "off", placeholder: "24h; empty: the biz's retention" }),
    platforms: h("input", { autocomplete: "off", placeholder: "ios, android, web" }),
    min_app_version: h("input", { autocomplete: "off", placeholder: "2.0.0" }),
    max_app_version: h("input", { autocomplete: "off", placeholder: "3.9.9" }),
    idempotency_key: h("input", { autocomplete: "off", spellcheck: "false", placeholder: "a repeat returns the first seq" }),
  };
  const form = h("form", { class: "card", id: "publish-form", novalidate: true },
    formError(),
    h("div", { class: "grid" },
      field("Biz", "biz", biz),
      field("Op", "op", i.op, "msg: a message; put/delete: a record by key"),
      field("Key", "key", i.key)),
    h("fieldset", {},
      h("legend", {}, "Targets"),
      h("div", { class: "grid" },
        field("Users", "users", i.users, "comma-separated ids"),
        field("Devices", "devices", i.devices),
        field("Groups", "groups", i.groups),
        field("Global", "global", i.global, "every device"))),
    field("Data (JSON)", "data", i.data, "any JSON value; empty sends none"),
    h("fieldset", {},
      h("legend", {}, "Validity and conditions"),
      h("div", { class: "grid" },
        field("TTL", "ttl", i.ttl),
        field("Platforms", "platforms", i.platforms, "only devices on these"),
        field("Min app version", "min_app_version", i.min_app_version),
        field("Max app version", "max_app_version", i.max_app_version),
        field("Idempotency key", "idempotency_key", i.idempotency_key))),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Publish")));
  const out = h("div", { id: "publish-out" });
  replace(root, form, out);

  ctx.bizzes().then((bizzes) => {
    replace(biz, h("option", { value: "" }, bizzes.length ? "Choose a biz" : "No bizzes yet"),
      bizzes.map((b) => h("option", { value: b.name, selected: b.name === params.biz }, `${b.name} (${b.target})`)));
  }).catch((err) => ctx.error(err));

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const body = { biz: biz.value };
    if (!body.biz) return showErrors(form, { field: "biz", message: "Choose a biz." });
    for (const k of ["users", "devices", "groups", "platforms"]) {
      const v = list(i[k].value);
      if (v.length) body[k] = v;
    }
    if (i.global.checked) body.global = true;
    body.op = i.op.value;
    for (const k of ["key", "ttl", "min_app_version", "max_app_version", "idempotency_key"]) {
      const v = i[k].value.trim();
      if (v) body[k] = v;
    }
    const raw = i.data.value.trim();
    if (raw) {
      try {
        body.data = JSON.parse(raw);
      } catch (err) {
        return showErrors(form, { field: "data", message: `Not JSON: ${err.message}` });
      }
    }
    const btn = form.querySelector("button[type=submit]");
    btn.disabled = true;
    try {
      const r = await call("POST", "/v1/publish", body);
      const failed = r.entries.filter((e) => e.error);
      replace(out, section(failed.length ? `Published, with ${failed.length} failed` : "Published",
        table(["Channel", "#Seq", "Epoch", "Result"], r.entries.map((e) => {
          const [b, ...rest] = e.channel.split("/");
          const target = rest.join("/");
          return h("tr", { dataset: { channel: e.channel } },
            h("td", {}, h("a", { href: `#/channels?biz=${enc(b)}&target=${enc(target)}` }, e.channel)),
            h("td", { class: "num" }, e.seq ? String(e.seq) : "–"),
            h("td", { class: "mono small" }, e.epoch ?? ""),
            h("td", {}, e.error
              ? h("span", { class: "error" }, `${e.error.message} (${e.error.code})`)
              : e.duplicate ? "duplicate: the earlier entry stands" : "ok"));
        }))));
    } catch (err) {
      showErrors(form, err);
    } finally {
      btn.disabled = false;
    }
  });
}
