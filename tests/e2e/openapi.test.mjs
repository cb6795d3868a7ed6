// The HTTP contract (docs/openapi.yaml) against real roomcast nodes: every operation of the file is
// called with valid and invalid input, and every answer is checked against the file - its status
// must be documented for that operation, its required headers present and valid, its body valid
// against the schema of that status and content type (Ajv, JSON Schema 2020-12). The test also
// fails when an operation of the file was never called (but those in NOT_EXERCISED_YET), and checks
// its own requests the other way round: a request it expects to succeed must match the file's
// request schema and parameters, one it expects the server to refuse must not.
//   node openapi.test.mjs <roomcast binary> [<openapi.yaml>]     (or ROOMCAST_BIN=…)
// Four nodes, all on 127.0.0.1 with free ports: the main one (api_key, jwt, allowed_origins,
// history rules), a limited one (api_publish_rate 1, max_connections 1), one whose Redis (history
// and registry) is unreachable, one whose RabbitMQ broker is unreachable. Exits 0 on success;
// prints "N passed, N failed".
import Ajv2020 from 'ajv/dist/2020.js';
import YAML from 'yaml';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = process.argv[2] || process.env.ROOMCAST_BIN;
const specPath = process.argv[3] || path.join(here, '../../docs/openapi.yaml');
if (!bin) throw new Error('usage: node openapi.test.mjs <roomcast binary> [<openapi.yaml>] (or ROOMCAST_BIN)');

// Operations of the file that no test here calls yet (none today). An operation listed here that
// does get called fails the test too (the list must not go stale).
const NOT_EXERCISED_YET = new Set([]);

const TEST_TIMEOUT_MS = 20000;  // per check; ctest's TIMEOUT bounds the whole run
const started = Date.now();

// ---------------------------------------------------------------- the contract

const spec = YAML.parse(fs.readFileSync(specPath, 'utf8'));
const SCHEMA_ID = 'https://roomcast.invalid/openapi';
// components.schemas become the $defs of one schema document; '#/components/schemas/X' refs are
// rewritten to point there, so every response schema is compiled against the same definitions.
function rewriteRefs(v) {
  if (Array.isArray(v)) return v.map(rewriteRefs);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      out[k] = k === '$ref' && typeof x === 'string' && x.startsWith('#/components/schemas/')
        ? `${SCHEMA_ID}#/$defs/${x.slice('#/components/schemas/'.length)}`
        : rewriteRefs(x);
    }
    return out;
  }
  return v;
}
const ajv = new Ajv2020({ strict: true, strictTypes: false, strictRequired: false, allErrors: true });
ajv.addSchema({ $id: SCHEMA_ID, $defs: rewriteRefs(spec.components?.schemas ?? {}) });
const compiled = new Map();
function validator(key, schema) {
  if (!compiled.has(key)) compiled.set(key, ajv.compile(rewriteRefs(schema)));
  return compiled.get(key);
}
function deref(o) {
  // OpenAPI-level refs (responses, parameters, headers): '#/components/<kind>/<name>'.
  while (o && o.$ref) {
    const parts = o.$ref.replace(/^#\//, '').split('/');
    o = parts.reduce((x, p) => x?.[p], spec);
    if (!o) throw new Error(`dangling $ref`);
  }
  return o;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const routes = Object.entries(spec.paths).map(([template, item]) => {
  const names = [];
  const re = new RegExp('^' + template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_, n) => {
    names.push(n);
    return '([^/]*)';  // empty too: the server answers an empty name itself (400)
  }) + '$');
  const ops = {};
  for (const m of METHODS) if (item[m]) ops[m] = item[m];
  return { template, re, names, ops, item };
});
const allOperations = routes.flatMap((r) => Object.keys(r.ops).map((m) => `${m.toUpperCase()} ${r.template}`));
for (const op of NOT_EXERCISED_YET)
  if (!allOperations.includes(op)) throw new Error(`NOT_EXERCISED_YET names ${op}, which the file does not have`);

const exercised = new Set();  // "GET /api/stats"
const statusSeen = new Set();  // "GET /api/stats 200"

function findRoute(p) {
  // Templates match whole segments, so at most one usually matches; if several do, the one with
  // the fewest parameters (the most literal) wins.
  const hits = routes.filter((r) => r.re.test(p)).sort((a, b) => a.names.length - b.names.length);
  if (!hits.length) return null;
  const r = hits[0];
  const m = r.re.exec(p);
  const params = {};
  r.names.forEach((n, i) => { params[n] = decodeURIComponent(m[i + 1]); });
  return { route: r, params };
}

function coerce(schema, raw) {
  const s = deref(schema);
  const t = s.type ?? (typeof s.const === 'number' ? 'integer' : undefined);
  if ((t === 'integer' || t === 'number') && /^-?\d+(\.\d+)?$/.test(raw)) return Number(raw);
  return raw;
}

function schemaErrors(v) {
  return ajv.errorsText(v.errors, { separator: '; ', dataVar: 'body' });
}

