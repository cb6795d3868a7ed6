// An EventSource for Node (which has none), over fetch, with the browser's reconnection: when a
// stream that was open ends (a killed node, a proxy dropping it), it reconnects to the same URL
// after `retryMs` and sends the last event id it saw as Last-Event-ID — what a browser does, and
// what the node recovers from. A response other than 200 text/event-stream fails it for good
// (readyState CLOSED), as in a browser. Used by the JS integration tests only.
export class NodeEventSource {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;

  constructor(url, { retryMs = 200, random = Math.random, headers = {}, onAttempt = null } = {}) {
    this.url = String(url);
    this.readyState = NodeEventSource.CONNECTING;
    this.lastEventId = '';
    this.onopen = this.onmessage = this.onerror = null;
    this.retryMs = retryMs;
    this.random = random;
    this.headers = headers;
    this.onAttempt = onAttempt;   // (lastEventId) before each request
    this.ctl = null;
    this.#connect();
  }

  close() {
    this.readyState = NodeEventSource.CLOSED;
    if (this.ctl) this.ctl.abort();
  }

  async #connect() {
    if (this.readyState === NodeEventSource.CLOSED) return;
    this.ctl = new AbortController();
    const headers = { Accept: 'text/event-stream', ...this.headers };
    if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
    if (this.onAttempt) this.onAttempt(this.lastEventId);
    let res;
    try {
      res = await fetch(this.url, { headers, signal: this.ctl.signal });
    } catch {
      return this.#lost();
    }
    if (res.status !== 200 || !String(res.headers.get('content-type')).startsWith('text/event-stream')) {
      res.body?.cancel().catch(() => {});
      if (this.readyState === NodeEventSource.CLOSED) return;
      this.readyState = NodeEventSource.CLOSED;
      if (this.onerror) this.onerror({ type: 'error', status: res.status });
      return;
    }
    if (this.readyState === NodeEventSource.CLOSED) return void res.body.cancel().catch(() => {});
    this.readyState = NodeEventSource.OPEN;
    if (this.onopen) this.onopen({ type: 'open' });
    const decoder = new TextDecoder();
    let buf = '';
    let data = null;
    let id = null;
    try {
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') {
            if (id !== null) this.lastEventId = id;
            if (data !== null && this.readyState === NodeEventSource.OPEN && this.onmessage) {
              this.onmessage({ type: 'message', data, lastEventId: this.lastEventId });
            }
            data = null;
            id = null;
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') data = data === null ? value : `${data}\n${value}`;
          else if (field === 'id') id = value;
        }
      }
    } catch { /* reset or aborted: the stream ended */ }
    this.#lost();
  }

  #lost() {
    if (this.readyState === NodeEventSource.CLOSED) return;
    this.readyState = NodeEventSource.CONNECTING;
    if (this.onerror) this.onerror({ type: 'error' });
    if (this.readyState === NodeEventSource.CLOSED) return;   // onerror closed it
    setTimeout(() => this.#connect(), this.retryMs * (0.5 + this.random()));
  }
}
