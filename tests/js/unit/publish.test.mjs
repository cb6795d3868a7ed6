// publish(): ack, error frame, timeout, resend after a reconnect, waiting while not open.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, settle, welcome } from './fake_websocket.mjs';

const outcome = (p) => p.then((v) => ({ ok: v }), (e) => ({ err: e }));

test('publish sends the frame with an id and resolves with the ack', async () => {
  const { c, sockets } = setup();
  sockets[0].open();
  const p = c.publish({ text: 'hi' }, { room: '346', id: 'm-1' });
  assert.deepEqual(sockets[0].frames(), [{ type: 'publish', room: '346', data: { text: 'hi' }, id: 'm-1' }]);
  sockets[0].receive({ type: 'ack', id: 'other' });
  sockets[0].receive({ type: 'ack', id: 'm-1', seq: 12 });
  assert.deepEqual(await p, { type: 'ack', id: 'm-1', seq: 12 });
  c.close();
});

test('without an id, a unique one is generated; without a room, none is sent', async () => {
  const { c, sockets } = setup();
  sockets[0].open();
  const a = c.publish('a');
  const b = c.publish('b');
  const [fa, fb] = sockets[0].frames();
  assert.equal(fa.room, undefined);
  assert.match(fa.id, /^[0-9a-z]+-1$/);
  assert.match(fb.id, /^[0-9a-z]+-2$/);
  assert.equal(fa.id.split('-')[0], fb.id.split('-')[0]);
  const other = setup();
  other.sockets[0].open();
  const c3 = outcome(other.c.publish('c'));
  assert.notEqual(other.sockets[0].frames()[0].id, fa.id);   // another client, another prefix
  sockets[0].receive({ type: 'ack', id: fb.id, seq: 2 });
  sockets[0].receive({ type: 'ack', id: fa.id, seq: 1 });
  assert.equal((await a).seq, 1);
  assert.equal((await b).seq, 2);
  c.close();
  other.c.close();
  assert.equal((await c3).err.code, 'closed');
});

test('an error frame with the id rejects that publish (Error with .frame) and is emitted', async () => {
  const { c, sockets, of } = setup();
  sockets[0].open();
  const p = outcome(c.publish(1, { id: 'm-1' }));
  const q = outcome(c.publish(2, { id: 'm-2' }));
  const err = { type: 'error', code: 'forbidden', message: "role 'STU' may not publish", id: 'm-1', room: '345' };
  sockets[0].receive(err);
  const r = await p;
  assert.ok(r.err instanceof Error);
  assert.deepEqual(r.err.frame, err);
  assert.equal(r.err.code, 'forbidden');
  assert.deepEqual(of('error'), [err]);
  sockets[0].receive({ type: 'ack', id: 'm-2' });
  assert.deepEqual((await q).ok, { type: 'ack', id: 'm-2' });
  c.close();
});

test('no ack within publishTimeoutMs rejects; a late ack is ignored', async () => {
  const { c, sockets, timers } = setup({ publishTimeoutMs: 3000 });
  sockets[0].open();
  const p = outcome(c.publish(1, { id: 'slow' }));
  assert.deepEqual(timers.pending().map((t) => t.ms), [3000]);
  timers.advance(2999);
  await settle();
  let done = false;
  p.then(() => { done = true; });
  await settle();
  assert.equal(done, false);
  timers.advance(1);
  const r = await p;
  assert.equal(r.err.code, 'timeout');
  assert.match(r.err.message, /3000 ms/);
  sockets[0].receive({ type: 'ack', id: 'slow' });
  assert.equal(timers.pending().length, 0);
  c.close();
});

test('a publish not acked before the connection drops is sent again, same id, after the reconnect', async () => {
  const { c, sockets, timers } = setup();
  sockets[0].open();
  sockets[0].receive(welcome());
  const p = c.publish({ x: 1 }, { id: 'm-7' });
  const acked = c.publish({ x: 2 }, { id: 'm-8' });
  sockets[0].receive({ type: 'ack', id: 'm-8', seq: 11 });
  await acked;
  sockets[0].drop(1006);
  timers.advance(1500);   // the spread delay (0.5 * 3000)
  assert.equal(sockets.length, 2);
  sockets[1].open();
  assert.deepEqual(sockets[1].frames(), [{ type: 'publish', data: { x: 1 }, id: 'm-7' }]);
  sockets[1].receive({ type: 'ack', id: 'm-7', seq: 12, duplicate: true });
  assert.deepEqual(await p, { type: 'ack', id: 'm-7', seq: 12, duplicate: true });
  c.close();
});

test('publishes wait while not open and go out on open, after the joins', async () => {
  const { c, sockets } = setup();
  const j = c.join('346');
  const p = c.publish('x', { room: '346', id: 'a' });
  assert.deepEqual(sockets[0].sent, []);
  sockets[0].open();
  assert.deepEqual(sockets[0].frames(), [
    { type: 'join', room: '346' },
    { type: 'publish', room: '346', data: 'x', id: 'a' },
  ]);
  sockets[0].receive({ type: 'joined', room: '346', seq: 0, epoch: 'F' });
  sockets[0].receive({ type: 'ack', id: 'a', seq: 1 });
  await j;
  assert.equal((await p).seq, 1);
  c.close();
});

