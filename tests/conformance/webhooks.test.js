// Webhooks from the real binary to a real HTTP receiver on loopback, every
// request checked with the npm `pusher` SDK's own webhook validation, the
// events caused by real pusher-js 8 tabs.
'use strict';

const { describe, it, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const crypto = require('node:crypto');
const h = require('./lib/harness');
const kinds = require('./lib/redis-kinds');

const ADMIN_TOKEN = 'webhook-test-admin-token';
const SETTLE_MS = 3000; // flarum-ws waits this long before member_removed / channel_vacated

/**
 * An HTTP receiver. `mode`: 'ok' answers 200; 'fail' answers 500 to the
 * first `failures` requests, then 200; 'hang' never answers. Every request
 * is validated with the SDK; `accepted` holds the events of the requests
 * answered 2xx.
 */
function startReceiver({ mode = 'ok', failures = 0 } = {}) {
  const sdk = h.serverSdk(1);
  const receiver = { requests: [], accepted: [], invalid: 0, url: null, server: null };
  receiver.server = http.createServer((request, response) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const hook = sdk.webhook({ headers: request.headers, rawBody });
      const valid = hook.isValid();
      if (!valid) receiver.invalid += 1;
      receiver.requests.push({ rawBody, valid, at: Date.now() });
      if (mode === 'hang') return; // never answered
      if (mode === 'fail' && receiver.requests.length <= failures) {
        response.writeHead(500).end('not now');
        return;
      }
      if (valid) {
        for (const event of hook.getEvents()) receiver.accepted.push({ ...event, at: Date.now() });
      }
      response.writeHead(valid ? 200 : 401).end();
    });
  });
  return new Promise((resolve) => {
    receiver.server.listen(0, '127.0.0.1', () => {
      receiver.url = `http://127.0.0.1:${receiver.server.address().port}/pusher/webhook`;
      resolve(receiver);
    });
  });
}

function stopReceiver(receiver) {
  receiver.server.closeAllConnections();
  return new Promise((resolve) => receiver.server.close(resolve));
}

/** The accepted events named `name` (on `channel`, when given). */
function named(receiver, name, channel) {
  return receiver.accepted.filter((e) => e.name === name && (channel === undefined || e.channel === channel));
}

