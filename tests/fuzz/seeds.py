#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into tests/fuzz/corpus/<target>/seed-*.

The seeds are the frames, URLs, bodies, tokens, envelopes, Redis replies and config files of the
unit tests and docs/protocol.md. `make fuzz` grows the corpus from them; `make fuzz FUZZ_MERGE=1`
merges what it found back (minimized) into tests/fuzz/corpus/. Re-running this rewrites only the
seed-* files."""
import base64, hashlib, hmac, json, os, pathlib, struct, zlib

root = pathlib.Path(__file__).resolve().parent / "corpus"


def put(target, items):
    d = root / target
    d.mkdir(parents=True, exist_ok=True)
    for i, b in enumerate(items):
        if isinstance(b, str):
            b = b.encode()
        (d / f"seed-{i:03d}").write_bytes(b)


def ws(op, payload, fin=True, mask=b"\x12\x34\x56\x78", rsv=0):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    h = bytes([(0x80 if fin else 0) | (rsv << 4) | op])
    if n < 126:
        h += bytes([0x80 | n])
    elif n <= 0xFFFF:
        h += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        h += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


client_frames = [
    '{"type":"join","room":"7"}', ' {"type":"ping"}', '{"type":"leave","room":"7"}',
    '{"type":"publish","room":"7","id":"m1","data": { "x" : [1, 2] } }',
    '{"type":"join","room":"347","since":12,"epoch":"00ab00cd00000001"}',
    '{"type":"publish","room":"7","data":1,"roles":["THE"],"platforms":["pc"]}',
    '{"type":"publish","room":"7","data":1,"users":["a","b"]}',
    '{"type":"auth","token":"a.b.c"}', '{"type":"refresh","token":"d.e.f"}',
    '{"type":"received","id":"m1"}', '{"type":"kill"}', 'hello class', '{"type":"join","room":5}',
    '{"a":{"data":1},"s":"}\\"data\\":","data" : [ {"k":"v"} ] ,"z":null}',
    '{"type":"publish","room":"1","data":"\\ud83d\\ude00 caf\\u00e9"}',
]
# The reader seeds: first byte = limit exponent, second = read size, then frames (see fuzz_ws_frame.cpp).
frames = [
    ws(1, client_frames[0]),
    ws(1, "hel", fin=False) + ws(0, "lo", fin=True),
    ws(9, "p") + ws(10, "") + ws(8, struct.pack(">H", 1000) + b"bye"),
    ws(8, struct.pack(">H", 1005)), ws(8, b"\x03"), ws(8, struct.pack(">H", 4000) + b"\xff"),
    ws(2, bytes(range(256))), ws(1, "x" * 300), ws(1, "y" * 70000),
    ws(1, "a", rsv=4), ws(1, "no mask")[:2] + b"no mask",
    ws(1, "\xc3\xa9".encode("latin-1")), ws(1, b"\xed\xa0\x80"),
    ws(1, "frag", fin=False) + ws(9, "mid") + ws(0, "ment"),
]
put("ws_frame", [bytes([8, 255]) + f for f in frames] + [bytes([0, 3]) + f for f in frames[:6]])
put("client_frame", client_frames)

route = "/demo/websocket/{room}/{role}/{user}/{token}/{platform}"
put("route", [
    "/demo/websocket/345/STU/u1/eyJ.x.y/pc", "/demo/websocket/345/THE/u%20x/-/phone?since=3&epoch=ab",
    "/demo/websocket//STU/u1/t/pc", "/demo/websocket/a%2Fb/STU/u1/t/pc?rooms=1,2",
    "/a//b?x=1", "/%zz", route + "\n/demo/websocket/1/2/3/4/5",
    "/ws/{room}/{user}\n/ws/r/u?token=abc", "/ws/{room}/{room}\n/ws/a/b", "{room}\n/x", "/ws/pre{room}\n/ws/prea",
])


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(payload, secret=b"fuzz-secret", header=None):
    h = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps(payload).encode())
    sig = b64(hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest())
    return f"{h}.{p}.{sig}"


put("jwt", [
    jwt({"sub": "u1", "exp": 1_900_000_000}), jwt({"sub": "u1", "exp": 1_700_000_000}),
    jwt({"sub": "u2", "exp": 1_900_000_000}), jwt({"sub": "u1"}),
    jwt({"sub": "u1", "exp": 1_900_000_000, "nbf": 1_900_000_000}),
    jwt({"sub": "u1", "exp": 1_900_000_000}, header={"alg": "none"}),
    jwt({"sub": "u1", "exp": 1_900_000_000}, secret=b"wrong"), "a.b.c", "..", "eyJhbGciOiJIUzI1NiJ9", "-",
    '{"sub":"u1","exp":1900000000}',
])

envelopes = [
    '{"v":1,"type":"message","kind":"room","target":"345","id":"m1","from":"api","origin":"n1","data":{"x":1}}',
    '{"v":1,"type":"message","kind":"room","target":"345","id":"m2","from":"u1","origin":"n1","seq":7,"epoch":"00ab00cd00000001","data":"hi"}',
    '{"v":1,"type":"message","kind":"room","target":"r","id":"m3","from":"api","origin":"n2","roles":["THE"],"platforms":["pc"],"users":["a"],"receipt":true,"data":[1,2]}',
    '{"v":1,"type":"message","kind":"user","target":"u1","id":"m4","from":"api","origin":"n1","data":null}',
    '{"v":1,"type":"message","kind":"all","target":"","id":"m5","from":"api","origin":"n1","data":{"k":"v"}}',
    '{"v":1,"type":"kick","kind":"user","target":"u1","id":"k1","from":"api","origin":"n1","code":4000,"reason":"bye","data":null}',
    '{"v":1,"type":"kick","kind":"all","target":"00ab00cd00000001","id":"k2","from":"api","origin":"n1","code":70000,"reason":"","data":null}',
    '{"v":1,"type":"presence","kind":"room","target":"345","id":"p1","from":"","origin":"n2","data":null}',
    '{"v":1,"type":"room_kick","kind":"room","target":"345","id":"rk","from":"api","origin":"n1","user":"u1","reason":"x","data":null}',
    '{"v":1,"type":"message","kind":"room","target":"r","id":"m","from":"a","origin":"n","roles":[],"data":1}',
]
put("envelope", envelopes)


def resp(v):
    if v is None:
        return b"$-1\r\n"
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"$%d\r\n%s\r\n" % (len(v), v)
    return b"*%d\r\n" % len(v) + b"".join(resp(x) for x in v)


def entry(seq, **kv):
    fields = []
    for k, val in kv.items():
        fields += [k, val]
    return [f"{seq}-0", fields]


# First byte: since (fuzz_history_reply.cpp); then the read script's reply.
put("history_reply", [
    bytes([0]) + resp(["00ab00cd00000001", 2, [entry(1, i="m1", f="api", d='{"x":1}'), entry(2, i="m2", f="u1", d="2")]]),
    bytes([1]) + resp(["00ab00cd00000001", 3, [entry(2, i="m2", f="u1", d="2", a='{"roles":["THE"]}', r="1"), entry(3, i="m3", f="api", d="3")]]),
    bytes([0]) + resp(["", 0, []]), bytes([2]) + resp(["e", 5, [entry(5, i="x", f="y", d="1")]]),
    bytes([0]) + resp(["e", 2, [entry(2, d="1"), entry(1, d="1")]]), bytes([0]) + resp(["e", 1, [entry(1, d="1", a="{oops")]]),
    bytes([0]) + b"-ERR unknown script\r\n", bytes([0]) + resp([None, "x", 7]),
])

put("config", [
    (pathlib.Path(__file__).resolve().parents[2] / "deploy" / "roomcast.example.toml").read_text(),
    'port = 8091\nbus = "rabbitmq"\nrabbitmq_uris = ["amqp://guest:guest@127.0.0.1:5672/"]\n',
    'history = ["lobby-* 0 0s", "* 300 10m"]\nmax_frame_bytes = "64KiB"\nping_interval = "25s"\n',
    'presence_events = ["class-* 1s"]\npresence_names = ["THE"]\n', 'port = 70000\n', 'nope = 1\n', '[a\n',
    'route = "/ws/{room}/{user}"\njwt_secret = "s"\n', 'handshake_timeout = "-1s"\n',
])

put("api", [
    b"\x00" + b'{"room":"345","data":{"x":1},"id":"k1"}',
    b"\x00" + b'[{"room":"345","data":1},{"user":"u1","data":2},{"all":true,"data":3}]',
    b"\x00" + b'{"room":"345","data":1,"id":"r1","receipts":true,"roles":["STU"]}',
    b"\x00" + b'{"room":"345","data":1,"roles":["THE"],"platforms":["pc"],"users":["u"]}',
    b"\x01" + b'{"user":"u1","code":4001,"reason":"bye"}', b"\x01" + b'{"session":"00ab00cd00000001"}',
    b"\x02" + b'{"user":"s1","reason":"be nice"}', b"\x03" + b'{"user":"s1","duration":"10m"}',
    b"\x04" + b"limit=2&cursor=abc", b"\x05" + b"limit=1000", b"\x06", b"\x07", b"\x00{oops",
])


def raw_deflate(b, final=False):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(b) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
    return out if final else out[:-4]


put("deflate", [
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=10, permessage-deflate",
    'permessage-deflate; client_max_window_bits="12"',
    raw_deflate(b'{"type":"publish","room":"345","data":{"text":"hello class"}}'),
    raw_deflate(b'{"type":"ping"}', final=True),
    raw_deflate(b" " * 100000),
    raw_deflate(b"\xc3\x28 not utf-8"),
])
print(f"seeds written under {root}")
