// The live dashboard in a real browser: Debian's Chromium driven by
// playwright-core. Signs in with the token the server printed, watches a
// pusher-js tab appear with its channels and presence member, sends a test
// event from the form and sees the tab receive it; then, after traffic, a
// refused connection and a reload, the graphs hold points and the timeline
// marks the start, the reload and the refusals. Saves screenshots to
// target/artifacts/ (dashboard.png, dashboard-history-light.png and
// dashboard-history-dark.png).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { startServer, browser, connected, subscribed, next, serverSdk, eventually, nextErrorCode } = require('./lib/harness');

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
  const history = await page.goto(`http://127.0.0.1:${server.port}/dashboard/history`);
  assert.equal(history.status(), 401, 'the graphs stay behind the token too');
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

test('graphs the last hour and marks the start, a reload and refusals', async () => {
  const token = printedDashboardUrl().searchParams.get('token');
  const tab = browser('8', server.port, { user: { id: 8, info: { name: 'Bob' } } });
  let refused;
  try {
    await connected(tab);
    const news = await subscribed(tab, 'public');
    const sdk = serverSdk(server.port);
    for (let n = 0; n < 20; n++) {
      const got = next(news, 'graphed');
      await sdk.trigger('public', 'graphed', { n });
      await got;
    }
    refused = browser('8', server.port, { key: 'not-this-app-key' });
    assert.equal(await nextErrorCode(refused), 4001, 'a tab with the wrong key is refused');
    server.child.kill('SIGHUP');
    await eventually(() => server.logs.some((l) => l.includes('Settings reloaded')), 5000, 'the reload');

    const page = await chrome.newPage({ viewport: { width: 1280, height: 1400 } });
    await page.goto(`http://127.0.0.1:${server.port}/dashboard`);
    await page.fill('#token', token);
    await page.click('#sign-in');
    // A sample every 5 s: three of them hold the traffic, the refusal and the reload.
    await page.waitForFunction(async () => {
      const response = await fetch('/dashboard/history', { credentials: 'same-origin' });
      const history = await response.json();
      return history.points.length >= 3 && history.marks.some((m) => m.kind === 'refusals');
    }, null, { timeout: 30000, polling: 1000 });
    await page.click('#range-day');
    await page.click('#range-hour');
    // The page redraws from a fresh answer (each range click asks again).
    await page.waitForFunction(() => {
      const line = document.querySelector('polyline[data-series="connections"]');
      return line && line.getAttribute('points').trim().split(' ').length >= 3
        && document.querySelector('#marks li[data-kind="refusals"]');
    }, null, { timeout: 15000 });
    const sent = await page.$eval('polyline[data-series="messages_out"]', (line) => line.getAttribute('points'));
    assert.ok(sent.split(' ').some((point) => Number(point.split(',')[1]) < 130), `messages out rose above zero: ${sent}`);
    const kinds = await page.$$eval('#marks li', (items) => items.map((item) => item.dataset.kind));
    for (const kind of ['start', 'reload', 'refusals']) assert.ok(kinds.includes(kind), `a ${kind} mark in ${kinds}`);
    assert.ok(await page.$('svg line.mark[data-kind="reload"]'), 'the reload is drawn on the graphs');
    const label = await page.$eval('figure.chart svg', (picture) => picture.getAttribute('aria-label'));
    assert.match(label, /open connections now 1, peak [12]/);
    const refusals = await page.textContent('#marks li[data-kind="refusals"]');
    assert.match(refusals, /Refusals began: 1 websockets refused/);
    const numbers = await page.$$eval('details.numbers td', (cells) => cells.map((c) => c.textContent).join(' '));
    assert.match(numbers, /open connections/);

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-history-light.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-history-dark.png'), fullPage: true });
    await page.close();
  } finally {
    refused?.disconnect();
    tab.disconnect();
  }
});