// Checks one real answer against the file (and marks its operation exercised); throws with every
// mismatch.
function checkAgainstSpec(method, target, res) {
  const url = new URL(target, 'http://x');
  const found = findRoute(url.pathname);
  const problems = [];
  let response, where;
  if (!found) {
    if (!url.pathname.startsWith('/api')) throw new Error(`no path of the file matches ${url.pathname}`);
    response = deref(spec.components.responses.UnknownEndpoint);
    where = `unknown endpoint ${url.pathname}`;
    // 401 comes first when the node has a key.
    if (res.status === 401) response = deref(spec.components.responses.Unauthorized);
    else if (res.status !== 404) throw new Error(`${where}: status ${res.status}, the file says 404 (or 401)`);
  } else {
    const { route } = found;
    const op = route.ops[method.toLowerCase()];
    if (!op) {
      // A method the path does not take: its operations list what the path answers (405).
      const any = Object.values(route.ops)[0];
      where = `${method} ${route.template} (not an operation)`;
      if (res.status !== 405 && !(res.status === 401 && route.template.startsWith('/api/')))
        throw new Error(`${where}: status ${res.status}, expected 405`);
      response = deref(any.responses[String(res.status)]);
      if (!response) throw new Error(`${where}: ${res.status} is not in the file`);
      const allow = res.headers.allow;
      const takes = Object.keys(route.ops).map((m) => m.toUpperCase());
      if (res.status === 405 && !(allow && allow.split(/,\s*/).some((a) => takes.includes(a))))
        problems.push(`Allow "${allow}" names none of ${takes.join(', ')}`);
      for (const m of Object.keys(route.ops)) statusSeen.add(`${m.toUpperCase()} ${route.template} ${res.status}`);
    } else {
      const key = `${method.toUpperCase()} ${route.template}`;
      where = key;
      exercised.add(key);
      statusSeen.add(`${key} ${res.status}`);
      response = op.responses[String(res.status)] && deref(op.responses[String(res.status)]);
      if (!response) throw new Error(`${key}: status ${res.status} is not documented (body ${res.text.slice(0, 300)})`);
    }
  }
  // Headers the file requires (and the value of every documented header that is present).
  for (const [name, h0] of Object.entries(response.headers ?? {})) {
    const h = deref(h0);
    const value = res.headers[name.toLowerCase()];
    if (value === undefined) {
      if (h.required) problems.push(`header ${name} missing`);
      continue;
    }
    if (h.schema) {
      const v = validator(`header ${where} ${res.status} ${name}`, h.schema);
      if (!v(coerce(h.schema, value))) problems.push(`header ${name}: "${value}": ${schemaErrors(v)}`);
    }
  }
  // Body: by content type; none documented = none sent.
  const content = response.content;
  if (!content) {
    if (res.text.length) problems.push(`a body where the file has none: ${res.text.slice(0, 200)}`);
  } else {
    const ct = (res.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    const media = content[ct];
    if (!media) {
      problems.push(`Content-Type "${res.headers['content-type']}" is not one of ${Object.keys(content).join(', ')}`);
    } else if (media.schema) {
      let body = res.text;
      if (ct === 'application/json') {
        try {
          body = JSON.parse(res.text);
        } catch (e) {
          problems.push(`body is not JSON: ${e.message}: ${res.text.slice(0, 200)}`);
        }
      }
      const v = validator(`body ${where} ${res.status} ${ct}`, media.schema);
      if (!problems.length && !v(body)) problems.push(`body: ${schemaErrors(v)}; got ${res.text.slice(0, 400)}`);
    }
  }
  if (problems.length) throw new Error(`${where} ${res.status}: ${problems.join(' | ')}`);
}

// The request side: does the file accept this request (parameters and body)?
function requestMatchesSpec(method, target, body) {
  const url = new URL(target, 'http://x');
  const found = findRoute(url.pathname);
  if (!found) return { ok: false, why: 'no such path' };
  const op = found.route.ops[method.toLowerCase()];
  if (!op) return { ok: false, why: 'no such operation' };
  const why = [];
  const params = [...(found.route.item.parameters ?? []), ...(op.parameters ?? [])].map(deref);
  for (const p of params) {
    let raw;
    if (p.in === 'path') raw = found.params[p.name];
    else if (p.in === 'query') raw = url.searchParams.has(p.name) ? url.searchParams.get(p.name) : undefined;
    else continue;
    if (raw === undefined) {
      if (p.required) why.push(`${p.name} missing`);
      continue;
    }
    const v = validator(`param ${method} ${found.route.template} ${p.name}`, p.schema);
    if (!v(coerce(p.schema, raw))) why.push(`${p.in} ${p.name}: ${schemaErrors(v)}`);
  }
  if (body !== undefined && op.requestBody) {
    const schema = deref(op.requestBody).content?.['application/json']?.schema;
    let json;
    try {
      json = JSON.parse(body);
    } catch {
      why.push('body is not JSON');
    }
    if (schema && json !== undefined) {
      const v = validator(`request ${method} ${found.route.template}`, schema);
      if (!v(json)) why.push(`body: ${schemaErrors(v)}`);
    }
  }
  return { ok: why.length === 0, why: why.join('; ') };
}

// ---------------------------------------------------------------- HTTP

function httpRequest(port, method, target, { headers = {}, body, upgrade = false, endBody = true } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers, agent: false });
    const timer = setTimeout(() => { req.destroy(new Error(`${method} ${target}: no answer in 10 s`)); }, 10000);
    req.on('error', (e) => { clearTimeout(timer); reject(e); });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') });
        if (!endBody) req.destroy();
      });
      res.on('error', (e) => { clearTimeout(timer); reject(e); });
    });
    if (upgrade) {
      req.on('upgrade', (res, socket, head) => {
        clearTimeout(timer);
        resolve({ status: res.statusCode, headers: res.headers, text: '', socket, head });
      });
    }
    if (body !== undefined) req.write(body);
    if (endBody) req.end();
    else req.flushHeaders();
  });
}

