// URL resolution: ws(s) as given, http(s) -> ws(s), relative against the page.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, resolveUrl } from '../../../web/roomcast.js';
import { setup, fakeWebSocketClass } from './fake_websocket.mjs';

const PATH = '/demo/websocket/345/STU/452784/tok/pc';

test('ws: and wss: URLs are used as given', () => {
  assert.equal(resolveUrl(`ws://h:8091${PATH}`), `ws://h:8091${PATH}`);
  assert.equal(resolveUrl(`wss://h${PATH}?a=1`), `wss://h${PATH}?a=1`);
});

test('http: becomes ws:, https: becomes wss:', () => {
  assert.equal(resolveUrl(`http://h:8091${PATH}`), `ws://h:8091${PATH}`);
  assert.equal(resolveUrl(`https://h${PATH}`), `wss://h${PATH}`);
});

test('a relative URL is resolved against the page, wss: on an https page', () => {
  assert.equal(resolveUrl(PATH, { href: 'https://app.example/class/room.html', protocol: 'https:' }),
    `wss://app.example${PATH}`);
  assert.equal(resolveUrl(PATH, { href: 'http://127.0.0.1:8091/classroom.html?x=1', protocol: 'http:' }),
    `ws://127.0.0.1:8091${PATH}`);
  assert.equal(resolveUrl('x/y', { href: 'http://h/a/b.html', protocol: 'http:' }), 'ws://h/a/x/y');
});

test('a relative URL uses globalThis.location in a browser', () => {
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'location');
  globalThis.location = { href: 'https://app.example/index.html', protocol: 'https:' };
  try {
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const c = connect({ url: PATH, WebSocket: FakeWebSocket, fetch: null });
    assert.equal(sockets[0].url, `wss://app.example${PATH}`);
    assert.equal(c.url, `wss://app.example${PATH}`);
    c.close();
  } finally {
    if (saved) Object.defineProperty(globalThis, 'location', saved);
    else delete globalThis.location;
  }
});

test('bad URLs are refused at connect()', () => {
  assert.throws(() => resolveUrl(PATH, undefined), /needs a page location/);
  assert.throws(() => resolveUrl('ftp://h/x'), /not ws\(s\) or http\(s\)/);
  assert.throws(() => resolveUrl(''), /url is required/);
  assert.throws(() => connect({}), /url is required/);
});

test('the first socket opens on the resolved URL, state connecting', () => {
  const { c, sockets } = setup({ url: `http://127.0.0.1:8091${PATH}` });
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, `ws://127.0.0.1:8091${PATH}`);
  assert.equal(c.state, 'connecting');
  c.close();
});
