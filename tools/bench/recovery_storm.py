#!/usr/bin/env python3
"""Recovery cost: N clients in R rooms, the backend publishes M messages to every room while they are
away, then all N reconnect at once with ?since=<their last seq>&epoch=<epoch> and must receive the
missed messages in order, then `recovered`. Reports the time until all are recovered.

  python3 tools/bench/recovery_storm.py --port 8091 -n 5000 --rooms 50 --missed 100

The client is Python asyncio on the same 2 cores: the time is an upper bound for the server.
"""
import argparse, asyncio, base64, json, os, struct, time, urllib.request


async def ws_open(host, port, path):
    r, w = await asyncio.open_connection(host, port)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = await r.readuntil(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
    return r, w


async def ws_read(r):
    h = await r.readexactly(2)
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", await r.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await r.readexactly(8))[0]
    return h[0] & 0x0F, await r.readexactly(n)


def publish(host, port, room, i):
    body = json.dumps({"room": room, "data": {"i": i}}).encode()
    req = urllib.request.Request(f"http://{host}:{port}/api/publish", data=body,
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8091)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--rooms", type=int, default=50)
    ap.add_argument("--missed", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    rooms = [f"rs{i}" for i in range(a.rooms)]
    # Each room's position before the outage (one publish so every room has an epoch and a seq).
    pos = {room: publish(a.host, a.port, room, 0) for room in rooms}
    for i in range(1, a.missed + 1):  # messages the clients will have missed
        for room in rooms:
            publish(a.host, a.port, room, i)
    sem = asyncio.Semaphore(a.concurrency)
    done, bad = [], []

    async def client(k):
        room = rooms[k % a.rooms]
        since, epoch = pos[room]["seq"], pos[room]["epoch"]
        async with sem:
            try:
                r, w = await ws_open(a.host, a.port,
                                     f"/demo/websocket/{room}/STU/u{k}/t/pc?since={since}&epoch={epoch}")
                expect = since + 1
                while True:
                    op, p = await ws_read(r)
                    m = json.loads(p)
                    if m["type"] == "message":
                        if m["seq"] != expect:
                            raise RuntimeError(f"seq {m['seq']} != {expect}")
                        expect += 1
                    elif m["type"] == "recovered":
                        if expect - 1 != m["to"]:
                            raise RuntimeError("recovered before every message")
                        done.append(time.monotonic())
                        w.close()
                        return
                    elif m["type"] == "gap":
                        raise RuntimeError(f"gap {m}")
            except Exception as e:  # counted and reported
                bad.append(str(e)[:80])

    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(client(k) for k in range(a.n))), a.timeout)
    t = (max(done) - t0) if done else float("nan")
    print(f"{len(done)}/{a.n} clients recovered {a.missed} missed messages each in {t:.2f} s "
          f"({len(done) * a.missed / t:.0f} recovered messages/s); failures {len(bad)} {sorted(set(bad))[:3]}")


if __name__ == "__main__":
    asyncio.run(main())
