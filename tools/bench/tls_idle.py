#!/usr/bin/env python3
"""Idle TLS WebSocket connections against a server, measured from the server's side.

Opens --connections wss connections (the WebSocket upgrade of the seed's URL, welcome read) from
--procs processes (each under the 20,000 open files of this machine), holds them idle, and reports:
  - server RSS growth per connection (VmRSS of every --pid, summed: roomcast, or nginx workers +
    roomcast behind them);
  - TLS handshakes (with the upgrade) per server CPU-second while connecting (utime+stime of the
    --pid processes over the connect phase), and the wall time of the phase.
  tools/bench/tls_idle.py --port P --pid PID [--pid PID ...] [--connections 15000] [--procs 3]
      [--concurrency 300] [--tls 1|0] [--json out.json]
--tls 0 measures the same over plain TCP (ws://), for the baseline.
"""
import argparse, asyncio, json, multiprocessing as mp, os, ssl, sys, time

TICK = os.sysconf("SC_CLK_TCK")


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def cpu_s(pids):
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def worker(idx, args, first, count, ready, stop):
    async def one(i, ctx, sem, held, failures):
        async with sem:
            try:
                src = f"127.0.0.{2 + (first + i) % 4}"
                r, w = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", args.port, ssl=ctx, local_addr=(src, 0),
                                            server_hostname="localhost" if ctx else None), 20)
                path = f"/demo/websocket/r{(first + i) % 100}/STU/u{first + i}/tok/pc"
                w.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())
                head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 20)
                if b" 101 " not in head.split(b"\r\n", 1)[0]:
                    raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
                await asyncio.wait_for(r.read(2), 20)  # the welcome frame's header: the session is in
                held.append((r, w))
            except Exception as e:  # noqa: BLE001 - counted, reported
                failures.append(str(e)[:80])

    async def run():
        ctx = None
        if args.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        sem = asyncio.Semaphore(max(1, args.concurrency // args.procs))
        held, failures = [], []
        await asyncio.gather(*(one(i, ctx, sem, held, failures) for i in range(count)))
        ready.put((idx, len(held), failures[:5], len(failures)))
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for _, w in held:
            w.close()
        _ = loop

    asyncio.run(run())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, action="append", required=True)
    ap.add_argument("--connections", type=int, default=15000)
    ap.add_argument("--procs", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=300)
    ap.add_argument("--tls", type=int, default=1)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--json")
    args = ap.parse_args()

    time.sleep(args.settle)
    rss0, cpu0, t0 = rss_kib(args.pid), cpu_s(args.pid), time.time()
    ready, stop = mp.Queue(), mp.Event()
    per = args.connections // args.procs
    procs = []
    for i in range(args.procs):
        n = per if i < args.procs - 1 else args.connections - per * (args.procs - 1)
        p = mp.Process(target=worker, args=(i, args, i * per, n, ready, stop))
        p.start()
        procs.append(p)
    opened, failures, samples = 0, 0, []
    for _ in procs:
        _, n, errs, nf = ready.get(timeout=600)
        opened += n
        failures += nf
        samples += errs
    t1, cpu1 = time.time(), cpu_s(args.pid)
    time.sleep(args.settle)  # let the server settle (released buffers, freed handshake state)
    rss1 = rss_kib(args.pid)
    stop.set()
    for p in procs:
        p.join(timeout=30)
    out = {
        "tls": bool(args.tls),
        "connections": args.connections,
        "opened": opened,
        "failed": failures,
        "failure_samples": samples,
        "connect_phase_s": round(t1 - t0, 2),
        "server_cpu_s_connect": round(cpu1 - cpu0, 2),
        "handshakes_per_server_cpu_s": round(opened / (cpu1 - cpu0), 0) if cpu1 > cpu0 else None,
        "server_rss_before_kib": rss0,
        "server_rss_after_kib": rss1,
        "server_bytes_per_connection": round((rss1 - rss0) * 1024 / opened, 0) if opened else None,
    }
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
