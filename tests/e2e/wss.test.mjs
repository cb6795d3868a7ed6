// The classroom page over TLS (issue: reach): one node with tls_cert/tls_key (a self-signed
// certificate made here with the openssl CLI) and compression on; chromium opens
// https://…/classroom.html, whose roomcast.js connects with wss:; a teacher's notice reaches a
// student, and the page shows it. Screenshot: classroom-wss.png.
//   node wss.test.mjs <roomcast binary> <web root>
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { check, finish, freePort, results, sleep } from './support.mjs';

const [bin, webRoot] = process.argv.slice(2);
const shots = process.env.ROOMCAST_SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'rc-shots-'));
fs.mkdirSync(shots, { recursive: true });
// HTTPS with the test's own certificate as the only trusted one.
function request(port, ca, method, target, body) {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, method, path: target, ca, servername: 'localhost',
                                headers: { 'Content-Type': 'application/json' } }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    if (body) req.write(body);
    req.end();
  });
}


const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rc-wss-'));
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
  '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
const ca = fs.readFileSync(path.join(dir, 'cert.pem'));
const port = await freePort();
const node = spawn(bin, ['--listen-address', '127.0.0.1', '--port', String(port), '--threads', '2', '--web-root', webRoot,
  '--tls-cert', path.join(dir, 'cert.pem'), '--tls-key', path.join(dir, 'key.pem'), '--compression', 'true'],
{ stdio: ['ignore', 'ignore', 'pipe'] });
let nodeLog = '';
node.stderr.on('data', (d) => { nodeLog += d; });
let browser;
try {
  for (let i = 0; ; ++i) {
    try {
      if ((await request(port, ca, 'GET', '/healthz')).status === 200) break;
    } catch { /* not up yet */ }
    if (i > 250) throw new Error('node did not become healthy over https');
    await sleep(20);
  }
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  // The certificate is self-signed: the browser is told to accept it (a real deployment has a CA's).
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 820 }, ignoreHTTPSErrors: true });
  const open = async (role, user) => {
    const p = await ctx.newPage();
    p.on('pageerror', (e) => console.log(`page error (${user}): ${e.message}`));
    await p.goto(`https://127.0.0.1:${port}/classroom.html?room=345&role=${role}&user=${user}&auto=1`);
    await p.waitForFunction(() => document.querySelector('#state')?.textContent.includes('open'), null, { timeout: 15000 });
    return p;
  };
  let teacher, student;

  await check('the classroom page over https connects with wss: and gets its welcome', async () => {
    teacher = await open('THE', 'ms-li');
    student = await open('STU', 'alice');
    const urls = [];
    student.on('websocket', (ws) => urls.push(ws.url()));
    await student.reload();
    await student.waitForFunction(() => document.querySelector('#state')?.textContent.includes('open'), null, { timeout: 15000 });
    if (!urls.some((u) => u.startsWith(`wss://127.0.0.1:${port}/`))) throw new Error(`WebSocket URLs: ${JSON.stringify(urls)}`);
  });

  await check('a notice from the teacher reaches the student over wss', async () => {
    await teacher.fill('#notice-text', 'Encrypted: page 42 ' + 'and more '.repeat(80));
    await teacher.click('#notice-send');
    await student.waitForFunction(() => [...document.querySelectorAll('#log .notice')].some((e) => e.textContent.includes('Encrypted: page 42')),
      null, { timeout: 10000 });
    await student.screenshot({ path: path.join(shots, 'classroom-wss.png') });
  });

  await check('the node counts TLS sessions like any others, and chromium negotiated compression', async () => {
    const stats = JSON.parse((await request(port, ca, 'GET', '/api/stats')).body);
    if (stats.connections < 2) throw new Error(`connections ${stats.connections}`);
    const metrics = (await request(port, ca, 'GET', '/metrics')).body;
    const value = (name) => Number((metrics.split('\n').find((l) => l.startsWith(name + ' ')) || ' -1').split(' ')[1]);
    if (value('roomcast_deflate_sessions_total') < 2) throw new Error('no permessage-deflate over TLS');
    if (value('roomcast_compressions_total') < 1) throw new Error('the long notice was not compressed');
  });
} catch (e) {
  results.failed++;
  console.log(`FAIL setup: ${e.message}`);
} finally {
  if (browser) await browser.close();
  node.kill('SIGTERM');
  await Promise.race([new Promise((r) => node.on('exit', r)), sleep(15000)]);
  fs.rmSync(dir, { recursive: true, force: true });
}
if (results.failed) console.log('--- roomcast log ---\n' + nodeLog.split('\n').slice(-40).join('\n'));
finish();
