// Recovery bookkeeping: seq/epoch per room, duplicates dropped, since/epoch in the reconnect URL
// and in join frames, gap resets the position, seq-less messages de-duplicated by id.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, welcome, URL_345 } from './fake_websocket.mjs';

const msg = (room, seq, id = `m${seq}`) => ({ type: 'message', room, seq, id, from: 'api', data: { n: seq } });

test('welcome gives the positions; messages advance them; a repeated seq is dropped', () => {
  const { c, sockets, of } = setup();
  sockets[0].open();
  sockets[0].receive(welcome([{ room: '345', seq: 10, epoch: 'E1' }]));
  assert.deepEqual(c.positions(), { 345: { seq: 10, epoch: 'E1' } });
  sockets[0].receive(msg('345', 10));     // at the position: seen before the welcome
  sockets[0].receive(msg('345', 11));
  sockets[0].receive(msg('345', 12));
  sockets[0].receive(msg('345', 12));     // duplicate
  sockets[0].receive(msg('345', 11));     // older
  sockets[0].receive(msg('345', 13));
  assert.deepEqual(of('message').map((m) => m.seq), [11, 12, 13]);
  assert.deepEqual(of('message')[0], msg('345', 11));
  assert.deepEqual(c.positions(), { 345: { seq: 13, epoch: 'E1' } });
  c.close();
});

test('reconnect: since/epoch of the URL room in the URL, other rooms rejoined with theirs', async () => {
  const { c, sockets, timers, of } = setup({ url: `${URL_345}?lang=en&since=1&epoch=old` });
  sockets[0].open();
  sockets[0].receive(welcome([{ room: '345', seq: 10, epoch: 'E1' }]));
  const joining = c.join('346');
  assert.deepEqual(sockets[0].frames().at(-1), { type: 'join', room: '346' });
  sockets[0].receive({ type: 'joined', room: '346', seq: 40, epoch: 'F1' });
  assert.deepEqual(await joining, { type: 'joined', room: '346', seq: 40, epoch: 'F1' });
  c.join('347');
  sockets[0].receive({ type: 'joined', room: '347' });   // no history there
  sockets[0].receive(msg('345', 11));
  sockets[0].receive(msg('346', 41));
  assert.deepEqual(c.rooms(), ['345', '346', '347']);

  sockets[0].drop(1006);
  timers.runNext();
  // Other query parameters kept, old since/epoch replaced.
  assert.equal(sockets[1].url, `${URL_345}?lang=en&since=11&epoch=E1`);
  assert.equal(c.url, sockets[1].url);
  sockets[1].open();
  assert.deepEqual(sockets[1].frames(), [
    { type: 'join', room: '346', since: 41, epoch: 'F1' },
    { type: 'join', room: '347' },
  ]);

  // The node answers: welcome with the head (14), the missed messages, recovered, live ones.
  sockets[1].receive(welcome([{ room: '345', seq: 14, epoch: 'E1' }], { node: 'n2', session: 's-2' }));
  assert.equal(c.node, 'n2');
  assert.equal(c.session, 's-2');
  assert.deepEqual(c.positions()['345'], { seq: 11, epoch: 'E1' });   // not the head: 12..14 follow
  for (const s of [12, 13, 14]) sockets[1].receive(msg('345', s));
  sockets[1].receive({ type: 'recovered', room: '345', from: 12, to: 14 });
  sockets[1].receive(msg('345', 14));   // a live copy of one already recovered
  sockets[1].receive(msg('345', 15));
  sockets[1].receive({ type: 'joined', room: '346', seq: 42, epoch: 'F1' });
  sockets[1].receive(msg('346', 42));
  sockets[1].receive({ type: 'recovered', room: '346', from: 42, to: 42 });
  assert.deepEqual(of('message').filter((m) => m.room === '345').map((m) => m.seq), [11, 12, 13, 14, 15]);
  assert.deepEqual(of('message').filter((m) => m.room === '346').map((m) => m.seq), [41, 42]);
  assert.deepEqual(of('recovered'), [
    { type: 'recovered', room: '345', from: 12, to: 14 },
    { type: 'recovered', room: '346', from: 42, to: 42 },
  ]);
  assert.deepEqual(c.positions(), { 345: { seq: 15, epoch: 'E1' }, 346: { seq: 42, epoch: 'F1' } });
  c.close();
});

test('no epoch known: the URL is left as given and the join carries no since', () => {
  const { c, sockets, timers } = setup();
  sockets[0].open();
  sockets[0].receive(welcome([{ room: '345' }]));   // the room keeps no history
  c.join('9');
  sockets[0].receive({ type: 'joined', room: '9' });
  sockets[0].drop(1012);
  timers.runNext();
  assert.equal(sockets[1].url, URL_345);
  sockets[1].open();
  assert.deepEqual(sockets[1].frames(), [{ type: 'join', room: '9' }]);
  c.close();
});

