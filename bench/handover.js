// The forum-side cost of a handover (issue 36): N tabs, each subscribed to
// a private channel authorized by the "forum" (a local HTTP endpoint that
// signs as Flarum's does), on flarum-ws A; then flarum-ws B is started on
// the same port and takes the socket over; A closes its tabs with 4200 over
// close_spread, and each tab reconnects at once (as pusher-js does on
// 4200-4299) and asks the forum to authorize its channel again. Measured:
// the peak of authorization requests the forum gets in one second, and the
// time until every tab is subscribed again. One JSON line on stdout.
//
//   node bench/handover.js BINARY TABS CLOSE_SPREAD_SECONDS
'use strict';
const path = require('path');
const http = require('http');
const crypto = require('crypto');
const WebSocket = require(path.join(__dirname, '../tests/conformance/node_modules/ws'));
const { serve: serveOn } = require('./lib/serve');

const [binary, tabsArg, spreadArg] = process.argv.slice(2);
const TABS = Number(tabsArg || 10000);
const SPREAD = String(spreadArg || '5');
const KEY = 'bench-key';
const SECRET = 'bench-secret';
const PORT = 6251;
const env = {
  ...process.env,
  FLARUM_WS_APP_ID: '1',
  FLARUM_WS_APP_KEY: KEY,
  FLARUM_WS_APP_SECRET: SECRET,
  FLARUM_WS_CLOSE_SPREAD: SPREAD,
  FLARUM_WS_STATISTICS: 'false',
};

const serve = () => serveOn(binary, PORT, env);

// The forum's auth endpoint: counts requests, signs socket_id:channel.
const auths = [];
const forum = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    auths.push(Date.now());
    const { socket_id: socket, channel_name: channel } = JSON.parse(body);
    const signature = crypto.createHmac('sha256', SECRET).update(`${socket}:${channel}`).digest('hex');
    res.end(JSON.stringify({ auth: `${KEY}:${signature}` }));
  });
});
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

function authorize(socket, channel) {
  return new Promise((resolve, reject) => {
    const req = http.request({ port: forum.address().port, method: 'POST', agent }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve(JSON.parse(body).auth));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ socket_id: socket, channel_name: channel }));
  });
}

let subscribed = 0;
let failures = 0;
const closes = [];
function tab(n) {
  const channel = `private-user${n}`;
  const from = `127.0.${1 + Math.floor(n / 250)}.${1 + (n % 250)}`;
  const ws = new WebSocket(`ws://127.0.0.1:${PORT}/app/${KEY}?protocol=7&client=js&version=8.4.0`, { localAddress: from });
  ws.on('message', async (raw) => {
    const message = JSON.parse(raw);
    if (message.event === 'pusher:connection_established') {
      const socket = JSON.parse(message.data).socket_id;
      try {
        const auth = await authorize(socket, channel);
        ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel, auth } }));
      } catch (e) { failures += 1; }
    } else if (message.event === 'pusher_internal:subscription_succeeded') {
      subscribed += 1;
    }
  });
  ws.on('close', (code) => {
    closes.push(Date.now());
    if (code >= 4200 && code < 4300) tab(n); // pusher-js reconnects at once
    else failures += 1;
  });
  ws.on('error', () => {});
}

function peakPerSecond(times) {
  let peak = 0;
  let start = 0;
  for (let end = 0; end < times.length; end += 1) {
    while (times[end] - times[start] >= 1000) start += 1;
    peak = Math.max(peak, end - start + 1);
  }
  return peak;
}

async function until(condition, limitMs) {
  const deadline = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

(async () => {
  await new Promise((r) => forum.listen(0, '127.0.0.1', r));
  const first = await serve();
  for (let n = 0; n < TABS; n += 1) {
    tab(n);
    if (n % 500 === 499) await new Promise((r) => setTimeout(r, 100));
  }
  if (!(await until(() => subscribed >= TABS, 120000))) throw new Error(`only ${subscribed} of ${TABS} subscribed`);
  subscribed = 0;
  auths.length = 0;
  closes.length = 0;
  const started = Date.now();
  const second = await serve();
  const all = await until(() => subscribed >= TABS, 120000);
  const tookMs = Date.now() - started;
  const firstExit = new Promise((r) => first.on('exit', r));
  await Promise.race([firstExit, new Promise((r) => setTimeout(r, 10000))]);
  console.log(JSON.stringify({
    tabs: TABS, close_spread_s: Number(SPREAD), resubscribed: subscribed, all_resubscribed: all,
    resubscribed_after_s: Number((tookMs / 1000).toFixed(2)), auth_requests: auths.length,
    auth_peak_per_s: peakPerSecond(auths), closes_peak_per_s: peakPerSecond(closes),
    closes_over_s: closes.length ? Number(((closes[closes.length - 1] - closes[0]) / 1000).toFixed(2)) : 0, failures,
  }));
  const secondExit = new Promise((r) => second.on('exit', r));
  second.kill('SIGTERM');
  await secondExit;
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
