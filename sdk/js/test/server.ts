// Starts the real syncpoint binary and talks to its business API.
import { spawn, type ChildProcess } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import type { WebSocketFactory, WebSocketLike } from "../src/index.js";

export const API_KEY = "test-api-key-0123456789abcdef";
export const TOKEN_SECRET = "test-token-secret-0123456789abcdef";

export interface Server {
  url: string;
  port: number;
  dataDir: string;
  args?: string[];
  proc: ChildProcess;
  stderr: () => string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Starts `syncpoint serve` on dataDir (a new temp dir when absent), on port (0: any). */
export async function startServer(opts: { dataDir?: string; port?: number; args?: string[] } = {}): Promise<Server> {
  const bin = process.env.SYNCPOINT_BIN;
  if (!bin) throw new Error("SYNCPOINT_BIN is not set: run through vitest (test/global-setup.ts builds it)");
  // Under the run's root, which the global teardown removes.
  const dataDir = opts.dataDir ?? mkdtempSync(join(process.env.SYNCPOINT_TEST_ROOT ?? tmpdir(), "data-"));
  rmSync(join(dataDir, "server.json"), { force: true });
  const env = { ...process.env, SYNCPOINT_API_KEY: API_KEY, SYNCPOINT_TOKEN_SECRET: TOKEN_SECRET };
  const proc = spawn(bin, ["serve", "--data", dataDir, "--listen", `127.0.0.1:${opts.port ?? 0}`, "--tcp-listen", "", "--config", "", "--log-level", "warn", ...(opts.args ?? [])], {
    env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  // The teardown kills what a failed test left running.
  const root = process.env.SYNCPOINT_TEST_ROOT;
  if (root && proc.pid) {
    const pidFile = join(root, "pids", String(proc.pid));
    writeFileSync(pidFile, "");
    proc.once("exit", () => rmSync(pidFile, { force: true }));
  }
  let err = "";
  proc.stderr!.on("data", (b: Buffer) => (err += b.toString()));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`serve exited: ${proc.exitCode}\n${err}`);
    try {
      const si = JSON.parse(readFileSync(join(dataDir, "server.json"), "utf8")) as { url: string; pid: number };
      if (si.pid === proc.pid) {
        const port = Number(new URL(si.url).port);
        // The listener is up once healthz answers.
        const r = await fetch(si.url + "/healthz").catch(() => null);
        if (r?.ok) return { url: si.url, port, dataDir, args: opts.args, proc, stderr: () => err };
      }
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`serve did not start\n${err}`);
    await sleep(20);
  }
}

/** Stops the server: SIGKILL (a crash) or SIGTERM (a clean shutdown). */
export async function stopServer(s: Server, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
  if (s.proc.exitCode !== null || s.proc.signalCode !== null) return;
  const exited = new Promise((r) => s.proc.once("exit", r));
  s.proc.kill(signal);
  await exited;
}

/** Restarts the server on the same data dir and port. */
export async function restartServer(s: Server, signal: NodeJS.Signals = "SIGKILL"): Promise<Server> {
  await stopServer(s, signal);
  for (let i = 0; ; i++) {
    try {
      return await startServer({ dataDir: s.dataDir, port: s.port, args: s.args });
    } catch (e) {
      if (i >= 20) throw e;
      await sleep(100); // the port may not be free yet
    }
  }
}

/** Calls the business API. */
export async function api(s: Server, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const r = await fetch(s.url + path, {
    method,
    headers: { Authorization: "Bearer " + API_KEY, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

/** Creates (or replaces) a biz. */
export async function putBiz(s: Server, name: string, settings: Record<string, unknown>): Promise<void> {
  const r = await api(s, "PUT", `/v1/bizzes/${name}`, settings);
  if (r.status !== 200 && r.status !== 201) throw new Error(`put biz ${name}: ${r.status} ${JSON.stringify(r.body)}`);
}

/** Publishes one entry; returns its seq. */
export async function publish(s: Server, p: Record<string, unknown>): Promise<number> {
  const r = await api(s, "POST", "/v1/publish", p);
  if (r.status !== 200) throw new Error(`publish: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.entries[0].seq as number;
}

function b64url(s: string | Buffer): string {
  return Buffer.from(s).toString("base64url");
}

/** An HS256 device token for user, signed with the server's token secret. */
export function mintToken(user: string, opts: { groups?: string[]; ttlSec?: number } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const payload = b64url(JSON.stringify({ sub: user, groups: opts.groups, iat: now, exp: now + (opts.ttlSec ?? 3600) }));
  const sig = createHmac("sha256", TOKEN_SECRET).update(`${header}.${payload}`).digest("base64url");
  return `${header}.${payload}.${sig}`;
}

/** A unique name for a test's user or device. */
export function uid(prefix: string): string {
  return prefix + "-" + randomUUID().slice(0, 8);
}

/** A WebSocket factory over the `ws` package that keeps every socket, so tests can cut them. */
export function wsFactory(): WebSocketFactory & { sockets: WebSocket[]; killAll(): void; opened: number } {
  const sockets: WebSocket[] = [];
  const f = ((url: string, protocols: string[]) => {
    const ws = new WebSocket(url, protocols);
    sockets.push(ws);
    f.opened++;
    return ws as unknown as WebSocketLike;
  }) as WebSocketFactory & { sockets: WebSocket[]; killAll(): void; opened: number };
  f.sockets = sockets;
  f.opened = 0;
  f.killAll = () => {
    for (const ws of sockets) if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
  };
  return f;
}

/** Waits until cond() is true. */
export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}
