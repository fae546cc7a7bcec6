// The SDK in a real browser (issue 12, part 3): a page on another origin
// than the server receives entries; the server goes away; the page writes
// offline; the page is reloaded; the server comes back. Every entry is
// applied exactly once and every offline write gets its result, checked
// through the page's state.
import { randomUUID } from "node:crypto";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { api, mintToken, publish, putBiz, restartServer, startServer, stopServer, uid, type Server } from "../test/server.js";
import { appLoaded, launch, serveStatic, snapshot, waitForPage, type Browser, type Snapshot, type StaticServer } from "./browser.js";

let site: StaticServer;
// Each test has a browser of its own: a fresh profile is a new device.
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

function pageURL(s: Server, user: string): string {
  return `${site.origin}/?server=${encodeURIComponent(s.url)}&token=${encodeURIComponent(mintToken(user))}`;
}

async function startPage(page: Page): Promise<void> {
  await appLoaded(page);
  await page.evaluate(() => (globalThis as any).app.start());
}

/**
 * A channel as the business API reads it: the seqs of the entries it holds,
 * and the newest put of each key (id → {seq, data}).
 */
async function readChannel(s: Server, channel: string): Promise<{ seqs: number[]; records: Record<string, { seq: number; data: unknown }> }> {
  const [biz, target] = channel.split("/");
  const seqs: number[] = [];
  const records: Record<string, { seq: number; data: unknown }> = {};
  for (let after = 0; ; ) {
    const r = await api(s, "GET", `/v1/channels/${biz}/${target}?after=${after}&limit=1000`);
    expect(r.status).toBe(200);
    for (const e of r.body.entries) {
      seqs.push(e.seq);
      if (e.op === "put") records[e.key] = { seq: e.seq, data: e.data };
      if (e.op === "delete") delete records[e.key];
      after = e.seq;
    }
    if (!r.body.more) return { seqs, records };
  }
}

const key = (channel: string, seq: number) => `${channel}/${String(seq).padStart(8, "0")}`;

/** Each channel's applied seqs, in the order the page applied them. */
function appliedSeqs(s: Snapshot, channel: string): number[] {
  return s.log.filter((e) => e.channel === channel).map((e) => e.seq);
}

function expectExactlyOnce(s: Snapshot): void {
  const dup = Object.entries(s.applied).filter(([, n]) => n !== 1);
  expect(dup, "entries applied more than once").toEqual([]);
  expect(s.log.length, "the log has one line per applied entry").toBe(Object.keys(s.applied).length);
  for (const ch of new Set(s.log.map((e) => e.channel))) {
    const seqs = appliedSeqs(s, ch);
    expect(seqs, `${ch} applied in seq order`).toEqual([...seqs].sort((a, b) => a - b));
  }
}

