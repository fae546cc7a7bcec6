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
