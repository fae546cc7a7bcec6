// The admin console in a real browser: Debian's Chromium, driven by
// playwright-core, against the real binary on port 0. Every page is used
// as an operator would, and the checks read what the page shows.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, launch, signIn, api, device, watch, sleep, API_KEY } from "../lib.js";

let server, browser, work;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "syncpoint-console-devices-"));
  [server, browser] = await Promise.all([startServer(), launch()]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

// noProblems fails the test on any script error, console error (a CSP
// violation is one) or dialog the page had.
function noProblems(page) {
  assert.deepEqual(page.problems, [], "the page had errors");
}

test("without the key only the sign-in page shows", async () => {
  const page = await browser.context.newPage();
  const problems = watch(page);
  const res = await page.goto(`${server.url}/console/#/bizzes`);
  const h = res.headers();
  assert.match(h["content-security-policy"], /default-src 'self'/);
  assert.match(h["content-security-policy"], /frame-ancestors 'none'/);
  assert.equal(h["x-content-type-options"], "nosniff");
  assert.equal(h["referrer-policy"], "no-referrer");

  await page.waitForSelector("#signin");
  assert.equal(await page.isVisible("#nav"), false, "the page list shows before sign-in");
  assert.equal(await page.locator("#page-bizzes").count(), 0, "a page rendered without the key");
  // Every route leads back to the sign-in form.
  for (const hash of ["#/channels?biz=chat&target=user:u1", "#/tokens", "#/devices?device=d1"]) {
    await page.goto(`${server.url}/console/${hash}`);
    await page.waitForSelector("#signin");
    assert.equal(await page.locator(".page").count(), 0, `${hash} rendered without the key`);
  }

  // A wrong key is refused, with the API's words beside the field.
  await page.fill("#f-api_key", "not-the-key");
  await page.click("#signin button[type=submit]");
  const err = page.locator('[data-field="api_key"] .field-error');
  await err.waitFor();
  assert.match(await err.textContent(), /invalid API key/);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, "a refused key was kept");

  await page.fill("#f-api_key", API_KEY);
  await page.click("#signin button[type=submit]");
  await page.waitForSelector("#page-devices");
  assert.equal(await page.evaluate(() => sessionStorage.getItem("syncpoint.apiKey")), API_KEY);
  // Signing out forgets the key.
  await page.click("#signout");
  await page.waitForSelector("#signin");
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.deepEqual(problems, []);
  await page.close();
});

test("overview shows the server's figures", async () => {
  await api(server.url, "POST", "/v1/publish", { biz: "chat", users: ["u-ov"], data: { n: 1 } });
  const page = await signIn(browser.context, server.url);
  await page.waitForSelector("#stat-publishes .value");
  assert.match(await page.textContent("#stat-connections"), /sockets/);
  assert.match(await page.textContent("#stat-publishes"), /appended since start/);
  assert.match(await page.textContent("#stat-deliveries .value"), /^\d/);
  noProblems(page);
  await page.close();
});

test("bizzes: create, a bad setting shows the API's error beside its field, edit, delete", async () => {
  const page = await signIn(browser.context, server.url, "#/bizzes");
  await page.click("#new-biz");
  await page.fill("#f-name", "news");
  await page.selectOption("#f-target", "group");
  await page.fill("#f-retention", "48h");
  await page.click("#biz-form button[type=submit]");
  await page.waitForSelector('tr[data-biz="news"]');
  assert.match(await page.textContent('tr[data-biz="news"]'), /group.*48h/);

  // Edit it with a negative max_backlog: the API refuses, and its message
  // stands beside that field.
  await page.click('tr[data-biz="news"] >> text=Edit');
  await page.fill("#f-max_backlog", "-5");
  await page.click("#biz-form button[type=submit]");
  const err = page.locator('[data-field="max_backlog"] .field-error');
  await err.waitFor();
  assert.match(await err.textContent(), /max_backlog must not be negative \(invalid\)/);
  assert.ok(await page.locator('[data-field="max_backlog"].invalid').count());
  assert.equal(await page.locator(".form-error:not([hidden])").count(), 0, "the error went to the form, not the field");

  // A retention that is not a duration: the API's error, shown.
  await page.fill("#f-max_backlog", "10");
  await page.fill("#f-retention", "forever");
  await page.click("#biz-form button[type=submit]");
  await page.locator(".field-error:not([hidden]), .form-error:not([hidden])").first().waitFor();
  assert.match(await page.textContent("#biz-form"), /duration "forever"/);

  await page.fill("#f-retention", "72h");
  await page.click("#biz-form button[type=submit]");
  await page.waitForSelector("text=Saved biz news.");
  assert.match(await page.textContent('tr[data-biz="news"]'), /72h0m0s.*10/);

  // Delete asks first; Cancel keeps it, Delete removes it.
  await page.click('tr[data-biz="news"] >> text=Delete');
  await page.click("dialog.confirm button.quiet");
  assert.equal(await page.locator('tr[data-biz="news"]').count(), 1);
  await page.click('tr[data-biz="news"] >> text=Delete');
  await page.click("dialog.confirm button.danger");
  await page.waitForSelector('tr[data-biz="news"]', { state: "detached" });
  const { bizzes } = await api(server.url, "GET", "/v1/bizzes");
  assert.ok(!bizzes.some((b) => b.name === "news"));
  noProblems(page);
  await page.close();
});

