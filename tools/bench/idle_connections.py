#!/usr/bin/env python3
"""Opens N idle WebSocket sessions to a roomcast node through the seed URL and reports the time to
open them and the node's RSS growth per connection (read from /proc/<pid>/status).

Until roomcast-bench (tools/bench, C++) exists this is the measurement behind the README's
performance section. The client is Python asyncio, so "time to open" is bounded by the client on
a 2-core box: read it as an upper bound for the server.

  python3 tools/bench/idle_connections.py --port 8091 --pid $(pgrep -n roomcast) -n 10000
"""
import argparse, asyncio, base64, os, time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def open_one(host, port, i, rooms, sem, conns, failures):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
            key = base64.b64encode(os.urandom(16)).decode()
            path = f"/demo/websocket/{i % rooms}/STU/u{i}/tok/pc"
            w.write((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                failures.append(head.split(b"\r\n", 1)[0].decode())
                w.close()
                return
            conns.append((r, w))
        except Exception as e:  # counted, not raised: the report says how many failed and why
            failures.append(type(e).__name__)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8091)
    ap.add_argument("--pid", type=int, required=True, help="roomcast's pid, for RSS")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--rooms", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=500)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before reading RSS")
    a = ap.parse_args()
    before = rss_kib(a.pid)
    conns, failures = [], []
    sem = asyncio.Semaphore(a.concurrency)
    t0 = time.monotonic()
    await asyncio.gather(*(open_one(a.host, a.port, i, a.rooms, sem, conns, failures) for i in range(a.n)))
    elapsed = time.monotonic() - t0
    await asyncio.sleep(a.settle)
    after = rss_kib(a.pid)
    per = (after - before) * 1024 / max(1, len(conns))
    print(f"opened {len(conns)}/{a.n} in {elapsed:.2f} s ({len(conns) / elapsed:.0f}/s), failures {len(failures)}"
          f"{' ' + str(sorted(set(failures))[:5]) if failures else ''}")
    print(f"server RSS {before} KiB -> {after} KiB: {per:.0f} bytes per idle connection")
    for _, w in conns:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
