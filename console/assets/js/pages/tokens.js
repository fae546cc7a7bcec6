// Opaque access tokens: mint one for a user, list a user's tokens, revoke
// one (at once, on every node and surface).

import { call, enc } from "../api.js";
import { h, replace, field, formError, showErrors, clearErrors, table, section, pager, confirmDialog, fmtTime, list } from "../dom.js";

export function render(root, params, ctx) {
  const i = {
    user: h("input", { value: params.user ?? "", autocomplete: "off", spellcheck: "false", placeholder: "u1" }),
    groups: h("input", { autocomplete: "off", spellcheck: "false", placeholder: "g1, g2" }),
    ttl: h("input", { autocomplete: "off", placeholder: "720h (30 days) when empty" }),
    label: h("input", { autocomplete: "off", placeholder: "Alice's phone" }),
  };
  const mint = h("form", { class: "card", id: "mint-form", novalidate: true },
    h("h2", {}, "Mint a token"),
    formError(),
    h("div", { class: "grid" },
      field("User", "user", i.user),
      field("Groups", "groups", i.groups, "comma-separated; the groups the device may read"),
      field("TTL", "ttl", i.ttl, "from 1m to 8760h"),
      field("Label", "label", i.label, "to tell tokens apart")),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Mint token")));
  const minted = h("div", { id: "minted" });
  const userIn = h("input", { id: "f-lookup-user", value: params.user ?? "", autocomplete: "off", spellcheck: "false", placeholder: "u1" });
  const lookup = h("form", { class: "card", id: "tokens-form", novalidate: true },
    h("h2", {}, "A user's tokens"),
    formError(),
    field("User", "user", userIn),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "secondary" }, "List tokens")));
  const out = h("div", { id: "tokens-out" });
  replace(root, h("div", { class: "two" }, mint, lookup), minted, out);

  mint.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(mint);
    const body = { user: i.user.value.trim() };
    const groups = list(i.groups.value);
    if (groups.length) body.groups = groups;
    if (i.ttl.value.trim()) body.ttl = i.ttl.value.trim();
    if (i.label.value.trim()) body.label = i.label.value.trim();
    const btn = mint.querySelector("button[type=submit]");
    btn.disabled = true;
    try {
      const t = await call("POST", "/v1/tokens", body);
      const secret = h("input", { readonly: true, value: t.token, class: "mono", id: "minted-token", "aria-label": "The new token" });
      const copy = h("button", { type: "button", class: "secondary", on: {
        click: async () => {
          try {
            await navigator.clipboard.writeText(t.token);
            copy.textContent = "Copied";
          } catch {
            secret.select();
            copy.textContent = "Select and copy";
          }
        },
      } }, "Copy");
      replace(minted, section(`Token for ${t.user}`,
        h("p", { class: "note" }, "This is the only time the token is shown; the server keeps only its hash. Give it to the device now."),
        h("div", { class: "copy-row" }, secret, copy),
        h("dl", { class: "facts" },
          h("dt", {}, "Id"), h("dd", { class: "mono" }, t.id),
          h("dt", {}, "Groups"), h("dd", {}, t.groups.join(", ") || "none"),
          h("dt", {}, "Expires"), h("dd", {}, fmtTime(t.expires_at)))));
      userIn.value = t.user;
      await show(t.user);
    } catch (err) {
      showErrors(mint, err);
    } finally {
      btn.disabled = false;
    }
  });

  lookup.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const u = userIn.value.trim();
    if (!u) return showErrors(lookup, { field: "user", message: "Enter a user id." });
    show(u);
  });

  async function show(user) {
    clearErrors(lookup);
    ctx.setParams("tokens", { user });
    let r;
    try {
      r = await call("GET", `/v1/users/${enc(user)}/tokens`);
    } catch (err) {
      showErrors(lookup, err);
      return;
    }
    const paged = pager(20, (items) => table(["Id", "Label", "Groups", "Created", "Expires", ""],
      items.map((t) => h("tr", { dataset: { token: t.id } },
        h("td", { class: "mono small" }, t.id),
        h("td", {}, t.label || "–"),
        h("td", {}, t.groups.join(", ") || "–"),
        h("td", { class: "small" }, fmtTime(t.created_at)),
        h("td", { class: "small" }, fmtTime(t.expires_at)),
        h("td", { class: "row-actions" }, h("button", { type: "button", class: "quiet danger-text", on: { click: () => revoke(user, t) } }, "Revoke")))),
      { empty: "This user holds no token." }));
    paged.update(r.tokens);
    replace(out, section(`Tokens of ${user}`, paged.el));
  }

  async function revoke(user, t) {
    if (!(await confirmDialog(`Revoke token ${t.label ? `"${t.label}" ` : ""}(${t.id}) of ${user}? Devices using it are disconnected at once and cannot reconnect with it.`, "Revoke token"))) return;
    try {
      await call("DELETE", `/v1/tokens/${enc(t.id)}`);
      await show(user);
    } catch (err) {
      ctx.error(err);
    }
  }

  if (params.user) show(params.user);
}
