// A Flarum 2 browser tab for the Rust tests: pusher-js 7 configured as
// flarum/realtime's js/src/forum/extend/Application.ts configures it (wsHost,
// wsPort and wssPort the configured port, forceTLS from the forum's scheme,
// enabledTransports ['wss','ws'], channel authorization by ajax POST to the
// forum's /api/websocket/auth), with the Origin header a browser on the
// forum's pages sends. The forum's auth endpoint is stood in for by a small
// HTTP server here that signs, as the forum does, only the channels in ALLOW
// (comma-separated; the forum decides who may join what).
//
// Usage: node flarum2-tab.js PORT KEY ORIGIN, with APP_SECRET and ALLOW in
// the environment. Reads commands as JSON lines on stdin:
//   {"subscribe": "private-user=1"}
//   {"subscribe": "private-user=2", "forge": true}  (signed with a wrong secret)
//   {"trigger": ["private-typing=5", "client-typing", {"time": 1}]}
//   {"raw": "text"}  (a frame as it is, past pusher-js)
// and prints what happens as JSON lines: {"subscribed": channel},
// {"refused": channel, "status": n}, {"channel", "event", "data"},
// {"error": ...}, {"members": [ids as pusher-js holds them]} and
// {"member_added": id} on presence channels, and {"connected": socket_id}
// first. Presence channels are signed for the user USER_ID (default 1).
'use strict';

const http = require('http');
const crypto = require('crypto');
const readline = require('readline');
const WebSocket = require('ws');
const Pusher = require('pusher-js-7');

const [port, key, origin] = process.argv.slice(2);
const secret = process.env.APP_SECRET;
const allowed = (process.env.ALLOW || '').split(',').filter(Boolean);
// Channels whose signature is made with a wrong secret, as a forged or stale
// auth answer would be.
const forged = new Set();
const print = (value) => console.log(JSON.stringify(value));

// The browser sends its page's origin; node's pusher-js would send none.
Pusher.Runtime.createWebSocket = (url) => new WebSocket(url, { origin });

const auth = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => (body += chunk));
  req.on('end', () => {
    const form = new URLSearchParams(body);
    const socketId = form.get('socket_id');
    const channel = form.get('channel_name');
    if (!allowed.includes(channel) && !forged.has(channel)) {
      res.writeHead(403).end('{"error":"forbidden"}');
      return;
    }
    // The forum's user ids are numbers in its database.
    const channelData = channel.startsWith('presence-')
      ? JSON.stringify({ user_id: Number(process.env.USER_ID || 1), user_info: {} })
      : undefined;
    const signed = channelData ? `${socketId}:${channel}:${channelData}` : `${socketId}:${channel}`;
    const signature = crypto.createHmac('sha256', forged.has(channel) ? `${secret}-wrong` : secret).update(signed).digest('hex');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ auth: `${key}:${signature}`, channel_data: channelData }));
  });
});

auth.listen(0, '127.0.0.1', () => {
  const pusher = new Pusher(key, {
    channelAuthorization: {
      endpoint: `http://127.0.0.1:${auth.address().port}/api/websocket/auth`,
      transport: 'ajax',
    },
    wsHost: '127.0.0.1',
    wsPort: Number(port),
    wssPort: Number(port),
    enabledTransports: ['wss', 'ws'],
    forceTLS: false,
    disableStats: true,
  });
  const channels = {};
  pusher.connection.bind('connected', () => print({ connected: pusher.connection.socket_id }));
  // pusher:error messages arrive as {type: 'PusherError', data}; socket
  // failures as {type: 'WebSocketError', error}.
  pusher.connection.bind('error', (error) => {
    if (error && error.type === 'PusherError') print({ error: error.data });
    else print({ error: error && error.error ? error.error.data : String(error) });
  });
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    const command = JSON.parse(line);
    if (command.subscribe) {
      const name = command.subscribe;
      if (command.forge) forged.add(name);
      const channel = pusher.subscribe(name);
      channels[name] = channel;
      channel.bind('pusher:subscription_succeeded', (members) => {
        print({ subscribed: name });
        if (name.startsWith('presence-')) {
          const ids = [];
          members.each((member) => ids.push(member.id));
          print({ members: ids });
        }
      });
      channel.bind('pusher:member_added', (member) => print({ member_added: member.id }));
      channel.bind('pusher:subscription_error', (status) => print({ refused: name, status: status && status.status }));
      channel.bind_global((event, data) => {
        if (!event.startsWith('pusher')) print({ channel: name, event, data });
      });
    } else if (command.trigger) {
      const [name, event, data] = command.trigger;
      print({ triggered: channels[name].trigger(event, data) });
    } else if (command.raw !== undefined) {
      pusher.connection.connection.send(command.raw);
    } else if (command.quit) {
      pusher.disconnect();
      process.exit(0);
    }
  });
});