test("a publish from the form shows in the live tail and reaches a device", async () => {
  const user = "u-live";
  // The device connects first and waits for its first entry: ours.
  const got = device(server.url, { user, device: "d-live", biz: "chat", count: 1, dir: work });

  const tailPage = await signIn(browser.context, server.url, `#/tail?biz=chat&target=user:${user}`);
  await tailPage.waitForSelector('#tail-state[data-state="live"]');

  const pub = await signIn(browser.context, server.url, "#/publish");
  await pub.waitForSelector('#f-biz option[value="chat"]', { state: "attached" });
  await pub.selectOption("#f-biz", "chat");
  await pub.fill("#f-users", user);
  await pub.fill("#f-data", '{"text": "hello from the console"}');
  await pub.fill("#f-ttl", "1h");
  await pub.click("#publish-form button[type=submit]");
  await pub.waitForSelector(`#publish-out tr[data-channel="chat/user:${user}"]`);
  assert.match(await pub.textContent("#publish-out"), /ok/);

  const entry = tailPage.locator("#tail-events li.entry").first();
  await entry.waitFor();
  assert.match(await entry.textContent(), /hello from the console/);
  assert.match(await entry.textContent(), /#1/);

  const [line] = await got;
  assert.equal(line.channel, `chat/user:${user}`);
  assert.deepEqual(line.data, { text: "hello from the console" });
  noProblems(tailPage);
  noProblems(pub);
  await tailPage.close();
  await pub.close();
});

test("the device page shows a device's lag and answers whether it got an entry", async () => {
  const user = "u-lag", id = "d-lag";
  await api(server.url, "POST", "/v1/publish", { biz: "chat", users: [user], data: { n: 1 } });
  await device(server.url, { user, device: id, biz: "chat", count: 1, dir: work, platform: "web", appVersion: "2.3.0" });
  // Offline now: three more wait for it.
  for (let n = 2; n <= 4; n++) await api(server.url, "POST", "/v1/publish", { biz: "chat", users: [user], data: { n } });

  const page = await signIn(browser.context, server.url, `#/devices?device=${id}`);
  const row = page.locator(`tr[data-channel="chat/user:${user}"]`);
  // The sync point is written within a second of the ack.
  for (let i = 0; ; i++) {
    await row.waitFor();
    if ((await row.locator("td.lag").textContent()) === "3") break;
    assert.ok(i < 40, `lag shows ${await row.locator("td.lag").textContent()}, want 3`);
    await sleep(250);
    await page.click("text=Refresh");
  }
  assert.match(await row.textContent(), /^chat\/user:u-lag1/);
  assert.equal(await page.textContent("#device-online"), "offline");
  const facts = await page.textContent("#device-facts");
  assert.match(facts, /Useru-lag/);
  assert.match(facts, /Platformweb/);
  assert.match(facts, /App version2\.3\.0/);
  assert.match(facts, /Last seen(just now|\d+ s ago)/);

  await page.fill("#f-seq", "1");
  await page.click("#got-form button[type=submit]");
  assert.match(await page.textContent(".answer"), /^Yes/);
  await page.fill("#f-seq", "3");
  await page.click("#got-form button[type=submit]");
  assert.match(await page.textContent(".answer"), /^Not yet: .* entry 3 is 2 after it/);

  // The user's devices list it too.
  await page.click(`#device-facts a`);
  await page.waitForSelector(`#device-out a[href="#/devices?device=${id}"]`);
  noProblems(page);
  await page.close();
});

test("entry data with markup renders as text and runs nothing", async () => {
  const user = "u-xss";
  const evil = "<script>window.__pwned = 1; alert('script')</script><img src=x onerror=\"window.__pwned = 2; alert('img')\">";
  await api(server.url, "POST", "/v1/publish", { biz: "chat", users: [user], key: "<b>k</b>", op: "put", data: { text: evil, [evil]: evil } });

  const browse = await signIn(browser.context, server.url, `#/channels?biz=chat&target=user:${user}`);
  const cell = browse.locator("#channel-out pre.data").first();
  await cell.waitFor();
  assert.ok((await cell.textContent()).includes(evil.replaceAll('"', '\\"')), "the data is not shown as text");
  assert.equal(await browse.locator("#channel-out img, #channel-out script, #channel-out b").count(), 0);

  const tailPage = await signIn(browser.context, server.url, `#/tail?biz=chat&target=user:${user}`);
  await tailPage.waitForSelector('#tail-state[data-state="live"]');
  await api(server.url, "POST", "/v1/publish", { biz: "chat", users: [user], data: { text: evil } });
  const entry = tailPage.locator("#tail-events li.entry").first();
  await entry.waitFor();
  assert.ok((await entry.textContent()).includes(evil.replaceAll('"', '\\"')));
  assert.equal(await tailPage.locator("#tail-events img, #tail-events script").count(), 0);

  await sleep(300); // an onerror would have fired by now
  for (const p of [browse, tailPage]) {
    assert.equal(await p.evaluate(() => window.__pwned), undefined, "the data's script ran");
    noProblems(p);
    await p.close();
  }
});

test("channel browser pages through entries and resets after a confirmation", async () => {
  const user = "u-page";
  for (let n = 1; n <= 45; n++) await api(server.url, "POST", "/v1/publish", { biz: "chat", users: [user], data: { n } });
  const page = await signIn(browser.context, server.url, `#/channels?biz=chat&target=user:${user}&limit=20`);
  await page.waitForSelector('#channel-out tr[data-seq="1"]');
  assert.equal(await page.locator("#channel-out tbody tr").count(), 20);
  await page.click("text=Next ›");
  await page.waitForSelector('#channel-out tr[data-seq="21"]');
  assert.match(await page.textContent(".pager-info"), /seq 21–40/);
  await page.click("text=Next ›");
  await page.waitForSelector('#channel-out tr[data-seq="45"]');
  assert.equal(await page.locator("#channel-out tbody tr").count(), 5);
  assert.ok(await page.locator("text=Next ›").isDisabled());
  await page.click("text=‹ Previous");
  await page.waitForSelector('#channel-out tr[data-seq="21"]');

  const before = (await api(server.url, "GET", `/v1/channels/chat/user:${user}?limit=1`)).epoch;
  await page.click("#reset-channel");
  await page.click("dialog.confirm button.quiet");
  assert.equal((await api(server.url, "GET", `/v1/channels/chat/user:${user}?limit=1`)).last_seq, 45, "Cancel reset the channel");
  await page.click("#reset-channel");
  await page.click("dialog.confirm button.danger");
  await page.waitForSelector("text=/Reset chat\\/user:u-page: new epoch/");
  const after = await api(server.url, "GET", `/v1/channels/chat/user:${user}?limit=1`);
  assert.notEqual(after.epoch, before);
  assert.equal(after.entries.length, 0);
  assert.match(await page.textContent("#channel-out"), /No entries after this seq/);
  noProblems(page);
  await page.close();
});

test("tokens: mint, list by user, revoke", async () => {
  const page = await signIn(browser.context, server.url, "#/tokens");
  await page.fill("#mint-form #f-user", "u-tok");
  await page.fill("#f-groups", "g1, g2");
  await page.fill("#f-label", "e2e phone");
  await page.fill("#f-ttl", "2h");
  await page.click("#mint-form button[type=submit]");
  const secret = await page.locator("#minted-token").inputValue();
  assert.match(secret, /^[A-Za-z0-9_-]{64}$/);
  const row = page.locator("#tokens-out tbody tr[data-token]");
  await row.waitFor();
  assert.match(await row.textContent(), /e2e phone.*g1, g2/);

  // A bad ttl is the API's error beside the field.
  await page.fill("#f-ttl", "forever");
  await page.click("#mint-form button[type=submit]");
  const err = page.locator('#mint-form [data-field="ttl"] .field-error');
  await err.waitFor();
  assert.match(await err.textContent(), /ttl "forever"/);

  await page.click("#tokens-out >> text=Revoke");
  await page.click("dialog.confirm button.danger");
  await page.waitForSelector("text=This user holds no token.");
  assert.deepEqual((await api(server.url, "GET", "/v1/users/u-tok/tokens")).tokens, []);
  noProblems(page);
  await page.close();
});

test("a phone-sized screen shows every page without sideways scrolling", async () => {
  const page = await signIn(browser.context, server.url);
  await page.setViewportSize({ width: 390, height: 844 });
  for (const hash of ["#/overview", "#/bizzes", "#/channels?biz=chat&target=user:u-lag", "#/devices?device=d-lag", "#/tail", "#/publish", "#/tokens"]) {
    await page.goto(`${server.url}/console/${hash}`);
    await page.waitForSelector(".page");
    await sleep(150);
    const [scroll, width] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    assert.ok(scroll <= width, `${hash}: the page is ${scroll}px wide on a ${width}px screen`);
  }
  noProblems(page);
  await page.close();
});
