// Building the page. Every string goes in as a text node or an attribute
// value, never as markup: the console shows data that devices and backends
// wrote, and none of it may become HTML. Nothing here uses innerHTML.

const SVG = "http://www.w3.org/2000/svg";

// h builds an element: h("a", {href: "#/x", class: "c"}, "text", child).
// Attributes named on* are refused (handlers go in `on`), so that no data
// can ever become an inline handler.
export function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "on") {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === "dataset") {
      Object.assign(el.dataset, v);
    } else if (/^on/i.test(k)) {
      throw new Error(`h: attribute ${k} refused; use on: {…}`);
    } else if (k === "value" && "value" in el) {
      el.value = v;
    } else if (k === "checked" || k === "selected" || k === "disabled") {
      el[k] = Boolean(v);
    } else {
      el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// replace empties el and fills it with children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// field is a labelled input with a place for the API's error about it:
// the element whose data-field names the request field.
export function field(label, name, input, hint) {
  input.id ||= `f-${name.replace(/\W/g, "-")}`;
  input.name ||= name;
  return h("div", { class: "field", dataset: { field: name } },
    h("label", { for: input.id }, label),
    input,
    hint ? h("small", { class: "hint" }, hint) : null,
    h("small", { class: "field-error", role: "alert", hidden: true }));
}

// showErrors puts an API error beside its field in form, or at the form's
// top when it names none (or one the form lacks). It returns the element
// the message went to.
export function showErrors(form, err) {
  clearErrors(form);
  const name = err?.field;
  let spot = name ? form.querySelector(`[data-field="${CSS.escape(name)}"] .field-error`) : null;
  // webhook.timeout goes beside webhook when only that field is shown.
  if (!spot && name?.includes(".")) {
    spot = form.querySelector(`[data-field="${CSS.escape(name.split(".")[0])}"] .field-error`);
  }
  if (spot) {
    spot.closest(".field").classList.add("invalid");
  } else {
    spot = form.querySelector(".form-error");
  }
  spot.textContent = describe(err);
  spot.hidden = false;
  return spot;
}

export function clearErrors(form) {
  for (const e of form.querySelectorAll(".field-error, .form-error")) {
    e.textContent = "";
    e.hidden = true;
  }
  for (const f of form.querySelectorAll(".field.invalid")) f.classList.remove("invalid");
}

// describe says an error in one line: the API's code and message.
export function describe(err) {
  if (err?.code) return `${err.message} (${err.code})`;
  return String(err?.message ?? err);
}

export function formError() {
  return h("p", { class: "form-error", role: "alert", hidden: true });
}

// fmtTime shows a time from the API; "" for none.
export function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) return String(s);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

// ago says how long ago a time was, roughly.
export function ago(s) {
  if (!s) return "never";
  const secs = (Date.now() - new Date(s).getTime()) / 1000;
  if (!Number.isFinite(secs)) return String(s);
  if (secs < 5) return "just now";
  if (secs < 90) return `${Math.round(secs)} s ago`;
  if (secs < 5400) return `${Math.round(secs / 60)} min ago`;
  if (secs < 129600) return `${Math.round(secs / 3600)} h ago`;
  return `${Math.round(secs / 86400)} days ago`;
}

// json shows a value from the API as indented JSON text.
export function json(v) {
  if (v === undefined) return "";
  return JSON.stringify(v, null, 2);
}

// list splits "a, b,c" into ["a","b","c"].
export function list(s) {
  return String(s ?? "").split(",").map((x) => x.trim()).filter(Boolean);
}

// pager shows one page of items with previous and next buttons; render
// turns the page's items into rows. It returns the element and keeps its
// place when items change through update.
export function pager(size, render) {
  let items = [];
  let page = 0;
  const body = h("div", { class: "pager-body" });
  const info = h("span", { class: "pager-info" });
  const prev = h("button", { type: "button", class: "quiet", on: { click: () => go(page - 1) } }, "‹ Previous");
  const next = h("button", { type: "button", class: "quiet", on: { click: () => go(page + 1) } }, "Next ›");
  const bar = h("div", { class: "pager" }, prev, info, next);
  function go(p) {
    const pages = Math.max(1, Math.ceil(items.length / size));
    page = Math.min(Math.max(0, p), pages - 1);
    const slice = items.slice(page * size, (page + 1) * size);
    replace(body, render(slice, page * size));
    info.textContent = items.length
      ? `${page * size + 1}–${page * size + slice.length} of ${items.length}`
      : "none";
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
    bar.hidden = items.length <= size;
  }
  return {
    el: h("div", { class: "paged" }, body, bar),
    update(list, keepPage = false) {
      items = list;
      go(keepPage ? page : 0);
    },
  };
}

// table builds a table from column headings and rows of cells. A heading
// written "#Seq" is of a numeric column, aligned right like its cells.
export function table(headings, rows, opts = {}) {
  // Each cell is labelled with its heading, which a phone shows beside it
  // when the rows become cards.
  const labels = headings.map((c) => c.replace(/^#/, ""));
  for (const tr of rows) {
    [...tr.children].forEach((td, i) => {
      if (labels[i]) td.dataset.label = labels[i];
      // One box for the content, so that the label stays beside all of it.
      if (td.childNodes.length > 1) td.append(h("span", { class: "cell" }, [...td.childNodes]));
    });
  }
  return h("div", { class: "table-wrap" },
    h("table", { class: opts.class },
      h("thead", {}, h("tr", {}, headings.map((c) => c.startsWith("#")
        ? h("th", { scope: "col", class: "num" }, c.slice(1))
        : h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.length
        ? rows
        : h("tr", {}, h("td", { colspan: headings.length, class: "empty" }, opts.empty ?? "Nothing here.")))));
}

// section is a titled card.
export function section(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, children);
}

// confirmDialog asks a yes/no question in a modal <dialog>, since the
// browser's confirm() is a blocking popup that tests and phones handle
// badly. It resolves true for yes.
export function confirmDialog(question, yes = "Confirm") {
  return new Promise((resolve) => {
    const dlg = h("dialog", { class: "confirm", "aria-label": "Confirm" },
      h("p", {}, question),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "quiet", on: { click: () => done(false) } }, "Cancel"),
        h("button", { type: "button", class: "danger", on: { click: () => done(true) } }, yes)));
    function done(v) {
      dlg.close();
      dlg.remove();
      resolve(v);
    }
    dlg.addEventListener("cancel", () => done(false));
    document.body.append(dlg);
    dlg.showModal();
  });
}

// sparkline draws the last values as a small SVG line.
export function sparkline(values, label) {
  const w = 160, hgt = 36;
  const max = Math.max(1e-9, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${hgt - 2 - (v / max) * (hgt - 4)}`).join(" ");
  return h("svg:svg", { viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "none", class: "spark", role: "img", "aria-label": label },
    h("svg:polyline", { points: pts || `0,${hgt - 2} ${w},${hgt - 2}` }));
}
