// An idle browser tab for the Rust proxy tests: pusher-js VERSION connects to
// PORT with KEY, subscribes to CHANNEL and then does nothing but what
// pusher-js does by itself (pinging after the server's activity_timeout of
// silence). It prints one JSON line per thing a user could notice:
//   {"state": "connected", "socket_id": ...} on every change of connection
//   state (a reconnect shows as "connecting", then "connected" with a new id),
//   {"subscribed": CHANNEL}, and {"event": EVENT, "data": ...} for each EVENT.
// Usage: node idle-tab.js VERSION PORT KEY CHANNEL EVENT, with ORIGIN in the
// environment for the Origin header a forum page sends (flarum/realtime
// refuses a websocket without one). Ends when its stdin closes.
'use strict';

const WebSocket = require('ws');

const [version, port, key, channel, event] = process.argv.slice(2);
const Pusher = require(`pusher-js-${version}`);
const print = (value) => console.log(JSON.stringify(value));

if (process.env.ORIGIN) {
  const origin = process.env.ORIGIN;
  Pusher.Runtime.createWebSocket = (url) => new WebSocket(url, { origin });
}
const pusher = new Pusher(key, {
  wsHost: '127.0.0.1',
  wsPort: Number(port),
  wssPort: Number(port),
  forceTLS: false,
  enabledTransports: ['ws'],
  disableStats: true,
  cluster: 'mt1',
});
pusher.connection.bind('state_change', ({ current }) =>
  print({ state: current, socket_id: pusher.connection.socket_id || null }));
const subscription = pusher.subscribe(channel);
subscription.bind('pusher:subscription_succeeded', () => print({ subscribed: channel }));
subscription.bind(event, (data) => print({ event, data }));
process.stdin.resume();
process.stdin.on('end', () => {
  pusher.disconnect();
  process.exit(0);
});
