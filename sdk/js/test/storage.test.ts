// The storage contract, for every adapter; and the Client on IndexedDB.
import "fake-indexeddb/auto";
import { IDBFactory, IDBKeyRange } from "fake-indexeddb";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IndexedDBStorage, MemoryStorage, newId, SyncpointClient, type StorageAdapter } from "../src/index.js";
import { mintToken, publish, putBiz, startServer, stopServer, uid, waitFor, wsFactory, type Server } from "./server.js";

const adapters: Array<[string, () => Promise<StorageAdapter>]> = [
  ["MemoryStorage", async () => new MemoryStorage()],
  ["IndexedDBStorage", () => IndexedDBStorage.open({ name: uid("db"), indexedDB: new IDBFactory(), keyRange: IDBKeyRange })],
];

describe.each(adapters)("%s: the storage contract", (_name, make) => {
  it("reads back what a commit wrote, and lists by prefix in key order", async () => {
    const s = await make();
    await s.commit([
      { op: "put", store: "records", key: "a/b\u0000k2", value: { seq: 2, data: "{}" } },
      { op: "put", store: "records", key: "a/b\u0000k1", value: { seq: 1, data: null } },
      { op: "put", store: "records", key: "a/c\u0000k1", value: { seq: 9 } },
      { op: "put", store: "positions", key: "a/b", value: { epoch: "e", seq: 2 } },
    ]);
    expect(await s.get("positions", "a/b")).toEqual({ epoch: "e", seq: 2 });
    expect(await s.get("positions", "a/c")).toBeUndefined();
    expect((await s.list("records", "a/b\u0000")).map(([k]) => k)).toEqual(["a/b\u0000k1", "a/b\u0000k2"]);
    expect((await s.list("records")).length).toBe(3);
    await s.close();
  });

  it("applies ops in order: delete, deletePrefix, put again", async () => {
    const s = await make();
    await s.commit([
      { op: "put", store: "records", key: "x\u00001", value: 1 },
      { op: "put", store: "records", key: "x\u00002", value: 2 },
      { op: "put", store: "records", key: "y\u00001", value: 3 },
    ]);
    await s.commit([
      { op: "deletePrefix", store: "records", prefix: "x\u0000" },
      { op: "put", store: "records", key: "x\u00002", value: 22 },
      { op: "delete", store: "records", key: "y\u00001" },
    ]);
    expect(await s.list("records")).toEqual([["x\u00002", 22]]);
    await s.close();
  });

  it("keeps its own copy of values", async () => {
    const s = await make();
    const v = { n: 1 };
    await s.commit([{ op: "put", store: "app", key: "k", value: v }]);
    v.n = 2;
    expect(await s.get("app", "k")).toEqual({ n: 1 });
    await s.close();
  });

  it("is atomic: a commit that fails changes nothing", async () => {
    const s = await make();
    await s.commit([{ op: "put", store: "app", key: "a", value: 1 }]);
    const bad = { f: () => 1, big: 1n }; // neither JSON nor structured-cloneable
    await expect(s.commit([{ op: "put", store: "app", key: "a", value: 2 }, { op: "put", store: "app", key: "b", value: bad }])).rejects.toBeTruthy();
    expect(await s.get("app", "a")).toBe(1);
    expect(await s.get("app", "b")).toBeUndefined();
    await s.close();
  });
});

describe("the Client on IndexedDB", () => {
  let srv: Server;
  beforeAll(async () => {
    srv = await startServer();
    await putBiz(srv, "chat", { target: "user" });
    await putBiz(srv, "notes", { target: "user", writable: true });
  });
  afterAll(async () => {
    await stopServer(srv);
  });

  it("resumes after a reload from the database, with its outbox", async () => {
    const factory = new IDBFactory();
    const name = uid("db");
    const user = uid("u");
    const device = uid("dev");
    const seen: number[] = [];
    const open = async () =>
      SyncpointClient.open({
        server: srv.url,
        token: mintToken(user),
        deviceId: device,
        bizzes: ["chat", "notes"],
        transport: "websocket",
        webSocket: wsFactory(),
        storage: await IndexedDBStorage.open({ name, indexedDB: factory, keyRange: IDBKeyRange }),
        minBackoffMs: 20,
        ackIntervalMs: 20,
        onEntries: (es, tx) => {
          for (const e of es) {
            if (!e.channel.startsWith("chat/")) continue;
            seen.push(e.seq);
            tx.put(`msg:${e.seq}`, e.data);
          }
        },
      });
    let c = await open();
    c.start();
    for (let i = 1; i <= 10; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    await waitFor(() => seen.length === 10, "ten");
    await c.stop();
    const id = newId();
    await c.put("notes", id, { title: "offline" });
    await c.close();
    for (let i = 11; i <= 15; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });

    c = await open();
    expect(c.pending.get()).toBe(1);
    expect(c.positions()[`chat/user:${user}`]?.seq).toBe(10);
    c.start();
    await waitFor(() => seen.length === 15 && c.pending.get() === 0, "the rest, and the upload");
    expect(seen).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect((await c.appList("msg:")).length).toBe(15);
    expect((await c.getBiz("notes", id))?.data).toEqual({ title: "offline" });
    await c.close();
  });
});
