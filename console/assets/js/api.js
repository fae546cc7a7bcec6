// The business API, called with the API key the operator signed in with.
// The key lives in this tab's sessionStorage: it goes with every call in
// the Authorization header, never in a URL or a cookie, so no other site
// can make the browser use it (no CSRF), and it is gone when the tab is.

const KEY = "syncpoint.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY) ?? "";
}

export function setApiKey(k) {
  sessionStorage.setItem(KEY, k);
}

export function clearApiKey() {
  sessionStorage.removeItem(KEY);
}

// ApiError is an error answer of the API: {code, message, field}, with the
// HTTP status.
export class ApiError extends Error {
  constructor(status, body) {
    const e = body?.error ?? {};
    super(e.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = e.code ?? `http_${status}`;
    this.field = e.field;
    this.seq = e.seq;
  }
}

// onUnauthorized is called when the API refuses the key, so the app can
// return to the sign-in page.
let unauthorized = () => {};
export function onUnauthorized(fn) {
  unauthorized = fn;
}

function headers(extra) {
  return { Authorization: `Bearer ${apiKey()}`, ...extra };
}

// call sends one request and returns the JSON answer (null for 204). An
// error answer throws an ApiError; a network failure throws a plain Error
// that says so.
export async function call(method, path, body, { key } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }), cache: "no-store" };
  if (key !== undefined) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) init.body = JSON.stringify(body);
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new Error(`The server did not answer ${method} ${path}: ${err.message}`);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    if (res.ok) throw new Error(`${method} ${path}: the answer is not JSON`);
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data);
    if (res.status === 401 && key === undefined) unauthorized(err);
    throw err;
  }
  return data;
}

// enc encodes one path segment.
export const enc = encodeURIComponent;

// metrics fetches /metrics as text.
export async function metricsText() {
  let res;
  try {
    res = await fetch("/metrics", { headers: headers(), cache: "no-store" });
  } catch (err) {
    throw new Error(`The server did not answer GET /metrics: ${err.message}`);
  }
  if (!res.ok) throw new Error(`GET /metrics: HTTP ${res.status}`);
  return res.text();
}

// tail reads a channel's Server-Sent Events with fetch, which, unlike
// EventSource, can send the Authorization header. It calls onEvent with
// {type, id, data} for each event and onState with "connecting", "live",
// "reconnecting" (with the reason) or "stopped"; after a dropped stream it
// reconnects with the last event id. stop() ends it.
export function tail(path, { onEvent, onState, lastEventId = "" }) {
  const ctl = new AbortController();
  let retry = 3000;
  let lastId = lastEventId;
  let stopped = false;

  async function once() {
    onState("connecting");
    const h = headers({ Accept: "text/event-stream" });
    if (lastId) h["Last-Event-ID"] = lastId;
    const res = await fetch(path, { headers: h, signal: ctl.signal, cache: "no-store" });
    if (!res.ok) {
      let body = null;
      try {
        body = await res.json();
      } catch {
        // Not JSON: the status says enough.
      }
      const err = new ApiError(res.status, body);
      if (res.status === 401) unauthorized(err);
      throw err;
    }
    onState("live");
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    let ev = { type: "", id: "", data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + (buf.startsWith("\r\n", nl) ? 2 : 1));
        if (line === "") {
          if (ev.data.length || ev.type) {
            const e = { type: ev.type || "message", id: ev.id, data: ev.data.join("\n") };
            if (e.id) lastId = e.id;
            onEvent(e);
          }
          ev = { type: "", id: "", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (name === "event") ev.type = val;
        else if (name === "data") ev.data.push(val);
        else if (name === "id") ev.id = val;
        else if (name === "retry" && /^\d+$/.test(val)) retry = Number(val);
      }
    }
  }

  (async () => {
    while (!stopped) {
      try {
        await once();
        if (stopped) break;
        onState("reconnecting", "the stream ended");
      } catch (err) {
        if (stopped) break;
        if (err instanceof ApiError && err.status < 500) {
          // The API refused the tail itself; trying again would not help.
          onState("stopped", err);
          return;
        }
        onState("reconnecting", err);
      }
      await new Promise((r) => setTimeout(r, retry));
    }
    onState("stopped");
  })();

  return {
    stop() {
      stopped = true;
      ctl.abort();
    },
    lastEventId: () => lastId,
  };
}
