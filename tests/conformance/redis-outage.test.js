// Three flarum-ws nodes on real Redis, with pusher-js 8 tabs on every node
// and the forum's events (the npm `pusher` SDK) arriving on all of them: on
// one redis-server while it is paused (SIGSTOP, as a stalled Redis looks)
// and while it is killed and started again; on a Sentinel-watched master
// and on a Redis Cluster while the master (a shard master) is killed and a
// replica takes over. Every tab gets every event once, and nobody's
// presence flaps. REDIS_KINDS=plain,tls,sentinel,cluster,cluster-tls picks
// kinds (plain, sentinel and cluster when unset).
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./lib/harness');
const kinds = require('./lib/redis-kinds');

const NODES = 3;
const EVENTS_PER_SECOND = 40;

// One server over TLS and the cluster over TLS fail and recover as their
// plain forms do (cluster.test.js takes each of them through an outage).
for (const kind of kinds.selected(['plain', 'sentinel', 'cluster'])) describe(`an outage of Redis (${kind.name}) loses nothing`, () => {
  let redis;
  const nodes = [];
  const sdks = [];
  const tabs = [];

  before(async () => {
    redis = await kind.start();
    // The Redis Cluster is shared between runs: a channel prefix of its own.
    const prefix = `outage-test-${crypto.randomBytes(4).toString('hex')}`;
    for (let i = 0; i < NODES; i++) {
      const node = await h.startServer({ env: { ...redis.env, FLARUM_WS_REDIS_URL: redis.url, FLARUM_WS_REDIS_PREFIX: prefix } });
      nodes.push(node);
      sdks.push(h.serverSdk(node.port));
    }
    await h.eventually(() => nodes.every((n) => n.logs.filter((l) => l.includes('Cluster node') && l.includes('joined')).length >= NODES - 1), 5000, 'nodes to meet');
  });

  after(async () => {
    tabs.forEach((pusher) => pusher.disconnect());
    await Promise.all(nodes.map((node) => node.stop()));
    await redis?.stop();
  });

  /**
   * One tab per node on `channel` and one per node in `presence-<channel>`
   * (users 1..3); triggers `count` events spread over the nodes at
   * EVENTS_PER_SECOND while `outage()` runs; resolves with what each tab
   * saw and the members each presence tab saw leave.
   */
  async function eventsThrough(channel, count, outage) {
    const seen = [];
    const removed = [];
    const rooms = [];
    for (let i = 0; i < NODES; i++) {
      const reader = h.browser('8', nodes[i].port);
      const member = h.browser('8', nodes[i].port, { user: { id: 100 + i } });
      tabs.push(reader, member);
      const subscription = await h.subscribed(reader, channel);
      const got = [];
      subscription.bind('post', (data) => got.push(data.n));
      seen.push(got);
      const room = await h.subscribed(member, `presence-${channel}`);
      const left = [];
      room.bind('pusher:member_removed', (m) => left.push(m.id));
      removed.push(left);
      rooms.push(room);
    }
    await h.eventually(() => rooms.every((room) => room.members.count === NODES), 5000, 'every member on every node');

    const failed = [];
    const triggering = (async () => {
      for (let n = 1; n <= count; n++) {
        sdks[n % NODES].trigger(channel, 'post', { n }).then(
          (response) => response.status === 200 || failed.push(n),
          () => failed.push(n),
        );
        await h.sleep(1000 / EVENTS_PER_SECOND);
      }
    })();
    await outage();
    await triggering;
    await h.eventually(() => seen.every((got) => got.length >= count), 20000, 'every event on every node');
    await h.sleep(500);
    return { seen, removed, rooms, failed };
  }

  function assertEveryEventOnce({ seen, removed, rooms, failed }, count) {
    assert.deepEqual(failed, [], 'triggers refused');
    seen.forEach((got, i) => {
      const sorted = [...got].sort((a, b) => a - b);
      assert.deepEqual(sorted, Array.from({ length: count }, (_, n) => n + 1), `node ${i}: each event once`);
    });
    removed.forEach((left, i) => assert.deepEqual(left, [], `node ${i}: nobody left the presence channel`));
    rooms.forEach((room) => assert.equal(room.members.count, NODES));
  }

  async function assertNothingLost() {
    for (const node of nodes) {
      const values = await h.metrics(node);
      assert.equal(values.flarum_ws_redis_messages_dropped_total, 0, 'dropped');
      assert.equal(values.flarum_ws_redis_events_lost_total, 0, 'lost');
    }
  }

  if (kind.name === 'plain') {
    it('delivers every event once through a 10 s pause of Redis (SIGSTOP)', async () => {
      const count = EVENTS_PER_SECOND * 16;
      const result = await eventsThrough('paused', count, async () => {
        await h.sleep(3000);
        redis.pause();
        await h.sleep(10000);
        redis.resume();
      });
      assertEveryEventOnce(result, count);
      await assertNothingLost();
    });
  }

  it(kind.failsOver
    ? 'delivers every event once when the master is killed and a replica takes over'
    : 'delivers every event once when Redis is killed and started again 3 s later', async () => {
    const count = EVENTS_PER_SECOND * 10;
    const result = await eventsThrough('restarted', count, async () => {
      await h.sleep(2000);
      const restore = await redis.outage();
      if (!kind.failsOver) await h.sleep(3000);
      await restore();
    });
    assertEveryEventOnce(result, count);
    await assertNothingLost();
  });
});
