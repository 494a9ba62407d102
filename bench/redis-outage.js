// A Redis outage under load (issue 37): three flarum-ws nodes on Redis,
// SUBSCRIBERS websocket clients per node, each on one of CHANNELS
// discussion channels (and churning a channel of its own every second),
// PRESENCE members per node in one presence channel, and the forum's
// events (the npm `pusher` SDK) at RATE a second spread over the nodes and
// the channels (one client process cannot read every event on 3 000
// sockets; this way each gets RATE / CHANNELS a second). After 5 s:
//   FAULT=stop      one redis-server paused for 10 s (SIGSTOP, SIGCONT);
//   FAULT=kill      one redis-server killed and started again 3 s later;
//   FAULT=sentinel  the master of a Sentinel trio killed (SIGKILL), a
//                   replica promoted, the old master back as a replica;
//   FAULT=cluster   a shard master of the Redis Cluster that
//                   tests/services/start.sh starts (TEST_REDIS_CLUSTER)
//                   killed, its replica promoted, the old master back.
// Measured: events accepted, lost and duplicated per subscriber, the time
// from the fault and from Redis's return until the last held event was
// delivered everywhere, presence members removed during the run and ghosts
// 10 s after it, and each node's peak resident memory before and during
// the outage. One JSON line on stdout.
//
//   node bench/redis-outage.js BINARY FAULT [SUBSCRIBERS] [RATE] [PRESENCE]
'use strict';
const path = require('path');
const fs = require('fs');
const { spawn } = require('child_process');
const modules = path.join(__dirname, '../tests/conformance/node_modules');
const WebSocket = require(path.join(modules, 'ws'));
const Pusher = require(path.join(modules, 'pusher'));
const { serve: serveOn } = require('./lib/serve');
const kinds = require('../tests/conformance/lib/redis-kinds');

const [binary, fault = 'stop', subscribersArg, rateArg, presenceArg] = process.argv.slice(2);
const NODES = 3;
const SUBSCRIBERS = Number(subscribersArg || 1000);
const RATE = Number(rateArg || 200);
const PRESENCE = Number(presenceArg || 20);
const CHANNELS = 100;
const RUN_MS = 25000;
const FAULT_AT_MS = 5000;
const APP = { appId: '1', key: 'bench-key', secret: 'bench-secret' };
const REDIS_PORT = 6390;
const PORTS = [6391, 6392, 6393];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function startRedis() {
  const child = spawn('redis-server', ['--port', String(REDIS_PORT), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'ignore'] });
  return new Promise((resolve) => {
    let seen = '';
    child.stdout.on('data', (chunk) => {
      seen += chunk;
      if (seen.includes('Ready to accept connections')) resolve(child);
    });
  });
}

/** The Redis of FAULT: { url, fault() resolving when it is back }. */
async function startKind() {
  if (fault === 'stop' || fault === 'kill') {
    let redis = await startRedis();
    return {
      url: `redis://127.0.0.1:${REDIS_PORT}`,
      async fault() {
        if (fault === 'kill') {
          redis.kill('SIGKILL');
          await new Promise((done) => redis.once('exit', done));
          await sleep(3000);
          redis = await startRedis();
        } else {
          redis.kill('SIGSTOP');
          await sleep(10000);
          redis.kill('SIGCONT');
        }
      },
      stop: () => redis.kill('SIGKILL'),
    };
  }
  const kind = kinds.selected().find((k) => k.name === fault);
  if (!kind) throw new Error(`FAULT is stop, kill, sentinel or cluster, not ${fault}`);
  const redis = await kind.start();
  return {
    url: redis.url,
    // Resolves once a replica has taken over; the old master then rejoins.
    fault: async () => {
      const restore = await redis.outage();
      restoring = restore();
    },
    stop: () => redis.stop(),
  };
}
let restoring = null;
let redisUrl = '';
const PREFIX = `bench-${process.pid}`;

