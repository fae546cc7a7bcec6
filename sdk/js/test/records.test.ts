import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryStorage, newId, SyncpointClient, type ClientConfig, type Conflict, type FetchLike, type RecordChange, type WriteError } from "../src/index.js";
import { api, mintToken, publish, putBiz, restartServer, startServer, stopServer, uid, waitFor, wsFactory, type Server } from "./server.js";

let srv: Server;

beforeAll(async () => {
  srv = await startServer();
  await putBiz(srv, "notes", { target: "user", writable: true, compact: true, conflict: "reject" });
  await putBiz(srv, "todos", { target: "user", writable: true, conflict: "reject" }); // not compact
  await putBiz(srv, "chat", { target: "user" });
});
afterAll(async () => {
  await stopServer(srv);
});

function config(server: Server, user: string, extra: Partial<ClientConfig> = {}): ClientConfig {
  return {
    server: server.url,
    token: mintToken(user),
    deviceId: uid("dev"),
    bizzes: ["notes", "todos", "chat"],
    transport: "websocket",
    webSocket: wsFactory(),
    minBackoffMs: 20,
    maxBackoffMs: 200,
    ackIntervalMs: 20,
    ...extra,
  };
}

async function channelEntries(s: Server, channel: string): Promise<any[]> {
  const [biz, target] = channel.split("/");
  const r = await api(s, "GET", `/v1/channels/${biz}/${target}?limit=1000`);
  return r.body.entries ?? [];
}

