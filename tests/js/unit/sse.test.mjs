// The SSE fallback of roomcast.js: after WebSocket failed to open `sseAfterFailures` times in a
// row while the node would take the upgrade (probe 426), the connection goes on over an
// EventSource, publishes with POST, and reconnects with since/epoch like a WebSocket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, settle, welcome, URL_345 } from './fake_websocket.mjs';

// An EventSource class the test drives, with its instances.
function fakeEventSourceClass() {
  const sources = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.closed = false;
      this.onopen = this.onmessage = this.onerror = null;
      sources.push(this);
    }
    close() { this.closed = true; }
    open() { if (this.onopen) this.onopen({ type: 'open' }); }
    receive(frame, id = '') {
      if (this.onmessage) this.onmessage({ type: 'message', data: JSON.stringify(frame), lastEventId: id });
    }
    error() { if (this.onerror) this.onerror({ type: 'error' }); }
  }
  return { FakeEventSource, sources };
}

// fetch: GET probes answer `probe`; POSTs answer what `onPost(body)` returns ({status, body}).
function routeFetch(probe, onPost = () => ({ status: 204 })) {
  const calls = [];
  const fn = async (url, init = {}) => {
    calls.push({ url, init });
    const a = init.method === 'POST' ? onPost(init.body) : { status: probe };
    const text = a.body === undefined ? '' : JSON.stringify(a.body);
    return { status: a.status, ok: a.status < 300, json: async () => a.body, text: async () => text };
  };
  fn.calls = calls;
  return fn;
}

function sseSetup({ probe = 426, onPost, ...options } = {}) {
  const { FakeEventSource, sources } = fakeEventSourceClass();
  const fetch = routeFetch(probe, onPost);
  const s = setup({ transports: ['websocket', 'sse'], EventSource: FakeEventSource, fetch, ...options });
  const transports = [];
  s.c.on('transport', (t) => transports.push(t));
  return { ...s, sources, fetch, transports };
}

// Fails the current WebSocket attempt before open and lets its probe and backoff run.
async function failWebSocket(s) {
  s.ws().drop(1006);
  await settle();
  s.timers.runNext();
}

test('falls back to SSE after three WebSocket failures the probe says the node would take', async () => {
  const s = sseSetup();
  for (let i = 0; i < 3; ++i) await failWebSocket(s);
  assert.equal(s.sockets.length, 3, 'three WebSocket attempts');
  assert.equal(s.sources.length, 1, 'then an EventSource');
  assert.deepEqual(s.transports, ['sse']);
  assert.equal(s.c.transport, 'sse');
  assert.equal(s.sources[0].url, URL_345.replace(/^ws/, 'http'));
  const es = s.sources[0];
  es.open();
  assert.equal(s.c.state, 'open');
  es.receive(welcome([{ room: '345', seq: 10, epoch: 'E1' }]), 'E1:10');
  es.receive({ type: 'message', room: '345', seq: 11, id: 'm11', from: 'api', data: { n: 11 } }, 'E1:11');
  assert.deepEqual(s.of('message').map((m) => m.seq), [11]);
  assert.equal(s.of('welcome').length, 1);
  s.c.close();
  assert.ok(es.closed);
});

test('no fallback while the node is down or refusing (probe 0 or 503), nor with websocket only', async () => {
  for (const probe of [0, 503]) {
    const s = sseSetup({ probe });
    for (let i = 0; i < 5; ++i) await failWebSocket(s);
    assert.equal(s.sources.length, 0, `probe ${probe}`);
    assert.equal(s.c.transport, 'websocket');
    s.c.close();
  }
  const s = sseSetup({ transports: ['websocket'] });
  for (let i = 0; i < 5; ++i) await failWebSocket(s);
  assert.equal(s.sources.length, 0);
  s.c.close();
});

test('publish over SSE is a POST of the frame; its answer settles the promise', async () => {
  const posts = [];
  const s = sseSetup({
    transports: ['sse'],
    onPost: (body) => {
      const f = JSON.parse(body);
      posts.push(f);
      if (f.data.bad) return { status: 403, body: { type: 'error', code: 'forbidden', message: 'no', id: f.id, room: '345' } };
      return { status: 200, body: { type: 'ack', id: f.id, seq: 12, duplicate: false } };
    },
  });
  assert.equal(s.sockets.length, 0, 'SSE only: no WebSocket');
  s.sources[0].open();
  s.sources[0].receive(welcome(), 'E1:10');
  const ack = await s.c.publish({ text: 'hi' }, { id: 'p1' });
  assert.equal(ack.seq, 12);
  assert.deepEqual(posts[0], { type: 'publish', data: { text: 'hi' }, id: 'p1' });
  const post = s.fetch.calls.find((c) => c.init.method === 'POST');
  assert.equal(post.url, URL_345.replace(/^ws/, 'http'));
  await assert.rejects(s.c.publish({ bad: true }, { id: 'p2' }), (e) => e.code === 'forbidden');
  s.c.close();
});

test('a close event ends the stream like a close frame: 1012 reconnects with since/epoch, a kick stops', async () => {
  const s = sseSetup({ transports: ['sse'] });
  const es = s.sources[0];
  es.open();
  es.receive(welcome([{ room: '345', seq: 10, epoch: 'E1' }]), 'E1:10');
  es.receive({ type: 'message', room: '345', seq: 11, id: 'm11', data: {} }, 'E1:11');
  es.receive({ type: 'close', code: 1012, reason: 'server restart' });
  assert.ok(es.closed, 'EventSource closed: no retry of its own with the old URL');
  assert.equal(s.c.state, 'reconnecting');
  assert.deepEqual(s.of('reconnect')[0].code, 1012);
  s.timers.runNext();
  assert.equal(s.sources.length, 2);
  assert.equal(s.sources[1].url, `${URL_345.replace(/^ws/, 'http')}?since=11&epoch=E1`);
  const es2 = s.sources[1];
  es2.open();
  es2.receive(welcome([{ room: '345', seq: 12, epoch: 'E1' }]));
  es2.receive({ type: 'message', room: '345', seq: 11, id: 'm11', data: {} });   // recovery overlap: dropped
  es2.receive({ type: 'message', room: '345', seq: 12, id: 'm12', data: {} });
  assert.deepEqual(s.of('message').map((m) => m.seq), [11, 12]);
  es2.receive({ type: 'kicked', code: 4000, reason: 'bye' });
  es2.receive({ type: 'close', code: 4000, reason: 'bye' });
  assert.equal(s.c.state, 'closed');
  assert.equal(s.timers.pending().length, 0);
});

test('a stream lost without a close event (a killed node) reconnects; its EventSource does not retry', async () => {
  const s = sseSetup({ transports: ['sse'] });
  s.sources[0].open();
  s.sources[0].receive(welcome([{ room: '345', seq: 3, epoch: 'E9' }]), 'E9:3');
  s.sources[0].error();
  assert.ok(s.sources[0].closed);
  assert.equal(s.of('reconnect')[0].code, 1006);
  s.timers.runNext();
  assert.equal(s.sources[1].url, `${URL_345.replace(/^ws/, 'http')}?since=3&epoch=E9`);
  // An attempt that never opens is probed and backed off.
  s.sources[1].error();
  await settle();
  assert.equal(s.fetch.calls.at(-1).init.method, 'GET');
  assert.equal(s.c.state, 'reconnecting');
  s.c.close();
});

test('transports must name websocket and/or sse', () => {
  assert.throws(() => setup({ transports: ['longpoll'] }), TypeError);
  assert.throws(() => setup({ transports: [] }), TypeError);
});
