// The PHP side of a Flarum 2 forum, for the Rust tests: the npm `pusher` SDK
// configured as flarum/realtime's WebsocketProvider configures
// pusher-php-server (app id '1', the md5 key and secret, host and port of the
// php-client settings, plain HTTP). Usage:
//   node flarum2-forum.js PORT KEY SECRET trigger CHANNEL EVENT DATA_JSON
//   node flarum2-forum.js PORT KEY SECRET online
// `online` asks which users are online as the forum does:
// getChannels with filter_by_prefix 'private-user='. Prints JSON.
'use strict';

const Pusher = require('pusher');

const [port, key, secret, command, ...rest] = process.argv.slice(2);
const pusher = new Pusher({ appId: '1', key, secret, host: '127.0.0.1', port, useTLS: false });

async function main() {
  if (command === 'trigger') {
    const [channel, event, data] = rest;
    const response = await pusher.trigger(channel, event, JSON.parse(data));
    console.log(JSON.stringify({ status: response.status }));
  } else if (command === 'online') {
    const response = await pusher.get({ path: '/channels', params: { filter_by_prefix: 'private-user=' } });
    console.log(JSON.stringify({ status: response.status, body: await response.json() }));
  }
}

main().catch((error) => {
  console.log(JSON.stringify({ error: String(error), status: error.status, body: error.body }));
  process.exit(1);
});