describe("records", () => {
  it("gets and lists records from the local store, with change events", async () => {
    const user = uid("u");
    const c = await SyncpointClient.open(config(srv, user));
    const changes: RecordChange[] = [];
    c.on("change", (cs) => changes.push(...cs));
    const a = newId();
    const b = newId();
    await publish(srv, { biz: "notes", users: [user], op: "put", key: a, data: { title: "a" } });
    await publish(srv, { biz: "notes", users: [user], op: "put", key: b, data: { title: "b" } });
    c.start();
    const ch = `notes/user:${user}`;
    await waitFor(() => c.positions()[ch]?.seq === 2, "two records");
    expect((await c.get(ch, a))?.data).toEqual({ title: "a" });
    expect((await c.getBiz("notes", b))?.seq).toBe(2);
    expect((await c.list(ch)).map((r) => r.id).sort()).toEqual([a, b].sort());
    await publish(srv, { biz: "notes", users: [user], op: "delete", key: a });
    await waitFor(async () => (await c.get(ch, a)) === undefined, "delete applied");
    expect(changes.map((x) => `${x.op}:${x.id === a ? "a" : "b"}`)).toEqual(["put:a", "put:b", "delete:a"]);
    await c.close();
  });

  it("puts optimistically, uploads, and survives a server that is down (offline outbox)", async () => {
    const own = await startServer();
    await putBiz(own, "notes", { target: "user", writable: true, compact: true });
    const user = uid("u");
    const storage = new MemoryStorage();
    const device = uid("dev");
    let c = await SyncpointClient.open(config(own, user, { storage, deviceId: device, bizzes: ["notes"] }));
    c.start();
    await waitFor(() => c.state.get() === "connected", "connected");
    const ch = `notes/user:${user}`;
    await stopServer(own);
    await waitFor(() => c.state.get() !== "connected", "disconnected");
    const ids = [newId(), newId(), newId()];
    for (const [i, id] of ids.entries()) await c.put("notes", id, { title: `offline ${i}` });
    await c.put("notes", ids[0]!, { title: "offline 0, edited" });
    await c.delete("notes", ids[2]!);
    expect(c.pending.get()).toBe(5);
    expect((await c.getBiz("notes", ids[0]!))?.data).toEqual({ title: "offline 0, edited" });
    expect((await c.getBiz("notes", ids[0]!))?.pending).toBe(true);
    expect(await c.getBiz("notes", ids[2]!)).toBeUndefined();
    // A reload while offline keeps the outbox.
    await c.close();
    c = await SyncpointClient.open(config(own, user, { storage, deviceId: device, bizzes: ["notes"] }));
    expect(c.pending.get()).toBe(5);
    c.start();
    const back = await restartServer(own);
    await waitFor(() => c.pending.get() === 0, "outbox flushed");
    const entries = await channelEntries(back, ch);
    const live = new Map<string, unknown>();
    for (const e of entries) e.op === "put" ? live.set(e.key, e.data) : live.delete(e.key);
    expect(live.get(ids[0]!)).toEqual({ title: "offline 0, edited" });
    expect(live.get(ids[1]!)).toEqual({ title: "offline 1" });
    expect(live.has(ids[2]!)).toBe(false);
    await waitFor(async () => (await c.getBiz("notes", ids[0]!))?.pending === false, "settled");
    const r0 = await c.getBiz("notes", ids[0]!);
    expect(r0?.seq).toBeGreaterThan(0);
    expect(r0?.data).toEqual({ title: "offline 0, edited" });
    await c.close();
    await stopServer(back);
  });

  it("reports a conflict on a reject biz and takes the server's record", async () => {
    const user = uid("u");
    const conflicts: Conflict[] = [];
    const c = await SyncpointClient.open(config(srv, user, { onConflict: (cf) => void conflicts.push(cf) }));
    c.start();
    await waitFor(() => c.state.get() === "connected", "connected");
    const id = newId();
    await c.put("todos", id, { title: "v1" });
    await waitFor(() => c.pending.get() === 0, "saved");
    const ch = `todos/user:${user}`;
    await waitFor(async () => (await c.get(ch, id))?.seq === 1, "seq 1");
    // Offline, the device edits; meanwhile the backend changes the record.
    await c.stop();
    await c.put("todos", id, { title: "mine" });
    await c.put("todos", id, { title: "mine, again" });
    await publish(srv, { biz: "todos", users: [user], op: "put", key: id, data: { title: "theirs" } });
    c.start();
    await waitFor(() => conflicts.length === 1 && c.pending.get() === 0, "a conflict");
    const cf = conflicts[0]!;
    expect(cf.code).toBe("conflict");
    expect(cf.data).toEqual({ title: "mine" });
    expect(cf.dropped.map((d) => d.data)).toEqual([{ title: "mine, again" }]);
    expect(cf.current?.seq).toBe(2);
    expect(cf.current?.data).toEqual({ title: "theirs" });
    await waitFor(async () => (await c.get(ch, id))?.seq === 2, "server record");
    expect((await c.get(ch, id))?.data).toEqual({ title: "theirs" });
    // The app resolves it on top of the server's version.
    await c.put("todos", id, { title: "merged by hand" });
    await waitFor(() => c.pending.get() === 0, "resolved");
    const entries = await channelEntries(srv, ch);
    expect(entries.at(-1).data).toEqual({ title: "merged by hand" });
    expect(entries.at(-1).seq).toBe(3);
    await c.close();
  });

  it("reports other refusals as write errors and rolls back", async () => {
    const user = uid("u");
    const errs: WriteError[] = [];
    const c = await SyncpointClient.open(config(srv, user, { onWriteError: (e) => void errs.push(e) }));
    c.start();
    await waitFor(() => c.state.get() === "connected", "connected");
    await c.put("todos", "not an id!", { title: "x" });
    await waitFor(() => errs.length === 1, "a write error");
    expect(errs[0]!.code).toBe("invalid_id");
    expect(await c.getBiz("todos", "not an id!")).toBeUndefined();
    await c.close();
  });

  it("keeps a pending local change over an older push", async () => {
    const user = uid("u");
    const ws = wsFactory();
    let holdWrites = true;
    // Writes are held back (not sent), so the change stays pending.
    const factory = ((url: string, protocols: string[]) => {
      const sock = ws(url, protocols);
      const send = sock.send.bind(sock);
      sock.send = (text: string) => {
        if (holdWrites && text.startsWith('{"write"')) return;
        send(text);
      };
      return sock;
    }) as typeof ws;
    const c = await SyncpointClient.open(config(srv, user, { webSocket: factory }));
    const id = newId();
    const ch = `todos/user:${user}`;
    await publish(srv, { biz: "todos", users: [user], op: "put", key: id, data: { title: "server v1" } });
    c.start();
    await waitFor(() => c.positions()[ch]?.seq === 1, "v1");
    await c.put("todos", id, { title: "local" }); // based on seq 1
    await publish(srv, { biz: "todos", users: [user], op: "put", key: id, data: { title: "server v2" } });
    await waitFor(() => c.positions()[ch]?.seq === 2, "v2 pushed");
    expect(c.pending.get()).toBe(1);
    expect((await c.get(ch, id))?.data).toEqual({ title: "local" });
    expect((await c.get(ch, id))?.pending).toBe(true);
    // An older push (a repeat of v1 after a reconnect) must not win either.
    holdWrites = false;
    ws.killAll();
    await waitFor(() => c.pending.get() === 0, "settled");
    // reject: the change was based on v1, so it conflicts and the server's v2 stays.
    expect((await c.get(ch, id))?.data).toEqual({ title: "server v2" });
    expect((await c.get(ch, id))?.seq).toBe(2);
    await c.close();
  });
});

