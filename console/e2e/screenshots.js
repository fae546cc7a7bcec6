// Screenshots of the console's main pages for docs/console.md: a server
// with some traffic, each page at laptop size, and two at phone size.
// Run with `npm run screenshots`; the PNGs go to docs/console/.

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";
import { startServer, launch, signIn, api, device, binary, sleep, TOKEN_SECRET } from "./lib.js";

const out = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "docs", "console");
mkdirSync(out, { recursive: true });
const work = mkdtempSync(join(tmpdir(), "syncpoint-console-shots-"));
const server = await startServer();
const browser = await launch({ width: 1280, height: 800 });
let live;

async function shot(page, name, fullPage = false) {
  // A form's submit may have scrolled the page; a shot starts at the top.
  await page.evaluate(() => window.scrollTo(0, 0));
  await sleep(300);
  await page.screenshot({ path: join(out, `${name}.png`), fullPage });
  console.log(`docs/console/${name}.png`);
}

try {
  const base = server.url;
  const publish = (body) => api(base, "POST", "/v1/publish", body);
  await api(base, "PUT", "/v1/bizzes/orders", { target: "user", writable: true, conflict: "merge", retention: "168h", max_backlog: 1000 });
  for (let n = 1; n <= 6; n++) await publish({ biz: "chat", users: ["alice"], data: { from: "bob", text: `message ${n}` } });
  await publish({ biz: "chat", users: ["alice"], op: "put", key: "draft-7", data: { text: "<b>not bold</b>", pinned: true }, platforms: ["ios", "android"], min_app_version: "2.0.0" });
  await publish({ biz: "config", global: true, op: "put", key: "theme", data: { dark: true } });
  // A phone that took what there was and went offline; three more wait.
  await device(base, { user: "alice", device: "alice-phone", biz: "chat", count: 7, dir: work, platform: "ios", appVersion: "2.4.1" });
  for (let n = 7; n <= 9; n++) await publish({ biz: "chat", users: ["alice"], data: { from: "carol", text: `message ${n}` } });
  // A laptop that stays online, and a trickle of traffic for the figures.
  live = spawn(binary(), ["tail", "--server", base, "--user", "alice", "--device", "alice-laptop", "--biz", "chat,config,presence", "--platform", "web",
    "--app-version", "2.4.1", "--state", join(work, "laptop.db"), "--log-level", "error"], { env: { ...process.env, SYNCPOINT_TOKEN_SECRET: TOKEN_SECRET }, stdio: "ignore" });
  await api(base, "POST", "/v1/tokens", { user: "alice", groups: ["team-7"], label: "Alice's phone", ttl: "720h" });
  await api(base, "POST", "/v1/tokens", { user: "alice", label: "Alice's laptop", ttl: "24h" });
  let traffic = true;
  (async () => {
    for (let n = 0; traffic; n++) {
      await publish({ biz: "presence", users: ["alice"], data: { typing: n % 2 === 0 } }).catch(() => {});
      await sleep(120);
    }
  })();

  const page = await signIn(browser.context, base);
  await page.waitForSelector("#stat-publishes");
  await sleep(4500);
  await shot(page, "overview");

  await page.goto(`${base}/console/#/bizzes`);
  await page.waitForSelector('tr[data-biz="orders"]');
  await page.click('tr[data-biz="orders"] >> text=Edit');
  await page.fill("#f-max_backlog", "-1");
  await page.click("#biz-form button[type=submit]");
  await page.waitForSelector('[data-field="max_backlog"] .field-error:not([hidden])');
  await shot(page, "bizzes", true);

  await page.goto(`${base}/console/#/channels?biz=chat&target=user:alice&limit=20`);
  await page.waitForSelector('#channel-out tr[data-seq="1"]');
  await shot(page, "channel", true);

  await page.goto(`${base}/console/#/devices?device=alice-phone`);
  await page.waitForSelector('#device-out tr[data-channel="chat/user:alice"]');
  await page.fill("#f-seq", "8");
  await page.click("#got-form button[type=submit]");
  await shot(page, "device", true);

  await page.goto(`${base}/console/#/tail?biz=chat&target=user:alice&from=20`);
  await page.waitForSelector('#tail-state[data-state="live"]');
  await publish({ biz: "chat", users: ["alice"], data: { from: "dave", text: "<script>alert('hi')</script> shows as text" } });
  await page.waitForSelector("#tail-events li.entry >> text=shows as text");
  await shot(page, "tail", true);

  await page.goto(`${base}/console/#/publish?biz=chat`);
  await page.waitForSelector('#f-biz option[value="chat"]', { state: "attached" });
  await page.selectOption("#f-biz", "chat");
  await page.fill("#f-users", "alice, bob");
  await page.fill("#f-data", JSON.stringify({ from: "ops", text: "maintenance at 02:00" }, null, 2));
  await page.fill("#f-ttl", "12h");
  await page.fill("#f-platforms", "ios, android");
  await page.click("#publish-form button[type=submit]");
  await page.waitForSelector("#publish-out tr[data-channel]");
  await shot(page, "publish", true);

  await page.goto(`${base}/console/#/tokens?user=alice`);
  await page.waitForSelector("#tokens-out tr[data-token]");
  await page.fill("#mint-form #f-user", "bob");
  await page.fill("#f-label", "Bob's tablet");
  await page.click("#mint-form button[type=submit]");
  await page.waitForSelector("#minted-token");
  await shot(page, "tokens", true);

  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/console/#/overview`);
  await page.waitForSelector("#stat-publishes");
  await sleep(2500);
  await shot(page, "phone-overview");
  await page.goto(`${base}/console/#/devices?device=alice-phone`);
  await page.waitForSelector('#device-out tr[data-channel="chat/user:alice"]');
  await shot(page, "phone-device", true);
  traffic = false;
} finally {
  live?.kill();
  await browser.close();
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
