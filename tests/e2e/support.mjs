// What the browser test scripts share: a free port, a bounded check that counts, the summary line.
import net from 'node:net';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export const results = { passed: 0, failed: 0 };

// Runs one named check, at most `ms`; prints ok/FAIL and counts it.
export async function check(name, fn, ms = 30000) {
  try {
    await Promise.race([fn(), sleep(ms).then(() => { throw new Error(`timeout after ${ms} ms`); })]);
    results.passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    results.failed++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}

// "N passed, N failed", then the exit code.
export function finish() {
  console.log(`${results.passed} passed, ${results.failed} failed`);
  process.exit(results.failed ? 1 : 0);
}
