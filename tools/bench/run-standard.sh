#!/usr/bin/env bash
# Standard roomcast benchmark scenarios S1–S8. Each scenario starts its own server (fresh process,
# so that CPU and RSS are the scenario's own), runs roomcast-bench against it with --server-pid,
# writes $OUT/<scenario>.json (+ .svg for the latency scenarios) and stops the server.
#
#   tools/bench/run-standard.sh [options] [S1 S2 … | all]
#
#   --server CMD     server command; {port} is replaced (default: roomcast release build)
#                    e.g. --server "build/bench/limit-server --port {port} --threads 2"
#   --bench PATH     roomcast-bench binary (default: first of build/release/tools/bench, build/bench, /tmp/benchbuild)
#   --port P         port (default 18300)
#   --out DIR        result folder (default build/bench-results/<server name>)
#   --scale F        multiply connection counts and cycles by F (e.g. 0.1 for a quick run; default 1)
#   --duration S     publish time of the message scenarios (default 20)
#   --workers W      bench worker processes (default 2)
#   --sources LIST   client source addresses (default 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4)
#   --s7-limit N     S7: max connections the server admits (default 5000; roomcast's --max-connections)
#
# Every step is bounded: roomcast-bench has a hard --timeout, and the server is killed by its pid.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PORT=18300
SERVER='build/release/roomcast --port {port} --threads 2 --log-level warn'
BENCH=
OUT=
SCALE=1
DURATION=20
WORKERS=2
SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4
S7_LIMIT=5000
SCENARIOS=()

while (($#)); do
  case $1 in
    --server) SERVER=$2; shift 2 ;;
    --bench) BENCH=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --sources) SOURCES=$2; shift 2 ;;
    --s7-limit) S7_LIMIT=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    all) SCENARIOS+=(S1 S2 S3 S4 S5 S6 S7 S8); shift ;;
    S[1-8]) SCENARIOS+=("$1"); shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
