// A real cluster for the JavaScript tests (library and browser): redis-server, the run's
// rabbitmq-server (ROOMCAST_TEST_AMQP_URI from scripts/run-tests.sh, or one started here),
// roomcast nodes and nginx in front, all on free loopback ports and temp dirs, from the scripts in
// scripts/. stop() stops exactly what was started, by pid or by the script that started it.
import { spawn, execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const sourceDir = path.resolve(here, '../../..');
const scripts = process.env.ROOMCAST_TEST_SCRIPTS || path.join(sourceDir, 'scripts');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn() every `every` ms until it returns a truthy value (returned) or `ms` passed (throws).
export async function waitFor(fn, { ms = 10000, every = 50, what = 'condition' } = {}) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
    await sleep(every);
  }
}

function freePort(pair = false) {
  return Number(execFileSync(path.join(scripts, 'free-port.sh'), pair ? ['--pair'] : [], { encoding: 'utf8' }).trim());
}

function script(name, ...args) {
  return execFileSync(path.join(scripts, name), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

export class Node {
  constructor(id, port, proc) {
    this.id = id;
    this.port = port;
    this.proc = proc;
    this.log = '';
    this.exit = null;  // {code, signal} once exited
    proc.stderr.on('data', (d) => { this.log += d; });
    this.exited = new Promise((resolve) => proc.on('exit', (code, signal) => { this.exit = { code, signal }; resolve(this.exit); }));
  }
  get pid() { return this.proc.pid; }
  get running() { return this.exit === null; }
  kill9() { if (this.running) this.proc.kill('SIGKILL'); return this.exited; }
  async stop() {
    if (!this.running) return;
    this.proc.kill('SIGTERM');
    const done = await Promise.race([this.exited, sleep(15000).then(() => null)]);
    if (!done) await this.kill9();
  }
}

// opts: { bin, nodes: 2, apiKey, devKill, bus: 'rabbitmq'|'redis', extra: [] }
export async function startCluster(opts) {
  const c = new Cluster(opts);
  try {
    await c.start();
  } catch (e) {
    await c.stop();
    throw e;
  }
  return c;
}

export class Cluster {
  constructor({ bin, nodes = 2, apiKey = '', devKill = false, bus = 'rabbitmq', extra = [] }) {
    this.bin = bin;
    this.count = nodes;
    this.apiKey = apiKey;
    this.devKill = devKill;
    this.bus = bus;
    this.extra = extra;
    this.dir = fs.mkdtempSync(path.join(process.env.ROOMCAST_TEST_TMP || os.tmpdir(), 'jscluster-'));
    this.prefix = 'rcjs' + Math.random().toString(36).slice(2, 10);
    this.nodes = [];
    this.started = { redis: false, rabbitmq: false, nginx: false };
  }

  async start() {
    const redisPort = freePort();
    this.redis = script('redis.sh', 'start', path.join(this.dir, 'redis'), String(redisPort));
    this.started.redis = true;
    this.amqp = process.env.ROOMCAST_TEST_AMQP_URI;
    if (this.bus === 'rabbitmq' && !this.amqp) {
      this.amqp = script('rabbitmq.sh', 'start', path.join(this.dir, 'rabbitmq'), String(freePort(true)));
      this.started.rabbitmq = true;
    }
    for (let i = 0; i < this.count; ++i) await this.startNode(`n${i}-${this.prefix}`);
    this.lbPort = freePort();
    script('nginx.sh', 'start', path.join(this.dir, 'nginx'), String(this.lbPort), ...this.nodes.map((n) => String(n.port)));
    this.started.nginx = true;
  }

  args(id, port) {
    const a = ['--listen-address', '127.0.0.1', '--port', String(port), '--node-id', id, '--threads', '2',
      '--web-root', path.join(sourceDir, 'web'), '--registry', 'redis', '--redis-address', this.redis,
      '--registry-heartbeat', '500ms', '--registry-node-ttl', '2s', '--rabbitmq-prefix', this.prefix,
      '--unbind-grace', '200ms', '--bus', this.bus];
    if (this.bus === 'rabbitmq') a.push('--rabbitmq-uris', this.amqp, '--rabbitmq-queue-expires', '60s');
    if (this.bus === 'redis') a.push('--redis-prefix', this.prefix);
    if (this.apiKey) a.push('--api-key', this.apiKey);
    if (this.devKill) a.push('--dev-kill', 'true');
    return a.concat(this.extra);
  }

  // at: the index of a node to replace (a restart on the same port, which nginx knows), else a new one.
  async startNode(id, at = -1) {
    const port = at >= 0 ? this.nodes[at].port : freePort();
    const proc = spawn(this.bin, this.args(id, port), { stdio: ['ignore', 'ignore', 'pipe'] });
    const node = new Node(id, port, proc);
    if (at >= 0) this.nodes[at] = node; else this.nodes.push(node);
    await waitFor(async () => {
      if (!node.running) throw new Error(`node ${id} exited: ${JSON.stringify(node.exit)}\n${node.log.slice(-2000)}`);
      const r = await fetch(`http://127.0.0.1:${port}/readyz`);
      return r.ok;
    }, { ms: 20000, what: `node ${id} ready` }).catch((e) => { throw new Error(`${e.message}\n${node.log.slice(-2000)}`); });
    return node;
  }

  // SIGTERM (drain) node i and start it again with the same id and port.
  async restartNode(i) {
    const old = this.nodes[i];
    await old.stop();
    return this.startNode(old.id, i);
  }

  // Stops the broker this cluster started and starts it again on the same port and data dir.
  // Asynchronous: the caller's clients keep answering pings while the broker takes its seconds.
  async restartBroker() {
    if (!this.started.rabbitmq) throw new Error('the broker is not this cluster\'s (ROOMCAST_TEST_AMQP_URI is set)');
    const dir = path.join(this.dir, 'rabbitmq');
    const run = (...args) => new Promise((resolve, reject) => {
      execFile(path.join(scripts, 'rabbitmq.sh'), args, (e) => (e ? reject(e) : resolve()));
    });
    await run('stop', dir);
    await run('start', dir, String(new URL(this.amqp).port));
  }

  get url() { return `http://127.0.0.1:${this.lbPort}`; }
  wsUrl(room, role, user, platform = 'pc', token = 'demo') {
    return `ws://127.0.0.1:${this.lbPort}/demo/websocket/${room}/${role}/${user}/${token}/${platform}`;
  }
  nodeById(id) { return this.nodes.find((n) => n.id === id); }

  headers() {
    const h = { 'Content-Type': 'application/json' };
    if (this.apiKey) h['X-API-Key'] = this.apiKey;
    return h;
  }
  async publish(body, port = null) {
    const base = port ? `http://127.0.0.1:${port}` : this.url;
    const r = await fetch(`${base}/api/publish`, { method: 'POST', headers: this.headers(), body: JSON.stringify(body) });
    const j = await r.json();
    if (r.status >= 300) throw new Error(`publish answered ${r.status}: ${JSON.stringify(j)}`);
    return j;
  }
  async get(target, port = null) {
    const base = port ? `http://127.0.0.1:${port}` : this.url;
    const r = await fetch(base + target, { headers: this.headers() });
    return { status: r.status, body: await r.json() };
  }

  logs() { return this.nodes.map((n) => `--- ${n.id} (${JSON.stringify(n.exit)})\n${n.log.split('\n').slice(-30).join('\n')}`).join('\n'); }

  async stop() {
    await Promise.all(this.nodes.map((n) => n.stop()));
    const quiet = (f) => { try { f(); } catch { /* already gone */ } };
    if (this.started.nginx) quiet(() => script('nginx.sh', 'stop', path.join(this.dir, 'nginx')));
    if (this.started.rabbitmq) quiet(() => script('rabbitmq.sh', 'stop', path.join(this.dir, 'rabbitmq')));
    if (this.started.redis) quiet(() => script('redis.sh', 'stop', path.join(this.dir, 'redis')));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

// One node without redis or a broker (local bus): for tests that need no cluster.
export async function startSingleNode(bin, args = []) {
  const port = freePort();
  const proc = spawn(bin, ['--listen-address', '127.0.0.1', '--port', String(port), '--threads', '2',
    '--web-root', path.join(sourceDir, 'web'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const node = new Node(`single-${port}`, port, proc);
  await waitFor(async () => {
    if (!node.running) throw new Error(`node exited: ${JSON.stringify(node.exit)}\n${node.log.slice(-2000)}`);
    return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
  }, { ms: 20000, what: 'node healthy' });
  return node;
}
