// Reconnect policy: backoff with full jitter, spread after a lost connection, close codes,
// Node 20's error-without-close, the refused-handshake probe, maxRetries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, fakeFetch, settle, welcome, URL_345 } from './fake_websocket.mjs';

test('failed attempts back off exponentially with full jitter, capped at maxMs', () => {
  const { c, sockets, timers, of } = setup({ backoff: { minMs: 100, maxMs: 1000, spreadMs: 5000 }, random: () => 0.5 });
  const delays = [];
  for (let i = 0; i < 7; ++i) {
    sockets[i].drop(1006);                       // refused before open
    assert.equal(timers.pending().length, 1);
    delays.push(timers.runNext());
    assert.equal(sockets.length, i + 2);         // the timer opened the next attempt
  }
  // random() * min(maxMs, minMs * 2^(n-1)) for n = 1..7
  assert.deepEqual(delays, [50, 100, 200, 400, 500, 500, 500]);
  assert.deepEqual(of('reconnect').map((r) => r.attempt), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(of('reconnect').map((r) => r.delayMs), delays);
  assert.equal(of('reconnect')[0].code, 1006);
  assert.deepEqual(of('state'), ['reconnecting']);
  c.close();
});

test('the jitter is the random factor of the ceiling (defaults 250 ms .. 10 s)', () => {
  const values = [0, 0.999, 0.25];
  const { c, sockets, timers } = setup({ random: () => values.shift() });
  sockets[0].drop(1006);
  assert.equal(timers.runNext(), 0);             // 0 * 250
  sockets[1].drop(1006);
  assert.equal(timers.runNext(), 0.999 * 500);   // 2nd failure: ceiling 500
  sockets[2].drop(1006);
  assert.equal(timers.runNext(), 0.25 * 1000);
  c.close();
});

test('a lost open connection waits random * spreadMs first, then the backoff sequence', () => {
  const { c, sockets, timers, of } = setup({ backoff: { minMs: 200, maxMs: 10000, spreadMs: 3000 }, random: () => 0.4 });
  sockets[0].open();
  sockets[0].receive(welcome());
  sockets[0].drop(1006);
  assert.equal(c.state, 'reconnecting');
  assert.deepEqual(timers.pending().map((t) => t.ms), [1200]);   // 0.4 * 3000
  assert.deepEqual(of('reconnect')[0], { attempt: 1, delayMs: 1200, code: 1006, reason: '' });
  timers.runNext();
  sockets[1].drop(1006);                                          // that attempt fails: backoff n=1
  assert.deepEqual(timers.pending().map((t) => t.ms), [80]);     // 0.4 * 200
  timers.runNext();
  sockets[2].drop(1006);
  assert.deepEqual(timers.pending().map((t) => t.ms), [160]);    // n=2
  timers.runNext();
  sockets[3].open();                                              // success resets the count
  assert.equal(c.state, 'open');
  sockets[3].drop(1006);
  assert.deepEqual(timers.pending().map((t) => t.ms), [1200]);
  assert.equal(of('reconnect').at(-1).attempt, 1);
  c.close();
});

test('close(): 1000 to the server, state closed, no timer left, no reconnect', () => {
  const { c, sockets, timers, of } = setup();
  sockets[0].open();
  c.close();
  assert.deepEqual(sockets[0].closeCalls, [{ code: 1000, reason: undefined }]);
  assert.equal(c.state, 'closed');
  sockets[0].drop(1000);                     // the server's echo
  assert.equal(timers.pending().length, 0);
  assert.equal(sockets.length, 1);
  assert.deepEqual(of('state'), ['open', 'closed']);
  assert.equal(of('reconnect').length, 0);
  c.close();                                  // twice is harmless
  assert.deepEqual(of('state'), ['open', 'closed']);
});

test('close() while waiting to reconnect cancels the timer', () => {
  const { c, sockets, timers } = setup();
  sockets[0].drop(1006);
  assert.equal(timers.pending().length, 1);
  c.close();
  assert.equal(timers.pending().length, 0);
  assert.equal(c.state, 'closed');
});

for (const [code, reason] of [[1012, 'draining'], [4008, 'slow consumer'], [1006, ''], [1000, ''], [1011, 'oops']]) {
  test(`close ${code} of an open connection reconnects after the spread delay`, () => {
    const { c, sockets, timers, of } = setup({ random: () => 0.5 });
    sockets[0].open();
    sockets[0].receive(welcome());
    sockets[0].drop(code, reason);
    assert.equal(c.state, 'reconnecting');
    assert.deepEqual(timers.pending().map((t) => t.ms), [1500]);
    assert.deepEqual(of('reconnect'), [{ attempt: 1, delayMs: 1500, code, reason }]);
    assert.equal(of('error').length, 0);
    timers.runNext();
    assert.equal(sockets.length, 2);
    assert.equal(c.state, 'reconnecting');
    sockets[1].open();
    assert.equal(c.state, 'open');
    c.close();
  });
}

test('4008 reconnects with since/epoch to recover', () => {
  const { c, sockets, timers } = setup();
  sockets[0].open();
  sockets[0].receive(welcome([{ room: '345', seq: 7, epoch: 'E1' }]));
  sockets[0].receive({ type: 'message', room: '345', seq: 8, id: 'a', from: 'api', data: 1 });
  sockets[0].drop(4008, 'slow consumer');
  timers.runNext();
  assert.equal(sockets[1].url, `${URL_345}?since=8&epoch=E1`);
  c.close();
});

test('a kick (4001) stops: state closed, error kicked, kicked frame event, no timer', () => {
  const { c, sockets, timers, of } = setup();
  sockets[0].open();
  sockets[0].receive(welcome());
  const kicked = { type: 'kicked', code: 4001, reason: 'banned' };
  sockets[0].receive(kicked);
  sockets[0].drop(4001, 'banned');
  assert.equal(c.state, 'closed');
  assert.deepEqual(of('kicked'), [kicked]);
  assert.deepEqual(of('error'), [{ type: 'kicked', code: 4001, reason: 'banned' }]);
  assert.equal(timers.pending().length, 0);
  assert.equal(of('reconnect').length, 0);
  assert.equal(sockets.length, 1);
});

test('a kicked frame followed by a dropped connection (1006) is still a kick', () => {
  const { c, sockets, timers, of } = setup();
  sockets[0].open();
  sockets[0].receive({ type: 'kicked', code: 4000, reason: 'bye' });
  sockets[0].drop(1006);
  assert.equal(c.state, 'closed');
  assert.deepEqual(of('error'), [{ type: 'kicked', code: 4000, reason: 'bye' }]);
  assert.equal(timers.pending().length, 0);
});

for (const code of [1002, 1003, 1007, 1009]) {
  test(`close ${code} (a client bug) is reported as an error, then reconnects`, () => {
    const { c, sockets, timers, of } = setup();
    sockets[0].open();
    sockets[0].drop(code, 'too big');
    assert.deepEqual(of('error'), [{ type: 'closed', code, reason: 'too big' }]);
    assert.equal(c.state, 'reconnecting');
    assert.equal(timers.pending().length, 1);
    c.close();
  });
}

test('Node 20: an error without close before open fails the attempt once', () => {
  const { c, sockets, timers, of } = setup({ random: () => 0.5 });
  sockets[0].fail();                         // undici: error, and no close ever
  assert.equal(c.state, 'reconnecting');
  assert.deepEqual(timers.pending().map((t) => t.ms), [125]);
  assert.equal(of('reconnect').length, 1);
  sockets[0].drop(1006);                     // a late close of that socket (browsers) is ignored
  sockets[0].fail();
  assert.equal(of('reconnect').length, 1);
  assert.equal(timers.pending().length, 1);
  timers.runNext();
  assert.equal(sockets.length, 2);
  sockets[0].open();                         // and so is anything else it does
  assert.equal(c.state, 'reconnecting');
  sockets[1].open();
  assert.equal(c.state, 'open');
  c.close();
});

test('events of a socket that is no longer current are ignored', () => {
  const { c, sockets, timers, of } = setup();
  sockets[0].open();
  sockets[0].drop(1006);
  timers.runNext();
  sockets[1].open();
  sockets[0].receive({ type: 'message', room: '345', id: 'old', from: 'x', data: 1 });
  sockets[0].drop(1006);
  assert.equal(of('message').length, 0);
  assert.equal(c.state, 'open');
  assert.equal(timers.pending().length, 0);
  c.close();
});

test('an error on an open socket with no close after it counts as a drop after 1 s', () => {
  const { c, sockets, timers, of } = setup({ random: () => 0.5 });
  sockets[0].open();
  sockets[0].fail();
  assert.equal(c.state, 'open');
  assert.deepEqual(timers.pending().map((t) => t.ms), [1000]);
  timers.runNext();
  assert.equal(c.state, 'reconnecting');
  assert.deepEqual(of('reconnect'), [{ attempt: 1, delayMs: 1500, code: 1006, reason: '' }]);
  c.close();
  assert.equal(timers.pending().length, 0);
});

test('an error then close on an open socket reconnects once', () => {
  const { c, sockets, timers, of } = setup();
  sockets[0].open();
  sockets[0].fail();
  sockets[0].drop(1006);
  assert.equal(of('reconnect').length, 1);
  assert.equal(timers.pending().length, 1);   // the error's fallback timer is gone
  c.close();
});

test('refused handshake: the probe gets 401 and the client stops', async () => {
  const fetch = fakeFetch({ status: 401, body: { error: { code: 'unauthorized', message: 'bad signature' } } });
  const { c, sockets, timers, of } = setup({ fetch });
  sockets[0].fail();
  sockets[0].drop(1006);
  await settle();
  assert.equal(fetch.calls.length, 1);
  assert.equal(fetch.calls[0].url, 'http://127.0.0.1:8091/demo/websocket/345/STU/452784/tok/pc');
  assert.equal(fetch.calls[0].init.method, 'GET');
  assert.equal(c.state, 'closed');
  assert.deepEqual(of('error'), [{ type: 'refused', status: 401, code: 'unauthorized', message: 'bad signature' }]);
  assert.equal(of('reconnect').length, 0);
  assert.equal(timers.pending().length, 0);
  assert.equal(sockets.length, 1);
});

for (const status of [400, 403, 404]) {
  test(`refused handshake: ${status} stops`, async () => {
    const { c, sockets, of } = setup({ fetch: fakeFetch({ status, body: { error: { code: 'x', message: 'y' } } }) });
    sockets[0].drop(1006);
    await settle();
    assert.equal(c.state, 'closed');
    assert.equal(of('error')[0].status, status);
  });
}

test('probe answers 503, 426, 500 or a network error: back off and try again', async () => {
  const fetch = fakeFetch(
    { status: 503, body: { error: { code: 'over_capacity', message: 'node is full' } } },
    { status: 426, body: {} },
    { status: 500, body: null },
    new TypeError('fetch failed'),
  );
  const { c, sockets, timers, of } = setup({ fetch, random: () => 0.5 });
  for (let i = 0; i < 4; ++i) {
    sockets[i].drop(1006);
    assert.equal(timers.pending().filter((t) => t.ms !== 5000).length, 0);   // waits for the probe
    await settle();
    assert.equal(c.state, 'reconnecting');
    assert.deepEqual(timers.pending().map((t) => t.ms), [125 * 2 ** i]);
    timers.runNext();
  }
  assert.equal(fetch.calls.length, 4);
  assert.equal(of('error').length, 0);
  assert.equal(sockets.length, 5);
  c.close();
});

test('the probe uses https for a wss URL and carries the recovery query', async () => {
  const fetch = fakeFetch({ status: 401, body: {} });
  const { c, sockets } = setup({ fetch, url: 'wss://h/demo/websocket/345/STU/u/t/pc?x=1' });
  sockets[0].open();
  sockets[0].receive(welcome([{ room: '345', seq: 3, epoch: 'E' }]));
  sockets[0].drop(1012);
  assert.equal(fetch.calls.length, 0);        // an open connection was lost: no probe
  c.close();
  const r = setup({ fetch, url: 'wss://h/demo/websocket/345/STU/u/t/pc?x=1' });
  r.sockets[0].drop(1006);
  await settle();
  assert.equal(fetch.calls[0].url, 'https://h/demo/websocket/345/STU/u/t/pc?x=1');
  assert.equal(sockets.length, 1);
});

test('a probe that does not answer in 5 s counts as a network error', async () => {
  const fetch = (url, init) => new Promise((resolve, reject) => {
    init.signal.addEventListener('abort', () => reject(new Error('aborted')));
  });
  const { c, sockets, timers } = setup({ fetch, random: () => 0.5 });
  sockets[0].drop(1006);
  await settle();
  assert.deepEqual(timers.pending().map((t) => t.ms), [5000]);
  timers.runNext();
  await settle();
  assert.equal(c.state, 'reconnecting');
  assert.deepEqual(timers.pending().map((t) => t.ms), [125]);
  c.close();
  assert.equal(timers.pending().length, 0);
});

test('close() during the probe: no timer, the answer is ignored', async () => {
  let answer;
  const fetch = () => new Promise((resolve) => { answer = resolve; });
  const { c, sockets, timers, of } = setup({ fetch });
  sockets[0].drop(1006);
  await settle();
  c.close();
  assert.equal(timers.pending().length, 0);
  answer({ status: 401, json: async () => ({}) });
  await settle();
  assert.equal(of('error').length, 0);
  assert.deepEqual(of('state'), ['closed']);
});

test('maxRetries: gives up after that many reconnects in a row fail', () => {
  const { c, sockets, timers, of } = setup({ maxRetries: 2 });
  sockets[0].drop(1006);          // the first attempt fails: reconnect 1
  timers.runNext();
  sockets[1].drop(1006);          // reconnect 2
  timers.runNext();
  sockets[2].drop(1006, 'x');     // no more
  assert.equal(c.state, 'closed');
  assert.deepEqual(of('error'), [{ type: 'gave_up', attempts: 2, code: 1006, reason: 'x' }]);
  assert.equal(timers.pending().length, 0);
  assert.equal(sockets.length, 3);
  assert.deepEqual(of('state'), ['reconnecting', 'closed']);
});

test('maxRetries counts from the last open', () => {
  const { c, sockets, timers, of } = setup({ maxRetries: 1 });
  sockets[0].drop(1006);
  timers.runNext();
  sockets[1].open();
  sockets[1].drop(1012);          // lost: reconnect 1 of 1 again
  assert.equal(c.state, 'reconnecting');
  timers.runNext();
  sockets[2].drop(1006);
  assert.equal(c.state, 'closed');
  assert.equal(of('error')[0].type, 'gave_up');
});

test('a WebSocket constructor that throws is a failed attempt', async () => {
  let n = 0;
  class Throwing {
    constructor() { if (++n === 1) throw new Error('boom'); this.sent = []; }
  }
  const { c, timers, of } = setup({ WebSocket: Throwing });
  assert.equal(c.state, 'connecting');
  await settle();
  assert.equal(c.state, 'reconnecting');
  assert.equal(of('reconnect')[0].reason, 'boom');
  timers.runNext();
  assert.equal(n, 2);
  c.close();
});
