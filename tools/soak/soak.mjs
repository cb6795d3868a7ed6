// Soak: a three-node cluster behind nginx (its own redis-server and rabbitmq-server) under churn,
// fan-out, slow consumers and kicks for --minutes, with a node restart (SIGTERM, drain, start on
// the same port) at 1/3 and a broker restart at 2/3. A checked subset of roomcast.js clients must
// lose nothing: each gets every message the API accepted for its room, once, in seq order. Every
// 10 s it samples each node's RSS, open fds, connections and queued bytes; at the end it writes
// build/soak/result.json and the plots build/soak/*.svg (tools/soak/report.mjs turns them into
// docs/soak.md). Not a test: `make soak` (SOAK_MINUTES=30).
//   node --experimental-websocket tools/soak/soak.mjs --bin build/release/roomcast --minutes 30
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startCluster, sleep, sourceDir, waitFor } from '../../tests/js/support/cluster.mjs';

const { connect } = await import('../../web/roomcast.js');

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const bin = path.resolve(arg('bin', path.join(sourceDir, 'build/release/roomcast')));
const minutes = Number(arg('minutes', '30'));
const out = path.resolve(arg('out', path.join(sourceDir, 'build/soak')));
const ROOMS = Number(arg('rooms', '20'));             // classes, each with checked clients and churn
const CHECKED_PER_ROOM = Number(arg('checked', '3'));  // roomcast.js clients that must lose nothing
const CHURN = Number(arg('churn', '600'));             // plain WebSocket clients, replaced continually
const CHURN_PER_S = Number(arg('churn-rate', '20'));   // of them closed and opened again per second
const MSGS_PER_S = Number(arg('rate', '50'));          // API publishes per second over all rooms
const SAMPLE_MS = 10_000;
const durationMs = minutes * 60_000;
const apiKey = 'soak-key';
fs.mkdirSync(out, { recursive: true });

const log = (...a) => console.log(new Date().toISOString().slice(11, 19), ...a);
const rooms = Array.from({ length: ROOMS }, (_, i) => `soak-c${i}`);
const bigRoom = 'soak-big';  // 4 KiB messages: where slow consumers fill their queue

const cluster = await startCluster({
  bin, nodes: 3, apiKey, bus: 'rabbitmq',
  // Small socket buffers and queues so that slow consumers are found within seconds. A dedupe
  // window of 10,000 ids fills within the warm-up (70 messages/s), as every bounded table must:
  // after it, memory must stay flat.
  extra: ['--max-queue-bytes', '256KiB', '--send-buffer-bytes', '16384', '--history', '* 2000 10m',
    '--dedupe-window', '10000', '--log-level', 'warn'],
});
log(`cluster up: nginx :${cluster.lbPort}, nodes ${cluster.nodes.map((n) => n.port).join(' ')}`);

let stopping = false;
const counts = { published: 0, publishRefused: 0, churnOpened: 0, churnClosed: 0, slowOpened: 0,
  kicks: 0, disconnects: 0, errors: [] };
const note = (what) => { if (counts.errors.length < 50) counts.errors.push(`${new Date().toISOString()} ${what}`); };

// ---- the checked clients: roomcast.js, every seq of their room once and in order ----
const accepted = new Map(rooms.map((r) => [r, []]));  // room -> [{id, seq}] the API accepted
const checked = [];
for (const room of rooms) {
  for (let k = 0; k < CHECKED_PER_ROOM; ++k) {
    const rec = { room, user: `chk-${room}-${k}`, ids: [], seqs: [], gaps: [], reconnects: 0 };
    rec.c = connect({ url: cluster.wsUrl(room, 'STU', rec.user), backoff: { minMs: 250, maxMs: 4000, spreadMs: 2000 } });
    rec.c.on('message', (m) => {
      if (m.room !== room) return;
      rec.ids.push(m.data && m.data.id);
      rec.seqs.push(m.seq);
    });
    rec.c.on('gap', (g) => rec.gaps.push(g));
    rec.c.on('reconnect', () => { rec.reconnects += 1; });
    checked.push(rec);
  }
}
await waitFor(() => checked.every((r) => r.c.state === 'open'), { ms: 30000, what: 'checked clients open' });
log(`${checked.length} checked clients open`);

// ---- churn: plain WebSocket clients that come and go, some kicked or disconnected by the backend ----
const churn = new Map();  // user -> WebSocket
let churnSeq = 0;
function openChurn() {
  const user = `ch${churnSeq++}`;
  const room = rooms[churnSeq % rooms.length];
  const ws = new WebSocket(cluster.wsUrl(room, 'STU', user, churnSeq % 3 ? 'pc' : 'phone'));
  ws.onopen = () => { counts.churnOpened += 1; };
  ws.onclose = () => { churn.delete(user); };
  ws.onerror = () => {};
  ws.onmessage = () => {};
  churn.set(user, { ws, room });
}
function closeChurn(n) {
  const users = [...churn.keys()].slice(0, n);
  for (const u of users) {
    churn.get(u).ws.close();
    churn.delete(u);
    counts.churnClosed += 1;
  }
}
for (let i = 0; i < CHURN; ++i) {
  openChurn();
  if (i % 100 === 99) await sleep(100);
}