let apiKey = '';  // the main node's; set below
// One call: sent, checked against the file, and against what the test expected (status).
//   expect: the status (or statuses) this case is about; requestValid: true/false/undefined (skip)
async function call(port, method, target, { json, body, headers = {}, expect, requestValid, key, upgrade } = {}) {
  const h = { ...headers };
  if (key !== null && target.startsWith('/api')) h['X-API-Key'] = key ?? apiKey;
  if (json !== undefined) body = JSON.stringify(json);
  if (body !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type'))
    h['Content-Type'] = 'application/json';
  if (requestValid !== undefined) {
    const r = requestMatchesSpec(method, target, body);
    if (r.ok !== requestValid)
      throw new Error(`the file ${r.ok ? 'accepts' : 'refuses'} the request ${method} ${target.slice(0, 120)} ` +
                      `${(body ?? '').slice(0, 120)} ${r.why}; the test expects the server to ${requestValid ? 'accept' : 'refuse'} it`);
  }
  const res = await httpRequest(port, method, target, { headers: h, body, upgrade });
  checkAgainstSpec(method, target, res);
  const want = [expect].flat().filter((x) => x !== undefined);
  if (want.length && !want.includes(res.status)) {
    res.socket?.destroy();  // an upgrade that should have been refused
    throw new Error(`${method} ${target.slice(0, 120)}: status ${res.status}, expected ${want.join(' or ')}: ${res.text.slice(0, 300)}`);
  }
  if (res.headers['content-type']?.startsWith('application/json') && res.text) res.json = JSON.parse(res.text);
  return res;
}

// A body over max_body_bytes: only the headers (Content-Length says 2 MiB) - the node answers 413 as
// soon as it reads them, with nothing of ours left unread (which would reset the connection).
// 413 comes before the API key check.
async function callTooLarge(port, target, { key = apiKey } = {}) {
  const headers = { 'Content-Type': 'application/json', 'Content-Length': String(2 << 20) };
  if (key) headers['X-API-Key'] = key;
  const res = await httpRequest(port, 'POST', target, { headers, endBody: false });
  checkAgainstSpec('POST', target, res);
  if (res.status !== 413) throw new Error(`POST ${target} with 2 MiB: ${res.status}`);
}

// ---------------------------------------------------------------- WebSocket (raw, just enough)

// Opens a WebSocket through the upgrade route: the 101 is checked against the file; frames the
// node sends are collected (text frames parsed as JSON). Nothing is sent back (no pong, no close).
async function wsOpen(port, target, headers = {}) {
  const res = await call(port, 'GET', target, {
    upgrade: true, expect: 101,
    headers: {
      Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
      'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'), Origin: 'http://good.example', ...headers,
    },
  });
  const ws = { socket: res.socket, frames: [], closed: false, buf: Buffer.alloc(0) };
  const parse = () => {
    for (;;) {
      const b = ws.buf;
      if (b.length < 2) return;
      let len = b[1] & 0x7f, off = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        off = 10;
      }
      if (b.length < off + len) return;
      const opcode = b[0] & 0x0f, payload = b.subarray(off, off + len);
      ws.buf = b.subarray(off + len);
      if (opcode === 1) ws.frames.push(JSON.parse(payload.toString('utf8')));
      if (opcode === 8) ws.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
    }
  };
  ws.socket.on('data', (d) => { ws.buf = Buffer.concat([ws.buf, d]); parse(); });
  ws.socket.on('close', () => { ws.closed = true; });
  ws.socket.on('error', () => {});
  if (res.head?.length) { ws.buf = Buffer.from(res.head); parse(); }
  ws.waitFor = async (pred, what) => {
    for (let i = 0; i < 400; ++i) {
      const f = ws.frames.find(pred);
      if (f) return f;
      await sleep(10);
    }
    throw new Error(`no ${what} frame; got ${JSON.stringify(ws.frames).slice(0, 300)}`);
  };
  ws.close = () => ws.socket.destroy();
  ws.welcome = await ws.waitFor((f) => f.type === 'welcome', 'welcome');
  return ws;
}

// ---------------------------------------------------------------- nodes

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A port nothing listens on, below the kernel's ephemeral range (32768+) like scripts/free-port.sh,
// so that an outgoing connection can't take it before the node binds it.
function canBind(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}
async function freePort() {
  for (let i = 0; i < 200; ++i) {
    const p = 20000 + crypto.randomInt(12000);
    if (await canBind(p)) return p;
  }
  throw new Error('no free port');
}
// Where the unreachable Redis and broker are: a low port that refuses connections (no test server
// picks one below 10000), else a free one.
function refuses(port) {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port });
    c.once('connect', () => { c.destroy(); resolve(false); });
    c.once('error', () => resolve(true));
  });
}
async function refusedPort() {
  for (const p of [1, 9, 7]) if (await refuses(p)) return p;
  return freePort();
}

const nodes = [];
async function startNode(name, flags) {
  let log = '';
  for (let attempt = 0; attempt < 3; ++attempt) {  // again on another port if this one was taken
    const port = await freePort();
    const args = ['--listen-address', '127.0.0.1', '--port', String(port), '--node-id', `${name}-${port}`,
                  '--log-level', 'warn', ...flags];
    const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const n = { name, port, proc, log: '', exited: false, code: null, signal: null };
    proc.stderr.on('data', (d) => { n.log += d; });
    proc.on('exit', (code, signal) => Object.assign(n, { exited: true, code, signal }));
    nodes.push(n);
    for (let i = 0; i < 500 && !n.exited; ++i) {
      try {
        const r = await httpRequest(port, 'GET', '/healthz');
        if (r.status === 200) {
          n.startedOk = true;
          return n;
        }
      } catch { /* not up yet */ }
      await sleep(20);
    }
    log = n.log;
    if (!n.exited) break;  // up but not healthy: no point in another port
  }
  throw new Error(`node ${name} did not start: ${log.slice(-500)}`);
}
async function stopNode(n, signal = 'SIGTERM') {
  if (n.exited) return;
  n.proc.kill(signal);
  await Promise.race([new Promise((r) => n.proc.once('exit', r)), sleep(15000)]);
  if (!n.exited) {
    n.proc.kill('SIGKILL');
    await Promise.race([new Promise((r) => n.proc.once('exit', r)), sleep(2000)]);
  }
}

const JWT_SECRET = 'openapi-test-secret';
function b64url(x) { return Buffer.from(x).toString('base64url'); }
function jwt(sub, expIn = 3600) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + expIn }));
  const sig = crypto.createHmac('sha256', JWT_SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}
const wsPath = (room, role, user, platform, token = jwt(user)) =>
  `/demo/websocket/${encodeURIComponent(room)}/${role}/${encodeURIComponent(user)}/${token}/${platform}`;

// ---------------------------------------------------------------- checks

