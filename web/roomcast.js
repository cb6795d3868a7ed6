// roomcast client: one WebSocket to a roomcast node, reconnected and recovered (docs/client.md);
// where WebSocket can't get through (a school proxy), the same over Server-Sent Events (a stream
// from GET, publishes with POST: option `transports`).
// An ES module with no dependencies; runs as is in browsers and in Node >= 20 (global WebSocket).

const DEFAULT_BACKOFF = { minMs: 250, maxMs: 10000, spreadMs: 3000 };
const MAX_WAITING = 1000;          // publishes kept while not open; more are refused
const SEEN_IDS = 1000;             // ids of seq-less messages remembered to drop redeliveries
const PROBE_TIMEOUT_MS = 5000;     // a probe that hangs counts as a network error
const ERROR_CLOSE_MS = 1000;       // an open socket's error with no close after it counts as a drop
const REFUSED = new Set([400, 401, 403, 404]);          // retrying would get the same answer
const PROTOCOL_CLOSES = new Set([1002, 1003, 1007, 1009]);
const SSE_AFTER_FAILURES = 3;      // WebSocket attempts that fail in a row before trying SSE

/**
 * The ws(s): URL for `url`: ws/wss as given, http(s) turned into ws(s), a relative URL resolved
 * against the page (`location`) with wss: when the page is https, ws: otherwise.
 * @param {string} url
 * @param {{href: string, protocol: string}} [loc] defaults to globalThis.location
 * @returns {string}
 */
