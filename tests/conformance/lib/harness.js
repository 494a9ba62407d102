// Starts the real flarum-ws binary and builds real clients against it:
// pusher-js (5.1.1, 7.x, 8.x) and the npm `pusher` server SDK.
'use strict';

const { spawn } = require('node:child_process');
const { before, after } = require('node:test');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const net = require('node:net');
const assert = require('node:assert/strict');

const BIN = process.env.TEST_FLARUM_WS_BIN || path.resolve(__dirname, '../../../target/debug/flarum-ws');
const APP = { appId: '4242', key: 'conformance-key', secret: 'conformance-secret' };
// Key for end-to-end encrypted channels; only the SDK and pusher-js know it.
const MASTER_KEY = crypto.randomBytes(32).toString('base64');
const VERSIONS = ['5', '7', '8'];

/** Starts `flarum-ws serve` on a free (or the given) port; resolves when it listens. */
function startServer({ env = {}, port = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['serve', '--host', '127.0.0.1', '--port', String(port)], {
      cwd: os.tmpdir(),
      env: {
        PATH: process.env.PATH,
        FLARUM_WS_APP_ID: APP.appId,
        FLARUM_WS_APP_KEY: APP.key,
        FLARUM_WS_APP_SECRET: APP.secret,
        FLARUM_WS_CLIENT_EVENTS: 'true',
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const logs = [];
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`flarum-ws did not start: ${logs.join('\n')}`)), 10000);
    child.stderr.on('data', (chunk) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop();
      for (const line of lines) {
        logs.push(line);
        const match = /Listening on 127\.0\.0\.1:(\d+)/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve({
            port: Number(match[1]),
            child,
            logs,
            exited: new Promise((done) => child.once('exit', (code) => done(code))),
            stop() {
              child.kill('SIGTERM');
              return this.exited;
            },
          });
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`flarum-ws exited with ${code}: ${logs.join('\n')}`));
    });
  });
}

/** The forum's side: the npm `pusher` SDK pointed at our server. */
function serverSdk(port, overrides = {}) {
  const Pusher = require('pusher');
  return new Pusher({
    appId: APP.appId,
    key: APP.key,
    secret: APP.secret,
    host: '127.0.0.1',
    port: String(port),
    useTLS: false,
    encryptionMasterKeyBase64: MASTER_KEY,
    ...overrides,
  });
}

/**
 * A browser tab: pusher-js of `version`, authorized by the SDK as the forum's
 * auth endpoint would, optionally as `user` ({ id, info, watchlist }).
 */
function browser(version, port, { user, secret, key } = {}) {
  const Pusher = require(`pusher-js-${version}`);
  const sdk = serverSdk(port, secret ? { secret } : {});
  const options = {
    wsHost: '127.0.0.1',
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    cluster: 'mt1',
    authorizer: (channel) => ({
      authorize: (socketId, callback) => {
        const presence =
          user && channel.name.startsWith('presence-') ? { user_id: user.id, user_info: user.info } : undefined;
        try {
          callback(null, sdk.authorizeChannel(socketId, channel.name, presence));
        } catch (error) {
          callback(error, null);
        }
      },
    }),
  };
  if (version !== '5') {
    options.userAuthentication = {
      customHandler: ({ socketId }, callback) => {
        const userData = { id: String(user.id), watchlist: user.watchlist };
        callback(null, sdk.authenticateUser(socketId, userData));
      },
    };
  }
  return new Pusher(key || APP.key, options);
}

/** Resolves with the data of the next `event` on `emitter`, or rejects after `ms`. */
function next(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.unbind(event, handler);
      reject(new Error(`timed out waiting for ${event}`));
    }, ms);
    function handler(data) {
      clearTimeout(timer);
      emitter.unbind(event, handler);
      resolve(data);
    }
    emitter.bind(event, handler);
  });
}

/** Resolves once `pusher` is connected. */
function connected(pusher) {
  if (pusher.connection.state === 'connected') return Promise.resolve();
  return next(pusher.connection, 'connected');
}

/** Subscribes and waits for subscription_succeeded; returns the channel. */
async function subscribed(pusher, name) {
  const channel = pusher.subscribe(name);
  await next(channel, 'pusher:subscription_succeeded');
  return channel;
}

/** Fails if `event` fires on `emitter` within `ms`. */
function silence(emitter, event, ms = 300) {
  return new Promise((resolve, reject) => {
    const handler = (data) => {
      emitter.unbind(event, handler);
      reject(new Error(`unexpected ${event}: ${JSON.stringify(data)}`));
    };
    emitter.bind(event, handler);
    setTimeout(() => {
      emitter.unbind(event, handler);
      resolve();
    }, ms);
  });
}

/**
 * The Pusher error code in a connection `error` event. pusher-js wraps codes
 * that arrive during the handshake or with a close in a WebSocketError.
 */
function errorCode(event) {
  return event?.data?.code ?? event?.error?.data?.code;
}

/** Resolves with the first connection error carrying a Pusher code. */
function nextErrorCode(pusher, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for a Pusher error')), ms);
    const handler = (event) => {
      const code = errorCode(event);
      if (code === undefined) return;
      clearTimeout(timer);
      pusher.connection.unbind('error', handler);
      resolve(code);
    };
    pusher.connection.bind('error', handler);
  });
}

/**
 * Registers before/after hooks that run one server for the enclosing suite.
 * Returns a fixture: `fixture.server`, `fixture.sdk` and `fixture.tab(options)`
 * (a pusher-js of `version`, disconnected when the suite ends).
 */
function serverPerSuite(version) {
  const open = [];
  const fixture = {
    server: null,
    sdk: null,
    tab(options) {
      const pusher = browser(version, fixture.server.port, options);
      open.push(pusher);
      return pusher;
    },
  };
  before(async () => {
    fixture.server = await startServer();
    fixture.sdk = serverSdk(fixture.server.port);
  });
  after(async () => {
    open.forEach((pusher) => pusher.disconnect());
    await fixture.server.stop();
  });
  return fixture;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Debian's redis-server on `port`, no persistence; resolves when it accepts connections. */
function startRedis(port, extraArgs = []) {
  // A replica writes the copy it receives to its folder: a scratch one.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flarum-ws-redis-'));
  return new Promise((resolve, reject) => {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${output}`)), 10000);
    child.stdout.on('data', (chunk) => {
      output += chunk;
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve({
          child,
          stop() {
            child.kill('SIGKILL');
            return new Promise((done) => child.once('exit', done)).then(() => fs.rmSync(dir, { recursive: true, force: true }));
          },
        });
      }
    });
    child.once('error', (error) => reject(new Error(`redis-server is needed (apt-get install redis-server): ${error.message}`)));
  });
}

/** `server`'s metrics as { name: value } (the app secret is a bearer token for them). */
async function metrics(server) {
  const response = await fetch(`http://127.0.0.1:${server.port}/metrics`, {
    headers: { authorization: `Bearer ${APP.secret}` },
  });
  assert.equal(response.status, 200, 'metrics');
  const values = {};
  for (const line of (await response.text()).split('\n')) {
    const match = /^([a-z_]+) (\S+)$/.exec(line);
    if (match) values[match[1]] = Number(match[2]);
  }
  return values;
}

/** Waits until `check()` is truthy, polling. */
async function eventually(check, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}


module.exports = {
  APP,
  VERSIONS,
  startServer,
  serverPerSuite,
  serverSdk,
  browser,
  next,
  nextErrorCode,
  connected,
  subscribed,
  silence,
  sleep,
  freePort,
  startRedis,
  metrics,
  eventually,
};
