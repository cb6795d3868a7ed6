// Reconnect storm: N roomcast.js clients (in several Node processes) on two nodes behind nginx;
// one node is killed with SIGKILL; how do its clients come back? Prints, per 250 ms after the
// kill, how many reconnect attempts started and how many sessions opened again, and the time
// until every client was open again. Not a test: run by hand (docs/benchmarks.md).
//   node --experimental-websocket tools/bench/reconnect_storm.mjs --bin build/release/roomcast \
//        --clients 4000 --procs 4 --spread 3000 [--json out.json]
// Needs redis-server, rabbitmq-server and nginx (scripts/); starts and stops them itself.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startCluster, waitFor, sleep } from '../../tests/js/support/cluster.mjs';

const self = fileURLToPath(import.meta.url);

if (process.argv[2] === '--worker') {
  // One process's share of the clients: reports when all are open, then every attempt and open.
  const { connect } = await import('../../web/roomcast.js');
  const [, , , url, n, spread] = process.argv;
  const events = [];
  const clients = [];
  class Rec extends WebSocket {
    constructor(u) { super(u); events.push(['attempt', performance.timeOrigin + performance.now()]); }
  }
  let open = 0;
  for (let i = 0; i < Number(n); ++i) {
    const c = connect({ url: url.replace('{i}', `${process.pid}-${i}`), WebSocket: Rec,
      backoff: { minMs: 250, maxMs: 10000, spreadMs: Number(spread) } });
    let first = true;
    c.on('welcome', (w) => {
      if (first) { first = false; ++open; if (open === Number(n)) process.send({ type: 'ready' }); return; }
      events.push(['open', performance.timeOrigin + performance.now(), w.node]);
    });
    clients.push(c);
    if (i % 200 === 199) await sleep(50);  // join at a few thousand per second, not all at once
  }
  process.on('message', (m) => {
    if (m.type === 'report') process.send({ type: 'report', events, nodes: clients.map((c) => c.node) });
    if (m.type === 'stop') { for (const c of clients) c.close(); setTimeout(() => process.exit(0), 200); }
  });
} else {
  const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : def; };
  const bin = arg('bin', 'build/release/roomcast');
  const total = Number(arg('clients', '4000'));
  const procs = Number(arg('procs', '4'));
  const spread = Number(arg('spread', '3000'));
  const cluster = await startCluster({ bin, nodes: 2, bus: 'rabbitmq' });
  const workers = [];
  try {
    const url = cluster.wsUrl('storm', 'STU', 'u{i}');
    for (let p = 0; p < procs; ++p) {
      const w = fork(self, ['--worker', url, String(Math.ceil(total / procs)), String(spread)],
        { execArgv: ['--experimental-websocket', '--no-warnings'] });
      w.ready = new Promise((r) => w.on('message', (m) => { if (m.type === 'ready') r(); }));
      workers.push(w);
    }
    await Promise.race([Promise.all(workers.map((w) => w.ready)), sleep(120000).then(() => { throw new Error('clients did not all open'); })]);
    await sleep(1000);
    const victim = cluster.nodes[0];
    const killedAt = performance.timeOrigin + performance.now();
    await victim.kill9();
    await sleep(spread + 8000);
    const reports = await Promise.all(workers.map((w) => new Promise((r) => {
      w.on('message', (m) => { if (m.type === 'report') r(m); });
      w.send({ type: 'report' });
    })));
    const attempts = [], opens = [];
    let onVictim = 0;
    for (const r of reports) {
      for (const [kind, at] of r.events) (kind === 'attempt' ? attempts : opens).push(at - killedAt);
      onVictim += r.nodes.filter((n) => n === victim.id).length;
    }
    const later = (xs) => xs.filter((t) => t >= 0).sort((a, b) => a - b);
    const a = later(attempts), o = later(opens);
    const bucket = 250;
    const hist = (xs) => { const h = []; for (const t of xs) { const b = Math.floor(t / bucket); h[b] = (h[b] || 0) + 1; } return Array.from(h, (v) => v || 0); };
    const perSecondMax = (xs) => { let m = 0; for (let i = 0, j = 0; i < xs.length; ++i) { while (xs[i] - xs[j] > 1000) ++j; m = Math.max(m, i - j + 1); } return m; };
    const result = {
      clients: total, procs, spread_ms: spread, moved: o.length, still_on_dead_node: onVictim,
      attempts: a.length, failed_attempts: a.length - o.length,
      last_open_ms: o.length ? Math.round(o.at(-1)) : null, median_open_ms: o.length ? Math.round(o[o.length >> 1]) : null,
      densest_second_opens: perSecondMax(o), attempts_per_250ms: hist(a), opens_per_250ms: hist(o),
    };
    console.log(JSON.stringify(result, null, 1));
    const out = arg('json', '');
    if (out) fs.writeFileSync(out, JSON.stringify(result, null, 1));
  } finally {
    for (const w of workers) w.send({ type: 'stop' });
    await sleep(500);
    await cluster.stop();
  }
}
