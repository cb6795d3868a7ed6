// Test doubles for web/roomcast.js: a WebSocket the test drives by hand, timers that run only when
// the test says so, a fetch with canned answers. No network, no real time.
import { connect } from '../../../web/roomcast.js';

export const URL_345 = 'ws://127.0.0.1:8091/demo/websocket/345/STU/452784/tok/pc';

// A WebSocket class with its own list of instances (one per attempt).
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;

    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closeCalls = [];
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }

    send(text) {
      if (this.readyState !== 1) throw new Error('InvalidStateError: not open');
      this.sent.push(text);
    }

    close(code, reason) {
      this.closeCalls.push({ code, reason });
      this.readyState = 2;
    }

    // ---- the server side, driven by the test ----
    open() {
      this.readyState = 1;
      if (this.onopen) this.onopen({ type: 'open' });
    }

    receive(frame) {
      const data = typeof frame === 'string' ? frame : JSON.stringify(frame);
      if (this.onmessage) this.onmessage({ type: 'message', data });
    }

    drop(code = 1006, reason = '') {
      this.readyState = 3;
      if (this.onclose) this.onclose({ type: 'close', code, reason, wasClean: code !== 1006 });
    }

    fail() {
      if (this.onerror) this.onerror({ type: 'error' });
    }

    frames() {
      return this.sent.map((t) => JSON.parse(t));
    }
  }
  return { FakeWebSocket, sockets };
}

// setTimeout/clearTimeout on a virtual clock.
export function fakeTimers() {
  let now = 0;
  let nextId = 1;
  const timers = new Map();
  return {
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { fn, ms, at: now + ms });
      return id;
    },
    clearTimeout(id) {
      timers.delete(id);
    },
    now: () => now,
    // Pending timers, earliest first: [{id, ms, at}].
    pending() {
      return [...timers.entries()].map(([id, t]) => ({ id, ms: t.ms, at: t.at })).sort((a, b) => a.at - b.at || a.id - b.id);
    },
    // Moves the clock forward, running what falls due in order.
    advance(ms) {
      const until = now + ms;
      for (;;) {
        const next = this.pending().find((t) => t.at <= until);
        if (!next) break;
        const t = timers.get(next.id);
        timers.delete(next.id);
        now = t.at;
        t.fn();
      }
      now = until;
    },
    // Runs the earliest timer; returns its delay.
    runNext() {
      const next = this.pending()[0];
      if (!next) throw new Error('no pending timer');
      const t = timers.get(next.id);
      timers.delete(next.id);
      now = t.at;
      t.fn();
      return next.ms;
    },
  };
}

// fetch answering with the given statuses in turn ({status, body} or an Error to reject with).
export function fakeFetch(...answers) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, init });
    const a = answers.length > 1 ? answers.shift() : answers[0];
    if (a instanceof Error) throw a;
    return { status: a.status, ok: a.status < 300, json: async () => a.body };
  };
  fn.calls = calls;
  return fn;
}

// Lets promise callbacks (the probe, publish settlements) run.
export const settle = () => new Promise((resolve) => setImmediate(resolve));

// A connection on fakes, with every event recorded in order.
export function setup(options = {}) {
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const timers = fakeTimers();
  const c = connect({
    url: URL_345,
    WebSocket: FakeWebSocket,
    fetch: null,
    random: () => 0.5,
    setTimeout: (fn, ms) => timers.setTimeout(fn, ms),
    clearTimeout: (id) => timers.clearTimeout(id),
    now: timers.now,
    ...options,
  });
  const events = [];
  for (const e of ['state', 'welcome', 'message', 'recovered', 'gap', 'joined', 'left', 'kicked', 'error', 'reconnect', 'presence']) {
    c.on(e, (v) => events.push([e, v]));
  }
  const of = (name) => events.filter(([e]) => e === name).map(([, v]) => v);
  const ws = () => sockets[sockets.length - 1];
  return { c, sockets, ws, timers, events, of };
}

export const welcome = (rooms = [{ room: '345', seq: 10, epoch: 'E1' }], extra = {}) => ({
  type: 'welcome', node: 'n1', session: 's-1', user: '452784', rooms, ...extra,
});
