// A tiny app on the SDK's built ESM (served at /sdk/), as a web developer
// would write one. The test drives it through window.app.
//
// The page URL says where the server is: ?server=URL&token=JWT[&transport=websocket|http|auto][&debug].
// Nothing starts on load: the test calls app.start(), so that it can look at
// the state a reload brought back from IndexedDB before the client connects.
import { IndexedDBStorage, SyncpointClient } from "/sdk/index.js";

const q = new URLSearchParams(location.search);
// One device per browser profile: the id is kept with the database.
const deviceId = (localStorage.deviceId ??= "browser-" + crypto.randomUUID().slice(0, 8));
const notices = (name) => JSON.parse(localStorage.getItem(name) ?? "[]");
const notice = (name, value) => localStorage.setItem(name, JSON.stringify([...notices(name), value]));
const pad = (n) => String(n).padStart(8, "0");

const client = await SyncpointClient.open({
  server: q.get("server"),
  token: q.get("token"),
  deviceId,
  platform: "web",
  appVersion: "browser-test",
  bizzes: ["chat", "notes"],
  transport: q.get("transport") ?? "websocket",
  minBackoffMs: 50,
  maxBackoffMs: 500,
  ackIntervalMs: 20,
  // ?debug: the SDK's log on the console (the tests keep the page's console).
  logger: q.has("debug") ? (level, message, extra) => console.log(`sdk ${level}: ${message} ${JSON.stringify(extra ?? {})}`) : undefined,
  storage: await IndexedDBStorage.open({ name: "syncpoint-" + deviceId }),
  // Inside the storage commit that applies the entries: an app-level count
  // per (channel, seq), and the order they came in.
  onEntries: async (entries, tx) => {
    let n = (await tx.get("n")) ?? 0;
    const counts = new Map();
    for (const e of entries) {
      const key = `applied/${e.channel}/${pad(e.seq)}`;
      const count = counts.get(key) ?? (await tx.get(key)) ?? 0;
      counts.set(key, count + 1);
      tx.put(key, count + 1);
      tx.put(`log/${pad(++n)}`, { channel: e.channel, seq: e.seq, op: e.op, key: e.key });
    }
    tx.put("n", n);
  },
  onReset: (channel) => notice("resets", channel),
  onGap: (channel, firstSeq) => notice("gaps", { channel, firstSeq }),
  onConflict: (c) => notice("conflicts", { id: c.id, op: c.op, code: c.code, current: c.current?.data ?? null, dropped: c.dropped.length }),
  onWriteError: (e) => notice("writeErrors", { id: e.id, op: e.op, code: e.code, message: e.message }),
});

const $ = (id) => document.getElementById(id);
client.state.subscribe((s) => ($("state").textContent = s));
client.pending.subscribe((n) => ($("pending").textContent = String(n)));
const errors = [];
client.on("error", (e) => errors.push(`${e.code} ${e.message}`));
client.on("entries", async () => ($("applied").textContent = String((await client.appGet("n")) ?? 0)));

window.app = {
  deviceId,
  start: () => client.start(),
  stop: () => client.stop(),
  put: (id, data) => client.put("notes", id, data),
  del: (id) => client.delete("notes", id),
  /** Everything the test checks, read from the client and its storage. */
  snapshot: async () => ({
    state: client.state.get(),
    transport: client.transport.get(),
    pending: client.pending.get(),
    lastError: client.lastError.get()?.message ?? null,
    errors: [...errors],
    positions: client.positions(),
    applied: Object.fromEntries((await client.appList("applied/")).map(([k, v]) => [k.slice("applied/".length), v])),
    log: (await client.appList("log/")).map(([, v]) => v),
    // null until the first session told the SDK this device's channel of the biz
    notes: await client.listBiz("notes").then(
      (rs) => rs.map((r) => ({ id: r.id, seq: r.seq, data: r.data, pending: r.pending })),
      () => null,
    ),
    conflicts: notices("conflicts"),
    writeErrors: notices("writeErrors"),
    resets: notices("resets"),
    gaps: notices("gaps"),
  }),
};
window.appReady = true;