((${#SCENARIOS[@]})) || SCENARIOS=(S1 S2 S3 S4 S5 S6 S7 S8)

cd "$ROOT"
if [[ -z $BENCH ]]; then
  for b in build/release/tools/bench/roomcast-bench build/bench/roomcast-bench /tmp/benchbuild/roomcast-bench; do
    [[ -x $b ]] && { BENCH=$b; break; }
  done
fi
[[ -x ${BENCH:-} ]] || { echo "roomcast-bench not found; build tools/bench first (or pass --bench)" >&2; exit 2; }
SERVER_NAME=$(basename "${SERVER%% *}")
OUT=${OUT:-build/bench-results/$SERVER_NAME}
mkdir -p "$OUT"
IS_LIMIT=0
[[ $SERVER_NAME == limit-server* ]] && IS_LIMIT=1

n() { awk -v x="$1" -v s="$SCALE" 'BEGIN { v = int(x * s); if (v < 1) v = 1; print v }'; }

SERVER_PID=
start_server() {  # extra server flags in $@
  local cmd=${SERVER//\{port\}/$PORT}
  # shellcheck disable=SC2086
  bash -c "exec $cmd $*" >"$OUT/server-$CURRENT.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited; see $OUT/server-$CURRENT.log" >&2; return 1; }
    sleep 0.1
  done
  echo "server did not listen on $PORT within 10 s" >&2
  return 1
}
stop_server() {
  [[ -n $SERVER_PID ]] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap stop_server EXIT

bench() {  # mode, then flags
  local mode=$1; shift
  echo "+ roomcast-bench $mode $*" | tee -a "$OUT/commands.txt"
  "$BENCH" "$mode" --target "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --workers "$WORKERS" \
    --sources "$SOURCES" "$@" | tee "$OUT/$CURRENT.txt"
}

run() {  # scenario name, then its function
  CURRENT=$1
  echo "=== $1: $2 ($SERVER_NAME) ==="
}

S1() {  # surge: 15,000 joins into one node as fast as possible (1,000 connects in flight)
  run S1 "surge $(n 15000) joins"
  start_server
  bench surge --connections "$(n 15000)" --concurrency 1000 --rooms 100 --hold 5 --timeout 90 --json "$OUT/S1.json"
  stop_server
}

S2() {  # memory per idle connection: 15,000 opened at 3,000/s and held 10 s
  run S2 "memory per idle connection at $(n 15000)"
  start_server
  bench hold --connections "$(n 15000)" --rate 3000 --concurrency 2000 --rooms 100 --duration 10 --timeout 90 \
    --json "$OUT/S2.json"
  stop_server
}

S3() {  # fan-out: 10 rooms × 1,000 members at 20 msgs/s per room, then at 5 msgs/s
  for rate in 20 5; do
    run "S3-${rate}" "fan-out 10 rooms x $(n 1000) members, $rate msgs/s per room"
    start_server
    bench fanout --rooms 10 --members "$(n 1000)" --rate "$rate" --duration "$DURATION" --timeout $((DURATION + 60)) \
      --json "$OUT/S3-${rate}.json" --plot "$OUT/S3-${rate}.svg"
    stop_server
  done
}

S4() {  # 10,000 subscribers in one room at 5 msgs/s
  run S4 "$(n 10000) subscribers in 1 room, 5 msgs/s"
  start_server
  bench fanout --rooms 1 --members "$(n 10000)" --rate 5 --duration "$DURATION" --timeout $((DURATION + 60)) \
    --json "$OUT/S4.json" --plot "$OUT/S4.svg"
  stop_server
}

S5() {  # churn: 100,000 connect/close cycles (close frame, FIN, RST in turn), 500 in flight
  run S5 "churn $(n 100000) cycles"
  start_server
  bench churn --cycles "$(n 100000)" --concurrency 500 --rooms 100 --timeout 300 --json "$OUT/S5.json"
  if ((!IS_LIMIT)) && command -v curl >/dev/null; then
    echo "server /api/stats after churn:"; curl -s --max-time 5 "127.0.0.1:$PORT/api/stats" | tee "$OUT/S5-stats.json"; echo
  fi
  stop_server
}

S6() {  # 10 % slow consumers (never read, 4 KiB SO_RCVBUF) among 10 rooms x 500, 10 msgs/s per room of ~8 KiB.
  # The server's socket send buffer is pinned to 64 KiB so that a slow client's backlog reaches the
  # 1 MiB queue limit in ~15 s instead of hiding in a 4 MiB autotuned kernel buffer.
  run S6 "slow consumers: 10 % of 10 x $(n 500)"
  if ((IS_LIMIT)); then start_server --sndbuf 65536; else start_server --send-buffer-bytes 65536; fi
  bench slow --rooms 10 --members "$(n 500)" --rate 10 --payload 8192 --slow-share 0.1 --duration $((DURATION + 25)) \
    --timeout $((DURATION + 100)) --json "$OUT/S6.json" --plot "$OUT/S6.svg"
  stop_server
}

S7() {  # more joins than the server admits: count 503 + Retry-After
  if ((IS_LIMIT)); then echo "=== S7: skipped (limit-server has no admission limit) ==="; return 0; fi
  local limit; limit=$(n "$S7_LIMIT")
  run S7 "$(n $((S7_LIMIT + 2000))) joins into a node admitting $limit"
  start_server --max-connections "$limit"
  bench surge --connections "$(n $((S7_LIMIT + 2000)))" --concurrency 1000 --hold 3 --timeout 60 --json "$OUT/S7.json"
  stop_server
}

S8() {  # 15,000 users, messages to random single users (1,000 msgs/s)
  run S8 "$(n 15000) users, 1000 msgs/s to random users"
  start_server
  bench user --users "$(n 15000)" --rate 1000 --duration "$DURATION" --timeout $((DURATION + 90)) \
    --json "$OUT/S8.json" --plot "$OUT/S8.svg"
  stop_server
}

: >"$OUT/commands.txt"
for s in "${SCENARIOS[@]}"; do "$s"; done
echo "results in $OUT"
