// Three flarum-ws nodes on each kind of Redis operators run (one server,
// plain and over TLS; a Sentinel-watched master; a Redis Cluster with
// sharded pub/sub, plain and over TLS; all Debian's redis-server), pusher-js
// 8 tabs spread across them and the npm `pusher` SDK talking to one node at
// a time: the nodes must behave as one server, survive a node being killed
// and Redis going down (restarted, or failed over to a replica).
// REDIS_KINDS=plain,tls,sentinel,cluster,cluster-tls picks kinds.
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const h = require('./lib/harness');
const kinds = require('./lib/redis-kinds');

const NODE_EXPIRY_MS = 7000; // heartbeat expiry 5 s + 1 s heartbeat + slack

/** Collects every `event` on `emitter`. */
function collect(emitter, event) {
  const seen = [];
  emitter.bind(event, (data) => seen.push(data));
  return seen;
}

for (const kind of kinds.selected()) describe(`several nodes on Redis (${kind.name})`, () => {
  let redis;
  let prefix;
  const nodes = [];
  const tabs = [];
  const sdks = [];
  const tab = (node, options) => {
    const pusher = h.browser('8', nodes[node].port, options);
    tabs.push(pusher);
    return pusher;
  };

  before(async () => {
    redis = await kind.start();
    // The Redis Cluster is shared between runs: a channel prefix of its own.
    prefix = `cluster-test-${crypto.randomBytes(4).toString('hex')}`;
    for (let i = 0; i < 3; i++) {
      const node = await h.startServer({ env: { ...redis.env, FLARUM_WS_REDIS_URL: redis.url, FLARUM_WS_REDIS_PREFIX: prefix } });
      nodes.push(node);
      sdks.push(h.serverSdk(node.port));
    }
    // Every node has heard every other.
    await h.eventually(() => nodes.every((n) => n.logs.filter((l) => l.includes('Cluster node') && l.includes('joined')).length >= 2), 5000, 'nodes to meet');
  });

  after(async () => {
    tabs.forEach((pusher) => pusher.disconnect());
    await Promise.all(nodes.map((node) => (node.child.exitCode === null ? node.stop() : null)));
    await redis?.stop();
  });

  if (kind.name.startsWith('cluster')) {
    it('spreads the bus over every shard, each node listening to every lane', () => {
      const masters = redis.lanes(prefix);
      assert.equal(masters.length, 3, JSON.stringify(masters));
      for (const master of masters) {
        assert.ok(master.lanes > 0, `the shard master on ${master.port} carries no lane: ${JSON.stringify(masters)}`);
        assert.ok(master.subscribers.every((n) => n === 3), `every lane has the 3 nodes: ${JSON.stringify(masters)}`);
      }
      assert.equal(masters.reduce((sum, master) => sum + master.lanes, 0), 16);
    });
  }

  it('delivers an event triggered on one node to subscribers on every node, once and in order', async () => {
    const onA = tab(0);
    const onB = tab(1);
    const onC = tab(2);
    const channels = await Promise.all([onA, onB, onC].map((p) => h.subscribed(p, 'news')));
    const seen = channels.map((channel) => collect(channel, 'posted'));
    for (let i = 1; i <= 20; i++) await sdks[0].trigger('news', 'posted', { n: i });
    await h.eventually(() => seen.every((s) => s.length >= 20), 5000, 'all deliveries');
    await h.sleep(300);
    for (const s of seen) assert.deepEqual(s.map((d) => d.n), Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it('excludes the socket_id given by the forum, whichever node holds it', async () => {
    const sender = tab(1);
    const other = tab(2);
    const [senderChannel, otherChannel] = await Promise.all([h.subscribed(sender, 'excluded'), h.subscribed(other, 'excluded')]);
    const quiet = h.silence(senderChannel, 'reply', 800);
    const heard = h.next(otherChannel, 'reply');
    await sdks[0].trigger('excluded', 'reply', { ok: true }, { socket_id: sender.connection.socket_id });
    assert.deepEqual(await heard, { ok: true });
    await quiet;
  });

  it('carries client events to the other nodes', async () => {
    const typist = tab(0);
    const reader = tab(2);
    const [typing] = await Promise.all([h.subscribed(typist, 'private-chat'), h.subscribed(reader, 'private-chat')]);
    const readerChannel = reader.channel('private-chat');
    const heard = h.next(readerChannel, 'client-typing');
    const ownQuiet = h.silence(typing, 'client-typing', 500);
    typing.trigger('client-typing', { who: 'a' });
    assert.deepEqual(await heard, { who: 'a' });
    await ownQuiet;
  });

  it('keeps presence cluster-wide: one member per user, added and removed once', async () => {
    const alice = tab(0, { user: { id: 1, info: { name: 'Alice' } } });
    const aliceRoom = await h.subscribed(alice, 'presence-room');
    const added = collect(aliceRoom, 'pusher:member_added');
    const removed = collect(aliceRoom, 'pusher:member_removed');

    const bobOnB = tab(1, { user: { id: 2, info: { name: 'Bob' } } });
    const bobRoom = await h.subscribed(bobOnB, 'presence-room');
    assert.deepEqual(Object.keys(bobRoom.members.members).sort(), ['1', '2']);
    await h.eventually(() => added.length === 1, 3000, 'member_added for Bob');
    assert.equal(String(added[0].id), '2');
    assert.deepEqual(added[0].info, { name: 'Bob' });

    const bobOnC = tab(2, { user: { id: 2, info: { name: 'Bob' } } });
    const bobSecondRoom = await h.subscribed(bobOnC, 'presence-room');
    assert.equal(bobSecondRoom.members.count, 2);
    await h.sleep(400);
    assert.equal(added.length, 1, 'a second tab of the same user is not a new member');

    const users = await sdks[2].get({ path: '/channels/presence-room/users' }).then((r) => r.json());
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['1', '2']);

    bobOnB.unsubscribe('presence-room');
    await h.sleep(400);
    assert.equal(removed.length, 0, 'Bob is still here on another node');
    bobOnC.unsubscribe('presence-room');
    await h.eventually(() => removed.length === 1, 3000, 'member_removed for Bob');
    assert.equal(String(removed[0].id), '2');
  });

  it('answers the HTTP API for the whole cluster', async () => {
    const [a, b, c] = [tab(0, { user: { id: 11 } }), tab(1, { user: { id: 12 } }), tab(2, { user: { id: 12 } })];
    await Promise.all([h.subscribed(a, 'presence-api'), h.subscribed(b, 'presence-api'), h.subscribed(c, 'presence-api')]);
    await h.subscribed(c, 'only-on-c');
    await h.sleep(300);
    const list = await sdks[0].get({ path: '/channels', params: { filter_by_prefix: 'presence-api', info: 'user_count,subscription_count' } }).then((r) => r.json());
    assert.deepEqual(list.channels['presence-api'], { user_count: 2, subscription_count: 3 });
    const all = await sdks[0].get({ path: '/channels' }).then((r) => r.json());
    assert.ok('only-on-c' in all.channels, JSON.stringify(all));
    const one = await sdks[1].get({ path: '/channels/only-on-c', params: { info: 'subscription_count' } }).then((r) => r.json());
    assert.deepEqual(one, { occupied: true, subscription_count: 1 });
  });

  it('replays a cache channel event to a subscriber on another node', async () => {
    await sdks[0].trigger('cache-latest', 'snapshot', { v: 3 });
    await h.sleep(300);
    const late = tab(2);
    await h.connected(late);
    const channel = late.subscribe('cache-latest');
    assert.deepEqual(await h.next(channel, 'snapshot'), { v: 3 });
  });

  it('signs in, watches, sends to users and terminates them across nodes', async () => {
    const watcher = tab(0, { user: { id: 100, watchlist: ['101'] } });
    await h.connected(watcher);
    const initial = h.next(watcher.user.watchlist, 'offline');
    watcher.signin();
    assert.deepEqual((await initial).user_ids, ['101']);

    const user = tab(2, { user: { id: 101, watchlist: [] } });
    await h.connected(user);
    const online = h.next(watcher.user.watchlist, 'online');
    user.signin();
    assert.deepEqual((await online).user_ids, ['101']);
    await user.user.signinDonePromise;
    await h.sleep(300);

    const message = h.next(user.user, 'direct');
    await sdks[1].sendToUser('101', 'direct', { hello: 'from node B' });
    assert.deepEqual(await message, { hello: 'from node B' });

    const terminated = h.nextErrorCode(user);
    const offline = h.next(watcher.user.watchlist, 'offline');
    await sdks[1].terminateUserConnections('101');
    assert.equal(await terminated, 4009);
    assert.deepEqual((await offline).user_ids, ['101']);
  });

  it('keeps serving through a Redis outage and resynchronises presence', async () => {
    const local = tab(0);
    const localChannel = await h.subscribed(local, 'during-outage');
    const watcher = tab(0, { user: { id: 30 } });
    const room = await h.subscribed(watcher, 'presence-outage');

    const restore = await redis.outage();
    await h.eventually(() => nodes[0].logs.some((l) => l.includes('Lost the connection to Redis')), 5000, 'the outage to be noticed');
    // Local delivery goes on.
    const heard = h.next(localChannel, 'local');
    await sdks[0].trigger('during-outage', 'local', { still: 'here' });
    assert.deepEqual(await heard, { still: 'here' });
    // Someone joins on another node while Redis is away.
    const joiner = tab(1, { user: { id: 31 } });
    await h.subscribed(joiner, 'presence-outage');

    await restore();
    await h.eventually(() => nodes.every((n) => n.logs.filter((l) => l.includes('Connected to Redis')).length >= 2), 10000, 'every node to reconnect');
    await h.eventually(() => room.members.count === 2, 8000, 'the member who joined during the outage');
    const crossing = tab(2);
    const crossingChannel = await h.subscribed(crossing, 'after-outage');
    await h.sleep(300);
    const again = h.next(crossingChannel, 'back');
    await sdks[0].trigger('after-outage', 'back', { ok: 1 });
    assert.deepEqual(await again, { ok: 1 });
  });

  it('removes the members of a node that was killed, within the heartbeat expiry', async () => {
    const stayer = tab(0, { user: { id: 40 } });
    const room = await h.subscribed(stayer, 'presence-crash');
    const doomed = tab(2, { user: { id: 41 } });
    await h.subscribed(doomed, 'presence-crash');
    await h.eventually(() => room.members.count === 2, 3000, 'the member on the doomed node');
    const removed = h.next(room, 'pusher:member_removed', NODE_EXPIRY_MS + 2000);
    const killedAt = Date.now();
    nodes[2].child.kill('SIGKILL');
    const member = await removed;
    assert.equal(String(member.id), '41');
    assert.ok(Date.now() - killedAt <= NODE_EXPIRY_MS, `removed after ${Date.now() - killedAt} ms`);
    doomed.disconnect();
    const count = await sdks[0].get({ path: '/channels/presence-crash', params: { info: 'user_count,subscription_count' } }).then((r) => r.json());
    assert.deepEqual(count, { occupied: true, user_count: 1, subscription_count: 1 });
  });
});