// ---- slow consumers: upgrade, then never read; the node must drop them and forget them ----
// A paused socket never reads the close, so the node's counters say what happened: its queue went
// over max_queue_bytes (4008, slow_consumer) or it never answered a ping (ping_timeout), whichever
// came first (nginx's socket buffers hold megabytes before the node's queue fills).
const slow = new Set();
function openSlow() {
  const s = net.connect(cluster.lbPort, '127.0.0.1', () => {
    s.write(`GET /demo/websocket/${bigRoom}/STU/slow${Math.random().toString(36).slice(2, 8)}/demo/pc HTTP/1.1\r\n` +
      `Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n` +
      `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
    s.once('data', () => s.pause());  // read the 101, then nothing more
  });
  counts.slowOpened += 1;
  slow.add(s);
  s.on('close', () => slow.delete(s));
  s.on('error', () => {});
  // Our side is closed after 2 minutes (the node has dropped it by then: ping_interval + pong_timeout).
  setTimeout(() => { if (slow.delete(s)) s.destroy(); }, 120_000).unref();
}

// ---- load: API publishes (numbered per room), a 4 KiB stream to the big room, kicks ----
const api = async (target, body) => {
  const r = await fetch(`${cluster.url}${target}`, { method: 'POST', headers: cluster.headers(), body: JSON.stringify(body) });
  return { status: r.status, body: await r.json().catch(() => ({})) };
};
let msgSeq = 0;
async function publishOne() {
  const room = rooms[msgSeq % rooms.length];
  const id = `soak-${msgSeq++}`;
  try {
    const r = await api('/api/publish', { room, id, data: { id, t: Date.now() } });
    if (r.status === 200 || r.status === 202) {
      accepted.get(room).push({ id, seq: r.body.seq || 0 });
      counts.published += 1;
    } else {
      counts.publishRefused += 1;  // 503 while the broker is down and the outage buffer full: not expected by anyone
    }
  } catch (e) {
    counts.publishRefused += 1;
    note(`publish ${id}: ${e.message}`);
  }
}
const big = 'x'.repeat(4096);
async function publishBig() {
  try { await api('/api/publish', { room: bigRoom, data: { big } }); } catch { /* counted by the node */ }
}
async function kickSomeone() {
  const users = [...churn.entries()];
  if (users.length < 2) return;
  const [u1, c1] = users[Math.floor(Math.random() * users.length)];
  const [u2] = users[Math.floor(Math.random() * users.length)];
  try {
    if ((await api(`/api/rooms/${c1.room}/kick`, { user: u1, reason: 'soak' })).status === 200) counts.kicks += 1;
    if ((await api('/api/disconnect', { user: u2, code: 4000, reason: 'soak' })).status === 200) counts.disconnects += 1;
  } catch (e) { note(`kick: ${e.message}`); }
}

const timers = [];
const every = (ms, fn) => timers.push(setInterval(() => { if (!stopping) fn(); }, ms));
every(Math.max(1, Math.round(1000 / MSGS_PER_S)), publishOne);
every(50, publishBig);
every(1000, () => { closeChurn(CHURN_PER_S); while (churn.size < CHURN) openChurn(); });
every(15_000, () => { for (let i = 0; i < 5; ++i) openSlow(); });
every(5_000, kickSomeone);

// ---- sampling ----
const samples = [];  // {t, nodes: [{id, pid, rss_kib, fds, connections, queued_bytes}]}
const started = Date.now();
function procStat(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
    return { rss_kib: rss, fds: fs.readdirSync(`/proc/${pid}/fd`).length };
  } catch { return { rss_kib: null, fds: null }; }
}
async function metric(port, name) {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { headers: cluster.headers() })).text();
    const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  } catch { return null; }
}
async function sample(event = '') {
  const nodes = [];
  for (const [i, n] of cluster.nodes.entries()) {
    const m = (name) => (n.running ? metric(n.port, name) : null);
    nodes.push({ node: i, pid: n.running ? n.pid : null, ...(n.running ? procStat(n.pid) : { rss_kib: null, fds: null }),
      connections: await m('roomcast_connections'), queued_bytes: await m('roomcast_queued_bytes'),
      slow_closes: await m('roomcast_closes_total\\{reason="slow_consumer"\\}'),
      ping_closes: await m('roomcast_closes_total\\{reason="ping_timeout"\\}') });
  }
  samples.push({ t: (Date.now() - started) / 1000, event, nodes });
}
await sample('start');
timers.push(setInterval(() => { sample().catch((e) => note(`sample: ${e.message}`)); }, SAMPLE_MS));

// ---- the faults ----
const events = [];
await sleep(durationMs / 3);
log('restarting node 1 (SIGTERM, drain, start on the same port)');
events.push({ t: (Date.now() - started) / 1000, what: 'node 1 restart' });
await cluster.restartNode(1);
await sample('node 1 restarted');
await sleep(durationMs / 3);
log('restarting the broker');
events.push({ t: (Date.now() - started) / 1000, what: 'broker restart' });
await cluster.restartBroker();
await sample('broker restarted');
await sleep(durationMs / 3);

// ---- the end: stop the load, let the checked clients catch up, compare ----
stopping = true;
for (const t of timers) clearInterval(t);
log('load stopped; waiting for the checked clients to catch up');
const expected = (room) => accepted.get(room).map((a) => a.id);
await waitFor(() => checked.every((r) => expected(r.room).every((id) => r.ids.includes(id))), { ms: 60000, what: 'catch up' })
  .catch(() => {});
await sample('end');

let lost = 0, duplicated = 0, disordered = 0, gaps = 0;
for (const r of checked) {
  const got = new Map();
  for (const id of r.ids) got.set(id, (got.get(id) || 0) + 1);
  for (const id of expected(r.room)) if (!got.has(id)) ++lost;
  for (const n of got.values()) if (n > 1) duplicated += n - 1;
  for (let i = 1; i < r.seqs.length; ++i) if (r.seqs[i] !== undefined && r.seqs[i - 1] !== undefined && r.seqs[i] <= r.seqs[i - 1]) ++disordered;
  gaps += r.gaps.length;
}

// Flatness: per node, RSS and fds after warm-up (the first sixth of the run, and 60 s after its
// restart for node 1): the mean of the last three samples against the first three.
const warm = durationMs / 6 / 1000;
const restartAt = events[0].t;
function flatness(key) {
  return cluster.nodes.map((_, i) => {
    const from = i === 1 ? Math.max(warm, restartAt + 60) : warm;
    const v = samples.filter((s) => s.t >= from && s.event !== 'end').map((s) => s.nodes[i][key]).filter((x) => x != null);
    if (v.length < 6) return { node: i, samples: v.length, change_pct: null };
    const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
    const first = mean(v.slice(0, 3)), last = mean(v.slice(-3));
    return { node: i, samples: v.length, first: Math.round(first), last: Math.round(last),
      min: Math.min(...v), max: Math.max(...v), change_pct: +((last - first) / first * 100).toFixed(2) };
  });
}
// Closes the nodes counted, over their restarts (a counter that went down started again from 0).
function closes(key) {
  let total = 0;
  for (let i = 0; i < cluster.nodes.length; ++i) {
    let prev = 0;
    for (const s of samples) {
      const v = s.nodes[i][key];
      if (v == null) continue;
      total += v >= prev ? v - prev : v;
      prev = v;
    }
  }
  return total;
}
counts.slowConsumerCloses = closes('slow_closes');
counts.pingTimeoutCloses = closes('ping_closes');
const result = {
  minutes, rooms: ROOMS, checked_clients: checked.length, churn_clients: CHURN, churn_per_s: CHURN_PER_S,
  msgs_per_s: MSGS_PER_S, counts, events, lost, duplicated, disordered, gaps,
  reconnects: checked.reduce((n, r) => n + r.reconnects, 0),
  expected_per_client: Math.round(checked.reduce((n, r) => n + expected(r.room).length, 0) / checked.length),
  rss: flatness('rss_kib'), fds: flatness('fds'), samples,
};
fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify(result, null, 1));
log(`lost ${lost}, duplicated ${duplicated}, out of order ${disordered}, gaps ${gaps}; published ${counts.published} ` +
  `(refused ${counts.publishRefused}); churn ${counts.churnOpened} opened; slow consumers ${counts.slowOpened} ` +
  `(the nodes closed ${counts.slowConsumerCloses} as slow consumers, ${counts.pingTimeoutCloses} for ping timeouts); kicks ${counts.kicks}, disconnects ${counts.disconnects}`);
log('rss change after warm-up (%):', result.rss.map((r) => r.change_pct).join(' '));
log('fds change after warm-up (%):', result.fds.map((r) => r.change_pct).join(' '));

for (const r of checked) r.c.close();
for (const { ws } of churn.values()) ws.close();
for (const s of [...slow]) { slow.delete(s); s.destroy(); }
await cluster.stop();
process.exit(lost === 0 && duplicated === 0 && disordered === 0 ? 0 : 1);
