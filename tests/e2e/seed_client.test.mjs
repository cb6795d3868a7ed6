// The seed's plain browser client (web/seed.html: open, onmessage, send, close; no library) against
// a real roomcast node, in Debian's headless chromium driven by playwright-core.
//   node seed_client.test.mjs <roomcast binary> <web root>
// Exits 0 on success; prints "N passed, N failed".
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { freePort } from './support.mjs';

const [bin, webRoot] = process.argv.slice(2);
const deadline = (ms) => new Promise((_, reject) => setTimeout(() => reject(new Error(`timeout after ${ms} ms`)), ms));

async function waitHealthy(port) {
  for (let i = 0; i < 250; ++i) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('node did not become healthy');
}

async function publish(port, body) {
  const r = await fetch(`http://127.0.0.1:${port}/api/publish`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`publish answered ${r.status}`);
  return r.json();
}

let passed = 0, failed = 0;
async function check(name, fn) {
  try {
    await Promise.race([fn(), deadline(20000)]);
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}

const port = await freePort();
// Compression on: the seed's page must not notice that chromium negotiated permessage-deflate.
const node = spawn(bin, ['--listen-address', '127.0.0.1', '--port', String(port), '--threads', '2', '--web-root', webRoot,
                         '--compression', 'true'],
                   { stdio: ['ignore', 'ignore', 'pipe'] });
let nodeLog = '';
node.stderr.on('data', (d) => { nodeLog += d; });
let browser;
try {
  await waitHealthy(port);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage();
  const lines = () => page.locator('#message div').allTextContents();
  const waitLine = async (pred, what) => {
    for (let i = 0; i < 200; ++i) {
      if ((await lines()).some(pred)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no line with ${what}; page shows: ${JSON.stringify(await lines())}`);
  };

  await check('the seed page opens its WebSocket and gets welcome', async () => {
    await page.goto(`http://127.0.0.1:${port}/seed.html`);
    await waitLine((l) => l.includes('WebSocket连接成功'), 'the onopen text');
    await waitLine((l) => l.includes('"type":"welcome"') && l.includes('"user":"452784"'), 'welcome');
  });

  await check('a backend publish to room 345 reaches onmessage', async () => {
    await publish(port, { room: '345', data: { text: 'class starts' } });
    await waitLine((l) => l.includes('"type":"message"') && l.includes('class starts'), 'the room message');
  });

  await check('a publish to the user reaches the page', async () => {
    await publish(port, { user: '452784', data: { text: 'just for you' } });
    await waitLine((l) => l.includes('"user":"452784"') && l.includes('just for you'), 'the user message');
  });

  await check('the teacher (THE) sends plain text with send(): the room gets {"text": ...}', async () => {
    await page.fill('#text', 'hello class');
    await page.click('text=发送消息');
    await waitLine((l) => l.includes('"from":"452784"') && l.includes('"data":{"text":"hello class"}'), 'the chat echo');
  });

  await check('chromium negotiates permessage-deflate: big messages arrive compressed, its own are inflated', async () => {
    const metric = async (name) => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(name + ' '));
      return line ? Number(line.split(' ')[1]) : -1;
    };
    if (await metric('roomcast_deflate_sessions_total') < 1) throw new Error('chromium did not negotiate permessage-deflate');
    const before = await metric('roomcast_compressions_total');
    const long = 'quiz '.repeat(400);  // 2 KB: over compression_min_bytes
    await publish(port, { room: '345', data: { text: long, tag: 'big-one' } });
    await waitLine((l) => l.includes('big-one') && l.includes(long), 'the compressed room message, inflated by chromium');
    if (await metric('roomcast_compressions_total') !== before + 1) throw new Error('the message was not compressed once');
    const inflatedBefore = await metric('roomcast_messages_inflated_total');
    await page.fill('#text', 'long answer ' + 'x'.repeat(1500));
    await page.click('text=发送消息');
    await waitLine((l) => l.includes('"from":"452784"') && l.includes('long answer xxxx'), 'the long chat echo');
    if (await metric('roomcast_messages_inflated_total') <= inflatedBefore) throw new Error('chromium sent its frame uncompressed');
  });

  await check('close() closes, onclose fires, and the node cleans the session up', async () => {
    await page.click('text=关闭WebSocket连接');
    await waitLine((l) => l.includes('WebSocket连接关闭的回调方法'), 'the onclose text');
    for (let i = 0; i < 200; ++i) {
      const s = await (await fetch(`http://127.0.0.1:${port}/api/stats`)).json();
      if (s.connections === 0 && s.index.sessions === 0 && s.index.users === 0) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error('session not removed from the indexes');
  });

  await check('open again after close works (the seed\'s openWebSocket)', async () => {
    await page.click('text=打开WebSocket连接');
    await waitLine((l) => l.includes('已经重新打开了'), 'the reopen text');
    // The new socket is in the room once its welcome arrived (the reopen text is written before).
    for (let i = 0; i < 200; ++i) {
      if ((await lines()).filter((l) => l.includes('"type":"welcome"')).length >= 2) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    await publish(port, { room: '345', data: { text: 'second time' } });
    await waitLine((l) => l.includes('second time'), 'a message on the new socket');
  });
} catch (e) {
  failed++;
  console.log(`FAIL setup: ${e.message}`);
} finally {
  if (browser) await browser.close();
  node.kill('SIGTERM');
  await Promise.race([new Promise((r) => node.on('exit', r)), new Promise((r) => setTimeout(r, 15000))]);
}
if (failed) console.log('--- roomcast log ---\n' + nodeLog.split('\n').slice(-40).join('\n'));
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
