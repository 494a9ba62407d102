// The kinds of Redis a flarum-ws cluster runs on, each a real Debian
// redis-server on loopback: one plain server, one speaking only TLS with
// client certificates required, a master with a replica
// watched by three Sentinels, and the Redis Cluster of three masters and
// three replicas that tests/services/start.sh shares between the tests,
// plainly and over TLS.
//
// Each kind starts as { name, url, env?, outage(), stop() } (`env`: the
// settings a node needs besides the URL, such as TLS files); `outage()`
// takes down what the nodes publish to (the server; the master; a shard
// master) as a crash would and resolves with a function that brings it
// back (after which a Sentinel or the cluster has promoted a replica).
'use strict';

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./harness');

/** `redis-cli -p port args…`'s output ('' when it cannot connect). */
function cli(port, ...args) {
  try {
    return execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

async function plain() {
  const port = await h.freePort();
  let redis = await h.startRedis(port);
  return {
    name: 'one Redis server',
    url: `redis://127.0.0.1:${port}`,
    async outage() {
      await redis.stop();
      return async () => {
        redis = await h.startRedis(port);
      };
    },
    pause: () => redis.child.kill('SIGSTOP'),
    resume: () => redis.child.kill('SIGCONT'),
    stop: () => redis.stop(),
  };
}

/** One redis-server speaking only TLS, client certificates required (the shared cluster's test CA). */
async function tls() {
  const dir = process.env.TEST_REDIS_CLUSTER_DIR;
  if (!dir) throw new Error('TEST_REDIS_CLUSTER_DIR is not set: run tests/services/start.sh (tests/run-all.sh does); its test CA signs this server too');
  const files = path.join(dir, 'tls');
  const port = await h.freePort();
  const args = [
    '--port', '0', '--tls-port', String(port),
    '--tls-cert-file', path.join(files, 'redis.pem'), '--tls-key-file', path.join(files, 'redis.key'),
    '--tls-ca-cert-file', path.join(files, 'ca.pem'), '--tls-auth-clients', 'yes',
  ];
  let redis = await h.startRedis(port, args);
  return {
    name: 'one Redis server over TLS',
    url: `rediss://127.0.0.1:${port}`,
    env: {
      FLARUM_WS_REDIS_CA_FILE: path.join(files, 'ca.pem'),
      FLARUM_WS_REDIS_CLIENT_CERT: path.join(files, 'client.pem'),
      FLARUM_WS_REDIS_CLIENT_KEY: path.join(files, 'client.key'),
    },
    async outage() {
      await redis.stop();
      return async () => {
        redis = await h.startRedis(port, args);
      };
    },
    stop: () => redis.stop(),
  };
}

async function sentinel() {
  const masterPort = await h.freePort();
  const servers = new Map();
  servers.set(masterPort, await h.startRedis(masterPort));
  const replicaPort = await h.freePort();
  servers.set(replicaPort, await h.startRedis(replicaPort, ['--replicaof', '127.0.0.1', String(masterPort)]));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flarum-ws-sentinels-'));
  const sentinels = [];
  const ports = [];
  for (let n = 0; n < 3; n++) {
    const port = await h.freePort();
    // A sentinel rewrites its own file as it learns: one each.
    const file = path.join(dir, `sentinel-${n}.conf`);
    fs.writeFileSync(file, [
      `port ${port}`,
      'bind 127.0.0.1',
      `sentinel monitor mymaster 127.0.0.1 ${masterPort} 2`,
      'sentinel down-after-milliseconds mymaster 1000',
      'sentinel failover-timeout mymaster 5000',
      '',
    ].join('\n'));
    sentinels.push(spawn('redis-server', [file, '--sentinel'], { stdio: 'ignore' }));
    ports.push(port);
  }
  await h.eventually(() => ports.every((port) => cli(port, 'SENTINEL', 'replicas', 'mymaster').includes('slave')), 15000, 'the sentinels to find the replica');
  const masterNow = () => Number(cli(ports[0], 'SENTINEL', 'get-master-addr-by-name', 'mymaster').split('\n')[1]);
  return {
    name: 'a Sentinel-watched master',
    url: `redis+sentinel://${ports.map((p) => `127.0.0.1:${p}`).join(',')}/mymaster`,
    async outage() {
      const port = masterNow();
      await servers.get(port).stop();
      await h.eventually(() => masterNow() !== port, 15000, 'the sentinels to promote the replica');
      // The old master comes back as a replica of the new one.
      return async () => {
        servers.set(port, await h.startRedis(port, ['--replicaof', '127.0.0.1', String(masterNow())]));
      };
    },
    async stop() {
      sentinels.forEach((child) => child.kill('SIGKILL'));
      await Promise.all([...servers.values()].map((server) => server.stop()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The ports of the Redis Cluster's working masters, as the node at `seeds`' first address lists them. */
function clusterMasters(seeds) {
  const [host, port] = seeds.split(',')[0].split(':');
  return cli(port, '-h', host, 'CLUSTER', 'NODES')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields.length > 8 && fields[2].split(',').includes('master') && !fields[2].includes('fail'))
    .map((fields) => Number(fields[1].split('@')[0].split(':')[1]));
}

async function cluster() {
  const seeds = process.env.TEST_REDIS_CLUSTER;
  const dir = process.env.TEST_REDIS_CLUSTER_DIR;
  if (!seeds || !dir) {
    throw new Error('TEST_REDIS_CLUSTER is not set: start the shared Redis Cluster with tests/services/start.sh (tests/run-all.sh does)');
  }
  return {
    name: 'a Redis Cluster (sharded pub/sub)',
    url: `redis+cluster://${seeds}`,
    async outage() {
      const port = clusterMasters(seeds)[0];
      const node = path.join(dir, String(port));
      process.kill(Number(fs.readFileSync(path.join(node, 'redis.pid'), 'utf8')), 'SIGKILL');
      const other = seeds.split(',').map((s) => Number(s.split(':')[1])).find((p) => p !== port);
      await h.eventually(() => !clusterMasters(`127.0.0.1:${other}`).includes(port) && cli(other, 'CLUSTER', 'INFO').includes('cluster_state:ok'), 15000, `a replica to take over from the shard master on ${port}`);
      return async () => {
        // Started again as tests/services/start.sh started it.
        execFileSync('redis-server', [path.join(node, 'redis.conf')], { stdio: 'ignore' });
        await h.eventually(() => cli(port, 'CLUSTER', 'INFO').includes('cluster_state:ok'), 15000, `the old master on ${port} to rejoin as a replica`);
      };
    },
    /** Each master's port and the shard channels of `prefix` it carries, with their subscribers. */
    lanes(prefix) {
      return clusterMasters(seeds).map((port) => {
        const names = cli(port, 'PUBSUB', 'SHARDCHANNELS', `${prefix}:*`).split('\n').filter(Boolean);
        const counts = names.length ? cli(port, 'PUBSUB', 'SHARDNUMSUB', ...names).split('\n').filter(Boolean) : [];
        const subscribers = counts.filter((_, i) => i % 2 === 1).map(Number);
        return { port, lanes: names.length, subscribers };
      });
    },
    async stop() {},
  };
}

/** The same Redis Cluster over TLS: its nodes' TLS ports, client certificates required. */
async function clusterTls() {
  const seeds = process.env.TEST_REDIS_CLUSTER_TLS;
  if (!seeds) {
    throw new Error('TEST_REDIS_CLUSTER_TLS is not set: start the shared Redis Cluster with tests/services/start.sh (tests/run-all.sh does)');
  }
  const tls = path.join(process.env.TEST_REDIS_CLUSTER_DIR, 'tls');
  return {
    ...(await cluster()),
    name: 'a Redis Cluster over TLS (sharded pub/sub, client certificates)',
    url: `rediss+cluster://${seeds}`,
    env: {
      FLARUM_WS_REDIS_CA_FILE: path.join(tls, 'ca.pem'),
      FLARUM_WS_REDIS_CLIENT_CERT: path.join(tls, 'client.pem'),
      FLARUM_WS_REDIS_CLIENT_KEY: path.join(tls, 'client.key'),
    },
  };
}

/** Every kind, by name; `REDIS_KINDS=plain,cluster` picks some for a run. */
const KINDS = { plain, tls, sentinel, cluster, 'cluster-tls': clusterTls };

/** The kinds whose outage is a failover to a replica (the others are restarted). */
const FAIL_OVER = new Set(['sentinel', 'cluster', 'cluster-tls']);

/** The kinds to test: `defaults` (every kind when not given), or REDIS_KINDS. */
function selected(defaults = Object.keys(KINDS)) {
  const names = process.env.REDIS_KINDS ? process.env.REDIS_KINDS.split(',') : defaults;
  return names.map((name) => {
    if (!KINDS[name]) throw new Error(`unknown Redis kind ${name} in REDIS_KINDS (${Object.keys(KINDS).join(', ')})`);
    return { name, start: KINDS[name], failsOver: FAIL_OVER.has(name) };
  });
}

module.exports = { selected, cli };