let passed = 0, failed = 0;
async function check(name, fn) {
  let timer;
  try {
    await Promise.race([fn(), new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timeout after ${TEST_TIMEOUT_MS} ms`)), TEST_TIMEOUT_MS); })]);
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  } finally {
    clearTimeout(timer);
  }
}
function assert(c, msg) { if (!c) throw new Error(msg); }

const deadPort = await refusedPort();  // nothing listens here: the unreachable Redis and broker
const sockets = [];
try {
  apiKey = crypto.randomBytes(12).toString('hex');
  const [A, B, C, D] = await Promise.all([
    startNode('main', ['--threads', '2', '--api-key', apiKey, '--auth', 'jwt', '--jwt-secret', JWT_SECRET,
                       '--allowed-origins', 'http://good.example', '--history', 'nohist-* 0 0s,* 300 10m',
                       '--drain-window', '1s']),
    startNode('limited', ['--threads', '1', '--api-publish-rate', '1', '--max-connections', '1']),
    startNode('noredis', ['--threads', '1', '--history-store', 'redis', '--registry', 'redis',
                          '--redis-address', `127.0.0.1:${deadPort}`, '--redis-timeout', '200ms',
                          '--history-unavailable', 'reject']),
    startNode('nobroker', ['--threads', '1', '--bus', 'rabbitmq', '--rabbitmq-uris', `amqp://guest:guest@127.0.0.1:${deadPort}/`,
                           '--history', '* 0 0s', '--redis-address', `127.0.0.1:${deadPort}`, '--outage-buffer-messages', '2', '--publish-timeout', '1s']),
  ]);
  const a = A.port;

  // ---- health
  await check('GET /healthz, /readyz, /metrics: 200 without a key; other methods 405', async () => {
    await call(a, 'GET', '/healthz', { expect: 200 });
    await call(a, 'POST', '/healthz', { expect: 405, body: '{}' });
    await call(a, 'GET', '/readyz', { expect: 200 });
    await call(a, 'DELETE', '/readyz', { expect: 405 });
    const m = await call(a, 'GET', '/metrics', { expect: 200 });
    assert(m.text.includes('roomcast_http_requests_total'), 'metrics text');
    await call(a, 'PUT', '/metrics', { expect: 405, body: 'x' });
  });

  // ---- members: four sessions of three users in room r1 on the main node
  const u1pc = await wsOpen(a, wsPath('r1', 'STU', 'u1', 'pc'));
  const u1phone = await wsOpen(a, wsPath('r1', 'STU', 'u1', 'phone'));
  const u2 = await wsOpen(a, wsPath('r1', 'THE', 'u2', 'pc'));
  const u3 = await wsOpen(a, wsPath('r1', 'STU', 'u3', 'web'));
  sockets.push(u1pc, u1phone, u2, u3);

  await check('the WebSocket route: 101, plain GET 426, refusals 400/401/403, POST client frames, other methods 405', async () => {
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc'), { expect: 426, requestValid: true });
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc') + '?since=3&epoch=abc', { expect: 426, requestValid: true });
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc') + '?since=-1', { expect: 400, requestValid: false });
    await call(a, 'GET', wsPath('', 'STU', 'u9', 'pc'), { expect: 400, requestValid: false });
    await call(a, 'GET', wsPath('r'.repeat(257), 'STU', 'u9', 'pc'), { expect: 400, requestValid: false });
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc', 'not-a-jwt'), { expect: 401 });
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc', jwt('someone-else')), { expect: 401 });
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc', jwt('u9', -3600)), { expect: 401 });
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc'), { expect: 403, headers: { Origin: 'http://evil.example' } });
    // POST: a client frame of an SSE client, by the WebSocket rules (a student may not publish).
    await call(a, 'POST', wsPath('r2', 'STU', 'u9', 'pc'), { expect: 400, body: '{}' });
    await call(a, 'POST', wsPath('r2', 'STU', 'u9', 'pc'), { expect: 200, json: { type: 'ping' }, requestValid: true });
    await call(a, 'POST', wsPath('r2', 'STU', 'u9', 'pc'), { expect: 403, json: { type: 'publish', data: {}, id: 'x1' } });
    await call(a, 'POST', wsPath('r2', 'STU', 'u9', 'pc'), { expect: 204, json: { type: 'received', id: 'x1' } });
    await call(a, 'POST', wsPath('r2', 'STU', 'u9', 'pc', 'not-a-jwt'), { expect: 401, json: { type: 'ping' } });
    await call(a, 'PUT', wsPath('r2', 'STU', 'u9', 'pc'), { expect: 405, body: '{}' });
    const up = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'), Origin: 'http://good.example' };
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc'), { upgrade: true, expect: 400, headers: { ...up, 'Sec-WebSocket-Version': '8' } });
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc'), { upgrade: true, expect: 400, headers: { ...up, 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'short' } });
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc', 'bad'), { upgrade: true, expect: 401, headers: { ...up, 'Sec-WebSocket-Version': '13' } });
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc'), { upgrade: true, expect: 403, headers: { ...up, 'Sec-WebSocket-Version': '13', Origin: 'http://evil.example' } });
    const { Origin, ...noOrigin } = up;
    await call(a, 'GET', wsPath('r2', 'STU', 'u9', 'pc'), { upgrade: true, expect: 403, headers: { ...noOrigin, 'Sec-WebSocket-Version': '13' } });
    assert(u1pc.welcome.session && u1pc.welcome.user === 'u1', `welcome ${JSON.stringify(u1pc.welcome)}`);
  });

  await check('a full node: plain GET and upgrade 503 over_capacity with Retry-After', async () => {
    const only = await wsOpen(B.port, wsPath('r', 'STU', 'x', 'pc', 't'));
    sockets.push(only);
    const p = '/demo/websocket/r/STU/y/t/pc';
    const r = await call(B.port, 'GET', p, { expect: 503 });
    assert(r.json.error.code === 'over_capacity', r.text);
    await call(B.port, 'GET', p, {
      upgrade: true, expect: 503,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64') },
    });
    only.close();
  });

  // ---- the API key
  await check('/api/* without or with a wrong X-API-Key: 401 (every operation, and unknown paths)', async () => {
    for (const [m, p] of [['POST', '/api/publish'], ['POST', '/api/disconnect'], ['GET', '/api/stats'], ['GET', '/api/rooms'],
                          ['GET', '/api/rooms/r1'], ['GET', '/api/rooms/r1/history'], ['POST', '/api/rooms/r1/kick'],
                          ['POST', '/api/rooms/r1/mute'], ['GET', '/api/users/u1'], ['GET', '/api/nodes'], ['GET', '/api/nope']]) {
      const body = m === 'POST' ? '{}' : undefined;
      await call(a, m, p, { key: null, body, expect: 401 });
      await call(a, m, p, { key: 'wrong', body, expect: 401 });
    }
    await call(a, 'GET', '/api/nope', { expect: 404 });
    await call(a, 'GET', '/api', { expect: 404 });
    await call(a, 'GET', '/api/rooms/r1/members', { expect: 404 });
  });

  // ---- publish
  await check('POST /api/publish: single messages (room, user, all, filters, duplicate) 200', async () => {
    const r = await call(a, 'POST', '/api/publish', { json: { room: 'r1', id: 'm-1', data: { text: 'hello' } }, expect: 200, requestValid: true });
    assert(r.json.seq >= 1 && r.json.epoch, `seq/epoch: ${r.text}`);
    const d = await call(a, 'POST', '/api/publish', { json: { room: 'r1', id: 'm-1', data: { text: 'hello' } }, expect: 200, requestValid: true });
    assert(d.json.duplicate === true && d.json.seq === r.json.seq, `duplicate: ${d.text}`);
    await call(a, 'POST', '/api/publish', { json: { user: 'u1', from: 'backend', data: [1, 2] }, expect: 200, requestValid: true });
    await call(a, 'POST', '/api/publish', { json: { all: true, data: null }, expect: 200, requestValid: true });
    await call(a, 'POST', '/api/publish', {
      json: { room: 'r1', roles: ['THE'], platforms: ['pc', 'web'], users: ['u2', 'u3'], data: { text: 'staff' } },
      expect: 200, requestValid: true,
    });
    const nh = await call(a, 'POST', '/api/publish', { json: { room: 'nohist-1', data: 1 }, expect: 200, requestValid: true });
    assert(nh.json.seq === undefined, `no seq without history: ${nh.text}`);
    await call(a, 'POST', '/api/publish', {
      body: '{"room":"r1","data":{"a":1}}', headers: { 'Content-Type': 'application/json; charset=utf-8' }, expect: 200, requestValid: true,
    });
    await u2.waitFor((f) => f.type === 'message' && f.data?.text === 'staff', 'filtered message at u2');
  });

  await check('POST /api/publish: batches 200 (in order, one result each)', async () => {
    const r = await call(a, 'POST', '/api/publish', {
      json: [{ room: 'r1', id: 'b-1', data: 1 }, { user: 'u3', data: 2 }, { room: 'r1', id: 'b-1', data: 1 }, { all: true, data: 3 }],
      expect: 200, requestValid: true,
    });
    assert(r.json.count === 4 && r.json.results.length === 4 && r.json.results[2].duplicate === true, r.text);
    await call(a, 'POST', '/api/publish', { json: [{ room: 'r1', data: 'one' }], expect: 200, requestValid: true });
  });

  await check('POST /api/publish with receipts, then GET /api/messages/{id}/receipts: 200, paged, 404, 400', async () => {
    const r = await call(a, 'POST', '/api/publish', {
      json: { room: 'r1', id: 'rc-ok', data: { quiz: 1 }, receipts: true }, expect: 200, requestValid: true,
    });
    assert(typeof r.json.receipts?.expected === 'number', r.text);
    const s = await call(a, 'GET', '/api/messages/rc-ok/receipts', { expect: 200 });
    assert(s.json.id === 'rc-ok' && s.json.expected === r.json.receipts.expected, s.text);
    await call(a, 'GET', '/api/messages/rc-ok/receipts?limit=1', { expect: 200 });
    await call(a, 'GET', '/api/messages/never-published/receipts', { expect: 404 });
    await call(a, 'GET', '/api/messages/rc-ok/receipts?limit=0', { expect: 400 });
    await call(a, 'POST', '/api/messages/rc-ok/receipts', { expect: 405 });
  });

  await check('POST /api/publish: 400 for bad bodies, bad filters, a 10,000-user list, bad batches', async () => {
    const bad = [
      'not json', '"a string"', '42', 'null', '{}', '{"room":"r1"}', '{"data":1}',
      JSON.stringify({ room: 'r1', user: 'u1', data: 1 }),
      JSON.stringify({ room: 'r1', all: true, data: 1 }),
      JSON.stringify({ all: false, data: 1 }),
      JSON.stringify({ room: '', data: 1 }),
      JSON.stringify({ room: 'r'.repeat(257), data: 1 }),
      JSON.stringify({ room: 7, data: 1 }),
      JSON.stringify({ room: 'r1', data: 1, id: '' }),
      JSON.stringify({ room: 'r1', data: 1, id: 'i'.repeat(129) }),
      JSON.stringify({ room: 'r1', data: 1, from: '' }),
      JSON.stringify({ room: 'r1', data: 1, priority: 'high' }),
      JSON.stringify({ user: 'u1', roles: ['THE'], data: 1 }),
      JSON.stringify({ all: true, platforms: ['pc'], data: 1 }),
      JSON.stringify({ room: 'r1', roles: [], data: 1 }),
      JSON.stringify({ room: 'r1', roles: 'THE', data: 1 }),
      JSON.stringify({ room: 'r1', roles: [''], data: 1 }),
      JSON.stringify({ room: 'r1', roles: [1], data: 1 }),
      JSON.stringify({ room: 'r1', platforms: Array.from({ length: 65 }, (_, i) => `p${i}`), data: 1 }),
      JSON.stringify({ room: 'r1', users: ['u'.repeat(257)], data: 1 }),
      JSON.stringify({ room: 'r1', users: Array.from({ length: 10000 }, (_, i) => `user-${i}`), data: 1 }),
      JSON.stringify({ room: 'r1', receipts: true, data: 1 }),
      JSON.stringify({ user: 'u1', id: 'rc-1', receipts: true, data: 1 }),
      '[]',
      JSON.stringify(Array.from({ length: 1001 }, () => ({ room: 'r1', data: 1 }))),
      JSON.stringify([{ room: 'r1', data: 1 }, 'x']),
      JSON.stringify([{ room: 'r1', data: 1 }, { room: 'r1' }]),
      JSON.stringify([{ room: 'r1', data: 1 }, { room: 'r1', roles: [], data: 1 }]),
    ];
    for (const body of bad) {
      const r = await call(a, 'POST', '/api/publish', { body, expect: 400, requestValid: false });
      assert(r.json.error.message.length > 0, 'a message');
    }
    const big = await call(a, 'POST', '/api/publish', {
      body: JSON.stringify({ room: 'r1', users: Array.from({ length: 10000 }, (_, i) => `user-${i}`), data: 1 }), expect: 400,
    });
    assert(/users/.test(big.json.error.message), big.text);
    const idx = await call(a, 'POST', '/api/publish', { body: JSON.stringify([{ room: 'r1', data: 1 }, { room: 'r1' }]), expect: 400 });
    assert(idx.json.error.message.startsWith('[1]'), idx.text);
  });

  await check('POST /api/publish: 405, 415, 413', async () => {
    await call(a, 'GET', '/api/publish', { expect: 405 });
    await call(a, 'PUT', '/api/publish', { expect: 405, json: { room: 'r1', data: 1 } });
    await call(a, 'POST', '/api/publish', { body: '{"room":"r1","data":1}', headers: { 'Content-Type': 'text/plain' }, expect: 415 });
    await call(a, 'POST', '/api/publish', { body: '{"room":"r1","data":1}', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, expect: 415 });
    await call(a, 'POST', '/api/publish', { expect: 415 });  // no body, no Content-Type
    await callTooLarge(a, '/api/publish');
    await callTooLarge(a, '/api/publish', { key: null });
  });

  await check('POST /api/publish: 429 over api_publish_rate (Retry-After: 1)', async () => {
    const b = B.port;
    let saw429 = false;
    for (let i = 0; i < 5 && !saw429; ++i) {
      const r = await call(b, 'POST', '/api/publish', { json: { room: 'r', data: i }, expect: [200, 429] });
      saw429 = r.status === 429;
    }
    assert(saw429, 'no 429 in 5 quick publishes at 1/s');
    // A batch takes a token per message from a bucket that holds max(1, api_publish_rate): a batch of
    // 3 at 1/s is refused whatever the wait (see the 429 of the file).
    await call(b, 'POST', '/api/publish', { json: [{ room: 'r', data: 1 }, { room: 'r', data: 2 }, { room: 'r', data: 3 }], expect: 429 });
  });

  await check('POST /api/publish: 503 / 207 when the history store is down (history_unavailable = reject)', async () => {
    const c = C.port;
    const r = await call(c, 'POST', '/api/publish', { json: { room: 'r', data: 1 }, expect: 503 });
    assert(r.json.error.code === 'unavailable', r.text);
    await call(c, 'POST', '/api/publish', { json: [{ room: 'r', data: 1 }, { room: 's', data: 2 }], expect: 503 });
    const p = await call(c, 'POST', '/api/publish', { json: [{ room: 'r', data: 1 }, { all: true, data: 2 }], expect: 207 });
    assert(p.json.failed === 1 && p.json.results[0].ok === false && p.json.results[1].ok === true, p.text);
    await call(c, 'POST', '/api/publish', { json: { all: true, data: 1 }, expect: 200 });
  });

  await check('POST /api/publish: 202 queued while the broker is away, 207 and 503 once the outage buffer is full; /readyz 503', async () => {
    const d = D.port;
    const ready = await call(d, 'GET', '/readyz', { expect: 503 });
    assert(ready.json.bus === 'down', ready.text);
    const q = await call(d, 'POST', '/api/publish', { json: { room: 'r', data: 1 }, expect: 202 });
    assert(q.json.queued === true, q.text);
    const p = await call(d, 'POST', '/api/publish', { json: [{ room: 'r', data: 2 }, { room: 'r', data: 3 }], expect: 207 });
    assert(p.json.queued === 1 && p.json.failed === 1, p.text);
    await call(d, 'POST', '/api/publish', { json: { room: 'r', data: 4 }, expect: 503 });
    await call(d, 'POST', '/api/publish', { json: [{ room: 'r', data: 5 }], expect: 503 });
    await call(d, 'POST', '/api/rooms/r/kick', { json: { user: 'x' }, expect: 503 });
    await call(d, 'GET', '/api/stats', { expect: 200 });
    await call(d, 'GET', '/api/nodes', { expect: 200 });
  });

  // ---- presence
  await check('GET /api/rooms/{room}: counts, members paged with limit and cursor', async () => {
    const all = await call(a, 'GET', '/api/rooms/r1', { expect: 200, requestValid: true });
    const j = all.json;
    assert(j.sessions === 4 && j.unique_users === 3 && j.by_role.STU === 3 && j.by_role.THE === 1 && j.by_platform.pc === 2, all.text);
    assert(j.members.length === 3 && j.next_cursor === undefined, all.text);
    const p1 = await call(a, 'GET', '/api/rooms/r1?limit=2', { expect: 200, requestValid: true });
    assert(p1.json.members.length === 2 && p1.json.next_cursor === 'u2', p1.text);
    assert(p1.json.members[0].sessions === 2, p1.text);
    const p2 = await call(a, 'GET', `/api/rooms/r1?limit=2&cursor=${p1.json.next_cursor}`, { expect: 200, requestValid: true });
    assert(p2.json.members.length === 1 && p2.json.members[0].user === 'u3' && !('next_cursor' in p2.json), p2.text);
    const empty = await call(a, 'GET', '/api/rooms/nobody-here', { expect: 200, requestValid: true });
    assert(empty.json.sessions === 0 && empty.json.members.length === 0, empty.text);
    for (const q of ['?limit=0', '?limit=1001', '?limit=abc', '?limit=-1', `?cursor=${'c'.repeat(257)}`])
      await call(a, 'GET', `/api/rooms/r1${q}`, { expect: 400, requestValid: false });
    await call(a, 'GET', `/api/rooms/${'r'.repeat(257)}`, { expect: 400, requestValid: false });
    await call(a, 'GET', '/api/rooms/', { expect: 400, requestValid: false });
    await call(a, 'POST', '/api/rooms/r1', { expect: 405, json: {} });
  });

  await check('GET /api/rooms: busiest rooms, paged; 400 for bad limit/cursor', async () => {
    const r = await call(a, 'GET', '/api/rooms', { expect: 200, requestValid: true });
    assert(r.json.rooms[0].room === 'r1' && r.json.rooms[0].online === 4 && r.json.next_cursor === null, r.text);
    await wsOpen(a, wsPath('r3', 'STU', 'u5', 'pc')).then((ws) => sockets.push(ws));
    const p1 = await call(a, 'GET', '/api/rooms?limit=1', { expect: 200, requestValid: true });
    assert(p1.json.total === 2 && p1.json.next_cursor === '1', p1.text);
    const p2 = await call(a, 'GET', `/api/rooms?limit=1&cursor=${p1.json.next_cursor}`, { expect: 200, requestValid: true });
    assert(p2.json.rooms[0].room === 'r3' && p2.json.next_cursor === null, p2.text);
    for (const q of ['?limit=0', '?limit=1001', '?limit=x', '?cursor=abc', '?cursor=-1'])
      await call(a, 'GET', `/api/rooms${q}`, { expect: 400 });
    await call(a, 'DELETE', '/api/rooms', { expect: 405 });
  });

  await check('GET /api/users/{user}: sessions on every device; unknown user offline; 400; 405', async () => {
    const r = await call(a, 'GET', '/api/users/u1', { expect: 200, requestValid: true });
    assert(r.json.online && r.json.sessions.length === 2 && r.json.sessions[0].rooms.includes('r1'), r.text);
    const off = await call(a, 'GET', '/api/users/nobody', { expect: 200, requestValid: true });
    assert(off.json.online === false && off.json.sessions.length === 0, off.text);
    await call(a, 'GET', '/api/users/', { expect: 400, requestValid: false });
    await call(a, 'GET', `/api/users/${'u'.repeat(257)}`, { expect: 400, requestValid: false });
    await call(a, 'POST', '/api/users/u1', { expect: 405, json: {} });
  });

  await check('GET /api/stats and /api/nodes: 200; other methods 405', async () => {
    const s = await call(a, 'GET', '/api/stats', { expect: 200 });
    assert(s.json.connections >= 5 && s.json.shards === 2, s.text);
    await call(a, 'POST', '/api/stats', { expect: 405, json: {} });
    const n = await call(a, 'GET', '/api/nodes', { expect: 200 });
    assert(n.json.nodes.length === 1 && n.json.nodes[0].node === `main-${a}`, n.text);
    await call(a, 'POST', '/api/nodes', { expect: 405, json: {} });
  });

  await check('presence and history with the registry and history store unreachable: 503', async () => {
    const c = C.port;
    await call(c, 'GET', '/api/rooms', { expect: 503 });
    await call(c, 'GET', '/api/rooms/r', { expect: 503 });
    await call(c, 'GET', '/api/users/u', { expect: 503 });
    await call(c, 'GET', '/api/nodes', { expect: 503 });
    await call(c, 'GET', '/api/rooms/r/history', { expect: 503 });
    await call(c, 'POST', '/api/rooms/r/mute', { json: { user: 'u', duration: '1m' }, expect: 503 });
    await call(c, 'GET', '/api/stats', { expect: 200 });
    const ready = await call(c, 'GET', '/readyz', { expect: 200 });
    assert(ready.json.registry === 'down', ready.text);
  });

  // ---- history
  await check('GET /api/rooms/{room}/history: messages (with their filters), since/limit, 404 no_history, 400', async () => {
    const h = await call(a, 'GET', '/api/rooms/r1/history', { expect: 200, requestValid: true });
    assert(h.json.complete === true && h.json.messages.length >= 3, h.text);
    assert(h.json.messages.some((m) => Array.isArray(m.roles) && m.users?.length === 2), `a filtered message: ${h.text}`);
    const s = await call(a, 'GET', '/api/rooms/r1/history?since=1&limit=1', { expect: 200, requestValid: true });
    assert(s.json.messages.length === 1 && s.json.messages[0].seq === 2 && s.json.since === 1, s.text);
    const e = await call(a, 'GET', '/api/rooms/never-used/history', { expect: 200, requestValid: true });
    assert(e.json.messages.length === 0, e.text);
    await call(a, 'GET', '/api/rooms/nohist-1/history', { expect: 404, requestValid: true });
    for (const q of ['?since=-1', '?since=x', '?limit=0', '?limit=10001', '?limit=x'])
      await call(a, 'GET', `/api/rooms/r1/history${q}`, { expect: 400, requestValid: false });
    await call(a, 'GET', '/api/rooms//history', { expect: 400, requestValid: false });
    await call(a, 'POST', '/api/rooms/r1/history', { expect: 405, json: {} });
  });

  // ---- moderation
  await check('POST /api/rooms/{room}/kick: 200 (the member leaves the room, stays connected); 400, 405, 415, 413', async () => {
    const r = await call(a, 'POST', '/api/rooms/r1/kick', { json: { user: 'u3', reason: 'spam' }, expect: 200, requestValid: true });
    assert(r.json.room === 'r1' && r.json.user === 'u3', r.text);
    await call(a, 'POST', '/api/rooms/r1/kick', { json: { user: 'not-here' }, expect: 200, requestValid: true });
    let room;
    for (let i = 0; i < 200; ++i) {
      room = (await call(a, 'GET', '/api/rooms/r1', { expect: 200 })).json;
      if (room.unique_users === 2) break;
      await sleep(10);
    }
    assert(room.unique_users === 2 && !room.users.includes('u3'), `u3 still in r1: ${JSON.stringify(room)}`);
    assert(!u3.closed, 'the kicked session keeps its connection');
    for (const body of ['nope', '[]', '"u3"', '{}', '{"user":""}', '{"user":5}', JSON.stringify({ user: 'u3', reason: 'r'.repeat(121) }),
                        JSON.stringify({ user: 'u3', reason: 5 }), JSON.stringify({ user: 'u3', why: 'x' })])
      await call(a, 'POST', '/api/rooms/r1/kick', { body, expect: 400, requestValid: false });
    await call(a, 'POST', `/api/rooms/${'r'.repeat(257)}/kick`, { json: { user: 'u3' }, expect: 400, requestValid: false });
    await call(a, 'GET', '/api/rooms/r1/kick', { expect: 405 });
    await call(a, 'POST', '/api/rooms/r1/kick', { body: '{"user":"u3"}', headers: { 'Content-Type': 'text/json' }, expect: 415 });
    await callTooLarge(a, '/api/rooms/r1/kick');
  });

  await check('POST /api/rooms/{room}/mute: 200 for 10m and 0s; 400, 405, 415, 413', async () => {
    const r = await call(a, 'POST', '/api/rooms/r1/mute', { json: { user: 'u2', duration: '10m' }, expect: 200, requestValid: true });
    assert(r.json.muted_ms === 600000, r.text);
    const l = await call(a, 'POST', '/api/rooms/r1/mute', { json: { user: 'u2', duration: '0s' }, expect: 200, requestValid: true });
    assert(l.json.muted_ms === 0, l.text);
    await call(a, 'POST', '/api/rooms/r1/mute', { json: { user: 'u2', duration: '500ms' }, expect: 200, requestValid: true });
    for (const body of ['nope', '[]', '{}', '{"user":"u2"}', '{"duration":"1m"}', '{"user":"u2","duration":"10x"}',
                        '{"user":"u2","duration":"10"}', '{"user":"u2","duration":600}', '{"user":"u2","duration":"-1m"}',
                        '{"user":"u2","duration":"1m","reason":"x"}'])
      await call(a, 'POST', '/api/rooms/r1/mute', { body, expect: 400, requestValid: false });
    // Over 7 days: the file's pattern can't say it; the server refuses it.
    await call(a, 'POST', '/api/rooms/r1/mute', { json: { user: 'u2', duration: '169h' }, expect: 400 });
    await call(a, 'GET', '/api/rooms/r1/mute', { expect: 405 });
    await call(a, 'POST', '/api/rooms/r1/mute', { body: '{}', headers: { 'Content-Type': 'text/plain' }, expect: 415 });
    await callTooLarge(a, '/api/rooms/r1/mute');
  });

  await check('POST /api/disconnect: by session and by user 200 (kicked, closed with the code); 400, 405, 415, 413', async () => {
    const s = await call(a, 'POST', '/api/disconnect', { json: { session: u3.welcome.session, code: 4100, reason: 'bye' }, expect: 200, requestValid: true });
    assert(s.json.sessions === 1, s.text);
    await u3.waitFor((f) => f.type === 'kicked' && f.code === 4100, 'kicked');
    const u = await call(a, 'POST', '/api/disconnect', { json: { user: 'u1' }, expect: 200, requestValid: true });
    assert(u.json.sessions === 2, u.text);
    await u1pc.waitFor((f) => f.type === 'kicked' && f.code === 4000, 'kicked');
    const none = await call(a, 'POST', '/api/disconnect', { json: { user: 'nobody' }, expect: 200, requestValid: true });
    assert(none.json.sessions === 0, none.text);
    for (const body of ['nope', '[]', '{}', JSON.stringify({ user: 'u1', session: u2.welcome.session }), '{"user":""}',
                        '{"session":"xyz"}', '{"session":"ABCDEF0123456789"}', '{"user":"u1","code":3999}', '{"user":"u1","code":5000}',
                        '{"user":"u1","code":"4000"}', '{"user":"u1","code":4000.5}', JSON.stringify({ user: 'u1', reason: 'r'.repeat(121) }),
                        '{"user":"u1","why":"x"}'])
      await call(a, 'POST', '/api/disconnect', { body, expect: 400, requestValid: false });
    await call(a, 'GET', '/api/disconnect', { expect: 405 });
    await call(a, 'POST', '/api/disconnect', { body: '{"user":"u1"}', headers: { 'Content-Type': 'text/plain' }, expect: 415 });
    await callTooLarge(a, '/api/disconnect');
  });

  // ---- draining (last: the main node stops)
  await check('draining (SIGTERM): /readyz 503, the WebSocket route 503 draining with Retry-After', async () => {
    // u2 and u5 stay connected and never answer the close: the node drains until pong_timeout (10 s)
    // or until the test closes them.
    assert(!u2.closed, 'u2 still open');
    A.proc.kill('SIGTERM');
    let r;
    for (let i = 0; i < 100; ++i) {
      r = await call(a, 'GET', '/readyz', { expect: [200, 503] });
      if (r.status === 503) break;
      await sleep(10);
    }
    assert(r.status === 503 && r.json.draining === true, `readyz ${r.status} ${r.text}`);
    const p = await call(a, 'GET', wsPath('r1', 'STU', 'u7', 'pc'), { expect: 503 });
    assert(p.json.error.code === 'draining', p.text);
    await call(a, 'GET', wsPath('r1', 'STU', 'u7', 'pc'), {
      upgrade: true, expect: 503,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'), Origin: 'http://good.example' },
    });
    await u2.waitFor(() => u2.closeCode === 1012, 'a 1012 close').catch(() => {
      throw new Error(`u2 close code ${u2.closeCode}`);
    });
  });

  // ---- the file itself: every operation called (but those listed as not yet), every listed one not
  await check('every operation of docs/openapi.yaml was exercised (but NOT_EXERCISED_YET)', async () => {
    const missing = allOperations.filter((o) => !exercised.has(o) && !NOT_EXERCISED_YET.has(o));
    const stale = [...NOT_EXERCISED_YET].filter((o) => exercised.has(o));
    assert(!missing.length, `never called: ${missing.join(', ')}`);
    assert(!stale.length, `called, so remove from NOT_EXERCISED_YET: ${stale.join(', ')}`);
  });
} catch (e) {
  failed++;
  console.log(`FAIL setup: ${e.stack ?? e.message}`);
} finally {
  for (const s of sockets) s.close();
  await Promise.all(nodes.map((n) => stopNode(n)));
}
// The nodes drain and exit 0 on SIGTERM; a sanitizer report (the dev preset) fails the test too.
for (const n of nodes) {
  const report = /ERROR: \w+Sanitizer|runtime error:|LeakSanitizer/.exec(n.log);
  if (report || (n.startedOk && n.code !== 0)) {
    failed++;
    console.log(`FAIL node ${n.name} exited with code ${n.code} signal ${n.signal}${report ? ' (sanitizer report)' : ''}`);
  }
}

// Documented statuses no case produced (information, not a failure: some need a broken bus).
const unseen = [];
for (const r of routes)
  for (const [m, op] of Object.entries(r.ops)) {
    const key = `${m.toUpperCase()} ${r.template}`;
    if (NOT_EXERCISED_YET.has(key)) continue;
    for (const st of Object.keys(op.responses)) if (!statusSeen.has(`${key} ${st}`)) unseen.push(`${key} ${st}`);
  }
if (unseen.length) console.log(`documented statuses not produced: ${unseen.join(', ')}`);
if (failed) for (const n of nodes) console.log(`--- ${n.name} log ---\n${n.log.split('\n').slice(-20).join('\n')}`);
console.log(`${passed} passed, ${failed} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`);
process.exit(failed ? 1 : 0);