describe("resets", () => {
  it("drops a reset channel and resyncs it (not compact)", async () => {
    const user = uid("u");
    const resets: string[] = [];
    const seen: string[] = [];
    const c = await SyncpointClient.open(
      config(srv, user, {
        onReset: (ch) => void resets.push(ch),
        onEntries: (es) => void seen.push(...es.map((e) => `${e.channel}#${e.seq}`)),
      }),
    );
    const ch = `todos/user:${user}`;
    const [x, y] = [newId(), newId()];
    await publish(srv, { biz: "todos", users: [user], op: "put", key: x, data: { n: 1 } });
    await publish(srv, { biz: "todos", users: [user], op: "put", key: y, data: { n: 2 } });
    c.start();
    await waitFor(() => c.positions()[ch]?.seq === 2, "two");
    const epoch = c.positions()[ch]!.epoch;
    expect((await api(srv, "DELETE", `/v1/channels/todos/user:${user}`)).status).toBe(200);
    await waitFor(() => resets.includes(ch), "onReset");
    expect(await c.list(ch)).toEqual([]);
    await publish(srv, { biz: "todos", users: [user], op: "put", key: y, data: { n: 3 } });
    await waitFor(() => c.positions()[ch]?.seq === 1 && c.positions()[ch]?.epoch !== epoch, "new epoch");
    expect((await c.get(ch, y))?.data).toEqual({ n: 3 });
    expect(seen).toEqual([`${ch}#1`, `${ch}#2`, `${ch}#1`]);
    await c.close();
  });

  it("reconciles a reset compact channel by manifest instead of downloading it", async () => {
    const user = uid("u");
    const resets: string[] = [];
    const c = await SyncpointClient.open(config(srv, user, { onReset: (ch) => void resets.push(ch) }));
    const ch = `notes/user:${user}`;
    const keep = newId();
    const gone = newId();
    await publish(srv, { biz: "notes", users: [user], op: "put", key: keep, data: { t: "keep" } });
    await publish(srv, { biz: "notes", users: [user], op: "put", key: gone, data: { t: "gone" } });
    c.start();
    await waitFor(() => c.positions()[ch]?.seq === 2, "two");
    // The channel is reset and republished with one record the same, one changed away.
    await c.stop();
    expect((await api(srv, "DELETE", `/v1/channels/notes/user:${user}`)).status).toBe(200);
    const fresh = newId();
    await publish(srv, { biz: "notes", users: [user], op: "put", key: keep, data: { t: "keep" } });
    await publish(srv, { biz: "notes", users: [user], op: "put", key: fresh, data: { t: "fresh" } });
    const handed: string[] = [];
    c.on("entries", (es) => handed.push(...es.map((e) => `${e.op}:${e.key === keep ? "keep" : e.key === gone ? "gone" : "fresh"}`)));
    c.start();
    await waitFor(async () => (await c.list(ch)).length === 2 && (await c.get(ch, gone)) === undefined, "reconciled");
    expect(resets).toEqual([]); // nothing was dropped
    expect((await c.get(ch, keep))?.seq).toBe(1);
    expect((await c.get(ch, fresh))?.data).toEqual({ t: "fresh" });
    // Only what differs was handed over: keep's data did not change.
    expect(handed.sort()).toEqual(["delete:gone", "put:fresh"]);
    expect(c.positions()[ch]?.seq).toBe(2);
    await c.close();
  });

  it("connects again when a reconcile fails, and reconciles once the endpoint answers", async () => {
    // A reconcile that cannot reach the server (offline, a proxy, a page
    // on an origin the server does not allow) must not leave the client
    // hanging: the session ends with the error and the next welcome tries
    // again.
    const user = uid("u");
    let reconciles = 0;
    const fetch: FetchLike = (url, init) => {
      if (url.endsWith("/v1/sync/reconcile") && ++reconciles === 1) return Promise.reject(new TypeError("Failed to fetch"));
      return globalThis.fetch(url, init as RequestInit) as unknown as ReturnType<FetchLike>;
    };
    const c = await SyncpointClient.open(config(srv, user, { fetch }));
    const ch = `notes/user:${user}`;
    const gone = newId();
    await publish(srv, { biz: "notes", users: [user], op: "put", key: gone, data: { t: "gone" } });
    c.start();
    await waitFor(() => c.positions()[ch]?.seq === 1, "one");
    await c.stop();
    expect((await api(srv, "DELETE", `/v1/channels/notes/user:${user}`)).status).toBe(200);
    const fresh = newId();
    await publish(srv, { biz: "notes", users: [user], op: "put", key: fresh, data: { t: "fresh" } });
    c.start();
    await waitFor(async () => (await c.get(ch, gone)) === undefined && (await c.get(ch, fresh)) !== undefined, "reconciled", 10_000);
    await waitFor(() => c.state.get() === "connected", "connected");
    expect(reconciles).toBe(2);
    await c.close();
  });

  it("resyncs the old way when the reconcile keeps failing", async () => {
    const user = uid("u");
    let reconciles = 0;
    const resets: string[] = [];
    const fetch: FetchLike = (url, init) => {
      if (url.endsWith("/v1/sync/reconcile")) return (reconciles++, Promise.reject(new TypeError("Failed to fetch")));
      return globalThis.fetch(url, init as RequestInit) as unknown as ReturnType<FetchLike>;
    };
    const c = await SyncpointClient.open(config(srv, user, { fetch, onReset: (ch) => void resets.push(ch) }));
    const ch = `notes/user:${user}`;
    const gone = newId();
    await publish(srv, { biz: "notes", users: [user], op: "put", key: gone, data: { t: "gone" } });
    c.start();
    await waitFor(() => c.positions()[ch]?.seq === 1, "one");
    await c.stop();
    expect((await api(srv, "DELETE", `/v1/channels/notes/user:${user}`)).status).toBe(200);
    const fresh = newId();
    await publish(srv, { biz: "notes", users: [user], op: "put", key: fresh, data: { t: "fresh" } });
    c.start();
    await waitFor(() => resets.includes(ch), "onReset", 10_000);
    await waitFor(async () => (await c.get(ch, gone)) === undefined && (await c.get(ch, fresh)) !== undefined, "resynced");
    expect(c.state.get()).toBe("connected");
    expect(reconciles).toBe(3);
    await c.close();
  });
});
