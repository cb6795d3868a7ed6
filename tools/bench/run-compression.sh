#!/usr/bin/env bash
# permessage-deflate, measured (issue: reach every student): S3 (10 rooms x 1,000 members) with
# ~1 KiB JSON messages of English-like words, and S2 (15,000 idle connections), each against one
# node with compression off and on. The clients offer permessage-deflate in both runs (as browsers
# do), so the only difference is the node's `compression` setting.
#   tools/bench/run-compression.sh [--rate 5] [--duration 20] [--out build/bench-results/compression]
# Prints one table (wire bytes per delivery, server CPU per delivery, RSS per idle connection).
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=5 duration=20 out=build/bench-results/compression
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
bin=build/release/roomcast
bench=build/release/tools/bench/roomcast-bench
[ -x "$bin" ] && [ -x "$bench" ] || { echo "build the release preset first (make run builds it)" >&2; exit 1; }
mkdir -p "$out"
port=$(scripts/free-port.sh)
sources=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4

run() {  # run <name> <on|off> <bench args...>
  local name=$1 comp=$2
  shift 2
  local flag=false
  [ "$comp" = on ] && flag=true
  "$bin" --port "$port" --threads 2 --log-level warn --compression "$flag" &
  local pid=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
  echo "# $name: $bin --port $port --threads 2 --log-level warn --compression $flag"
  echo "$bench $* --target 127.0.0.1:$port --server-pid $pid --workers 2 --sources $sources --deflate 1 --json $out/$name.json"
  "$bench" "$@" --target "127.0.0.1:$port" --server-pid "$pid" --workers 2 --sources "$sources" --deflate 1 \
    --json "$out/$name.json" > "$out/$name.txt"
  curl -fs "http://127.0.0.1:$port/metrics" | grep -E '^roomcast_(compressions|compression_bytes|deflate_sessions|messages_out)' \
    > "$out/$name.metrics" || true
  kill -TERM "$pid"
  wait "$pid" || true
}

for comp in off on; do
  run "S3-$comp" "$comp" fanout --rooms 10 --members 1000 --rate "$rate" --duration "$duration" --payload 1000 \
    --payload-text 1 --timeout 80
  run "S2-$comp" "$comp" hold --connections 15000 --rate 3000 --concurrency 2000 --rooms 100 --duration 10 --timeout 90
done

python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
def load(n):
    return json.load(open(f"{out}/{n}.json"))
def val(j, k):
    for r in j.get("rows", []):
        if r.get("key") == k: return r.get("value")
    return j.get(k)
rows = []
for comp in ("off", "on"):
    s3, s2 = load(f"S3-{comp}"), load(f"S2-{comp}")
    rows.append((comp, s3, s2))
print("| | compression off | compression on |")
print("|---|---|---|")
def line(label, f):
    print(f"| {label} | " + " | ".join(f(s3, s2) for _, s3, s2 in rows) + " |")
line("S3 deliveries expected / received", lambda s3, s2: f"{val(s3,'deliveries_expected')} / {val(s3,'deliveries_received')}")
line("S3 loss / duplicates / reordered", lambda s3, s2: f"{val(s3,'loss')} / {val(s3,'duplicates')} / {val(s3,'reordered')}")
line("S3 wire bytes per delivery", lambda s3, s2: f"{val(s3,'wire_bytes_per_delivery')}")
line("S3 frames inflated by the clients", lambda s3, s2: f"{val(s3,'frames_inflated')}")
line("S3 deliveries per server CPU-second", lambda s3, s2: f"{val(s3,'deliveries_per_server_cpu_s')}")
line("S3 server CPU while publishing (s)", lambda s3, s2: f"{val(s3,'server_cpu_s_publish')}")
line("S3 latency p50 / p99 (µs)", lambda s3, s2: f"{val(s3,'latency_p50_us')} / {val(s3,'latency_p99_us')}")
def metric(comp, name):
    for l in open(f"{out}/S3-{comp}.metrics"):
        if l.startswith(name + " "): return l.split()[1]
    return "0"
print("| S3 compressions / deliveries (node's /metrics) | " + " | ".join(
    f"{metric(c,'roomcast_compressions_total')} / {metric(c,'roomcast_messages_out_total')}" for c, _, _ in rows) + " |")
line("S2 sessions with deflate negotiated", lambda s3, s2: f"{val(s2,'deflate_negotiated')}")
line("S2 server RSS per idle connection (bytes)", lambda s3, s2: f"{val(s2,'server_bytes_per_connection')}")
EOF
