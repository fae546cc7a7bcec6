// Overview: the server's own figures from /metrics, read every 2 seconds:
// connections, publishes and deliveries per second, and the age of entries
// when they are pushed.

import { metricsText } from "../api.js";
import { h, replace, section, sparkline, describe, table } from "../dom.js";
import { parse, sum, rate, buckets, quantile, fmtNum, fmtSeconds } from "../metrics.js";

const EVERY = 2000;
const HISTORY = 60;

// The counters that are deliveries: an entry handed to a device on any
// surface.
const DELIVERIES = [
  ["syncpoint_pushed_entries_total", "WebSocket and TCP pushes"],
  ["syncpoint_sse_events_total", "Server-Sent Events"],
  ["syncpoint_httpsync_queue_items_total", "HTTP sync queue items"],
  ["syncpoint_httpsync_oneshot_changes_total", "one-shot HTTP sync changes"],
];

function read(text) {
  const s = parse(text);
  const published = sum(s, "syncpoint_publishes_total", (l) => l.outcome === "appended" || l.outcome === "ephemeral");
  const rejected = sum(s, "syncpoint_publishes_total", (l) => !["appended", "ephemeral", "duplicate"].includes(l.outcome));
  return {
    at: performance.now(),
    sessions: sum(s, "syncpoint_sessions") ?? 0,
    sse: sum(s, "syncpoint_sse_streams") ?? 0,
    tails: sum(s, "syncpoint_sse_tails") ?? 0,
    polls: sum(s, "syncpoint_httpsync_long_polls") ?? 0,
    published: published ?? 0,
    rejected: rejected ?? 0,
    deliveries: DELIVERIES.map(([name]) => sum(s, name) ?? 0),
    lag: buckets(s, "syncpoint_push_lag_seconds"),
    node: s.find((x) => x.name === "syncpoint_node_info")?.labels.node,
  };
}

export function render(root) {
  const cards = h("div", { class: "cards" });
  const detail = h("div");
  const status = h("p", { class: "muted", role: "status" }, "Reading /metrics…");
  replace(root, status, cards, detail);

  let prev = null;
  let first = null;
  const pubHist = [];
  const delHist = [];
  let stopped = false;
  let timer = null;

  async function tick() {
    try {
      const cur = read(await metricsText());
      first ??= cur;
      if (prev) {
        const secs = (cur.at - prev.at) / 1000;
        const pubRate = rate(cur.published, prev.published, secs);
        const delRates = cur.deliveries.map((v, i) => rate(v, prev.deliveries[i], secs));
        const delRate = delRates.reduce((a, b) => a + (b ?? 0), 0);
        pubHist.push(pubRate);
        delHist.push(delRate);
        if (pubHist.length > HISTORY) pubHist.shift(), delHist.shift();
        // Over the last interval when something was pushed in it, else
        // over the server's life.
        let p50 = quantile(0.5, cur.lag, prev.lag);
        let p99 = quantile(0.99, cur.lag, prev.lag);
        let lagWhen = "last 2 s";
        if (p50 === undefined) {
          p50 = quantile(0.5, cur.lag);
          p99 = quantile(0.99, cur.lag);
          lagWhen = "since start";
        }
        replace(cards,
          card("Connections", fmtNum(cur.sessions + cur.sse), `${fmtNum(cur.sessions)} sockets · ${fmtNum(cur.sse)} event streams · ${fmtNum(cur.polls)} long-polls`, "connections"),
          card("Publishes/s", fmtNum(pubRate), `${fmtNum(cur.published)} appended since start · ${fmtNum(cur.rejected)} refused`, "publishes", sparkline(pubHist, "publishes per second")),
          card("Deliveries/s", fmtNum(delRate), "entries handed to devices, all surfaces", "deliveries", sparkline(delHist, "deliveries per second")),
          card("Push lag", p50 === undefined ? "–" : fmtSeconds(p50), p50 === undefined ? "nothing pushed yet" : `median, ${lagWhen} · p99 ${fmtSeconds(p99)}`, "lag"));
        replace(detail, section("Deliveries by surface",
          table(["Surface", "#Per second", "#Since start"], DELIVERIES.map(([, label], i) =>
            h("tr", {}, h("td", {}, label), h("td", { class: "num" }, fmtNum(delRates[i])), h("td", { class: "num" }, fmtNum(cur.deliveries[i])))))));
        status.textContent = `Node ${cur.node ?? "?"} · updated ${new Date().toLocaleTimeString()} · ${fmtNum(cur.tails)} console tails open`;
        status.classList.remove("error");
      }
      prev = cur;
    } catch (err) {
      status.textContent = `Could not read the figures: ${describe(err)}`;
      status.classList.add("error");
    }
    if (!stopped) timer = setTimeout(tick, prev === first ? 500 : EVERY);
  }
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function card(title, value, note, id, extra) {
  return h("div", { class: "card stat", id: `stat-${id}` },
    h("h2", {}, title),
    h("p", { class: "value" }, value),
    extra ?? null,
    h("p", { class: "muted small" }, note));
}
