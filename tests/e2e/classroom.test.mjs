// The classroom demo and the dashboard in Debian's headless chromium (playwright-core) against a
// real cluster: two roomcast nodes (RabbitMQ bus, Redis registry and history, dev_kill on) behind
// nginx. A teacher page and two student pages of web/classroom.html; a notice from the teacher
// reaches both students once; the node of one student is killed (its page's "kill this node"
// button: SIGKILL); the page moves to the other node and shows every message once, in order; the
// dashboard (web/admin.html) shows the nodes and the room's counts.
//   ROOMCAST_BIN=build/dev/roomcast node classroom.test.mjs
// Screenshots go to $ROOMCAST_SCREENSHOT_DIR (default: a temp dir; docs/img/ for the README).
// Prints "N passed, N failed"; exits non-zero on a failure.
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
const API_KEY = 'e2e-' + Math.random().toString(36).slice(2, 10);
const ROOM = '345';


// The room's message seqs a page shows, in the order shown (oldest first).
async function seqsOn(page) {
  const seqs = await page.$$eval(`#log [data-seq][data-room="${ROOM}"]`, (els) => els.map((e) => Number(e.dataset.seq)));
  // The log may list newest first: compare in arrival order either way.
  return seqs.length > 1 && seqs[0] > seqs[seqs.length - 1] ? seqs.reverse() : seqs;
}
const countText = (page, sel, text) => page.$$eval(sel, (els, t) => els.filter((e) => e.textContent.includes(t)).length, text);