function serve(port) {
  return serveOn(binary, port, {
    PATH: process.env.PATH,
    FLARUM_WS_APP_ID: APP.appId,
    FLARUM_WS_APP_KEY: APP.key,
    FLARUM_WS_APP_SECRET: APP.secret,
    FLARUM_WS_REDIS_URL: redisUrl,
    FLARUM_WS_REDIS_PREFIX: PREFIX,
    FLARUM_WS_MAX_CONNECTIONS_PER_IP: '100000',
    FLARUM_WS_API_REQUESTS_PER_SECOND: '100000',
    FLARUM_WS_STATISTICS: 'false',
  });
}

function rssKib(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

/** A websocket client speaking the Pusher protocol by hand (lighter than pusher-js for thousands). */
function client(port, onEvent) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/app/${APP.key}?protocol=7`);
    ws.on('error', reject);
    ws.on('message', (raw) => {
      const message = JSON.parse(raw);
      if (message.event === 'pusher:connection_established') {
        ws.socketId = JSON.parse(message.data).socket_id;
        resolve(ws);
      } else if (message.event === 'pusher:ping') {
        ws.send(JSON.stringify({ event: 'pusher:pong', data: {} }));
      } else {
        onEvent(message);
      }
    });
  });
}

function subscribe(ws, channel, auth) {
  ws.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel, ...auth } }));
}

async function main() {
  const redis = await startKind();
  redisUrl = redis.url;
  const nodes = [];
  for (const port of PORTS) nodes.push(await serve(port));
  await sleep(2000);
  const sdks = PORTS.map((port) => new Pusher({ ...APP, host: '127.0.0.1', port: String(port), useTLS: false }));

  // Subscribers: what each got, by event number, and when each event last arrived.
  const received = [];
  const deliveredAt = [];
  const sockets = [];
  for (let node = 0; node < NODES; node++) {
    for (let i = 0; i < SUBSCRIBERS; i++) {
      const got = new Map();
      const channel = received.length % CHANNELS;
      const ws = await client(PORTS[node], (message) => {
        if (message.event === 'post') {
          const n = JSON.parse(message.data).n;
          got.set(n, (got.get(n) || 0) + 1);
          deliveredAt[n] = Date.now();
        }
      });
      received.push(got);
      got.channel = channel;
      subscribe(ws, `news-${channel}`);
      sockets.push(ws);
    }
  }
  // Presence members, each watching for removals.
  const removals = [];
  const presence = [];
  for (let node = 0; node < NODES; node++) {
    for (let i = 0; i < PRESENCE; i++) {
      const ws = await client(PORTS[node], (message) => {
        if (message.event === 'pusher_internal:member_removed') removals.push(Date.now());
      });
      const channel = 'presence-outage';
      const member = { user_id: `${node}-${i}`, user_info: {} };
      const auth = sdks[node].authorizeChannel(ws.socketId, channel, member);
      subscribe(ws, channel, auth);
      presence.push(ws);
    }
  }
  await sleep(2000);
  const churn = setInterval(() => {
    sockets.forEach((ws, i) => {
      const channel = `churn-${i}`;
      if (ws.churning) ws.send(JSON.stringify({ event: 'pusher:unsubscribe', data: { channel } }));
      else subscribe(ws, channel);
      ws.churning = !ws.churning;
    });
  }, 1000);

  const memory = nodes.map(() => ({ before: 0, during: 0 }));
  let phase = 'before';
  const sampler = setInterval(() => {
    nodes.forEach((child, i) => {
      const kib = rssKib(child.pid);
      if (phase !== 'after') memory[i][phase] = Math.max(memory[i][phase], kib);
    });
  }, 250);

  let triggered = 0;
  const accepted = new Set();
  const refused = [];
  const started = Date.now();
  let backAt = 0;
  const outage = (async () => {
    await sleep(FAULT_AT_MS);
    phase = 'during';
    faultAt = Date.now();
    await redis.fault();
    backAt = Date.now();
  })();
  const pending = [];
  const triggeredAt = [];
  let faultAt = 0;
  while (Date.now() - started < RUN_MS) {
    const n = ++triggered;
    triggeredAt[n] = Date.now();
    pending.push(
      sdks[n % NODES].trigger(`news-${n % CHANNELS}`, 'post', { n }).then(
        (response) => (response.status === 200 ? accepted.add(n) : refused.push(response.status)),
        (error) => refused.push(String(error.message || error)),
      ),
    );
    // On schedule: n events by n / RATE seconds.
    const due = started + (n * 1000) / RATE - Date.now();
    if (due > 0) await sleep(due);
  }
  await outage;
  await restoring;
  await Promise.all(pending);
  // Wait (at most 60 s) for every subscriber to have every event.
  const owed = (got) => [...accepted].filter((n) => n % CHANNELS === got.channel);
  const owedCount = received.map((got) => owed(got).length);
  const complete = () => received.every((got, i) => got.size >= owedCount[i]);
  const waitUntil = Date.now() + 60000;
  while (!complete() && Date.now() < waitUntil) await sleep(250);
  phase = 'after';
  clearInterval(churn);
  await sleep(10000);

  let lost = 0;
  let duplicated = 0;
  let deliveriesExpected = 0;
  received.forEach((got, i) => {
    deliveriesExpected += owedCount[i];
    lost += owed(got).filter((n) => !got.has(n)).length;
    for (const count of got.values()) duplicated += count - 1;
  });
  // Recovery: from Redis's return until every event triggered while it
  // was away had reached every subscriber.
  let held = 0;
  let recovered = backAt;
  let sinceFault = faultAt;
  triggeredAt.forEach((at, n) => {
    if (at >= faultAt && at <= backAt) {
      held++;
      if (accepted.has(n)) recovered = Math.max(recovered, deliveredAt[n] || Infinity);
      if (accepted.has(n)) sinceFault = Math.max(sinceFault, deliveredAt[n] || Infinity);
    }
  });
  const members = await Promise.all(
    sdks.map((sdk) => sdk.get({ path: '/channels/presence-outage/users' }).then((r) => r.json())),
  );
  const expectedMembers = NODES * PRESENCE;
  const ghostsOrMissing = members.map((m) => Math.abs(m.users.length - expectedMembers));
  const metrics = await Promise.all(
    PORTS.map((port) =>
      fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${APP.secret}` } }).then((r) => r.text()),
    ),
  );
  const counter = (name) => metrics.map((text) => Number((new RegExp(`^${name} (\\S+)$`, 'm').exec(text) || [])[1]));
  clearInterval(sampler);
  console.log(
    JSON.stringify({
      binary,
      fault,
      subscribers_per_node: SUBSCRIBERS,
      rate: RATE,
      triggered,
      accepted: accepted.size,
      refused: refused.length,
      refused_why: [...new Set(refused)].slice(0, 3),
      deliveries_expected: deliveriesExpected,
      lost,
      duplicated,
      events_during_outage: held,
      redis_back_after_fault_ms: backAt - faultAt,
      all_delivered_after_redis_back_ms: recovered === Infinity ? 'never' : recovered - backAt,
      all_delivered_after_fault_ms: sinceFault === Infinity ? 'never' : sinceFault - faultAt,
      presence_removals_seen: removals.length,
      presence_off_by_after_10s: ghostsOrMissing,
      dropped_metric: counter('flarum_ws_redis_messages_dropped_total'),
      lost_metric: counter('flarum_ws_redis_events_lost_total'),
      replayed_metric: counter('flarum_ws_redis_events_replayed_total'),
      rss_kib_before: memory.map((m) => m.before),
      rss_kib_during: memory.map((m) => m.during),
    }),
  );
  [...sockets, ...presence].forEach((ws) => ws.terminate());
  nodes.forEach((child) => child.kill('SIGTERM'));
  await redis.stop();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
