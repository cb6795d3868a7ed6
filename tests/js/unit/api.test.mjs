// The rest of the surface: events and listeners, properties, join/leave, send().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, welcome } from './fake_websocket.mjs';

const outcome = (p) => p.then((v) => ({ ok: v }), (e) => ({ err: e }));

test('state goes connecting -> open; welcome sets node, session, welcome, rooms', () => {
  const { c, sockets, of } = setup();
  assert.equal(c.state, 'connecting');
  assert.equal(c.node, undefined);
  assert.deepEqual(c.rooms(), []);
  sockets[0].open();
  assert.equal(c.state, 'open');
  const w = welcome([{ room: '345', seq: 0, epoch: 'E' }], { dev_kill: true });
  sockets[0].receive(w);
  assert.deepEqual(of('state'), ['open']);
  assert.deepEqual(of('welcome'), [w]);
  assert.equal(c.node, 'n1');
  assert.equal(c.session, 's-1');
  assert.deepEqual(c.welcome, w);
  assert.deepEqual(c.rooms(), ['345']);
  c.close();
});

test("'frame' sees every parsed frame first; non-JSON text is ignored", () => {
  const { c, sockets } = setup();
  const seen = [];
  c.on('frame', (f) => seen.push(['frame', f.type]));
  c.on('message', (m) => seen.push(['message', m.id]));
  sockets[0].open();
  sockets[0].receive('not json');
  sockets[0].receive({ type: 'pong' });
  sockets[0].receive({ type: 'message', all: true, id: 'x', from: 'api', data: 1 });
  assert.deepEqual(seen, [['frame', 'pong'], ['frame', 'message'], ['message', 'x']]);
  c.close();
});

test('on() returns an unsubscribe function; off() removes a listener', () => {
  const { c, sockets } = setup();
  const a = [], b = [];
  const fa = (m) => a.push(m.id);
  const unsubB = c.on('message', (m) => b.push(m.id));
  c.on('message', fa);
  sockets[0].open();
  sockets[0].receive({ type: 'message', all: true, id: '1', from: 'api', data: 1 });
  unsubB();
  sockets[0].receive({ type: 'message', all: true, id: '2', from: 'api', data: 1 });
  c.off('message', fa);
  sockets[0].receive({ type: 'message', all: true, id: '3', from: 'api', data: 1 });
  assert.deepEqual(a, ['1', '2']);
  assert.deepEqual(b, ['1']);
  c.close();
});

test('a throwing listener does not stop the others or the connection', async () => {
  const { c, sockets, of } = setup();
  const uncaught = [];
  const handler = (e) => uncaught.push(e.message);
  process.prependListener('uncaughtException', handler);
  const saved = process.listeners('uncaughtException').filter((l) => l !== handler);
  for (const l of saved) process.off('uncaughtException', l);
  try {
    c.on('message', () => { throw new Error('listener bug'); });
    sockets[0].open();
    sockets[0].receive({ type: 'message', all: true, id: '1', from: 'api', data: 1 });
    assert.equal(of('message').length, 1);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(uncaught, ['listener bug']);
  } finally {
    process.off('uncaughtException', handler);
    for (const l of saved) process.on('uncaughtException', l);
  }
  c.close();
});

test('send() sends objects as JSON and strings as they are, only when open', () => {
  const { c, sockets } = setup();
  assert.equal(c.send({ type: 'ping' }), false);
  sockets[0].open();
  assert.equal(c.send({ type: 'ping' }), true);
  assert.equal(c.send('hello'), true);
  assert.deepEqual(sockets[0].sent, ['{"type":"ping"}', 'hello']);
  c.close();
  assert.equal(c.send({ type: 'ping' }), false);
});

test('join resolves on joined of that room; an error naming the room rejects it', async () => {
  const { c, sockets, of } = setup();
  sockets[0].open();
  sockets[0].receive(welcome());
  const a = c.join('346');
  const again = c.join('346');             // one frame for both
  const b = outcome(c.join('999'));
  assert.deepEqual(sockets[0].frames(), [{ type: 'join', room: '346' }, { type: 'join', room: '999' }]);
  sockets[0].receive({ type: 'joined', room: '999x' });   // another room: not an answer
  const err = { type: 'error', code: 'too_many_rooms', message: 'too many rooms for one session', room: '999' };
  sockets[0].receive(err);
  sockets[0].receive({ type: 'joined', room: '346', seq: 2, epoch: 'F' });
  assert.equal((await a).room, '346');
  assert.equal((await again).room, '346');
  const r = await b;
  assert.equal(r.err.code, 'too_many_rooms');
  assert.deepEqual(r.err.frame, err);
  assert.deepEqual(of('joined').map((f) => f.room), ['999x', '346']);
  assert.deepEqual(of('error'), [err]);
  assert.deepEqual(c.rooms(), ['345', '999x', '346']);
  c.close();
});

test('an error with an id does not touch a pending join of its room', async () => {
  const { c, sockets } = setup();
  sockets[0].open();
  let settled = false;
  c.join('345').then(() => { settled = true; }, () => { settled = true; });
  sockets[0].receive({ type: 'error', code: 'rate_limited', message: 'slow down', id: 'not-mine', room: '345' });
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false);
  c.close();
});

test('leave rejects on an error naming the room', async () => {
  const { c, sockets } = setup();
  sockets[0].open();
  const l = outcome(c.leave('346'));
  sockets[0].receive({ type: 'error', code: 'not_in_room', message: 'not in that room', room: '346' });
  assert.equal((await l).err.code, 'not_in_room');
  c.close();
});

test('leave while not open resolves at once and cancels a waiting join', async () => {
  const { c, sockets } = setup();
  const j = outcome(c.join('346'));
  assert.deepEqual(await c.leave('346'), { type: 'left', room: '346' });
  assert.equal((await j).err.code, 'left');
  sockets[0].open();
  assert.deepEqual(sockets[0].sent, []);
  c.close();
});

test('a rejoin refused after a reconnect drops the room', () => {
  const { c, sockets, timers } = setup();
  sockets[0].open();
  sockets[0].receive(welcome());
  c.join('346');
  sockets[0].receive({ type: 'joined', room: '346', seq: 1, epoch: 'F' });
  sockets[0].drop(1012);
  timers.runNext();
  sockets[1].open();
  sockets[1].receive(welcome());
  sockets[1].receive({ type: 'error', code: 'forbidden', message: 'joining rooms is disabled', room: '346' });
  assert.deepEqual(c.rooms(), ['345']);
  sockets[1].drop(1012);
  timers.runNext();
  sockets[2].open();
  assert.deepEqual(sockets[2].frames(), []);
  c.close();
});

test("'reconnect' is emitted before the wait with attempt, delayMs, code, reason", () => {
  const { c, sockets, timers, events } = setup({ random: () => 0.1 });
  sockets[0].open();
  sockets[0].drop(1012, 'draining');
  const names = events.map(([e]) => e);
  assert.deepEqual(names, ['state', 'state', 'reconnect']);
  assert.deepEqual(events[2][1], { attempt: 1, delayMs: 300, code: 1012, reason: 'draining' });
  assert.equal(timers.pending()[0].ms, 300);
  c.close();
});

test('close() from inside a listener stops cleanly', () => {
  const { c, sockets, timers } = setup();
  c.on('reconnect', () => c.close());
  sockets[0].open();
  sockets[0].drop(1006);
  assert.equal(c.state, 'closed');
  assert.equal(timers.pending().length, 0);
});