let cluster, browser;
try {
  cluster = await startCluster({ bin, nodes: 2, apiKey: API_KEY, devKill: true, bus: 'rabbitmq' });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 820 } });
  const open = async (role, user, platform = 'pc') => {
    const p = await ctx.newPage();
    p.on('pageerror', (e) => console.log(`page error (${user}): ${e.message}`));
    await p.goto(`${cluster.url}/classroom.html?room=${ROOM}&role=${role}&user=${user}&platform=${platform}&auto=1`);
    await p.waitForFunction(() => document.querySelector('#state')?.textContent.includes('open') &&
                                  document.querySelector('#node')?.textContent.trim().length > 0, null, { timeout: 15000 });
    return p;
  };
  let teacher, alice, bob;

  await check('teacher and two students join; each page shows its node and state', async () => {
    teacher = await open('THE', 'ms-li');
    alice = await open('STU', 'alice');
    bob = await open('STU', 'bob', 'mobile');
    for (const p of [teacher, alice, bob]) {
      const node = (await p.textContent('#node')).trim();
      if (!cluster.nodes.some((n) => node.includes(n.id))) throw new Error(`#node shows '${node}'`);
    }
  });

  await check('a notice from the teacher appears on both students once', async () => {
    await teacher.fill('#notice-text', 'Open your books at page 42');
    await teacher.click('#notice-send');
    for (const p of [alice, bob, teacher]) {
      await waitFor(async () => (await countText(p, '#log .notice', 'page 42')) >= 1, { ms: 10000, what: 'the notice' });
    }
    await sleep(300);  // a duplicate would have arrived by now
    for (const p of [alice, bob]) {
      const n = await countText(p, '#log .notice', 'page 42');
      if (n !== 1) throw new Error(`notice shown ${n} times`);
    }
  });

  await check('students see the notice but have no chat box (STU may not publish)', async () => {
    // The chat box is hidden for a role that may not publish, or answers 'forbidden' once tried.
    const visible = await alice.isVisible('#chat-text').catch(() => false);
    if (visible) {
      await alice.fill('#chat-text', 'may I?');
      await alice.click('#chat-send');
      await waitFor(async () => !(await alice.isVisible('#chat-text')), { ms: 5000, what: 'chat box hidden after forbidden' });
    }
  });

  await check('the teacher sees the class by role, live', async () => {
    await teacher.fill('#api-key', API_KEY);
    await teacher.press('#api-key', 'Enter');
    await waitFor(async () => {
      const stu = await teacher.textContent('#online [data-role="STU"]').catch(() => '');
      const the = await teacher.textContent('#online [data-role="THE"]').catch(() => '');
      return /\b2\b/.test(stu) && /\b1\b/.test(the);
    }, { ms: 10000, what: 'online counts STU 2, THE 1' });
    await teacher.screenshot({ path: path.join(shots, 'classroom-teacher.png') });
  });

  await check('a must-arrive notice to the students only: they get it, the teacher does not, both confirm', async () => {
    await teacher.selectOption('#push-target', 'STU');
    await teacher.check('#push-receipts');
    await teacher.fill('#push-text', 'Quiz: question 1');
    await teacher.click('#push-send');
    for (const p of [alice, bob]) {
      await waitFor(async () => (await countText(p, '#log .notice', 'Quiz: question 1')) >= 1, { ms: 10000, what: 'the quiz' });
    }
    // roomcast.js confirmed it for both students: the teacher's page reads the receipts back.
    await waitFor(async () => /confirmed by 2 of 2/.test(await teacher.textContent('#push-result')),
      { ms: 10000, what: 'confirmed by 2 of 2' });
    if ((await countText(teacher, '#log .notice', 'Quiz: question 1')) !== 0) throw new Error('the teacher got a students-only notice');
    await teacher.screenshot({ path: path.join(shots, 'classroom-teacher-receipts.png'), fullPage: true });
  });

  await check('the dashboard shows both nodes and the room by role', async () => {
    const admin = await ctx.newPage();
    await admin.goto(`${cluster.url}/admin.html`);
    await admin.fill('#api-key', API_KEY);
    await admin.press('#api-key', 'Enter');
    await waitFor(async () => (await admin.$$('#nodes tr[data-node]')).length === 2, { ms: 10000, what: 'two node rows' });
    for (const n of cluster.nodes) {
      if (!(await admin.$(`#nodes tr[data-node="${n.id}"]`))) throw new Error(`no row for ${n.id}`);
    }
    await waitFor(async () => {
      const row = await admin.textContent(`#rooms tr[data-room="${ROOM}"]`).catch(() => '');
      return /\b3\b/.test(row) && row.includes('2') && row.includes('1');
    }, { ms: 10000, what: `room ${ROOM} with 3 online` });
    // The key stays out of the URL; it lives in sessionStorage.
    if (admin.url().includes(API_KEY)) throw new Error('API key in the URL');
    // What the abuse limits refused is listed with the refused upgrades (from the nodes' "limits"):
    // a body nested deeper than json_max_depth shows up as json_depth 1.
    const deep = '['.repeat(40) + ']'.repeat(40);
    const r = await fetch(`http://127.0.0.1:${cluster.nodes[0].port}/api/publish`, { method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-API-Key': API_KEY }, body: `{"room":"${ROOM}","data":${deep}}` });
    if (r.status !== 400) throw new Error(`a 40-deep body answered ${r.status}`);
    await waitFor(async () => (await admin.textContent('#refusals span.n[data-reason="json_depth"]').catch(() => '')) === '1',
      { ms: 10000, what: 'json_depth 1 on the dashboard' });
    await sleep(2500);  // a few samples for the charts
    await admin.screenshot({ path: path.join(shots, 'admin.png'), fullPage: true });
    await admin.close();
  }, 40000);

  await check('kill -9 the node of one student: its page moves to the other node and shows every message once, in order', async () => {
    const before = (await alice.textContent('#node')).trim();
    const victim = cluster.nodes.find((n) => before.includes(n.id));
    const survivor = cluster.nodes.find((n) => n !== victim);
    if (!(await alice.isVisible('#kill'))) throw new Error('no kill button with dev_kill on');
    await alice.click('#kill');
    const exit = await Promise.race([victim.exited, sleep(10000).then(() => null)]);
    if (!exit || exit.signal !== 'SIGKILL') throw new Error(`node exit: ${JSON.stringify(exit)}`);
    // The class goes on while the student is away: the backend pushes to the survivor.
    for (let i = 1; i <= 5; ++i) {
      await cluster.publish({ room: ROOM, data: { kind: 'notice', text: `while away ${i}` } }, survivor.port);
      await sleep(100);
    }
    await waitFor(async () => (await alice.textContent('#node')).includes(survivor.id) &&
                              (await alice.textContent('#state')).includes('open'), { ms: 15000, what: 'alice on the survivor' });
    await waitFor(async () => (await countText(alice, '#log .notice', 'while away 5')) === 1, { ms: 10000, what: 'the last notice' });
    // The teacher's notice (seq 1), the students' quiz (2) and the five pushes (3-7), each once, in order.
    const seqs = await seqsOn(alice);
    if (seqs.join() !== '1,2,3,4,5,6,7') throw new Error(`seqs shown: ${seqs}`);
    const recovered = await alice.$$eval('#log [data-kind="recovered"]', (els) => els.map((e) => e.textContent));
    if (!recovered.length) throw new Error('no "recovered" line');
    for (let i = 1; i <= 5; ++i) {
      const n = await countText(alice, '#log .notice', `while away ${i}`);
      if (n !== 1) throw new Error(`"while away ${i}" shown ${n} times`);
    }
    await alice.screenshot({ path: path.join(shots, 'classroom-student-recovered.png') });
  }, 45000);

  await check('the other pages keep every message once too (the teacher skips the students-only quiz, seq 2)', async () => {
    for (const [p, want] of [[teacher, '1,3,4,5,6,7'], [bob, '1,2,3,4,5,6,7']]) {
      await waitFor(async () => (await countText(p, '#log .notice', 'while away 5')) === 1, { ms: 15000, what: 'last notice' });
      const seqs = await seqsOn(p);
      if (seqs.join() !== want) throw new Error(`seqs shown: ${seqs}`);
    }
  });
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