describe("the SDK in Chromium, over WebSocket, from another origin", () => {
  let srv: Server;
  beforeAll(async () => {
    srv = await startServer();
    await putBiz(srv, "chat", { target: "user" });
    await putBiz(srv, "notes", { target: "user", writable: true, compact: true, conflict: "reject" });
  });
  afterAll(async () => {
    if (srv) await stopServer(srv);
  });

  it("applies every entry once and gets every offline write's result across a server outage and reloads", async () => {
    const user = uid("u");
    const chat = `chat/user:${user}`;
    const notes = `notes/user:${user}`;
    const sendChat = async (from: number, to: number) => {
      for (let i = from; i <= to; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    };
    // Record ids are made by the client: UUIDs here.
    const shared = randomUUID(); // changed by the server while the page is offline: a conflict
    const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];

    await sendChat(1, 5);
    await publish(srv, { biz: "notes", users: [user], op: "put", key: shared, data: { title: "from the server" } });

    const { page } = browser;
    const url = pageURL(srv, user);
    expect(new URL(url).origin).not.toBe(new URL(srv.url).origin);
    await page.goto(url);
    await startPage(page);

    // Catch-up, then live entries.
    await waitForPage(page, (s) => s.state === "connected" && s.applied[key(chat, 5)] === 1 && s.applied[key(notes, 1)] === 1, "the catch-up");
    await sendChat(6, 10);
    let s = await waitForPage(page, (s) => s.applied[key(chat, 10)] === 1, "live entries");
    expect(s.transport).toBe("websocket");

    // The server goes away.
    await stopServer(srv);
    await waitForPage(page, (s) => s.state !== "connected", "the page to see the server gone");

    // Offline writes: optimistic, into the outbox. Two changes to one
    // record go in order; the change to `shared` will meet a newer server
    // version.
    await page.evaluate(
      async ([shared, a, b, c]) => {
        const app = (globalThis as any).app;
        await app.put(shared, { title: "edited offline" });
        await app.put(a, { title: "a1" });
        await app.put(a, { title: "a2" });
        await app.put(b, { title: "b" });
        await app.put(c, { title: "c" });
        await app.del(c);
      },
      [shared, a, b, c],
    );
    const before = await snapshot(page);
    expect(before.pending).toBeGreaterThan(0);
    expect(before.notes!.find((r) => r.id === shared)).toMatchObject({ data: { title: "edited offline" }, pending: true });
    expect(before.notes!.find((r) => r.id === a)).toMatchObject({ data: { title: "a2" }, pending: true });

    // A reload: everything comes back from IndexedDB, before any connection.
    await page.reload();
    await appLoaded(page);
    const reloaded = await snapshot(page);
    expect(reloaded.state).toBe("disconnected");
    expect(reloaded.pending).toBe(before.pending);
    expect(reloaded.applied).toEqual(before.applied);
    expect(reloaded.log).toEqual(before.log);
    expect(reloaded.positions).toEqual(before.positions);
    expect(reloaded.notes).toEqual(before.notes);

    // The server comes back on the same data dir and port, and gets a newer
    // version of `shared` and more entries before the page connects.
    srv = await restartServer(srv);
    await publish(srv, { biz: "notes", users: [user], op: "put", key: shared, data: { title: "changed on the server" } });
    await sendChat(11, 15);
    await page.evaluate(() => (globalThis as any).app.start());
    s = await waitForPage(page, (s) => s.state === "connected" && s.pending === 0 && s.applied[key(chat, 15)] === 1, "the outbox to drain");
    await sendChat(16, 20);
    await waitForPage(page, (s) => s.applied[key(chat, 20)] === 1, "entries after the outage");

    // Once more: a reload of a connected page, which connects again from
    // what IndexedDB holds; nothing is applied again.
    await page.reload();
    await startPage(page);
    await waitForPage(page, (s) => s.state === "connected", "the reconnect after the second reload");
    await sendChat(21, 21);
    s = await waitForPage(page, (s) => s.applied[key(chat, 21)] === 1, "an entry after the second reload");

    // Every entry exactly once, in order, none missing.
    expectExactlyOnce(s);
    expect(appliedSeqs(s, chat)).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    // The notes channel may have compacted superseded versions away; every
    // entry it still holds was applied, and the page is at its end.
    const { seqs: notesSeqs, records: serverNotes } = await readChannel(srv, notes);
    expect(appliedSeqs(s, notes)).toEqual(expect.arrayContaining(notesSeqs));
    expect(s.positions[notes]?.seq).toBe(notesSeqs.at(-1));

    // Every offline write got its result: the outbox is empty, the
    // conflict was reported once with the server's record, nothing else
    // failed, and the local records are the server's.
    expect(s.pending).toBe(0);
    expect(s.writeErrors).toEqual([]);
    expect(s.resets).toEqual([]);
    expect(s.gaps).toEqual([]);
    expect(s.conflicts).toEqual([{ id: shared, op: "put", code: "conflict", current: { title: "changed on the server" }, dropped: 0 }]);
    expect(Object.keys(serverNotes).sort()).toEqual([shared, a, b].sort());
    expect(serverNotes[shared]!.data).toEqual({ title: "changed on the server" });
    expect(serverNotes[a]!.data).toEqual({ title: "a2" });
    expect(serverNotes[b]!.data).toEqual({ title: "b" });
    const local = Object.fromEntries(s.notes!.map((r) => [r.id, { seq: r.seq, data: r.data, pending: r.pending }]));
    expect(local).toEqual(Object.fromEntries(Object.entries(serverNotes).map(([id, r]) => [id, { ...r, pending: false }])));
    expect(s.errors, "errors since the last reload").toEqual([]);
    expect(browser.console.filter((l) => l.startsWith("pageerror")), "uncaught errors in the page").toEqual([]);
  });

  it("applies every entry once when the page is reloaded in the middle of a stream", async () => {
    const user = uid("u");
    const chat = `chat/user:${user}`;
    const total = 300;
    const { page } = browser;
    await page.goto(pageURL(srv, user));
    await startPage(page);
    await waitForPage(page, (s) => s.state === "connected", "the first connection");
    // Publish while the page is reloaded twice: each reload ends the page,
    // its socket and any IndexedDB transaction in flight wherever they are.
    const publishing = (async () => {
      for (let i = 1; i <= total; i++) await publish(srv, { biz: "chat", users: [user], data: { i } });
    })();
    for (const at of [total / 3, (2 * total) / 3]) {
      await waitForPage(page, (s) => appliedSeqs(s, chat).length >= at, `${at} entries`);
      await page.reload();
      await startPage(page);
    }
    await publishing;
    const s = await waitForPage(page, (s) => s.applied[key(chat, total)] === 1, "every entry");
    expectExactlyOnce(s);
    expect(appliedSeqs(s, chat)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(browser.console.filter((l) => l.startsWith("pageerror")), "uncaught errors in the page").toEqual([]);
  });
});
