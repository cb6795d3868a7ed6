// The SSE fallback in Debian's headless chromium (playwright-core): web/classroom.html on a network
// that lets HTTP through but not WebSocket (every WebSocket the pages open goes to a closed port),
// against two roomcast nodes (RabbitMQ bus, Redis registry and history) behind nginx. The pages'
// roomcast.js probes, sees 426 (the node would take the upgrade) three times, and goes on over
// EventSource + POST: the teacher's notice reaches the student once; the student's node is killed
// (SIGKILL) and its page comes back on the other node and shows every message once, in order.
//   ROOMCAST_BIN=build/dev/roomcast node sse_fallback.test.mjs
// Screenshots go to $ROOMCAST_SCREENSHOT_DIR (default: a temp dir). Prints "N passed, N failed".
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startCluster, waitFor, sleep } from '../js/support/cluster.mjs';
import { check, finish, results } from './support.mjs';

const bin = process.env.ROOMCAST_BIN || process.argv[2];
if (!bin) throw new Error('set ROOMCAST_BIN (or pass the binary)');
const shots = process.env.ROOMCAST_SCREENSHOT_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'rc-shots-'));
fs.mkdirSync(shots, { recursive: true });
const ROOM = 'sse-class';

const countText = (page, sel, text) => page.$$eval(sel, (els, t) => els.filter((e) => e.textContent.includes(t)).length, text);
async function seqsOn(page) {
  const seqs = await page.$$eval(`#log [data-seq][data-room="${ROOM}"]`, (els) => els.map((e) => Number(e.dataset.seq)));
  return seqs.length > 1 && seqs[0] > seqs[seqs.length - 1] ? seqs.reverse() : seqs;
}

let cluster, browser;
try {
  cluster = await startCluster({ bin, nodes: 2, bus: 'rabbitmq' });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 820 } });
  // The blocking proxy: no WebSocket gets through (each one goes to a port nobody listens on).
  const wsAttempts = [];
  await ctx.exposeFunction('__wsAttempt', (url) => wsAttempts.push(url));
  await ctx.addInitScript(() => {
    const Real = window.WebSocket;
    window.WebSocket = class extends Real {
      constructor(url, protocols) {
        window.__wsAttempt(String(url));
        super(String(url).replace(/^(wss?:\/\/[^/:]+)(:\d+)?/, '$1:1'), protocols);
      }
    };
  });
  const open = async (role, user) => {
    const p = await ctx.newPage();
    p.on('pageerror', (e) => console.log(`page error (${user}): ${e.message}`));
    await p.goto(`${cluster.url}/classroom.html?room=${ROOM}&role=${role}&user=${user}&platform=pc&auto=1`);
    await p.waitForFunction(() => document.querySelector('#state')?.textContent.includes('open') &&
                                  document.querySelector('#node')?.textContent.includes('SSE'), null, { timeout: 20000 });
    return p;
  };
  let teacher, student;

  await check('with WebSocket blocked, teacher and student pages fall back to SSE after three attempts', async () => {
    teacher = await open('THE', 'ms-li');
    student = await open('STU', 'alice');
    for (const p of [teacher, student]) {
      if ((await countText(p, '#log [data-kind="transport"]', 'SSE')) !== 1) throw new Error('no transport line');
      const node = (await p.textContent('#node')).trim();
      if (!cluster.nodes.some((n) => node.includes(n.id))) throw new Error(`#node shows '${node}'`);
    }
    if (wsAttempts.length !== 6) throw new Error(`${wsAttempts.length} WebSocket attempts (3 per page expected)`);
    // Both streams are counted as SSE connections, on whichever nodes nginx chose.
    let sse = 0;
    for (const n of cluster.nodes) {
      const m = await (await fetch(`http://127.0.0.1:${n.port}/metrics`)).text();
      sse += Number(/^roomcast_sse_connections (\d+)$/m.exec(m)?.[1] ?? NaN);
    }
    if (sse !== 2) throw new Error(`roomcast_sse_connections sums to ${sse}, not 2`);
  });

  await check('the teacher\'s notice (a POST through nginx) reaches the student once', async () => {
    await teacher.fill('#notice-text', 'Open your books at page 42');
    await teacher.click('#notice-send');
    await waitFor(async () => (await countText(student, '#log .notice', 'page 42')) >= 1, { ms: 10000, what: 'the notice' });
    await sleep(300);
    const n = await countText(student, '#log .notice', 'page 42');
    if (n !== 1) throw new Error(`the notice shown ${n} times`);
    await teacher.screenshot({ path: path.join(shots, 'classroom-sse-teacher.png') });
  });

  await check('the student\'s node is killed: its page recovers over SSE on the other node', async () => {
    const before = (await student.textContent('#node')).trim();
    const victim = cluster.nodes.find((n) => before.includes(n.id));
    const survivor = cluster.nodes.find((n) => n !== victim);
    await victim.kill9();
    for (let i = 1; i <= 3; ++i) {
      await cluster.publish({ room: ROOM, data: { kind: 'notice', text: `while away ${i}` } }, survivor.port);
      await sleep(100);
    }
    await waitFor(async () => (await student.textContent('#node')).includes(survivor.id) &&
                              (await student.textContent('#state')).includes('open'), { ms: 15000, what: 'the student on the survivor' });
    await waitFor(async () => (await countText(student, '#log .notice', 'while away 3')) === 1, { ms: 10000, what: 'the last notice' });
    const seqs = await seqsOn(student);
    if (seqs.join() !== '1,2,3,4') throw new Error(`seqs shown: ${seqs}`);
    await student.screenshot({ path: path.join(shots, 'classroom-sse-student-recovered.png') });
  }, 45000);
} catch (e) {
  results.failed++;
  console.log(`FAIL setup: ${e.stack || e.message}`);
} finally {
  if (browser) await browser.close();
  if (results.failed && cluster) console.log(cluster.logs());
  if (cluster) await cluster.stop();
}
console.log(`screenshots: ${shots}`);
finish();