test('a welcome with another epoch replaces the position', () => {
  const { c, sockets, timers, of } = setup();
  sockets[0].open();
  sockets[0].receive(welcome([{ room: '345', seq: 10, epoch: 'E1' }]));
  sockets[0].drop(1006);
  timers.runNext();
  sockets[1].open();
  sockets[1].receive(welcome([{ room: '345', seq: 3, epoch: 'E2' }]));
  sockets[1].receive({ type: 'gap', room: '345', reason: 'epoch', seq: 3, epoch: 'E2' });
  sockets[1].receive(msg('345', 4));
  assert.deepEqual(c.positions()['345'], { seq: 4, epoch: 'E2' });
  assert.deepEqual(of('message').map((m) => m.seq), [4]);
  assert.equal(of('gap').length, 1);
  c.close();
});

test('gap sets the position to the frame and is emitted; a new epoch restarts at 1', () => {
  const { c, sockets, of } = setup();
  sockets[0].open();
  sockets[0].receive(welcome([{ room: '345', seq: 10, epoch: 'E1' }]));
  const gap = { type: 'gap', room: '345', reason: 'trimmed', seq: 50, epoch: 'E1' };
  sockets[0].receive(gap);
  assert.deepEqual(of('gap'), [gap]);
  assert.deepEqual(c.positions()['345'], { seq: 50, epoch: 'E1' });
  sockets[0].receive(msg('345', 50));   // covered by the gap
  sockets[0].receive(msg('345', 51));
  // History lost while connected: the node says so, numbering starts again.
  sockets[0].receive({ type: 'gap', room: '345', reason: 'epoch', seq: 0, epoch: 'E2' });
  sockets[0].receive(msg('345', 1));
  sockets[0].receive(msg('345', 2));
  assert.deepEqual(of('message').map((m) => m.seq), [51, 1, 2]);
  assert.deepEqual(c.positions()['345'], { seq: 2, epoch: 'E2' });
  c.close();
});

test('messages without seq are de-duplicated by id (the last 1,000 ids)', () => {
  const { c, sockets, of } = setup();
  sockets[0].open();
  sockets[0].receive(welcome());
  const user = (id) => ({ type: 'message', user: '452784', id, from: 'api', data: id });
  sockets[0].receive(user('u1'));
  sockets[0].receive(user('u1'));
  sockets[0].receive({ type: 'message', all: true, id: 'u1', from: 'api', data: 'again' });
  sockets[0].receive({ type: 'message', all: true, id: 'a1', from: 'api', data: 1 });
  sockets[0].receive({ type: 'message', room: '345', id: 'r1', from: 'api', data: 1 });   // no seq (no history)
  sockets[0].receive({ type: 'message', room: '345', id: 'r1', from: 'api', data: 1 });
  assert.deepEqual(of('message').map((m) => m.id), ['u1', 'a1', 'r1']);
  for (let i = 0; i < 1000; ++i) sockets[0].receive(user(`x${i}`));
  sockets[0].receive(user('x999'));   // still remembered
  sockets[0].receive(user('u1'));     // forgotten: 1,000 newer ids since
  assert.equal(of('message').length, 3 + 1000 + 1);
  assert.equal(of('message').at(-1).id, 'u1');
  c.close();
});

test('since/epoch given in the URL are used for the first welcome', () => {
  const { c, sockets, of } = setup({ url: `${URL_345}?since=5&epoch=E1` });
  assert.equal(sockets[0].url, `${URL_345}?since=5&epoch=E1`);
  sockets[0].open();
  sockets[0].receive(welcome([{ room: '345', seq: 7, epoch: 'E1' }]));
  sockets[0].receive(msg('345', 6));
  sockets[0].receive(msg('345', 7));
  assert.deepEqual(of('message').map((m) => m.seq), [6, 7]);
  c.close();
});

test('leave: not rejoined after a reconnect', async () => {
  const { c, sockets, timers, of } = setup();
  sockets[0].open();
  sockets[0].receive(welcome());
  c.join('346');
  sockets[0].receive({ type: 'joined', room: '346', seq: 1, epoch: 'F' });
  const leaving = c.leave('346');
  assert.deepEqual(sockets[0].frames().at(-1), { type: 'leave', room: '346' });
  sockets[0].receive({ type: 'left', room: '346' });
  assert.deepEqual(await leaving, { type: 'left', room: '346' });
  assert.deepEqual(of('left'), [{ type: 'left', room: '346' }]);
  assert.deepEqual(c.rooms(), ['345']);
  assert.equal(c.positions()['346'], undefined);
  sockets[0].drop(1006);
  timers.runNext();
  sockets[1].open();
  assert.deepEqual(sockets[1].frames(), []);
  c.close();
});
