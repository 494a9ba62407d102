// A browser tab for the Rust forum tests: pusher-js connects to PORT with
// KEY, subscribes to CHANNEL, prints `subscribed`, then prints the first
// EVENT's data as JSON and exits. Usage: node forum-client.js VERSION PORT KEY CHANNEL EVENT
// With FORCE_TLS=1 it connects with wss to WS_HOST (trusting NODE_EXTRA_CA_CERTS).
'use strict';

const [version, port, key, channel, event] = process.argv.slice(2);
const Pusher = require(`pusher-js-${version}`);
const tls = process.env.FORCE_TLS === '1';
const pusher = new Pusher(key, {
  wsHost: process.env.WS_HOST || '127.0.0.1',
  wsPort: Number(port),
  wssPort: Number(port),
  forceTLS: tls,
  enabledTransports: ['ws'],
  disableStats: true,
  cluster: 'mt1',
});
const timer = setTimeout(() => {
  console.error(`no ${event} within 10 s (connection state ${pusher.connection.state})`);
  process.exit(1);
}, 10000);
const subscription = pusher.subscribe(channel);
subscription.bind('pusher:subscription_succeeded', () => console.log('subscribed'));
subscription.bind(event, (data) => {
  console.log(JSON.stringify(data));
  clearTimeout(timer);
  pusher.disconnect();
  process.exit(0);
});
