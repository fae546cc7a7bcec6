// A channel is a biz and a target; the picker asks for the biz, then for
// the target's id in the words of the biz's target kind (a user id, a
// group id; nothing for global).

import { h, replace, field, formError } from "./dom.js";

const LABELS = { user: "User id", device: "Device id", group: "Group id" };

// channelPicker builds the fields of a channel form. initial is {biz,
// target} as in the address (target "user:u1"). value() returns {biz,
// target} or throws an error naming the field.
export function channelPicker(ctx, initial = {}) {
  const biz = h("select", { required: true }, h("option", { value: "" }, "Loading…"));
  const id = h("input", { autocomplete: "off", spellcheck: "false" });
  const idField = field("Target id", "target", id);
  const label = idField.querySelector("label");
  let kinds = {};

  function sync() {
    const kind = kinds[biz.value];
    idField.hidden = kind === "global" || !kind;
    label.textContent = LABELS[kind] ?? "Target id";
    id.placeholder = kind ? `${kind === "user" ? "u1" : kind === "device" ? "d1" : "g1"}` : "";
  }
  biz.addEventListener("change", sync);

  ctx.bizzes().then((list) => {
    kinds = Object.fromEntries(list.map((b) => [b.name, b.target]));
    replace(biz, h("option", { value: "" }, list.length ? "Choose a biz" : "No bizzes yet"),
      list.map((b) => h("option", { value: b.name, selected: b.name === initial.biz }, `${b.name} (${b.target})`)));
    if (initial.biz && !kinds[initial.biz]) {
      biz.append(h("option", { value: initial.biz, selected: true }, `${initial.biz} (unknown)`));
    }
    if (initial.target) {
      const [, rest] = /^[a-z]+:(.*)$/.exec(initial.target) ?? [];
      id.value = rest ?? (initial.target === "global" ? "" : initial.target);
    }
    sync();
  }).catch((err) => ctx.error(err));

  return {
    fields: [field("Biz", "biz", biz), idField],
    formError,
    focus: () => biz.focus(),
    value() {
      const name = biz.value;
      if (!name) throw { field: "biz", message: "Choose a biz." };
      const kind = kinds[name];
      if (kind === "global") return { biz: name, target: "global" };
      const v = id.value.trim();
      if (!v) throw { field: "target", message: `Enter the ${(LABELS[kind] ?? "target id").toLowerCase()}.` };
      // A full target (user:u1) is taken as it is.
      if (kind && v.startsWith(`${kind}:`)) return { biz: name, target: v };
      return { biz: name, target: kind ? `${kind}:${v}` : v };
    },
  };
}
