// The npm `pusher` server SDK (what Node backends use; its requests are
// shaped like pusher-php-server's) against flarum-ws.
'use strict';

const { describe, it } = require('node:test');
const assert = require('node:assert/strict');
const h = require('./lib/harness');

describe('npm pusher SDK', () => {
  const fixture = h.serverPerSuite('8');
  const tab = (options) => fixture.tab(options);

  it('triggers with info and gets the counts back', async () => {
    const a = tab({ user: { id: 1, info: {} } });
    await h.subscribed(a, 'presence-room');
    const response = await fixture.sdk.trigger('presence-room', 'e', { x: 1 }, { info: 'user_count,subscription_count' });
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), {
      channels: { 'presence-room': { user_count: 1, subscription_count: 1 } },
    });
  });

  it('triggers a batch in order', async () => {
    const a = tab();
    const channel = await h.subscribed(a, 'public-batch');
    const seen = [];
    const done = new Promise((resolve) =>
      channel.bind('item', (data) => {
        seen.push(data.i);
        if (seen.length === 10) resolve();
      }),
    );
    const batch = Array.from({ length: 10 }, (_, i) => ({ channel: 'public-batch', name: 'item', data: { i } }));
    const response = await fixture.sdk.triggerBatch(batch);
    assert.equal(response.status, 200);
    await done;
    assert.deepEqual(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('lists channels the way Flarum asks for them', async () => {
    const a = tab();
    await h.subscribed(a, 'private-user1');
    await h.subscribed(a, 'private-user22');
    await h.subscribed(a, 'public');
    const response = await fixture.sdk.get({ path: '/channels', params: { filter_by_prefix: 'private-user' } });
    assert.deepEqual(await response.json(), { channels: { 'private-user1': {}, 'private-user22': {} } });

    const one = await fixture.sdk.get({ path: '/channels/private-user1', params: { info: 'subscription_count' } });
    assert.deepEqual(await one.json(), { occupied: true, subscription_count: 1 });
  });

  it('reports presence users', async () => {
    const a = tab({ user: { id: 'alice', info: {} } });
    const b = tab({ user: { id: 'bob', info: {} } });
    await h.subscribed(a, 'presence-users');
    await h.subscribed(b, 'presence-users');
    const response = await fixture.sdk.get({ path: '/channels/presence-users/users' });
    const ids = (await response.json()).users.map((u) => u.id).sort();
    assert.deepEqual(ids, ['alice', 'bob']);
  });

  it('rejects a wrong secret with 401 and an oversized event with 413', async () => {
    const forged = h.serverSdk(fixture.server.port, { secret: 'wrong' });
    await assert.rejects(forged.trigger('public', 'e', {}), (error) => {
      assert.equal(error.status, 401);
      assert.match(error.body, /signature/);
      return true;
    });
    // fixture.sdk.post signs the raw body, bypassing the SDK's own 10 KB check.
    const huge = { name: 'e', channel: 'public', data: 'x'.repeat(11 * 1024) };
    await assert.rejects(fixture.sdk.post({ path: '/events', body: huge }), (error) => {
      assert.equal(error.status, 413);
      return true;
    });
  });
});
