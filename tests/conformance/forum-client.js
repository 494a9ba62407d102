// A browser tab for the Rust forum tests: pusher-js connects to PORT with
// KEY, subscribes to CHANNEL, prints `subscribed`, then prints the first
// EVENT's data as JSON and exits. Usage: node forum-client.js VERSION PORT KEY CHANNEL EVENT
'use strict';

const [version, port, key, channel, event] = process.argv.slice(2);
const Pusher = require(`pusher-js-${version}`);
const pusher = new Pusher(key, {
  wsHost: '127.0.0.1',
  wsPort: Number(port),
  forceTLS: false,
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