test('at most 1,000 publishes wait while not open', async () => {
  const { c } = setup({ publishTimeoutMs: 0 });
  const waiting = [];
  for (let i = 0; i < 1000; ++i) waiting.push(outcome(c.publish(i)));
  const extra = outcome(c.publish('one too many'));
  await settle();
  c.close();
  const r = await extra;
  assert.equal(r.err.code, 'queue_full');
  const all = await Promise.all(waiting);
  assert.equal(all.filter((x) => x.err && x.err.code === 'closed').length, 1000);
});

test('close() rejects pending publishes, joins and leaves, and leaves no timer', async () => {
  const { c, sockets, timers } = setup();
  sockets[0].open();
  const p = outcome(c.publish(1));
  const j = outcome(c.join('346'));
  const l = outcome(c.leave('347'));
  c.close();
  assert.equal(timers.pending().length, 0);
  for (const r of await Promise.all([p, j, l])) {
    assert.ok(r.err instanceof Error);
    assert.equal(r.err.code, 'closed');
  }
  assert.equal((await outcome(c.publish(2))).err.code, 'closed');
  assert.equal((await outcome(c.join('1'))).err.code, 'closed');
});

test('a kick rejects what is pending', async () => {
  const { c, sockets } = setup();
  sockets[0].open();
  const p = outcome(c.publish(1));
  sockets[0].drop(4000, 'bye');
  assert.equal((await p).err.code, 'kicked');
  assert.equal(c.state, 'closed');
});

test('publish carries filters for a part of the room', async () => {
  const { c, sockets } = setup();
  sockets[0].open();
  const p = outcome(c.publish('quiz', { room: '345', id: 'q', roles: ['THE'], platforms: ['pc', 'ios'], users: [7] }));
  assert.deepEqual(sockets[0].frames(), [
    { type: 'publish', room: '345', roles: ['THE'], platforms: ['pc', 'ios'], users: ['7'], data: 'quiz', id: 'q' },
  ]);
  sockets[0].receive({ type: 'ack', id: 'q', seq: 3 });
  assert.equal((await p).ok.seq, 3);
  c.close();
});

test('a must-arrive message reaches the app once and is confirmed after its handlers ran, again when resent', () => {
  const { c, sockets, of } = setup();
  sockets[0].open();
  sockets[0].receive(welcome());
  const order = [];
  c.on('message', (m) => order.push(`handled ${m.id}`));
  const sent = () => sockets[0].frames().filter((f) => f.type === 'received');
  sockets[0].receive({ type: 'message', room: '345', seq: 4, id: 'quiz-1', from: 'api', receipt: true, data: 1 });
  assert.deepEqual(order, ['handled quiz-1']);
  assert.deepEqual(sent(), [{ type: 'received', id: 'quiz-1' }]);
  // Sent again by the server (its confirm was lost): not handed over twice, confirmed again.
  sockets[0].receive({ type: 'message', room: '345', seq: 4, id: 'quiz-1', from: 'api', receipt: true, data: 1 });
  assert.equal(of('message').length, 1);
  assert.equal(sent().length, 2);
  // A plain message with an older seq is still a duplicate.
  sockets[0].receive({ type: 'message', room: '345', seq: 3, id: 'old', from: 'api', data: 0 });
  assert.equal(of('message').length, 1);
  c.close();
});

test('presence frames are emitted as presence', () => {
  const { c, sockets, of } = setup();
  sockets[0].open();
  sockets[0].receive(welcome());
  const f = { type: 'presence', room: '345', online: { users: 3, sessions: 4, by_role: { STU: 3, THE: 1 } } };
  sockets[0].receive(f);
  assert.deepEqual(of('presence'), [f]);
  c.close();
});

test('getToken: the token is the first frame of every connection, before joins and publishes', async () => {
  let n = 0;
  const { c, sockets } = setup({ getToken: async () => `tok-${++n}` });
  const p = outcome(c.publish('x', { room: '345', id: 'p1' }));
  sockets[0].open();
  await settle();
  const frames = sockets[0].frames();
  assert.deepEqual(frames[0], { type: 'auth', token: 'tok-1' });
  assert.equal(frames[1].type, 'publish');
  sockets[0].receive({ type: 'ack', id: 'p1' });
  assert.ok((await p).ok);
  c.close();
});

test('getToken: a fresh token is sent as refresh before the current one expires', async () => {
  const now = 1_000_000_000_000;   // ms
  const jwt = (exp) => `h.${Buffer.from(JSON.stringify({ sub: 'u', exp })).toString('base64url')}.s`;
  let n = 0;
  const { c, sockets, timers } = setup({ now: () => now, getToken: () => jwt(now / 1000 + 600 + 600 * n++) });
  sockets[0].open();
  await settle();
  assert.equal(sockets[0].frames()[0].type, 'auth');
  // exp in 600 s: the refresh goes 60 s before.
  timers.advance(539_000);
  await settle();
  assert.equal(sockets[0].frames().filter((f) => f.type === 'refresh').length, 0);
  timers.advance(2_000);
  await settle();
  const refresh = sockets[0].frames().filter((f) => f.type === 'refresh');
  assert.equal(refresh.length, 1);
  assert.equal(refresh[0].token, jwt(now / 1000 + 1200));
  c.close();
});
