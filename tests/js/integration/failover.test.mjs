// roomcast.js in Node against real nodes (and, last, a token-checking node: getToken with auth
// frames and refresh). Two roomcast nodes (RabbitMQ bus, Redis registry and
// history) behind nginx. 200 library clients in one room; a backend publishes 20 msgs/s; one node
// is killed with SIGKILL mid-stream. Every client must end with every seq exactly once, in order;
// no client may reconnect before the delay its backoff chose, and the reconnects must spread out.
//   ROOMCAST_BIN=build/dev/roomcast node --experimental-websocket --test tests/js/integration/
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../../../web/roomcast.js';
import { startCluster, startSingleNode, waitFor, sleep } from '../support/cluster.mjs';

const bin = process.env.ROOMCAST_BIN;
if (!bin) throw new Error('set ROOMCAST_BIN to the roomcast binary');

const CLIENTS = 200;
const RATE = 20;          // msgs/s
const BEFORE_KILL_MS = 2000;
const AFTER_KILL_MS = 6000;

// A WebSocket that remembers when each connection attempt started, per client.
function recordingWebSocket(log) {
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      log.push({ at: performance.now(), url: String(url) });
    }
  };
}

let cluster;
after(async () => { if (cluster) await cluster.stop(); });

test('kill -9 under 200 clients: every seq once, in order; reconnects wait for their backoff and spread out', { timeout: 120000 }, async () => {
  cluster = await startCluster({ bin, nodes: 2, bus: 'rabbitmq' });
  const room = 'fo' + Math.random().toString(36).slice(2, 8);
  const clients = [];
  for (let i = 0; i < CLIENTS; ++i) {
    const attempts = [];
    const c = connect({
      url: cluster.wsUrl(room, 'STU', `s${i}`),
      WebSocket: recordingWebSocket(attempts),
      backoff: { minMs: 250, maxMs: 5000, spreadMs: 3000 },
    });
    const rec = { c, attempts, seqs: [], nodes: [], reconnects: [], recovered: [], gaps: [], errors: [] };
    c.on('message', (m) => { if (m.room === room && m.seq) rec.seqs.push(m.seq); });
    c.on('welcome', (w) => rec.nodes.push(w.node));
    c.on('reconnect', (r) => rec.reconnects.push({ at: performance.now(), ...r }));
    c.on('recovered', (f) => rec.recovered.push(f));
    c.on('gap', (f) => rec.gaps.push(f));
    c.on('error', (f) => rec.errors.push(f));
    clients.push(rec);
  }
  try {
    await waitFor(() => clients.every((r) => r.c.state === 'open' && r.nodes.length === 1),
      { ms: 30000, what: 'all clients open' });
    const perNode = (id) => clients.filter((r) => r.nodes[0] === id).length;
    const victim = cluster.nodes[0];
    assert.ok(perNode(victim.id) > 20, `nginx put only ${perNode(victim.id)} clients on ${victim.id}`);

    // The backend: one message at a time with a fixed id, retried until accepted (a publish in
    // flight when its node dies is sent again; the id keeps it from being doubled).
    let published = 0, lastSeq = 0, stop = false, killedAt = 0;
    const publisher = (async () => {
      const start = performance.now();
      while (!stop) {
        const n = published + 1;
        for (let tries = 0; ; ++tries) {
          const alive = cluster.nodes.filter((x) => x.running);
          try {
            const r = await cluster.publish({ room, id: `${room}-m${n}`, data: { n } }, alive[tries % alive.length].port);
            lastSeq = Math.max(lastSeq, r.seq);
            break;
          } catch (e) {
            if (tries > 50) throw e;
            await sleep(50);
          }
        }
        published = n;
        const due = start + (published * 1000) / RATE;
        await sleep(Math.max(0, due - performance.now()));
      }
    })();

    await sleep(BEFORE_KILL_MS);
    killedAt = performance.now();
    await victim.kill9();
    await sleep(AFTER_KILL_MS);
    stop = true;
    await publisher;
    assert.equal(lastSeq, published, 'each publish took the next seq');

    const moved = clients.filter((r) => r.nodes[0] === victim.id);
    await waitFor(() => clients.every((r) => r.seqs.length >= published && r.c.state === 'open'),
      { ms: 30000, what: 'every client has every seq' }).catch((e) => {
      const behind = clients.filter((r) => r.seqs.length < published);
      throw new Error(`${e.message}: ${behind.length} behind, e.g. ${JSON.stringify(behind.slice(0, 3).map((r) => ({ n: r.seqs.length, state: r.c.state, nodes: r.nodes, gaps: r.gaps, errors: r.errors })))}\n${cluster.logs()}`);
    });

    const expected = Array.from({ length: published }, (_, i) => i + 1);
    for (const [i, r] of clients.entries()) {
      assert.deepEqual(r.seqs, expected, `client s${i} got ${r.seqs.length} seqs, not 1..${published} once in order`);
      assert.deepEqual(r.gaps, [], `client s${i} got a gap`);
    }

    // The victim's clients moved to the other node and recovered what they missed.
    for (const r of moved) {
      assert.ok(r.nodes.length >= 2 && r.nodes.at(-1) !== victim.id, `moved to ${r.nodes}`);
      assert.ok(r.recovered.length >= 1, 'a recovered frame after the reconnect');
    }
    // Nobody reconnected before its backoff: each attempt after a scheduled reconnect started no
    // earlier than the delay the library announced.
    const starts = [];
    for (const r of moved) {
      for (const rc of r.reconnects) {
        const next = r.attempts.find((a) => a.at >= rc.at);
        assert.ok(next, 'an attempt follows each scheduled reconnect');
        assert.ok(next.at - rc.at >= rc.delayMs - 2, `attempt ${next.at - rc.at} ms after a ${rc.delayMs} ms backoff`);
      }
      const first = r.attempts[1];
      if (first) starts.push(first.at - killedAt);
    }
    // The storm spreads: with spreadMs 3000, no one-second window holds most of the reconnects.
    starts.sort((a, b) => a - b);
    let densest = 0;
    for (let i = 0, j = 0; i < starts.length; ++i) {
      while (starts[i] - starts[j] > 1000) ++j;
      densest = Math.max(densest, i - j + 1);
    }
    const span = starts.at(-1) - starts[0];
    console.log(`# ${moved.length} clients moved; first reconnects spread over ${span.toFixed(0)} ms; ` +
                `densest second held ${densest}; ${published} messages`);
    assert.ok(span > 1500, `reconnects spread over only ${span} ms`);
    assert.ok(densest <= Math.ceil(moved.length * 0.6), `${densest} of ${moved.length} reconnected within one second`);
  } finally {
    for (const r of clients) r.c.close();
  }
});

