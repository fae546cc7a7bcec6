// The console's shell: sign-in, the page router (#/page?params) and the
// error banner. Each page module exports render(main, params, ctx), which
// may return a function that stops what the page started (polling, a tail).

import { apiKey, setApiKey, clearApiKey, call, onUnauthorized } from "./api.js";
import { h, replace, field, formError, showErrors, describe } from "./dom.js";
import * as overview from "./pages/overview.js";
import * as bizzes from "./pages/bizzes.js";
import * as channels from "./pages/channels.js";
import * as devices from "./pages/devices.js";
import * as tailPage from "./pages/tail.js";
import * as publish from "./pages/publish.js";
import * as tokens from "./pages/tokens.js";

const pages = { overview, bizzes, channels, devices, tail: tailPage, publish, tokens };
const titles = {
  overview: "Overview", bizzes: "Bizzes", channels: "Channel browser", devices: "Device lookup",
  tail: "Live tail", publish: "Publish", tokens: "Access tokens",
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const signout = document.getElementById("signout");
const banner = document.getElementById("banner");
let stopPage = null;
let signInNote = "";

// The bizzes are wanted by most pages; one list is shared until a page
// changes it.
let bizCache = null;
const ctx = {
  bizzes() {
    bizCache ??= call("GET", "/v1/bizzes").then((r) => r.bizzes).catch((err) => {
      bizCache = null;
      throw err;
    });
    return bizCache;
  },
  bizzesChanged() {
    bizCache = null;
  },
  go(page, params = {}) {
    const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== ""));
    const hash = `#/${page}${q.size ? `?${q}` : ""}`;
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  // setParams records the page's state in the address without a reload,
  // so that a link or a reload shows the same thing.
  setParams(page, params) {
    const q = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== ""));
    history.replaceState(null, "", `#/${page}${q.size ? `?${q}` : ""}`);
  },
  error(err) {
    showBanner(describe(err));
  },
};

function showBanner(text) {
  replace(banner, h("span", {}, text), h("button", { type: "button", class: "quiet", "aria-label": "Dismiss", on: { click: hideBanner } }, "×"));
  banner.hidden = false;
}

function hideBanner() {
  banner.hidden = true;
  banner.replaceChildren();
}

onUnauthorized((err) => {
  clearApiKey();
  signInNote = `The API refused the key: ${err.message}. Sign in again.`;
  route();
});

window.addEventListener("unhandledrejection", (ev) => {
  // A failure no page caught still reaches the operator.
  showBanner(describe(ev.reason));
});

signout.addEventListener("click", () => {
  clearApiKey();
  signInNote = "Signed out.";
  bizCache = null;
  route();
});

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [page, query] = raw.split("?");
  return { page: page || "overview", params: Object.fromEntries(new URLSearchParams(query ?? "")) };
}

function route() {
  if (stopPage) {
    try {
      stopPage();
    } catch {
      // A page that fails to stop must not keep the next from showing.
    }
    stopPage = null;
  }
  hideBanner();
  if (!apiKey()) {
    nav.hidden = true;
    signout.hidden = true;
    document.title = "Sign in · syncpoint console";
    renderSignIn();
    return;
  }
  nav.hidden = false;
  signout.hidden = false;
  let { page, params } = parseHash();
  if (!pages[page]) page = "overview";
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${titles[page]} · syncpoint console`;
  replace(main, h("h1", {}, titles[page]));
  const body = h("div", { class: "page", id: `page-${page}` });
  main.append(body);
  try {
    const stop = pages[page].render(body, params, ctx);
    if (typeof stop === "function") stopPage = stop;
  } catch (err) {
    showBanner(describe(err));
  }
}

function renderSignIn() {
  const input = h("input", { type: "password", autocomplete: "off", spellcheck: "false", required: true, autofocus: true });
  const form = h("form", { class: "card signin", id: "signin", novalidate: true },
    h("h1", {}, "Sign in"),
    h("p", {}, "Enter the server's API key. It stays in this tab only, and is sent to this server's API alone."),
    signInNote ? h("p", { class: "note" }, signInNote) : null,
    formError(),
    field("API key", "api_key", input, "serve prints it on first start; it is also in DATA/secrets.json, or SYNCPOINT_API_KEY."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    if (!key) {
      showErrors(form, { field: "api_key", message: "Enter the API key." });
      return;
    }
    const btn = form.querySelector("button[type=submit]");
    btn.disabled = true;
    try {
      // Any call with the key tells whether the API takes it.
      await call("GET", "/v1/bizzes", undefined, { key });
      setApiKey(key);
      signInNote = "";
      route();
    } catch (err) {
      showErrors(form, err.status === 401 ? { field: "api_key", message: `The API refused this key: ${err.message}`, code: err.code } : err);
    } finally {
      btn.disabled = false;
    }
  });
  replace(main, form);
  input.focus();
}

window.addEventListener("hashchange", route);
route();
