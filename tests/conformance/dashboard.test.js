// The live dashboard in a real browser: Debian's Chromium driven by
// playwright-core. Signs in with the token the server printed, watches a
// pusher-js tab appear with its channels and presence member, sends a test
// event from the form and sees the tab receive it. Saves a screenshot to
// target/artifacts/dashboard.png.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { startServer, browser, connected, subscribed, next } = require('./lib/harness');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = path.resolve(__dirname, '../../target/artifacts');

let server;
let chrome;

before(async () => {
  server = await startServer();
  chrome = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await chrome?.close();
  await server?.stop();
});

function printedDashboardUrl() {
  const line = server.logs.find((l) => l.includes('Dashboard: '));
  assert.ok(line, `the server prints the dashboard address: ${server.logs.join('\n')}`);
  return new URL(/Dashboard: (\S+)/.exec(line)[1]);
}

test('without the token the browser gets only the sign-in form', async () => {
  const page = await chrome.newPage();
  const response = await page.goto(`http://127.0.0.1:${server.port}/dashboard`);
  assert.equal(response.status(), 401);
  assert.ok(await page.locator('#token').isVisible());
  assert.equal(await page.locator('#connections').count(), 0);

  await page.fill('#token', 'not-the-token');
  await page.click('#sign-in');
  await page.waitForSelector('#problem:has-text("not right")');
  const state = await page.goto(`http://127.0.0.1:${server.port}/dashboard/state`);
  assert.equal(state.status(), 401);
  await page.close();
});

test('shows live connections, channels and members, and sends a test event', async () => {
  const printed = printedDashboardUrl();
  const token = printed.searchParams.get('token');
  assert.match(token, /^[0-9a-f]{32}$/);

  const page = await chrome.newPage({ viewport: { width: 1280, height: 860 } });
  await page.goto(`http://127.0.0.1:${server.port}/dashboard`);
  await page.fill('#token', token);
  await page.click('#sign-in');
  await page.waitForSelector('#channels');
  assert.equal(new URL(page.url()).search, '', 'the token is not left in the address bar');

  const tab = browser('8', server.port, { user: { id: 7, info: { name: 'Alice' } } });
  try {
    await connected(tab);
    const news = await subscribed(tab, 'public');
    await subscribed(tab, 'presence-lounge');

    await page.waitForSelector('tr[data-channel="public"]');
    await page.waitForSelector('tr[data-channel="presence-lounge"] .members:has-text("7")');
    await page.waitForFunction(() => document.getElementById('connections').textContent === '1');
    const subscribers = await page.textContent('tr[data-channel="public"] td.num');
    assert.equal(subscribers.trim(), '1');

    await page.fill('#trigger-channel', 'public');
    await page.fill('#trigger-event', 'dashboard-test');
    await page.fill('#trigger-data', '{"message":"Hello from the dashboard"}');
    const received = next(news, 'dashboard-test');
    await page.click('#trigger-send');
    assert.deepEqual(await received, { message: 'Hello from the dashboard' });
    await page.waitForSelector('#trigger-result.ok:has-text("Sent to 1 subscriber")');
    await page.waitForSelector('#feed-rows tr:has-text("dashboard-test")');
    await page.waitForSelector('#feed-rows tr:has-text("subscribed")');

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });
  } finally {
    tab.disconnect();
    await page.close();
  }
});
