// The SSE fallback across a kill -9 behind nginx (issue 14): two roomcast nodes (RabbitMQ bus,
// Redis registry and history) behind deploy/nginx.conf's proxy. Plain EventSource clients (the
// browser's reconnection: the same URL again, with Last-Event-ID) and roomcast.js clients on
// transports ['sse'] (reconnect with since/epoch, publish with POST) stream one room while a
// backend publishes 20 msgs/s; the node holding about half of them is killed with SIGKILL. Every
// client must end with every seq exactly once, in order, and no gap.
//   ROOMCAST_BIN=build/dev/roomcast node --test tests/js/integration/sse_failover.test.mjs
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../../../web/roomcast.js';
import { startCluster, waitFor, sleep } from '../support/cluster.mjs';
import { NodeEventSource } from '../support/event_source.mjs';

const bin = process.env.ROOMCAST_BIN;
if (!bin) throw new Error('set ROOMCAST_BIN to the roomcast binary');

const RAW = 30;
const LIB = 10;
const RATE = 20;  // msgs/s
const BEFORE_KILL_MS = 2000;
const AFTER_KILL_MS = 5000;

let cluster;
after(async () => { if (cluster) await cluster.stop(); });

test('SSE through nginx: Last-Event-ID (and since/epoch) recover across a kill -9; every seq once, in order', { timeout: 120000 }, async () => {
  cluster = await startCluster({ bin, nodes: 2, bus: 'rabbitmq' });
  const room = 'sse' + Math.random().toString(36).slice(2, 8);
  const httpUrl = (role, user) => cluster.wsUrl(room, role, user).replace(/^ws/, 'http');
  const raw = [];
  for (let i = 0; i < RAW; ++i) {
    const rec = { seqs: [], nodes: [], ids: [], gaps: [], recovered: [], lastIds: [] };
    rec.es = new NodeEventSource(httpUrl('STU', `r${i}`), { retryMs: 300, onAttempt: (id) => rec.lastIds.push(id) });
    rec.es.onmessage = (ev) => {
      const f = JSON.parse(ev.data);
      if (f.type === 'welcome') rec.nodes.push(f.node);
      else if (f.type === 'message' && f.room === room) {
        rec.seqs.push(f.seq);
        rec.ids.push(ev.lastEventId);
      } else if (f.type === 'gap') rec.gaps.push(f);
      else if (f.type === 'recovered') rec.recovered.push(f);
    };
    raw.push(rec);
  }
  const lib = [];
  for (let i = 0; i < LIB; ++i) {
    const c = connect({ url: cluster.wsUrl(room, 'STU', `l${i}`), transports: ['sse'], EventSource: NodeEventSource,
      backoff: { minMs: 100, maxMs: 1000, spreadMs: 1000 } });
    const rec = { c, seqs: [], nodes: [], gaps: [] };
    c.on('message', (m) => { if (m.room === room && m.seq) rec.seqs.push(m.seq); });
    c.on('welcome', (w) => rec.nodes.push(w.node));
    c.on('gap', (g) => rec.gaps.push(g));
    lib.push(rec);
  }
  // A teacher on SSE publishes through POST on its route URL (the role rules of a WebSocket).
  const teacher = connect({ url: cluster.wsUrl(room, 'THE', 't1'), transports: ['sse'], EventSource: NodeEventSource });
  try {
    await waitFor(() => raw.every((r) => r.nodes.length === 1) && lib.every((r) => r.c.state === 'open' && r.nodes.length === 1) &&
      teacher.state === 'open', { ms: 30000, what: 'every stream open' });
    const victim = cluster.nodes[0];
    const onVictim = raw.filter((r) => r.nodes[0] === victim.id).length + lib.filter((r) => r.nodes[0] === victim.id).length;
    assert.ok(onVictim >= 5, `nginx put only ${onVictim} streams on ${victim.id}`);

    let published = 0, stop = false;
    const publisher = (async () => {
      const start = performance.now();
      while (!stop) {
        const n = published + 1;
        for (let tries = 0; ; ++tries) {
          const alive = cluster.nodes.filter((x) => x.running);
          try {
            await cluster.publish({ room, id: `${room}-m${n}`, data: { n } }, alive[tries % alive.length].port);
            break;
          } catch (e) {
            if (tries > 50) throw e;
            await sleep(50);
          }
        }
        published = n;
        await sleep(Math.max(0, start + (published * 1000) / RATE - performance.now()));
      }
    })();
    await sleep(BEFORE_KILL_MS);
    await victim.kill9();
    await sleep(AFTER_KILL_MS);
    stop = true;
    await publisher;
    // The teacher's own publish, through nginx, after the kill: acked with the next seq.
    const ack = await teacher.publish({ n: 'teacher' }, { id: `${room}-t` });
    assert.equal(ack.seq, published + 1);
    published += 1;

    const all = [...raw, ...lib];
    await waitFor(() => all.every((r) => r.seqs.length >= published), { ms: 30000, what: 'every stream has every seq' }).catch((e) => {
      const behind = all.filter((r) => r.seqs.length < published);
      throw new Error(`${e.message}: ${behind.length} behind, e.g. ${JSON.stringify(behind.slice(0, 3).map((r) => ({ n: r.seqs.length, nodes: r.nodes, gaps: r.gaps })))}\n${cluster.logs()}`);
    });
    const expected = Array.from({ length: published }, (_, i) => i + 1);
    for (const [i, r] of all.entries()) {
      assert.deepEqual(r.seqs, expected, `stream ${i} got ${r.seqs.length} seqs, not 1..${published} once in order`);
      assert.deepEqual(r.gaps, [], `stream ${i} got a gap`);
    }
    const moved = raw.filter((r) => r.nodes[0] === victim.id);
    for (const r of moved) {
      assert.ok(r.nodes.length >= 2 && r.nodes.at(-1) !== victim.id, `moved to ${r.nodes}`);
      // The browser's way: the reconnect carried the last id it had, and the node recovered from it.
      const resumed = r.lastIds.slice(1).filter((id) => id !== '');
      assert.ok(resumed.length >= 1 && /^[0-9a-f]+:\d+$/.test(resumed[0]), `Last-Event-ID sent: ${r.lastIds}`);
      assert.ok(r.recovered.length >= 1 || r.seqs.length === published, 'recovered after the reconnect');
    }
    // Each message's id is its position: "<epoch>:<seq>".
    for (const r of raw) r.ids.forEach((id, k) => assert.equal(id.split(':')[1], String(r.seqs[k])));
    const m = await (await fetch(`http://127.0.0.1:${cluster.nodes[1].port}/metrics`)).text();
    const sse = Number(/^roomcast_sse_connections (\d+)$/m.exec(m)[1]);
    assert.ok(sse >= RAW + LIB, `roomcast_sse_connections ${sse} on the survivor`);
    console.log(`# ${moved.length} raw EventSource streams moved off the killed node; ${published} messages`);
  } finally {
    for (const r of raw) r.es.close();
    for (const r of lib) r.c.close();
    teacher.close();
  }
});
