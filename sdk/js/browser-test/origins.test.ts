// What a page on another origin than the server can use, by the server's
// allowed_origins (--allowed-origins; docs/operations.md, "Browsers on
// other origins"): the HTTP device endpoints need the page's origin listed
// (CORS), and a list refuses the WebSocket to pages it does not name.
import { randomUUID } from "node:crypto";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { api, mintToken, publish, putBiz, startServer, stopServer, uid, type Server } from "../test/server.js";
import { appLoaded, launch, serveStatic, waitForPage, type Browser, type Snapshot, type StaticServer } from "./browser.js";

let site: StaticServer;
let browser: Browser;

beforeAll(async () => {
  site = await serveStatic();
});
beforeEach(async () => {
  browser = await launch();
});
afterEach(async () => {
  await browser?.close();
});
afterAll(async () => {
  await site?.close();
});

async function bizzes(s: Server): Promise<void> {
  await putBiz(s, "chat", { target: "user" });
  await putBiz(s, "notes", { target: "user", writable: true, compact: true, conflict: "reject" });
}

async function open(page: Page, s: Server, user: string, transport: "websocket" | "http"): Promise<void> {
  await page.goto(`${site.origin}/?transport=${transport}&server=${encodeURIComponent(s.url)}&token=${encodeURIComponent(mintToken(user))}`);
  await appLoaded(page);
  await page.evaluate(() => (globalThis as any).app.start());
}

const key = (channel: string, seq: number) => `${channel}/${String(seq).padStart(8, "0")}`;

function chatSeqs(s: Snapshot, channel: string): number[] {
  return s.log.filter((e) => e.channel === channel).map((e) => e.seq);
}

/** The newest put of each key of a channel, by the business API. */
async function serverRecords(s: Server, channel: string): Promise<Record<string, unknown>> {
  const [biz, target] = channel.split("/");
  const r = await api(s, "GET", `/v1/channels/${biz}/${target}?limit=1000`);
  expect(r.status).toBe(200);
  const out: Record<string, unknown> = {};
  for (const e of r.body.entries) {
    if (e.op === "put") out[e.key] = e.data;
    if (e.op === "delete") delete out[e.key];
  }
  return out;
}

const localRecords = (s: Snapshot) => Object.fromEntries((s.notes ?? []).map((r) => [r.id, r.data]));

describe("with the page's origin in allowed_origins", () => {
  let srv: Server;
  beforeAll(async () => {
    srv = await startServer({ args: ["--allowed-origins", site.origin] });
    await bizzes(srv);
  });
  afterAll(async () => {
    if (srv) await stopServer(srv);
  });

  it("syncs over HTTP: one-shot sync, SSE and uploads, across a reload", async () => {
    const user = uid("u");
    const chat = `chat/user:${user}`;
    const notes = `notes/user:${user}`;
    for (let i = 1; i <= 5; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    const { page } = browser;
    await open(page, srv, user, "http");
    let s = await waitForPage(page, (s) => s.state === "connected" && s.applied[key(chat, 5)] === 1, "the catch-up over HTTP");
    expect(s.transport).toBe("http");
    for (let i = 6; i <= 10; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    await waitForPage(page, (s) => s.applied[key(chat, 10)] === 1, "live entries over SSE");

    const [a, b] = [randomUUID(), randomUUID()];
    await page.evaluate(
      async ([a, b]) => {
        const app = (globalThis as any).app;
        await app.put(a, { title: "a" });
        await app.put(b, { title: "b" });
      },
      [a, b],
    );
    s = await waitForPage(page, (s) => s.pending === 0 && (s.notes ?? []).every((r) => !r.pending && r.seq > 0), "the uploads' results");
    expect(localRecords(s)).toEqual(await serverRecords(srv, notes));

    await page.reload();
    await appLoaded(page);
    await page.evaluate(() => (globalThis as any).app.start());
    await publish(srv, { biz: "chat", users: [user], data: { i: 11 } });
    s = await waitForPage(page, (s) => s.transport === "http" && s.applied[key(chat, 11)] === 1, "an entry after the reload");
    expect(Object.values(s.applied).every((n) => n === 1), "every entry once").toBe(true);
    expect(chatSeqs(s, chat)).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
    expect(s.writeErrors).toEqual([]);
    expect(s.conflicts).toEqual([]);
  });

  it("reconciles a reset compact biz over the WebSocket (POST /v1/sync/reconcile from the page)", async () => {
    const user = uid("u");
    const notes = `notes/user:${user}`;
    const [x, y, z] = [randomUUID(), randomUUID(), randomUUID()];
    await publish(srv, { biz: "notes", users: [user], op: "put", key: x, data: { title: "x" } });
    await publish(srv, { biz: "notes", users: [user], op: "put", key: y, data: { title: "y" } });
    const { page } = browser;
    await open(page, srv, user, "websocket");
    await waitForPage(page, (s) => s.state === "connected" && s.notes?.length === 2, "the first records");

    expect((await api(srv, "DELETE", `/v1/channels/notes/user:${user}`)).status).toBe(200);
    await publish(srv, { biz: "notes", users: [user], op: "put", key: z, data: { title: "z" } });
    const s = await waitForPage(page, (s) => s.state === "connected" && s.notes?.length === 1 && s.notes[0]!.id === z, "the reconcile");
    expect(s.transport).toBe("websocket");
    expect(localRecords(s)).toEqual(await serverRecords(srv, notes));
    // Reconciled, not resynced the old way (which a failed reconcile comes to).
    expect(s.resets).toEqual([]);
    expect(browser.console.filter((l) => /reconcile/.test(l))).toEqual([]);
  });
});

describe("without allowed_origins (the default)", () => {
  it("a page on another origin connects over the WebSocket, but cannot use HTTP (no CORS)", async () => {
    const srv = await startServer();
    try {
      await bizzes(srv);
      const user = uid("u");
      const { page } = browser;
      await open(page, srv, user, "http");
      const s = await waitForPage(page, (s) => s.errors.length >= 2, "failed HTTP attempts");
      expect(s.state).not.toBe("connected");
      expect(s.lastError).toMatch(/fetch/i);
      expect(browser.console.some((l) => /blocked by CORS policy/.test(l)), "the browser blamed CORS").toBe(true);

      await open(page, srv, user, "websocket");
      await waitForPage(page, (s) => s.state === "connected" && s.transport === "websocket", "the WebSocket");
    } finally {
      await stopServer(srv);
    }
  });
});

describe("with allowed_origins that do not list the page's origin", () => {
  it("the WebSocket and HTTP are refused", async () => {
    const srv = await startServer({ args: ["--allowed-origins", "https://app.example.com"] });
    try {
      await bizzes(srv);
      const user = uid("u");
      const { page } = browser;
      for (const transport of ["websocket", "http"] as const) {
        await open(page, srv, user, transport);
        const s = await waitForPage(page, (s) => s.errors.length >= 2, `refused ${transport} attempts`);
        expect(s.state, transport).not.toBe("connected");
        expect(s.applied, transport).toEqual({});
      }
    } finally {
      await stopServer(srv);
    }
  });
});