export function resolveUrl(url, loc = globalThis.location) {
  if (typeof url !== 'string' || url === '') throw new TypeError('roomcast: url is required');
  let u;
  if (/^[a-z][a-z0-9+.-]*:/i.test(url)) {
    u = new URL(url);
  } else {
    if (!loc || !loc.href) throw new TypeError(`roomcast: relative url '${url}' needs a page location`);
    u = new URL(url, loc.href);   // the page's http(s) becomes ws(s) below
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new TypeError(`roomcast: url '${url}' is not ws(s) or http(s)`);
  u.hash = '';
  return u.href;
}

// url with since/epoch set; other query parameters are kept byte for byte.
function withRecovery(url, since, epoch) {
  const q = url.indexOf('?');
  const base = q < 0 ? url : url.slice(0, q);
  const params = q < 0 ? [] : url.slice(q + 1).split('&').filter((p) => p && !/^(since|epoch)(=|$)/.test(p));
  params.push(`since=${since}`, `epoch=${encodeURIComponent(epoch)}`);
  return `${base}?${params.join('&')}`;
}

// The route's URL for HTTP: ws(s) becomes http(s).
function httpUrl(url) {
  return url.replace(/^ws/, 'http');
}

// The SSE transport behind the WebSocket interface the connection uses: an EventSource for what
// the node sends, a POST of each frame for what the client sends (its answer — ack, error, pong —
// comes back as if received). The node ends a stream with {"type":"close","code","reason"}: that
// is this socket's close event. Any other end (network, a killed node) is a 1006 close: the
// EventSource is closed so that the connection reconnects itself, with since/epoch, as for a
// WebSocket (EventSource's own retry would keep the first URL).
class SseSocket {
  #es;
  #fetch;
  #url;
  #opened = false;
  #closed = false;

  constructor(url, EventSourceClass, fetchFn) {
    this.#url = httpUrl(url);
    this.#fetch = fetchFn;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    const es = new EventSourceClass(this.#url);
    this.#es = es;
    es.onopen = () => {
      if (this.#closed) return;
      this.#opened = true;
      if (this.onopen) this.onopen({ type: 'open' });
    };
    es.onmessage = (ev) => {
      if (this.#closed) return;
      let f = null;
      try { f = JSON.parse(ev.data); } catch { /* not ours */ }
      if (f && f.type === 'close') return this.#end(f.code, f.reason || '');
      if (this.onmessage) this.onmessage({ type: 'message', data: ev.data });
    };
    es.onerror = () => {
      if (this.#closed) return;
      if (!this.#opened) {
        // Refused or unreachable: no retry by EventSource; the connection probes and backs off.
        this.#closed = true;
        es.close();
        if (this.onerror) this.onerror({ type: 'error' });
        return;
      }
      this.#end(1006, '');
    };
  }

  send(text) {
    if (this.#closed) throw new Error('InvalidStateError: closed');
    if (!this.#fetch) throw new Error('roomcast: SSE needs fetch to send');
    Promise.resolve()
      .then(() => this.#fetch(this.#url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: text }))
      .then(async (res) => {
        if (res.status === 204) return;
        const body = await res.text();
        if (!this.#closed && body && this.onmessage) this.onmessage({ type: 'message', data: body });
      })
      .catch(() => { /* lost: a publish is sent again after the next open, or times out */ });
  }

  close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#es.close();
  }

  #end(code, reason) {
    this.#closed = true;
    this.#es.close();
    if (this.onclose) this.onclose({ type: 'close', code, reason, wasClean: code !== 1006 });
  }
}

function randomBase36(random) {
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === 'function') {
    const [a, b] = c.getRandomValues(new Uint32Array(2));
    return a.toString(36) + b.toString(36);
  }
  return Math.floor(random() * 2 ** 52).toString(36);
}

// A JWT's exp (Unix seconds), or undefined when the token is not a JWT with one.
function jwtExp(token) {
  try {
    const part = String(token).split('.')[1];
    if (!part) return undefined;
    const json = JSON.parse(atob(part.replace(/-/g, '+').replace(/_/g, '/')));
    return typeof json.exp === 'number' ? json.exp : undefined;
  } catch {
    return undefined;
  }
}

function failure(code, message, frame) {
  const e = new Error(`roomcast: ${message}`);
  e.code = code;
  if (frame) e.frame = frame;
  return e;
}

class Connection {
  #baseUrl;
  #url;
  #WebSocket;
  #EventSource;
  #transports;             // ['websocket'] or ['websocket', 'sse'] (or ['sse'])
  #transport;              // the one in use: 'websocket' until WebSocket failed SSE_AFTER_FAILURES times
  #sseAfter;
  #fetch;
  #setTimeout;
  #clearTimeout;
  #random;
  #backoff;
  #maxRetries;
  #publishTimeoutMs;
  #getToken = null;        // () => token | Promise<token>: sent as the first frame (URL token "-")
  #refreshTimer = null;    // sends a fresh token before the current one's exp
  #now;

  #state = 'connecting';
  #listeners = new Map();
  #ws = null;              // the current socket; events of any other socket are ignored
  #opened = false;         // the current socket fired open
  #timer = null;           // the pending reconnect
  #errorTimer = null;
  #probe = null;
  #retries = 0;            // reconnects scheduled since the last open
  #failures = 0;           // attempts that failed before open since the last open

  #welcome = null;
  #kicked = null;          // the kicked frame of the current socket
  #urlRoom;                // the URL's room, from the first welcome
  #initialRecovery = null; // since/epoch the caller put in the URL
  #positions = new Map();  // room -> {seq, epoch}
  #rooms = new Set();      // rooms the client is in (and rejoins after a reconnect)
  #joins = new Map();      // room -> [{resolve, reject}] waiting for joined
  #leaves = new Map();     // room -> [{resolve, reject}] waiting for left
  #publishes = new Map();  // id -> {text, resolve, reject, timer}; in send order
  #idPrefix;
  #idCounter = 0;
  #seenIds = new Set();
  #seenOrder = [];
  #confirmed = new Set();  // ids of must-arrive messages this client confirmed (the last SEEN_IDS)
  #confirmedOrder = [];

  constructor(opts) {
    this.#baseUrl = resolveUrl(opts.url);
    this.#url = this.#baseUrl;
    this.#transports = opts.transports ?? ['websocket'];
    if (!Array.isArray(this.#transports) || this.#transports.length === 0 ||
        this.#transports.some((t) => t !== 'websocket' && t !== 'sse')) {
      throw new TypeError("roomcast: transports is a list of 'websocket' and 'sse'");
    }
    this.#transport = this.#transports[0];
    this.#sseAfter = opts.sseAfterFailures ?? SSE_AFTER_FAILURES;
    this.#WebSocket = opts.WebSocket || globalThis.WebSocket;
    this.#EventSource = opts.EventSource || globalThis.EventSource;
    if (this.#transports.includes('websocket') && typeof this.#WebSocket !== 'function') {
      throw new TypeError('roomcast: no WebSocket (Node 20 needs --experimental-websocket, or pass options.WebSocket)');
    }
    if (this.#transports.includes('sse') && typeof this.#EventSource !== 'function') {
      if (this.#transports.length === 1) throw new TypeError('roomcast: no EventSource (pass options.EventSource)');
      this.#transports = ['websocket'];   // this runtime has no EventSource: WebSocket only
    }
    const f = opts.fetch !== undefined ? opts.fetch : globalThis.fetch;
    // Called as plain functions: a browser's fetch/setTimeout throw when called on another object.
    this.#fetch = typeof f === 'function' ? (url, init) => f(url, init) : null;
    const st = opts.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms));
    const ct = opts.clearTimeout || ((id) => globalThis.clearTimeout(id));
    this.#setTimeout = (fn, ms) => st(fn, ms);
    this.#clearTimeout = (id) => { if (id != null) ct(id); };
    this.#random = opts.random || Math.random;
    this.#backoff = { ...DEFAULT_BACKOFF, ...(opts.backoff || {}) };
    this.#maxRetries = opts.maxRetries ?? Infinity;
    this.#publishTimeoutMs = opts.publishTimeoutMs ?? 10000;
    if (opts.getToken != null && typeof opts.getToken !== 'function') throw new TypeError('roomcast: getToken must be a function');
    this.#getToken = opts.getToken ?? null;
    const now = opts.now || Date.now;
    this.#now = now;
    this.#idPrefix = Math.floor(now()).toString(36) + randomBase36(this.#random);   // unique across clients: ids are de-duplicated cluster-wide

    const q = new URL(this.#baseUrl).searchParams;
    if (q.has('since') && q.get('epoch')) {
      const since = Number(q.get('since'));
      if (Number.isInteger(since) && since >= 0) this.#initialRecovery = { seq: since, epoch: q.get('epoch') };
    }
    this.#open();
  }

  // ---------- public surface ----------

  get state() { return this.#state; }
  get node() { return this.#welcome ? this.#welcome.node : undefined; }
  get session() { return this.#welcome ? this.#welcome.session : undefined; }
  get welcome() { return this.#welcome; }
  get url() { return this.#url; }
  get transport() { return this.#transport; }

  positions() {
    const out = {};
    for (const [room, p] of this.#positions) out[room] = { seq: p.seq, epoch: p.epoch };
    return out;
  }

  rooms() {
    const out = [];
    if (this.#urlRoom !== undefined && this.#rooms.has(this.#urlRoom)) out.push(this.#urlRoom);
    for (const r of this.#rooms) if (r !== this.#urlRoom) out.push(r);
    return out;
  }

  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('roomcast: listener must be a function');
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const set = this.#listeners.get(event);
    if (set) set.delete(fn);
  }

  send(frame) {
    if (this.#state !== 'open') return false;
    return this.#send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  publish(data, { room, id, roles, platforms, users } = {}) {
    return new Promise((resolve, reject) => {
      if (this.#state === 'closed') return reject(failure('closed', 'connection is closed'));
      if (data === undefined) return reject(new TypeError('roomcast: publish needs data'));
      const pid = id != null ? String(id) : `${this.#idPrefix}-${(++this.#idCounter).toString(36)}`;
      if (this.#publishes.has(pid)) return reject(failure('duplicate_id', `publish '${pid}' is already waiting for its ack`));
      if (this.#state !== 'open' && this.#publishes.size >= MAX_WAITING) {
        return reject(failure('queue_full', `${MAX_WAITING} publishes are already waiting for the connection`));
      }
      const frame = { type: 'publish' };
      if (room != null) frame.room = String(room);
      // Filters: only the room's members with one of these roles (and platforms, and user ids) get it.
      if (roles != null) frame.roles = [...roles].map(String);
      if (platforms != null) frame.platforms = [...platforms].map(String);
      if (users != null) frame.users = [...users].map(String);
      frame.data = data;
      frame.id = pid;   // always: the server acks only a publish with an id, and de-duplicates by it
      let text;
      try { text = JSON.stringify(frame); } catch (e) { return reject(e); }
      const entry = { text, resolve, reject, timer: null };
      const ms = this.#publishTimeoutMs;
      if (Number.isFinite(ms) && ms > 0) {
        entry.timer = this.#setTimeout(() => {
          this.#publishes.delete(pid);
          reject(failure('timeout', `no ack for publish '${pid}' within ${ms} ms`));
        }, ms);
      }
      this.#publishes.set(pid, entry);
      if (this.#state === 'open') this.#send(text);
    });
  }

  join(room) {
    room = String(room);
    return new Promise((resolve, reject) => {
      if (this.#state === 'closed') return reject(failure('closed', 'connection is closed'));
      const waiting = this.#joins.get(room);
      if (waiting) return void waiting.push({ resolve, reject });
      this.#joins.set(room, [{ resolve, reject }]);
      if (this.#state === 'open') this.#send(JSON.stringify(this.#joinFrame(room)));
    });
  }

  leave(room) {
    room = String(room);
    return new Promise((resolve, reject) => {
      if (this.#state === 'closed') return reject(failure('closed', 'connection is closed'));
      this.#rooms.delete(room);   // not rejoined after a reconnect, whatever the answer
      if (this.#state !== 'open') {
        // No session to leave; the next one will not join it.
        this.#settle(this.#joins, room, 'reject', failure('left', `left room '${room}' before it was joined`));
        this.#positions.delete(room);
        return resolve({ type: 'left', room });
      }
      const waiting = this.#leaves.get(room);
      if (waiting) return void waiting.push({ resolve, reject });
      this.#leaves.set(room, [{ resolve, reject }]);
      this.#send(JSON.stringify({ type: 'leave', room }));
    });
  }

  close() {
    if (this.#state === 'closed') return;
    const ws = this.#detach();
    if (ws) {
      try { ws.close(1000); } catch { /* already closing */ }
    }
    this.#teardown('closed', 'connection was closed');
    this.#setState('closed');
  }

  // ---------- connection lifecycle ----------

  #open() {
    this.#url = this.#recoveryUrl();
    this.#opened = false;
    this.#kicked = null;
    let ws;
    try {
      ws = this.#transport === 'sse'
        ? new SseSocket(this.#url, this.#EventSource, this.#fetch)
        : new this.#WebSocket(this.#url);
    } catch (e) {
      // A failed attempt, reported later: a failure inside connect() reaches listeners attached after it.
      const dead = {};
      this.#ws = dead;
      queueMicrotask(() => {
        if (dead !== this.#ws) return;
        this.#detach();
        this.#attemptFailed(undefined, String((e && e.message) || e));
      });
      return;
    }
    this.#ws = ws;
    ws.onopen = () => { if (ws === this.#ws) this.#onOpen(); };
    ws.onmessage = (ev) => { if (ws === this.#ws) this.#onText(ev.data); };
    ws.onclose = (ev) => { if (ws === this.#ws) this.#onClose(ev.code, ev.reason); };
    ws.onerror = () => { if (ws === this.#ws) this.#onError(ws); };
  }

  #recoveryUrl() {
    const p = this.#urlRoom !== undefined ? this.#positions.get(this.#urlRoom) : undefined;
    return p && p.epoch ? withRecovery(this.#baseUrl, p.seq ?? 0, p.epoch) : this.#baseUrl;
  }

  #detach() {
    const ws = this.#ws;
    this.#ws = null;
    this.#clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    this.#clearTimeout(this.#errorTimer);
    this.#errorTimer = null;
    return ws;
  }

  #onOpen() {
    this.#opened = true;   // the upgrade went through (what the refused-handshake probe needs to know)
    if (!this.#getToken) return this.#onAuthenticated();
    // The token goes in the first frame, fresh for every connection (never in the URL); the node
    // says nothing until it has it.
    const ws = this.#ws;
    this.#sendToken(ws, 'auth', () => this.#onAuthenticated(), () => ws.close(1000, 'no token'));
  }

  // Asks getToken, sends {type, token} on ws (if it is still the current socket) and schedules the
  // next refresh; onFail after getToken threw or rejected (reported as an 'error' event).
  #sendToken(ws, type, onSent, onFail) {
    Promise.resolve()
      .then(() => this.#getToken())
      .then((token) => {
        if (ws !== this.#ws || this.#state === 'closed') return;
        ws.send(JSON.stringify({ type, token: String(token) }));
        this.#scheduleRefresh(ws, token);
        if (onSent) onSent();
      }, (e) => {
        if (ws !== this.#ws) return;
        this.#emit('error', failure('token', `getToken failed: ${e && e.message ? e.message : e}`));
        if (onFail) onFail();
      });
  }

  // The node closes a session whose token expired (4402): a new one goes out a minute (or a tenth
  // of its life) before the current one's exp, as {"type":"refresh"}.
  #scheduleRefresh(ws, token) {
    const exp = jwtExp(token);
    if (exp === undefined) return;
    const left = exp * 1000 - this.#now();
    const ahead = Math.min(60000, Math.max(1000, left / 10));
    this.#clearTimeout(this.#refreshTimer);
    this.#refreshTimer = this.#setTimeout(() => {
      this.#refreshTimer = null;
      this.#sendToken(ws, 'refresh');
    }, Math.max(0, left - ahead));
  }

  #onAuthenticated() {
    this.#retries = 0;
    this.#failures = 0;
    this.#state = 'open';   // set before the flush so that what it sends goes out; announced after
    // Rooms joined before, then joins asked for meanwhile, then publishes: a publish may be for one of them.
    for (const room of this.#rooms) if (room !== this.#urlRoom && !this.#joins.has(room)) this.#joins.set(room, []);
    for (const room of this.#joins.keys()) this.#send(JSON.stringify(this.#joinFrame(room)));
    // A leave sent on the lost connection: the new session is not in that room.
    for (const room of [...this.#leaves.keys()]) {
      this.#positions.delete(room);
      this.#settle(this.#leaves, room, 'resolve', { type: 'left', room });
    }
    // Unacked publishes again, same ids: the server answers duplicate:true for one it already took.
    for (const entry of this.#publishes.values()) this.#send(entry.text);
    this.#emit('state', 'open');
  }

  #onError(ws) {
    if (!this.#opened) {
      // Node 20's WebSocket (undici) fires only error, no close, when the upgrade is refused.
      this.#detach();
      this.#attemptFailed(undefined, '');
      return;
    }
    // Browsers follow with close; if nothing does, the connection is gone all the same.
    this.#clearTimeout(this.#errorTimer);
    this.#errorTimer = this.#setTimeout(() => {
      this.#errorTimer = null;
      if (ws === this.#ws) this.#onClose(1006, '');
    }, ERROR_CLOSE_MS);
  }

  #onClose(code, reason) {
    this.#detach();
    if (!this.#opened) return this.#attemptFailed(code, reason);
    reason = reason || '';
    // A kick ends for good; without a close frame (1006) the kicked frame tells.
    let kick = code;
    if ((code === 1006 || code == null) && this.#kicked) kick = this.#kicked.code;
    if (kick >= 4000 && kick <= 4999 && kick !== 4008) {
      return this.#stop('kicked', { type: 'kicked', code: kick, reason: reason || (this.#kicked && this.#kicked.reason) || '' });
    }
    if (PROTOCOL_CLOSES.has(code)) {
      this.#emit('error', { type: 'closed', code, reason });   // a client bug: say so, then carry on
      if (this.#state === 'closed') return;
    }
    this.#schedule(false, code, reason);
  }

  #attemptFailed(code, reason) {
    if (this.#state === 'closed') return;
    if (this.#fetch) this.#probeThen(code, reason);
    else this.#schedule(true, code, reason);
  }

  // The socket can't tell why the upgrade failed; a plain GET of the same URL gets the status.
  #probeThen(code, reason) {
    const url = httpUrl(this.#url);
    const ctl = typeof AbortController === 'function' ? new AbortController() : null;
    const probe = { done: false, timer: null, abort: () => { probe.done = true; if (ctl) ctl.abort(); } };
    this.#probe = probe;
    const finish = (status, body) => {
      if (probe.done) return;
      probe.done = true;
      this.#clearTimeout(probe.timer);
      this.#probe = null;
      if (this.#state === 'closed') return;
      if (REFUSED.has(status)) {
        const e = (body && typeof body === 'object' && body.error) || {};
        this.#stop('refused', { type: 'refused', status, code: e.code, message: e.message });
      } else {
        this.#schedule(true, code, reason, status);
      }
    };
    probe.timer = this.#setTimeout(() => { if (ctl) ctl.abort(); finish(0); }, PROBE_TIMEOUT_MS);
    Promise.resolve()
      .then(() => this.#fetch(url, ctl ? { method: 'GET', signal: ctl.signal } : { method: 'GET' }))
      .then(async (res) => {
        let body = null;
        if (REFUSED.has(res.status)) {
          try { body = await res.json(); } catch { /* not JSON: status only */ }
        } else if (res.body && typeof res.body.cancel === 'function') {
          res.body.cancel().catch(() => {});
        }
        finish(res.status, body);
      })
      .catch(() => finish(0));
  }

  // failed: the attempt never opened (backoff); else an open connection was lost (spread).
  // probed: the status the probe got (426: the node would take the upgrade), undefined without one.
  #schedule(failed, code, reason, probed) {
    if (this.#retries >= this.#maxRetries) {
      return this.#stop('gave_up', { type: 'gave_up', attempts: this.#retries, code, reason });
    }
    this.#retries += 1;
    let delayMs;
    if (failed) {
      this.#failures += 1;
      // WebSocket doesn't get through while the node would take it (its probe says 426; without
      // fetch there is no probe to ask): go on over SSE. A node that is down or full (probe 0, 503)
      // is not a reason.
      if (this.#transport === 'websocket' && this.#transports.includes('sse') &&
          (probed === 426 || !this.#fetch) && this.#failures >= this.#sseAfter) {
        this.#transport = 'sse';
        this.#emit('transport', 'sse');
      }
      const { minMs, maxMs } = this.#backoff;
      delayMs = this.#random() * Math.min(maxMs, minMs * 2 ** (this.#failures - 1));
    } else {
      // Everyone a dead node had comes back at once: spread them over spreadMs.
      delayMs = this.#random() * this.#backoff.spreadMs;
    }
    this.#setState('reconnecting');
    this.#emit('reconnect', { attempt: this.#retries, delayMs, code, reason });
    if (this.#state === 'closed') return;
    this.#timer = this.#setTimeout(() => {
      this.#timer = null;
      this.#open();
    }, delayMs);
  }

  #stop(why, error) {
    const ws = this.#detach();
    if (ws) {
      try { ws.close(1000); } catch { /* already closing */ }
    }
    this.#teardown(why, why === 'kicked' ? 'kicked by the backend' : why === 'refused' ? 'connection refused' : 'gave up reconnecting');
    this.#setState('closed');
    this.#emit('error', error);
  }

  // Cancels every timer and rejects everything pending: nothing is left to keep a process alive.
  #teardown(code, message) {
    this.#clearTimeout(this.#timer);
    this.#timer = null;
    this.#clearTimeout(this.#errorTimer);
    this.#errorTimer = null;
    if (this.#probe) {
      this.#clearTimeout(this.#probe.timer);
      this.#probe.abort();
      this.#probe = null;
    }
    const publishes = [...this.#publishes.values()];
    this.#publishes.clear();
    for (const p of publishes) {
      this.#clearTimeout(p.timer);
      p.reject(failure(code, message));
    }
    for (const map of [this.#joins, this.#leaves]) {
      for (const room of [...map.keys()]) this.#settle(map, room, 'reject', failure(code, message));
    }
  }

  // ---------- frames ----------

  #onText(text) {
    if (typeof text !== 'string') return;   // the server sends text only
    let f;
    try { f = JSON.parse(text); } catch { return; }
    if (!f || typeof f !== 'object' || Array.isArray(f)) return;
    this.#emit('frame', f);
    if (this.#state === 'closed') return;
    switch (f.type) {
      case 'welcome': return this.#onWelcome(f);
      case 'message': return this.#onMessage(f);
      case 'recovered': {
        const p = this.#positions.get(f.room);
        if (p && typeof f.to === 'number' && !(p.seq >= f.to)) p.seq = f.to;
        return this.#emit('recovered', f);
      }
      case 'gap':
        // Where the room is now: what is before it is lost for this client.
        this.#positions.set(f.room, { seq: typeof f.seq === 'number' ? f.seq : 0, epoch: f.epoch || undefined });
        return this.#emit('gap', f);
      case 'joined':
        this.#place(f.room, f.seq, f.epoch);
        this.#rooms.add(f.room);
        this.#settle(this.#joins, f.room, 'resolve', f);
        return this.#emit('joined', f);
      case 'left':
        this.#rooms.delete(f.room);
        this.#positions.delete(f.room);
        this.#settle(this.#leaves, f.room, 'resolve', f);
        return this.#emit('left', f);
      case 'ack': {
        const p = this.#publishes.get(f.id);
        if (p) {
          this.#publishes.delete(f.id);
          this.#clearTimeout(p.timer);
          p.resolve(f);
        }
        return;
      }
      case 'error': return this.#onErrorFrame(f);
      case 'kicked':
        this.#kicked = f;
        return this.#emit('kicked', f);
      case 'presence': return this.#emit('presence', f);
      default:
        return;   // pong and anything newer
    }
  }

  #onWelcome(f) {
    this.#welcome = f;
    const rooms = Array.isArray(f.rooms) ? f.rooms : [];
    if (rooms.length > 0 && this.#urlRoom === undefined) {
      this.#urlRoom = rooms[0].room;
      if (this.#initialRecovery) this.#positions.set(this.#urlRoom, this.#initialRecovery);
      this.#initialRecovery = null;
    }
    for (const r of rooms) {
      this.#place(r.room, r.seq, r.epoch);
      this.#rooms.add(r.room);
    }
    this.#emit('welcome', f);
  }

  // A room's position from welcome/joined: the room's head. When the client recovers in the same
  // epoch, the missed messages (up to that head) follow, so the client's own seq is kept.
  #place(room, seq, epoch) {
    if (!epoch) return;   // no history (or the store is down): nothing to recover with
    const p = this.#positions.get(room);
    const head = typeof seq === 'number' ? seq : 0;
    if (p && p.epoch === epoch && typeof p.seq === 'number') p.seq = Math.min(p.seq, head);
    else this.#positions.set(room, { seq: head, epoch });
  }

  #onMessage(f) {
    if (f.receipt === true && f.id != null) return this.#onMustArrive(f);
    if (f.room != null && typeof f.seq === 'number') {
      const p = this.#positions.get(f.room);
      if (p && typeof p.seq === 'number' && f.seq <= p.seq) return;   // seen already (recovery overlap)
      if (p) p.seq = f.seq;
      else this.#positions.set(f.room, { seq: f.seq, epoch: undefined });
    } else if (f.id != null) {
      if (this.#seenIds.has(f.id)) return;
      this.#seenIds.add(f.id);
      this.#seenOrder.push(f.id);
      if (this.#seenOrder.length > SEEN_IDS) this.#seenIds.delete(this.#seenOrder.shift());
    }
    this.#emit('message', f);
  }

  // A message that asks for a receipt: the server sends it again (after a reconnect, maybe with an
  // older seq) until this user confirms it, so it is handled by id: handed to the app once, then
  // confirmed once the app's handlers have run.
  #onMustArrive(f) {
    if (f.room != null && typeof f.seq === 'number') {
      const p = this.#positions.get(f.room);
      if (!p) this.#positions.set(f.room, { seq: f.seq, epoch: undefined });
      else if (!(typeof p.seq === 'number' && f.seq <= p.seq)) p.seq = f.seq;
    }
    if (!this.#confirmed.has(f.id)) {
      this.#emit('message', f);
      this.#confirmed.add(f.id);
      this.#confirmedOrder.push(f.id);
      if (this.#confirmedOrder.length > SEEN_IDS) this.#confirmed.delete(this.#confirmedOrder.shift());
    }
    // Again when it comes again: the first confirm may have been lost with the connection.
    this.#send(JSON.stringify({ type: 'received', id: f.id }));
  }

  #onErrorFrame(f) {
    // The error names the frame's id (publish) or, without one, the room it named (join/leave).
    if (f.id != null) {
      const p = this.#publishes.get(f.id);
      if (p) {
        this.#publishes.delete(f.id);
        this.#clearTimeout(p.timer);
        p.reject(failure(f.code, `${f.code}: ${f.message}`, f));
      }
    } else if (f.room != null) {
      if (this.#joins.has(f.room)) {
        this.#rooms.delete(f.room);
        this.#settle(this.#joins, f.room, 'reject', failure(f.code, `${f.code}: ${f.message}`, f));
      } else {
        this.#settle(this.#leaves, f.room, 'reject', failure(f.code, `${f.code}: ${f.message}`, f));
      }
    }
    this.#emit('error', f);
  }

  // ---------- helpers ----------

  #joinFrame(room) {
    const frame = { type: 'join', room };
    const p = this.#positions.get(room);
    if (p && p.epoch) {
      frame.since = p.seq ?? 0;
      frame.epoch = p.epoch;
    }
    return frame;
  }

  #settle(map, room, how, value) {
    const waiting = map.get(room);
    if (!waiting) return;
    map.delete(room);
    for (const w of waiting) w[how](value);
  }

  #send(text) {
    if (!this.#ws) return false;
    try {
      this.#ws.send(text);
      return true;
    } catch {
      return false;   // closing: its close event comes next
    }
  }

  #setState(s) {
    if (this.#state === s) return;
    this.#state = s;
    this.#emit('state', s);
  }

  #emit(event, arg) {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (e) {
        queueMicrotask(() => { throw e; });   // reported as uncaught, without breaking the connection
      }
    }
  }
}

/**
 * Connects to a roomcast node and keeps connected: reconnects with backoff, recovers missed room
 * messages, resends unacknowledged publishes. See docs/client.md.
 *
 * @param {object} options
 * @param {string} options.url WebSocket URL (ws:, wss:, http:, https: or relative to the page)
 * @param {{minMs?: number, maxMs?: number, spreadMs?: number}} [options.backoff]
 *   defaults {minMs: 250, maxMs: 10000, spreadMs: 3000}
 * @param {number} [options.maxRetries=Infinity] reconnects in a row that may fail before giving up
 * @param {number} [options.publishTimeoutMs=10000] how long publish() waits for the ack
 * @param {() => string|Promise<string>} [options.getToken] called on every connect; its token is sent
 *   as the first frame ({"type":"auth"}), for a URL whose token segment is "-" (auth = jwt)
 * @param {string[]} [options.transports=['websocket']] `['websocket', 'sse']`: after `sseAfterFailures`
 *   WebSocket attempts failed in a row, go on over Server-Sent Events (EventSource + POST) for good
 * @param {number} [options.sseAfterFailures=3]
 * @param {Function} [options.WebSocket] WebSocket class (default globalThis.WebSocket)
 * @param {Function} [options.EventSource] EventSource class for SSE (default globalThis.EventSource)
 * @param {Function|null} [options.fetch] fetch for the refused-handshake probe (default globalThis.fetch; null: no probe)
 * @param {() => number} [options.random] [0,1) source for jitter (default Math.random)
 * @param {Function} [options.setTimeout] timer functions (default the global ones)
 * @param {Function} [options.clearTimeout]
 * @param {() => number} [options.now] clock in ms (default Date.now), seeds publish ids
 * @returns {Connection}
 */
export function connect(options) {
  if (!options || typeof options !== 'object') throw new TypeError('roomcast: connect({ url }) needs options');
  return new Connection(options);
}
