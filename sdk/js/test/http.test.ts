import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId, SyncpointClient, type ClientConfig, type WebSocketLike } from "../src/index.js";
import { api, mintToken, publish, putBiz, startServer, stopServer, uid, waitFor, type Server } from "./server.js";

let srv: Server;

beforeAll(async () => {
  srv = await startServer();
  await putBiz(srv, "chat", { target: "user" });
  await putBiz(srv, "notes", { target: "user", writable: true, compact: true });
  await putBiz(srv, "live", { target: "user", persistent: false });
});
afterAll(async () => {
  await stopServer(srv);
});

function config(user: string, extra: Partial<ClientConfig> = {}): ClientConfig {
  return {
    server: srv.url,
    token: mintToken(user),
    deviceId: uid("dev"),
    bizzes: ["chat", "notes"],
    transport: "http",
    minBackoffMs: 20,
    maxBackoffMs: 200,
    ...extra,
  };
}

/** A WebSocket that never connects, as behind a proxy that drops upgrades. */
function brokenWebSocket(): { factory: (url: string, p: string[]) => WebSocketLike; tries: number } {
  const o = {
    tries: 0,
    factory: (): WebSocketLike => {
      o.tries++;
      const ws: WebSocketLike = {
        readyState: 0,
        onopen: null,
        onmessage: null,
        onclose: null,
        onerror: null,
        send() {
          throw new Error("not open");
        },
        close() {},
      };
      setTimeout(() => {
        ws.onerror?.({});
        ws.onclose?.({ code: 1006, reason: "" });
      }, 5);
      return ws;
    },
  };
  return o;
}

describe("SSE and HTTP uploads", () => {
  it("catches up, then receives live over SSE, in order and once", async () => {
    const user = uid("u");
    const seen: number[] = [];
    for (let i = 1; i <= 5; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    const c = await SyncpointClient.open(
      config(user, {
        onEntries: (es) => {
          for (const e of es) if (e.channel.startsWith("chat/")) seen.push(e.seq);
        },
      }),
    );
    c.start();
    await waitFor(() => c.state.get() === "connected" && seen.length === 5, "catch-up");
    expect(c.transport.get()).toBe("http");
    for (let i = 6; i <= 15; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    await waitFor(() => seen.length >= 15, "live entries");
    expect(seen).toEqual(Array.from({ length: 15 }, (_, i) => i + 1));
    expect(c.positions()[`chat/user:${user}`]?.seq).toBe(15);
    expect(c.lag.get()[`chat/user:${user}`]).toBe(0);
    await c.close();
  });

  it("uploads through POST /v1/write and gets its own record back", async () => {
    const user = uid("u");
    const c = await SyncpointClient.open(config(user));
    c.start();
    await waitFor(() => c.state.get() === "connected", "connected");
    const id = newId();
    await c.put("notes", id, { title: "over http" });
    await waitFor(() => c.pending.get() === 0, "uploaded");
    const ch = `notes/user:${user}`;
    await waitFor(() => c.positions()[ch]?.seq === 1, "own entry back");
    expect((await c.get(ch, id))?.data).toEqual({ title: "over http" });
    expect((await c.get(ch, id))?.seq).toBe(1);
    const r = await api(srv, "GET", `/v1/channels/notes/user:${user}`);
    expect(r.body.entries[0].origin).toMatch(/^device:/);
    await c.close();
  });

  it("falls back from a WebSocket that never connects", async () => {
    const user = uid("u");
    const ws = brokenWebSocket();
    const seen: unknown[] = [];
    const c = await SyncpointClient.open(
      config(user, { transport: "auto", webSocket: ws.factory, onEntries: (es) => void seen.push(...es.map((e) => e.data)) }),
    );
    c.start();
    await waitFor(() => c.transport.get() === "http", "fallback to http");
    expect(ws.tries).toBe(2);
    await publish(srv, { biz: "chat", users: [user], data: { via: "sse" } });
    await waitFor(() => seen.length === 1, "an entry over SSE");
    expect(seen[0]).toEqual({ via: "sse" });
    await c.close();
  });

  it("acts on a reset while streaming", async () => {
    const user = uid("u");
    const resets: string[] = [];
    const c = await SyncpointClient.open(config(user, { onReset: (ch) => void resets.push(ch) }));
    const ch = `chat/user:${user}`;
    await publish(srv, { biz: "chat", users: [user], data: { n: 1 } });
    c.start();
    await waitFor(() => c.positions()[ch]?.seq === 1, "one");
    const epoch = c.positions()[ch]!.epoch;
    expect((await api(srv, "DELETE", `/v1/channels/chat/user:${user}`)).status).toBe(200);
    await waitFor(() => resets.length === 1, "reset");
    await publish(srv, { biz: "chat", users: [user], data: { n: 2 } });
    await waitFor(() => c.positions()[ch]?.seq === 1 && c.positions()[ch]?.epoch !== epoch, "the new epoch");
    await c.close();
  });

  it("delivers entries of a non-persistent biz live", async () => {
    const user = uid("u");
    const seen: unknown[] = [];
    const c = await SyncpointClient.open(config(user, { bizzes: ["chat", "live"], onEntries: (es) => void seen.push(...es.filter((e) => e.seq === 0).map((e) => e.data)) }));
    c.start();
    await waitFor(() => c.state.get() === "connected", "connected");
    await publish(srv, { biz: "live", users: [user], data: { typing: true } });
    await waitFor(() => seen.length === 1, "a live entry");
    await c.close();
  });
});
