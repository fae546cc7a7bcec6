import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryStorage, SyncpointClient, type ClientConfig, type Entry } from "../src/index.js";
import { api, mintToken, publish, putBiz, restartServer, startServer, stopServer, uid, waitFor, wsFactory, type Server } from "./server.js";

let srv: Server;

beforeAll(async () => {
  srv = await startServer();
  await putBiz(srv, "chat", { target: "user" });
});
afterAll(async () => {
  await stopServer(srv);
});

function config(user: string, extra: Partial<ClientConfig> = {}): ClientConfig {
  return {
    server: srv.url,
    token: mintToken(user),
    deviceId: uid("dev"),
    bizzes: ["chat"],
    transport: "websocket",
    minBackoffMs: 20,
    maxBackoffMs: 200,
    ackIntervalMs: 20,
    ...extra,
  };
}

describe("WebSocket", () => {
  it("receives entries in order, once, across killed sockets", async () => {
    const user = uid("u");
    const ws = wsFactory();
    const seen: number[] = [];
    const c = await SyncpointClient.open(
      config(user, {
        webSocket: ws,
        onEntries: (entries: Entry[], tx) => {
          for (const e of entries) {
            seen.push(e.seq);
            tx.put("msg:" + String(e.seq).padStart(6, "0"), e.data);
          }
        },
      }),
    );
    c.start();
    await waitFor(() => c.state.get() === "connected", "connected");
    for (let i = 1; i <= 60; i++) {
      await publish(srv, { biz: "chat", users: [user], data: { i } });
      if (i % 15 === 0) ws.killAll();
    }
    await waitFor(() => seen.length >= 60, "60 entries");
    ws.killAll();
    for (let i = 61; i <= 80; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    await waitFor(() => seen.length >= 80, "80 entries");
    expect(seen).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
    const stored = await c.appList("msg:");
    expect(stored.map(([, v]) => (v as { i: number }).i)).toEqual(Array.from({ length: 80 }, (_, i) => i + 1));
    expect(ws.opened).toBeGreaterThan(2);
    expect(c.positions()[`chat/user:${user}`]?.seq).toBe(80);
    await c.close();
  });
});

describe("exactly once across reloads and restarts", () => {
  it("a reload (a new client on the same storage) resumes without repeats", async () => {
    const user = uid("u");
    const storage = new MemoryStorage();
    const device = uid("dev");
    const seen: number[] = [];
    const mk = () =>
      SyncpointClient.open(
        config(user, {
          storage,
          deviceId: device,
          webSocket: wsFactory(),
          onEntries: (entries) => {
            for (const e of entries) seen.push(e.seq);
          },
        }),
      );
    let c = await mk();
    c.start();
    for (let i = 1; i <= 20; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    await waitFor(() => seen.length >= 20, "20 entries");
    await c.close();
    for (let i = 21; i <= 30; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    c = await mk();
    c.start();
    await waitFor(() => seen.length >= 30, "30 entries");
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    await c.close();
  });

  it("a commit that fails is applied again, and its effects land once", async () => {
    const user = uid("u");
    const inner = new MemoryStorage();
    let failures = 2;
    // Fails the commits that store positions (a push) twice: as a crash
    // in the middle of an apply would.
    const storage = Object.assign(Object.create(inner), {
      commit: async (ops: Parameters<MemoryStorage["commit"]>[0]) => {
        if (failures > 0 && ops.some((o) => o.store === "positions")) {
          failures--;
          throw new Error("disk full");
        }
        return inner.commit(ops);
      },
    }) as MemoryStorage;
    const calls: number[] = [];
    const c = await SyncpointClient.open(
      config(user, {
        storage,
        webSocket: wsFactory(),
        onEntries: async (entries, tx) => {
          for (const e of entries) {
            calls.push(e.seq);
            const n = ((await tx.get("count")) as number | undefined) ?? 0;
            tx.put("count", n + 1);
          }
        },
      }),
    );
    for (let i = 1; i <= 5; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    c.start();
    await waitFor(() => c.positions()[`chat/user:${user}`]?.seq === 5, "position 5");
    expect(calls.length).toBeGreaterThan(5); // the failed applies called the handler too
    expect(await c.appGet("count")).toBe(5); // but only the committed one counts
    await c.close();
  });

  it("keeps order and exactly-once across a server crash", async () => {
    const own = await startServer();
    await putBiz(own, "chat", { target: "user" });
    const user = uid("u");
    const seen: number[] = [];
    const c = await SyncpointClient.open({
      ...config(user),
      server: own.url,
      webSocket: wsFactory(),
      onEntries: (entries) => {
        for (const e of entries) seen.push(e.seq);
      },
    });
    c.start();
    for (let i = 1; i <= 10; i++) await publish(own, { biz: "chat", users: [user], data: { i } });
    await waitFor(() => seen.length >= 10, "10 entries");
    const again = await restartServer(own); // kill -9
    for (let i = 11; i <= 20; i++) await publish(again, { biz: "chat", users: [user], data: { i } });
    await waitFor(() => seen.length >= 20, "20 entries");
    const third = await restartServer(again, "SIGTERM"); // a clean shutdown: close 3000, going away
    for (let i = 21; i <= 25; i++) await publish(third, { biz: "chat", users: [user], data: { i } });
    await waitFor(() => seen.length >= 25, "25 entries");
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    await c.close();
    await stopServer(third);
  });
});

describe("close codes", () => {
  it("stops on a forbidden biz (4003)", async () => {
    const c = await SyncpointClient.open(config(uid("u"), { bizzes: ["nope"], webSocket: wsFactory() }));
    c.start();
    await waitFor(() => c.state.get() === "stopped", "stopped");
    expect(c.lastError.get()?.code).toBe(4003);
    await c.close();
  });

  it("stops on a bad token (4001) and reconnects with a fresh one after expiry", async () => {
    const bad = await SyncpointClient.open(config(uid("u"), { token: "not-a-token", webSocket: wsFactory() }));
    bad.start();
    await waitFor(() => bad.state.get() === "stopped", "stopped");
    expect(bad.lastError.get()?.code).toBe(4001);
    await bad.close();

    // A token that expires mid-session: the server closes with 4001 (30 s
    // leeway), so here the token is revoked instead, and the callback gives a new one.
    const user = uid("u");
    const minted = await api(srv, "POST", "/v1/tokens", { user, ttl: "1h" });
    expect(minted.status).toBe(201);
    const reasons: string[] = [];
    const ws = wsFactory();
    const c = await SyncpointClient.open(
      config(user, {
        webSocket: ws,
        token: async ({ reason }) => {
          reasons.push(reason);
          return reasons.length === 1 ? minted.body.token : mintToken(user);
        },
      }),
    );
    c.start();
    await waitFor(() => c.state.get() === "connected", "connected");
    expect((await api(srv, "DELETE", `/v1/tokens/${minted.body.id}`)).status).toBe(204);
    await waitFor(() => reasons.includes("unauthorized") && c.state.get() === "connected", "reconnected with a new token");
    await publish(srv, { biz: "chat", users: [user], data: { after: true } });
    await waitFor(() => c.positions()[`chat/user:${user}`]?.seq === 1, "entry after the new token");
    await c.close();
  });
});

describe("heartbeats and acks", () => {
  it("answers pings, and reconnects when the server goes silent", async () => {
    const own = await startServer({ args: ["--heartbeat-interval", "150ms"] });
    await putBiz(own, "chat", { target: "user" });
    const user = uid("u");
    const ws = wsFactory();
    let deaf: unknown = null; // the socket that hears nothing any more
    const factory = ((url: string, protocols: string[]) => {
      const sock = ws(url, protocols);
      const wire = sock as unknown as { onmessage: ((ev: { data: unknown }) => void) | null };
      let handler: ((ev: { data: unknown }) => void) | null = null;
      Object.defineProperty(wire, "onmessage", {
        get: () => handler,
        set: (h) => {
          handler = h;
          (sock as unknown as { addEventListener(t: string, f: (ev: { data: unknown }) => void): void }).addEventListener("message", (ev) => {
            if (deaf !== sock && handler) handler(ev);
          });
        },
      });
      return sock;
    }) as typeof ws;
    const c = await SyncpointClient.open({ ...config(user), server: own.url, webSocket: factory });
    c.start();
    await waitFor(() => c.state.get() === "connected", "connected");
    await new Promise((r) => setTimeout(r, 1000)); // 6 heartbeat intervals: pongs keep it open
    expect(ws.opened).toBe(1);
    deaf = ws.sockets[0]; // a half-open connection: nothing arrives any more
    await waitFor(() => ws.opened >= 2, "a reconnect after 3 silent intervals", 5000);
    await waitFor(() => c.state.get() === "connected", "connected again");
    await c.close();
    await stopServer(own);
  });

  it("coalesces acks by time and count, and the server keeps the sync point", async () => {
    const user = uid("u");
    const ws = wsFactory();
    let acks = 0;
    const factory = ((url: string, protocols: string[]) => {
      const sock = ws(url, protocols);
      const send = sock.send.bind(sock);
      sock.send = (text: string) => {
        if (text.startsWith('{"ack"')) acks++;
        send(text);
      };
      return sock;
    }) as typeof ws;
    const device = uid("dev");
    const c = await SyncpointClient.open(config(user, { deviceId: device, webSocket: factory, ackIntervalMs: 300, ackEntries: 1000 }));
    c.start();
    await waitFor(() => c.state.get() === "connected", "connected");
    await api(srv, "POST", "/v1/publish/batch", { publishes: Array.from({ length: 100 }, (_, i) => ({ biz: "chat", users: [user], data: { i } })) });
    await waitFor(() => c.positions()[`chat/user:${user}`]?.seq === 100, "100 entries");
    await waitFor(() => acks >= 1, "an ack");
    expect(acks).toBeLessThanOrEqual(3);
    await waitFor(async () => {
      const d = await api(srv, "GET", `/v1/devices/${device}`);
      return d.body?.channels?.some((p: { channel: string; seq: number }) => p.channel === `chat/user:${user}` && p.seq === 100);
    }, "the server's sync point at 100");
    await c.close();
  });
});

describe("gaps", () => {
  it("tells of entries trimmed before the device got them, and goes on after them", async () => {
    await putBiz(srv, "feed", { target: "user", max_backlog: 3 });
    const user = uid("u");
    const gaps: Array<[string, number]> = [];
    const seen: number[] = [];
    const c = await SyncpointClient.open(
      config(user, { bizzes: ["feed"], webSocket: wsFactory(), onGap: (ch, first) => void gaps.push([ch, first]), onEntries: (es) => void seen.push(...es.map((e) => e.seq)) }),
    );
    await publish(srv, { biz: "feed", users: [user], data: { i: 1 } });
    c.start();
    await waitFor(() => seen.length === 1, "one");
    await c.stop();
    for (let i = 2; i <= 10; i++) await publish(srv, { biz: "feed", users: [user], data: { i } });
    c.start();
    await waitFor(() => gaps.length === 1 && seen.length === 4, "a gap, then the kept entries");
    expect(gaps[0]).toEqual([`feed/user:${user}`, 8]);
    expect(seen).toEqual([1, 8, 9, 10]);
    await c.close();
  });
});
