// The browser side of the browser tests: a static server for the test page
// and the SDK's dist/, and Chromium driven by playwright-core.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server as HTTPServer } from "node:http";
import { tmpdir } from "node:os";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type BrowserContext, type Page } from "playwright-core";

const here = fileURLToPath(new URL(".", import.meta.url));
const pageDir = join(here, "page");
const distDir = resolve(here, "../dist");

const types: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json",
};

export interface StaticServer {
  /** The page's origin, http://127.0.0.1:PORT. */
  origin: string;
  close(): Promise<void>;
}

/** Serves the test page at / and the SDK's dist/ at /sdk/, on 127.0.0.1 and a free port. */
export async function serveStatic(): Promise<StaticServer> {
  if (!existsSync(join(distDir, "index.js"))) throw new Error(`${distDir}/index.js is missing: run npm run build first`);
  const srv: HTTPServer = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const [dir, rest] = path.startsWith("/sdk/") ? [distDir, path.slice(5)] : [pageDir, path === "/" ? "index.html" : path.slice(1)];
    const file = normalize(join(dir, rest));
    if (!file.startsWith(dir + sep) || !existsSync(file)) {
      res.writeHead(404).end("not found");
      return;
    }
    res.writeHead(200, { "Content-Type": types[extname(file)] ?? "application/octet-stream", "Cache-Control": "no-store" });
    res.end(readFileSync(file));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const addr = srv.address();
  if (!addr || typeof addr === "string") throw new Error("no address");
  return {
    origin: `http://127.0.0.1:${addr.port}`,
    close: () => new Promise((r) => srv.close(() => r())),
  };
}

export interface Browser {
  context: BrowserContext;
  page: Page;
  /** What the page logged to its console, and its uncaught errors. */
  console: string[];
  close(): Promise<void>;
}

/** Starts headless Chromium on a fresh profile, whose IndexedDB outlives reloads. */
export async function launch(): Promise<Browser> {
  const dir = mkdtempSync(join(process.env.SYNCPOINT_TEST_ROOT ?? tmpdir(), "chromium-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const log: string[] = [];
  page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  return {
    context,
    page,
    console: log,
    close: async () => {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Waits for the page's app to be loaded (window.app); it has not started. */
export async function appLoaded(page: Page): Promise<void> {
  await page.waitForFunction(() => (globalThis as any).appReady === true, undefined, { timeout: 15_000 });
}

/** The page's state (window.app.snapshot()). */
export interface Snapshot {
  state: string;
  transport: string | null;
  pending: number;
  lastError: string | null;
  errors: string[];
  positions: Record<string, { epoch: string; seq: number }>;
  /** "channel/seq" (seq zero-padded to 8) → how many times onEntries applied it. */
  applied: Record<string, number>;
  /** Every applied entry, in the order it was applied. */
  log: Array<{ channel: string; seq: number; op: string; key: string }>;
  /** null until a session told the SDK which channel of notes is this device's. */
  notes: Array<{ id: string; seq: number; data: unknown; pending: boolean }> | null;
  conflicts: Array<{ id: string; op: string; code: string; current: unknown; dropped: number }>;
  writeErrors: Array<{ id: string; op: string; code: string; message: string }>;
  /** Channels onReset was called for, and onGap's calls (each at least once). */
  resets: string[];
  gaps: Array<{ channel: string; firstSeq: number }>;
}

export function snapshot(page: Page): Promise<Snapshot> {
  return page.evaluate(() => (globalThis as any).app.snapshot());
}

/** Polls the page's state until cond holds; the error names what was awaited and the last state. */
export async function waitForPage(page: Page, cond: (s: Snapshot) => boolean, what: string, timeoutMs = 20_000): Promise<Snapshot> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await snapshot(page);
    if (cond(s)) return s;
    if (Date.now() > deadline) {
      const short = { ...s, log: `${s.log.length} entries`, applied: `${Object.keys(s.applied).length} keys` };
      throw new Error(`timed out waiting for ${what}; the page has ${JSON.stringify(short)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