describe('webhooks', () => {
  const cleanups = [];
  after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  async function serverWith(receiver, env = {}) {
    const server = await h.startServer({
      env: { FLARUM_WS_WEBHOOK_URL: receiver.url, FLARUM_WS_ADMIN_TOKEN: ADMIN_TOKEN, ...env },
    });
    cleanups.push(() => server.stop());
    return server;
  }
  async function receiverWith(options) {
    const receiver = await startReceiver(options);
    cleanups.push(() => stopReceiver(receiver));
    return receiver;
  }
  function tab(server, options) {
    const pusher = h.browser('8', server.port, options);
    cleanups.push(() => pusher.disconnect());
    return pusher;
  }

  it('sends every event type, each request signed as the SDK validates it', async () => {
    const receiver = await receiverWith();
    const server = await serverWith(receiver);
    const alice = tab(server, { user: { id: 7, info: { name: 'Alice' } } });
    const room = await h.subscribed(alice, 'presence-room');
    const chat = await h.subscribed(alice, 'private-chat');
    await h.subscribed(alice, 'cache-news');
    chat.trigger('client-typing', { typing: true });
    room.trigger('client-wave', 'hello');
    await h.eventually(() => named(receiver, 'client_event').length === 2, 5000, 'two client events');

    for (const channel of ['presence-room', 'private-chat', 'cache-news']) {
      assert.equal(named(receiver, 'channel_occupied', channel).length, 1, channel);
    }
    assert.deepEqual(
      named(receiver, 'member_added').map(({ channel, user_id }) => ({ channel, user_id })),
      [{ channel: 'presence-room', user_id: '7' }],
    );
    assert.deepEqual(
      named(receiver, 'cache_miss').map(({ channel }) => channel),
      ['cache-news'],
    );
    const [onChat, onRoom] = ['private-chat', 'presence-room'].map((c) => named(receiver, 'client_event', c)[0]);
    assert.equal(onChat.event, 'client-typing');
    assert.deepEqual(JSON.parse(onChat.data), { typing: true });
    assert.equal(onChat.socket_id, alice.connection.socket_id);
    assert.equal(onChat.user_id, undefined, 'user_id only on presence channels');
    assert.equal(onRoom.data, 'hello');
    assert.equal(onRoom.user_id, '7');
    await h.eventually(() => named(receiver, 'subscription_count', 'private-chat').length === 1, 2000, 'subscription_count');
    assert.equal(named(receiver, 'subscription_count', 'private-chat')[0].subscription_count, 1);
    assert.equal(named(receiver, 'subscription_count', 'presence-room').length, 0, 'none for presence channels');

    // Leaving: told after the settle time, not before.
    const left = Date.now();
    alice.disconnect();
    await h.sleep(SETTLE_MS - 1000);
    assert.equal(named(receiver, 'member_removed').length, 0, 'member_removed waits');
    await h.eventually(() => named(receiver, 'channel_vacated').length === 3, 5000, 'three channel_vacated');
    assert.deepEqual(
      named(receiver, 'member_removed').map(({ channel, user_id }) => ({ channel, user_id })),
      [{ channel: 'presence-room', user_id: '7' }],
    );
    assert.ok(named(receiver, 'member_removed')[0].at - left >= SETTLE_MS - 100);
    assert.equal(receiver.invalid, 0, 'every request validates');
    assert.ok(receiver.requests.length < receiver.accepted.length, 'events are batched');
  });

  it('sends nothing for a page reload inside the settle time', async () => {
    const receiver = await receiverWith();
    const server = await serverWith(receiver);
    const user = { id: 11, info: { name: 'Bob' } };
    const first = tab(server, { user });
    await h.subscribed(first, 'presence-lobby');
    await h.eventually(() => named(receiver, 'member_added', 'presence-lobby').length === 1, 3000, 'member_added');
    first.disconnect();
    await h.sleep(800);
    const reloaded = tab(server, { user });
    await h.subscribed(reloaded, 'presence-lobby');
    await h.sleep(SETTLE_MS + 1500);
    for (const name of ['member_removed', 'channel_vacated']) {
      assert.equal(named(receiver, name, 'presence-lobby').length, 0, name);
    }
    assert.equal(named(receiver, 'member_added', 'presence-lobby').length, 1, 'no second member_added');
    assert.equal(named(receiver, 'channel_occupied', 'presence-lobby').length, 1, 'no second channel_occupied');
    assert.equal(receiver.invalid, 0);
  });

  it('retries a receiver that fails twice, and it gets the batch once', async () => {
    const receiver = await receiverWith({ mode: 'fail', failures: 2 });
    const server = await serverWith(receiver);
    const pusher = tab(server);
    await h.subscribed(pusher, 'retried');
    await h.eventually(() => receiver.accepted.length > 0, 10000, 'the third attempt');
    assert.equal(receiver.requests.length, 3);
    assert.equal(new Set(receiver.requests.map((r) => r.rawBody)).size, 1, 'the same signed batch each time');
    assert.ok(receiver.requests.every((r) => r.valid));
    assert.equal(named(receiver, 'channel_occupied', 'retried').length, 1);
    // Back-off: about 1 s, then 2 s.
    const gaps = [1, 2].map((i) => receiver.requests[i].at - receiver.requests[i - 1].at);
    assert.ok(gaps[0] >= 900 && gaps[1] >= 1900, `gaps ${gaps}`);
    await h.sleep(1500);
    assert.equal(receiver.requests.length, 3, 'nothing more once received');
    await h.eventually(async () => {
      const metrics = await fetchMetrics(server);
      return /flarum_ws_webhooks_failed_total 2\b/.test(metrics) && /flarum_ws_webhooks_sent_total [1-9]/.test(metrics);
    }, 3000, 'the webhook metrics');
  });

  it('keeps websocket deliveries prompt while the receiver hangs', async () => {
    const receiver = await receiverWith({ mode: 'hang' });
    const server = await serverWith(receiver);
    const sdk = h.serverSdk(server.port);
    const reader = tab(server);
    const channel = await h.subscribed(reader, 'private-timed');
    // Webhook traffic while the receiver hangs: occupancy churn and client events.
    const churn = tab(server);
    const typing = await h.subscribed(churn, 'private-timed');
    const latencies = [];
    channel.bind('tick', ({ sent }) => latencies.push(Date.now() - sent));
    for (let i = 0; i < 100; i++) {
      typing.trigger('client-noise', { i });
      churn.unsubscribe(`private-churn-${i}`);
      churn.subscribe(`private-churn-${i}`);
      await sdk.trigger('private-timed', 'tick', { sent: Date.now() });
      await h.sleep(20);
    }
    await h.eventually(() => latencies.length === 100, 5000, 'every delivery');
    assert.ok(receiver.requests.length >= 1, 'the receiver was reached and hangs');
    latencies.sort((a, b) => a - b);
    const p99 = latencies[98];
    // A delivery waiting on the receiver would wait its 10 s request timeout.
    assert.ok(p99 < 500, `p99 delivery latency ${p99} ms with a hanging receiver`);
  });

  for (const kind of kinds.selected()) it(`sends each cluster-wide webhook once from two nodes on Redis (${kind.name})`, async () => {
    const redis = await kind.start();
    cleanups.push(() => redis.stop());
    const receiver = await receiverWith();
    // The Redis Cluster is shared between runs: a channel prefix of its own.
    const prefix = `webhook-test-${crypto.randomBytes(4).toString('hex')}`;
    const env = { ...redis.env, FLARUM_WS_REDIS_URL: redis.url, FLARUM_WS_REDIS_PREFIX: prefix };
    const nodes = [await serverWith(receiver, env), await serverWith(receiver, env)];
    await h.eventually(() => nodes.every((n) => n.logs.some((l) => l.includes('Cluster node') && l.includes('joined'))), 5000, 'nodes to meet');

    const aliceOnA = tab(nodes[0], { user: { id: 1, info: {} } });
    const aliceOnB = tab(nodes[1], { user: { id: 1, info: {} } });
    const bobOnB = tab(nodes[1], { user: { id: 2, info: {} } });
    await h.subscribed(aliceOnA, 'presence-shared');
    await h.sleep(300);
    await h.subscribed(aliceOnB, 'presence-shared');
    const bobRoom = await h.subscribed(bobOnB, 'presence-shared');
    bobRoom.trigger('client-hi', { from: 'b' });
    await h.eventually(() => named(receiver, 'client_event').length === 1, 5000, 'the client event');
    await h.eventually(() => named(receiver, 'member_added').length === 2, 5000, 'two member_added');
    await h.sleep(1000);
    assert.equal(named(receiver, 'channel_occupied', 'presence-shared').length, 1, 'occupied once');
    assert.deepEqual(named(receiver, 'member_added').map((e) => e.user_id).sort(), ['1', '2']);

    // Alice leaves node A but stays on B: no member_removed; then everyone leaves.
    aliceOnA.disconnect();
    await h.sleep(SETTLE_MS + 1000);
    assert.equal(named(receiver, 'member_removed').length, 0, 'Alice is still on node B');
    assert.equal(named(receiver, 'channel_vacated').length, 0);
    aliceOnB.disconnect();
    bobOnB.disconnect();
    await h.eventually(() => named(receiver, 'channel_vacated').length === 1, SETTLE_MS + 3000, 'channel_vacated');
    await h.sleep(1000);
    assert.deepEqual(named(receiver, 'member_removed').map((e) => e.user_id).sort(), ['1', '2']);
    assert.equal(named(receiver, 'channel_vacated').length, 1, 'vacated once');
    assert.equal(named(receiver, 'client_event').length, 1, 'client event once');
    assert.equal(receiver.invalid, 0);
  });
});

async function fetchMetrics(server) {
  const response = await fetch(`http://127.0.0.1:${server.port}/metrics`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  return response.text();
}
