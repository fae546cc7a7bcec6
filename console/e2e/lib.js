// What the console's browser tests and the screenshot script share: the
// real syncpoint binary started on port 0 with a fresh data dir, Debian's
// Chromium driven by playwright-core, and small helpers.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { chromium } from "playwright-core";

export const API_KEY = "console-e2e-api-key";
export const TOKEN_SECRET = "console-e2e-token-secret-0123456789";
const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

// binary returns the syncpoint binary: $SYNCPOINT_BIN, else one built once
// into a temporary dir.
let built = "";
export function binary() {
  if (process.env.SYNCPOINT_BIN) return process.env.SYNCPOINT_BIN;
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), "syncpoint-console-bin-"));
    built = join(dir, "syncpoint");
    process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
    execFileSync("go", ["build", "-o", built, "./cmd/syncpoint"], { cwd: repo, stdio: "inherit" });
  }
  return built;
}

const CONFIG = `bizzes:
  - name: chat
    target: user
  - name: config
    target: global
    compact: true
  - name: team
    target: group
  - name: presence
    target: user
    persistent: false
`;

// startServer runs `syncpoint serve` on 127.0.0.1:0 in a fresh dir and
// resolves once it is ready, with its URL, its dir and stop().
export async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), "syncpoint-console-e2e-"));
  writeFileSync(join(dir, "syncpoint.yaml"), CONFIG);
  const data = join(dir, "data");
  const env = { ...process.env, SYNCPOINT_API_KEY: API_KEY, SYNCPOINT_TOKEN_SECRET: TOKEN_SECRET };
  const proc = spawn(binary(), ["serve", "--data", data, "--listen", "127.0.0.1:0", "--tcp-listen", "", "--config", join(dir, "syncpoint.yaml"), "--log-level", "warn"], {
    cwd: dir, env, stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  proc.stdout.on("data", (b) => (log += b));
  proc.stderr.on("data", (b) => (log += b));
  let stopping = false;
  const exited = new Promise((r) => proc.once("exit", (code, signal) => {
    // A server that dies under a test is the first thing to know of.
    if (!stopping) process.stderr.write(`syncpoint serve exited (${code ?? signal}) during the tests:\n${log}\n`);
    r();
  }));
  let url = "";
  for (const deadline = Date.now() + 20000; Date.now() < deadline;) {
    if (proc.exitCode !== null) throw new Error(`syncpoint serve exited ${proc.exitCode}:\n${log}`);
    const info = join(data, "server.json");
    if (existsSync(info)) {
      try {
        url = JSON.parse(readFileSync(info, "utf8")).url;
        const r = await fetch(`${url}/readyz`);
        if (r.ok) break;
      } catch {
        // Not written in full yet, or not listening yet.
      }
    }
    await sleep(50);
  }
  if (!url) throw new Error(`syncpoint serve did not get ready:\n${log}`);
  return {
    url,
    dir,
    log: () => log,
    async stop() {
      stopping = true;
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        await Promise.race([exited, sleep(10000)]);
        if (proc.exitCode === null) proc.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// launch starts headless Chromium with a fresh profile.
export async function launch(viewport = { width: 1280, height: 800 }) {
  const profile = mkdtempSync(join(tmpdir(), "syncpoint-console-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    viewport,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

// api calls the business API directly, to set up what a test needs.
export async function api(base, method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${API_KEY}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// signIn opens the console in a new tab (sessionStorage is per tab) and
// signs in.
export async function signIn(context, base, hash = "#/overview") {
  const page = await context.newPage();
  const problems = watch(page);
  await page.goto(`${base}/console/${hash}`);
  await page.fill("#f-api_key", API_KEY);
  await page.click("#signin button[type=submit]");
  await page.waitForSelector("#nav:not([hidden])");
  page.problems = problems;
  return page;
}

// watch gathers what must never happen on a console page: script errors,
// console errors (a CSP violation is one) and dialogs.
export function watch(page) {
  const problems = [];
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    // Chromium reports each error answer of a fetch, which the tests
    // provoke on purpose; a CSP violation or a thrown error reads otherwise.
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource: the server responded with a status of")) {
      problems.push(`console error: ${msg.text()}`);
    }
  });
  page.on("dialog", (d) => {
    problems.push(`dialog: ${d.type()} ${d.message()}`);
    d.dismiss().catch(() => {});
  });
  return problems;
}

// device runs `syncpoint tail` as a device until it printed count entries,
// and resolves with them.
export function device(base, { user, device: id, biz, count = 1, dir, platform = "", appVersion = "", timeout = 20000 }) {
  return new Promise((resolve, reject) => {
    const args = ["tail", "--server", base, "--user", user, "--device", id, "--biz", biz, "--count", String(count),
      "--state", join(dir, `${id}.syncpoint.db`), "--log-level", "warn"];
    if (platform) args.push("--platform", platform);
    if (appVersion) args.push("--app-version", appVersion);
    const proc = spawn(binary(), args, {
      cwd: dir, env: { ...process.env, SYNCPOINT_TOKEN_SECRET: TOKEN_SECRET }, stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "", err = "";
    proc.stdout.on("data", (b) => (out += b));
    proc.stderr.on("data", (b) => (err += b));
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`syncpoint tail for ${id} got ${out.split("\n").filter(Boolean).length} of ${count} entries in ${timeout} ms\n${err}`));
    }, timeout);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`syncpoint tail exited ${code}: ${err}`));
      resolve(out.split("\n").filter(Boolean).map((l) => JSON.parse(l)));
    });
  });
}

export { sleep };
