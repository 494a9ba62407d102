// The real pusher-js clients (5.1.1, 7.x, 8.x) against flarum-ws, with the
// npm `pusher` SDK playing the forum.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

for (const version of h.VERSIONS) {
  describe(`pusher-js ${version}`, () => {
    const fixture = h.serverPerSuite(version);
    const tab = (options) => fixture.tab(options);

    it('connects with a socket id the SDKs accept', async () => {
      const pusher = tab();
      await h.connected(pusher);
      assert.match(pusher.connection.socket_id, /^\d+\.\d+$/);
    });

    it('receives events triggered on public channels, single and multi-channel', async () => {
      const pusher = tab();
      const news = await h.subscribed(pusher, 'public-news');
      const other = await h.subscribed(pusher, 'public-other');
      let got = h.next(news, 'newPost');
      await fixture.sdk.trigger('public-news', 'newPost', { postId: 158, discussionId: 43 });
      assert.deepEqual(await got, { postId: 158, discussionId: 43 });
      const both = Promise.all([h.next(news, 'multi'), h.next(other, 'multi')]);
      await fixture.sdk.trigger(['public-news', 'public-other'], 'multi', { n: 2 });
      assert.deepEqual(await both, [{ n: 2 }, { n: 2 }]);
    });

    it('excludes the socket_id given to trigger', async () => {
      const sender = tab();
      const receiver = tab();
      const senderChannel = await h.subscribed(sender, 'public-exclude');
      const receiverChannel = await h.subscribed(receiver, 'public-exclude');
      const quiet = h.silence(senderChannel, 'update', 500);
      const got = h.next(receiverChannel, 'update');
      await fixture.sdk.trigger('public-exclude', 'update', { x: 1 }, { socket_id: sender.connection.socket_id });
      assert.deepEqual(await got, { x: 1 });
      await quiet;
    });

    it('subscribes to private channels with the forum auth and refuses a bad signature', async () => {
      const pusher = tab();
      const channel = await h.subscribed(pusher, 'private-user1');
      const got = h.next(channel, 'notification');
      await fixture.sdk.trigger('private-user1', 'notification', { id: 9 });
      assert.deepEqual(await got, { id: 9 });

      const forged = tab({ secret: 'not-the-secret' });
      const refused = forged.subscribe('private-user2');
      const error = await h.next(refused, 'pusher:subscription_error');
      assert.equal(error.status, 401);
      // The connection survives the refusal.
      assert.equal(forged.connection.state, 'connected');
      await h.subscribed(forged, 'public-after-refusal');
    });

    it('tracks presence members across tabs of the same user', async () => {
      const alice = tab({ user: { id: 1, info: { name: 'Alice' } } });
      const aliceChannel = await h.subscribed(alice, 'presence-forum');
      assert.equal(aliceChannel.members.count, 1);
      assert.equal(aliceChannel.members.me.info.name, 'Alice');

      const bob = tab({ user: { id: 2, info: { name: 'Bob' } } });
      const added = h.next(aliceChannel, 'pusher:member_added');
      const bobChannel = await h.subscribed(bob, 'presence-forum');
      assert.equal((await added).info.name, 'Bob');
      assert.equal(bobChannel.members.count, 2);
      assert.equal(bobChannel.members.get(1).info.name, 'Alice');

      const bobAgain = tab({ user: { id: 2, info: { name: 'Bob' } } });
      const noDuplicate = h.silence(aliceChannel, 'pusher:member_added', 500);
      const secondTab = await h.subscribed(bobAgain, 'presence-forum');
      assert.equal(secondTab.members.count, 2);
      await noDuplicate;

      const stillThere = h.silence(aliceChannel, 'pusher:member_removed', 500);
      bobAgain.disconnect();
      await stillThere;
      const removed = h.next(aliceChannel, 'pusher:member_removed');
      bob.disconnect();
      assert.equal((await removed).id, 2);
      assert.equal(aliceChannel.members.count, 1);

      const users = await (await fixture.sdk.get({ path: '/channels/presence-forum/users' })).json();
      assert.deepEqual(users, { users: [{ id: '1' }] });
    });

    it('relays client events to others (with user_id on presence), never back', async () => {
      const a = tab({ user: { id: 10, info: {} } });
      const b = tab({ user: { id: 11, info: {} } });
      const aChannel = await h.subscribed(a, 'private-chat');
      const bChannel = await h.subscribed(b, 'private-chat');
      const echo = h.silence(aChannel, 'client-typing', 500);
      const got = h.next(bChannel, 'client-typing');
      assert.ok(aChannel.trigger('client-typing', { who: 'a' }));
      assert.deepEqual(await got, { who: 'a' });
      await echo;

      if (version !== '5') {
        const aRoom = await h.subscribed(a, 'presence-room');
        const bRoom = await h.subscribed(b, 'presence-room');
        const withMeta = new Promise((resolve) => bRoom.bind('client-wave', (data, meta) => resolve([data, meta])));
        aRoom.trigger('client-wave', { hi: true });
        const [data, meta] = await withMeta;
        assert.deepEqual(data, { hi: true });
        assert.equal(meta.user_id, '10');
      }
    });

    it('delivers end-to-end encrypted events the server cannot read', async () => {
      const pusher = tab();
      const channel = await h.subscribed(pusher, 'private-encrypted-secret');
      const got = h.next(channel, 'sealed');
      await fixture.sdk.trigger('private-encrypted-secret', 'sealed', { plain: 'text' });
      assert.deepEqual(await got, { plain: 'text' });
      assert.ok(!fixture.server.logs.join('\n').includes('plain'), 'payload visible to the server');
    });

    it('replays the last event of a cache channel and reports a miss', async () => {
      const first = tab();
      const empty = first.subscribe('cache-empty');
      await h.next(empty, 'pusher:cache_miss');

      await fixture.sdk.trigger('cache-headline', 'headline', { v: 1 });
      await fixture.sdk.trigger('cache-headline', 'headline', { v: 2 });
      const late = tab();
      const channel = late.subscribe('cache-headline');
      assert.deepEqual(await h.next(channel, 'headline'), { v: 2 });
    });

    it('is refused for an unknown app key and does not retry', async () => {
      const pusher = tab({ key: 'no-such-key' });
      assert.equal(await h.nextErrorCode(pusher), 4001);
      let attempts = 0;
      pusher.connection.bind('connecting', () => attempts++);
      await h.sleep(1500);
      assert.equal(attempts, 0);
      assert.notEqual(pusher.connection.state, 'connected');
    });

    if (version !== '5') {
      it('signs in, receives server-to-user events and watchlist changes, and is terminated', async () => {
        const watcher = tab({ user: { id: 100, watchlist: ['101'] } });
        await h.connected(watcher);
        const initial = h.next(watcher.user.watchlist, 'offline');
        watcher.signin();
        assert.deepEqual((await initial).user_ids, ['101']);

        const user = tab({ user: { id: 101, watchlist: [] } });
        await h.connected(user);
        const online = h.next(watcher.user.watchlist, 'online');
        user.signin();
        assert.deepEqual((await online).user_ids, ['101']);
        await user.user.signinDonePromise;
        await h.sleep(200); // pusher-js subscribes to #server-to-user-101 after signin_success

        const message = h.next(user.user, 'direct');
        await fixture.sdk.sendToUser('101', 'direct', { hello: 'you' });
        assert.deepEqual(await message, { hello: 'you' });

        const terminated = h.nextErrorCode(user);
        const offline = h.next(watcher.user.watchlist, 'offline');
        await fixture.sdk.terminateUserConnections('101');
        assert.equal(await terminated, 4009);
        assert.deepEqual((await offline).user_ids, ['101']);
      });
    }

    it('keeps an idle connection alive with pusher:ping at the announced activity timeout', async () => {
      const quick = await h.startServer({ env: { FLARUM_WS_ACTIVITY_TIMEOUT: '1', FLARUM_WS_PONG_TIMEOUT: '2' } });
      try {
        const pusher = h.browser(version, quick.port);
        await h.connected(pusher);
        let drops = 0;
        pusher.connection.bind('state_change', ({ current }) => current !== 'connected' && drops++);
        await h.sleep(3500);
        assert.equal(drops, 0);
        assert.equal(pusher.connection.state, 'connected');
        pusher.disconnect();
      } finally {
        await quick.stop();
      }
    });

    it('reconnects by itself after a graceful restart (4200)', async () => {
      const first = await h.startServer();
      const port = first.port;
      const pusher = h.browser(version, port);
      await h.connected(pusher);
      const oldId = pusher.connection.socket_id;
      const reconnecting = h.next(pusher.connection, 'connecting', 8000);
      const closed = h.nextErrorCode(pusher, 8000);
      assert.equal(await first.stop(), 0);
      assert.equal(await closed, 4200);
      await reconnecting;
      const second = await h.startServer({ port });
      try {
        // pusher-js (node) retries a refused TCP connection only after its
        // 15 s transport timeout, so allow for that.
        await h.next(pusher.connection, 'connected', 25000);
        assert.notEqual(pusher.connection.socket_id, oldId);
        const channel = await h.subscribed(pusher, 'public-back');
        const got = h.next(channel, 'again');
        await h.serverSdk(port).trigger('public-back', 'again', { ok: true });
        assert.deepEqual(await got, { ok: true });
      } finally {
        pusher.disconnect();
        await second.stop();
      }
    });
  });
}
