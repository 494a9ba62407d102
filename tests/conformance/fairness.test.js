// Issue 35: fair to every visitor. pusher-js 7, configured as flarum/realtime's
// JS configures it, from one address (a school, an office) on a server the
// size of a Flarum 2 forum's (1 000 places, 100 per address once nearly full).
'use strict';

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

describe('visitors behind one address', () => {
  let server;
  let sdk;
  const tabs = [];
  before(async () => {
    server = await h.startServer({
      env: { FLARUM_WS_MAX_CONNECTIONS: '1000', FLARUM_WS_MAX_CONNECTIONS_PER_IP: '100' },
    });
    sdk = h.serverSdk(server.port);
  });
  after(async () => {
    tabs.forEach((pusher) => pusher.disconnect());
    await server.stop();
  });

  it('150 tabs from one address all connect and all get the forum event', async () => {
    const channels = [];
    for (let n = 0; n < 150; n++) {
      const tab = h.browser('7', server.port);
      tabs.push(tab);
      channels.push(h.subscribed(tab, 'public'));
    }
    const subscribed = await Promise.all(channels);
    const got = subscribed.map((channel) => h.next(channel, 'newPost', 10000));
    await sdk.trigger('public', 'newPost', { postId: 1 });
    const events = await Promise.all(got);
    assert.equal(events.length, 150);
    events.forEach((data) => assert.deepEqual(data, { postId: 1 }));
  });

  it("a tab subscribing to a channel per tag (Flarum 2's typing dots, 150 tags) gets every one", async () => {
    const tab = h.browser('7', server.port, { user: { id: 1, info: {} } });
    tabs.push(tab);
    await h.connected(tab);
    const names = ['public', 'private-user=1', 'public-index-typing', 'private-typing-activity'];
    for (let tag = 1; tag <= 150; tag++) names.push(`private-index-typing-tag=${tag}`);
    const refused = [];
    const all = names.map(
      (name) =>
        new Promise((resolve) => {
          const channel = tab.subscribe(name);
          channel.bind('pusher:subscription_succeeded', () => resolve(name));
          channel.bind('pusher:subscription_error', (error) => {
            refused.push(`${name}: ${JSON.stringify(error)}`);
            resolve(name);
          });
        }),
    );
    await Promise.all(all);
    assert.deepEqual(refused, []);
    const got = h.next(tab.channel('private-index-typing-tag=150'), 'index-typing');
    await sdk.trigger('private-index-typing-tag=150', 'index-typing', { discussionId: 7 });
    assert.deepEqual(await got, { discussionId: 7 });
  });
});