test('a refused handshake (bad token) stops the client with a refused error, no retry storm', { timeout: 60000 }, async () => {
  const node = await startSingleNode(bin, ['--auth', 'jwt', '--jwt-secret', 's3cret']);
  try {
    const attempts = [];
    const c = connect({ url: `ws://127.0.0.1:${node.port}/demo/websocket/345/STU/u1/not-a-jwt/pc`,
      WebSocket: recordingWebSocket(attempts), backoff: { minMs: 50, maxMs: 200 } });
    const errors = [];
    c.on('error', (f) => errors.push(f));
    await waitFor(() => c.state === 'closed', { ms: 10000, what: 'state closed' });
    await sleep(500);  // would have retried several times by now with a 50-200 ms backoff
    assert.equal(attempts.length, 1, 'one attempt only');
    const refused = errors.find((e) => e.type === 'refused');
    assert.ok(refused, `a refused error (got ${JSON.stringify(errors)})`);
    assert.equal(refused.status, 401);
    c.close();
  } finally {
    await node.stop();
  }
});

// A JWT signed here (HS256), as a backend would.
async function jwt(sub, expInS, secret = 's3cret') {
  const { createHmac } = await import('node:crypto');
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + expInS })}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

test('getToken: the token travels in the first frame (URL token "-"), and a refresh keeps the session past exp', { timeout: 60000 }, async () => {
  const node = await startSingleNode(bin, ['--auth', 'jwt', '--jwt-secret', 's3cret', '--jwt-leeway', '0s']);
  try {
    const given = [];
    // exp in 3 s: the library refreshes about a second before it; the node would close at exp (4402).
    const c = connect({ url: `ws://127.0.0.1:${node.port}/demo/websocket/345/STU/u1/-/pc`,
      getToken: async () => { const t = await jwt('u1', 3); given.push(t); return t; } });
    const got = [];
    c.on('message', (m) => got.push(m.data));
    await waitFor(() => c.state === 'open' && c.welcome, { ms: 10000, what: 'welcome' });
    await sleep(5000);
    assert.equal(c.state, 'open', 'closed although the library refreshed');
    assert.ok(given.length >= 2, `getToken called ${given.length} time(s)`);
    const r = await fetch(`http://127.0.0.1:${node.port}/api/publish`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ room: '345', data: 'after exp' }),
    });
    assert.equal(r.status, 200);
    await waitFor(() => got.includes('after exp'), { ms: 5000, what: 'a message after the first token expired' });
    const m = await (await fetch(`http://127.0.0.1:${node.port}/metrics`)).text();
    assert.match(m, /roomcast_closes_total\{reason="token_expired"\} 0/);
    assert.ok(!node.log.includes(given[0]), 'a token reached the log');
    c.close();
  } finally {
    await node.stop();
  }
});
