#!/usr/bin/env bash
# Standard roomcast benchmark scenarios S1–S8. Each scenario starts its own server (fresh process,
# so that CPU and RSS are the scenario's own), runs roomcast-bench against it with --server-pid,
# writes $OUT/<scenario>.json (+ .svg for the latency scenarios) and stops the server.
# Also in $OUT: commands.txt (every bench command), loadavg.txt (/proc/loadavg before and after each
# scenario), schedstat.txt (the server threads' time on a CPU and waiting for one, per scenario),
# run.txt (server command, git commit, start/end time), machine.txt (nproc, CPU, RAM, kernel,
# Debian version); tools/bench/report.py turns the folders into docs/benchmarks.md.
#
# Scenarios (run ids): S1, S2, S3-20 and S3-5, S4, S5, S6 and S6-base (the same without slow
# consumers: the reference for S6's p99), S7 (roomcast only), S8 (1,000 msgs/s: p99) and S8-max
# (as fast as the publisher gets answers: messages/s). S3F (roomcast only, not in `all`): S3-10 and
# S3F-20, S3 at 20 msgs/s with every 2nd message filtered to a role the members don't have.
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
#   --workers W      bench worker processes (default 2; raised per scenario so that no worker
#                    holds more than 9,000 sockets: ulimit -n is 20,000 here and roomcast-bench
#                    refuses 19,000 or more per worker — matters for --scale > 1)
#   --sources LIST   client source addresses (default 127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4)
#   --s7-limit N     S7: max connections the server admits (default 5000; roomcast's --max-connections)
#   --append         add to $OUT's commands.txt/loadavg.txt/run.txt instead of starting them afresh
#                    (make bench runs one scenario at a time, alternating the servers)
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
APPEND=0
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
    --append) APPEND=1; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    all) SCENARIOS+=(S1 S2 S3 S4 S5 S6 S7 S8); shift ;;
    S[1-8]|S3F) SCENARIOS+=("$1"); shift ;;
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
  EXTRA_SERVER_FLAGS="$*"
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
trap 'exit 143' TERM INT  # so that the EXIT trap stops the server when `timeout` ends the run

# Workers for N sockets: at least --workers, and at most 9,000 sockets each.
workers_for() { local w=$(( ($1 + 8999) / 9000 )); ((w < WORKERS)) && w=$WORKERS; echo "$w"; }

# Sum over the server's threads of /proc/<pid>/task/*/schedstat: "on-cpu-ns runqueue-wait-ns".
# The wait is the time the server was ready to run but another process had the cores: on a shared
# machine it tells how much of a latency figure is the machine's rather than the server's.
schedstat() {
  local t a=0 b=0 x y
  for t in /proc/"$SERVER_PID"/task/*/schedstat; do
    read -r x y _ <"$t" 2>/dev/null || continue
    a=$((a + x)); b=$((b + y))
  done
  echo "$a $b"
}

bench() {  # connections, mode, then flags
  local conns=$1 mode=$2; shift 2
  local w; w=$(workers_for "$conns")
  local cmd=("$BENCH" "$mode" --target "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --workers "$w" --sources "$SOURCES" "$@")
  {
    echo "# $CURRENT — server: ${SERVER//\{port\}/$PORT}${EXTRA_SERVER_FLAGS:+ $EXTRA_SERVER_FLAGS}"
    echo "${cmd[*]/#$BENCH/roomcast-bench}"
  } >>"$OUT/commands.txt"
  echo "$CURRENT before $(cat /proc/loadavg)" >>"$OUT/loadavg.txt"
  local s0; s0=$(schedstat)
  "${cmd[@]}" | tee "$OUT/$CURRENT.txt"
  echo "$CURRENT after $(cat /proc/loadavg)" >>"$OUT/loadavg.txt"
  local s1; s1=$(schedstat)
  echo "$CURRENT ${s0% *} ${s0#* } ${s1% *} ${s1#* }" | awk '{ printf "%s server_on_cpu_s %.2f server_runqueue_wait_s %.2f\n", $1, ($4-$2)/1e9, ($5-$3)/1e9 }' \
    >>"$OUT/schedstat.txt"
}

run() {  # scenario name, then its function
  CURRENT=$1
  EXTRA_SERVER_FLAGS=
  echo "=== $1: $2 ($SERVER_NAME) ==="
}

S1() {  # surge: 15,000 joins into one node as fast as possible (1,000 connects in flight)
  run S1 "surge $(n 15000) joins"
  start_server
  bench "$(n 15000)" surge --connections "$(n 15000)" --concurrency 1000 --rooms 100 --hold 5 --timeout 90 --json "$OUT/S1.json"
  stop_server
}

S2() {  # memory per idle connection: 15,000 opened at 3,000/s and held 10 s
  run S2 "memory per idle connection at $(n 15000)"
  start_server
  bench "$(n 15000)" hold --connections "$(n 15000)" --rate 3000 --concurrency 2000 --rooms 100 --duration 10 --timeout 90 \
    --json "$OUT/S2.json"
  stop_server
}

S3() {  # fan-out: 10 rooms × 1,000 members at 20 msgs/s per room, then at 5 msgs/s
  for rate in 20 5; do
    run "S3-${rate}" "fan-out 10 rooms x $(n 1000) members, $rate msgs/s per room"
    start_server
    bench "$((10 * $(n 1000)))" fanout --rooms 10 --members "$(n 1000)" --rate "$rate" --duration "$DURATION" --timeout $((DURATION + 60)) \
      --json "$OUT/S3-${rate}.json" --plot "$OUT/S3-${rate}.svg"
    stop_server
  done
}

S3F() {  # the cost of filters: S3F-20 is S3 at 20 msgs/s per room with every 2nd message for role THE only
  # (the members are STU, so they skip it): it delivers what S3-10 (10 msgs/s, no filter) delivers,
  # plus 10 filtered-away msgs/s per room; the difference in server CPU is what the skipped ones cost.
  run "S3-10" "fan-out 10 rooms x $(n 1000) members, 10 msgs/s per room (S3F's baseline)"
  start_server
  bench "$((10 * $(n 1000)))" fanout --rooms 10 --members "$(n 1000)" --rate 10 --duration "$DURATION" \
    --timeout $((DURATION + 60)) --json "$OUT/S3-10.json" --plot "$OUT/S3-10.svg"
  stop_server
  run "S3F-20" "fan-out 10 rooms x $(n 1000) members, 20 msgs/s per room, half of them filtered to another role"
  start_server
  bench "$((10 * $(n 1000)))" fanout --rooms 10 --members "$(n 1000)" --rate 20 --filter-every 2 --filter-role THE \
    --duration "$DURATION" --timeout $((DURATION + 60)) --json "$OUT/S3F-20.json" --plot "$OUT/S3F-20.svg"
  stop_server
}

S4() {  # 10,000 subscribers in one room at 5 msgs/s
  run S4 "$(n 10000) subscribers in 1 room, 5 msgs/s"
  start_server
  bench "$(n 10000)" fanout --rooms 1 --members "$(n 10000)" --rate 5 --duration "$DURATION" --timeout $((DURATION + 60)) \
    --json "$OUT/S4.json" --plot "$OUT/S4.svg"
  stop_server
}

S5() {  # churn: 100,000 connect/close cycles (close frame, FIN, RST in turn), 500 in flight.
  # A warm-up of 10,000 cycles on the same server first (S5-warmup): the allocator reaches its working
  # set for 500 connections in flight, so S5's RSS start → end shows what the 100,000 cycles leave behind.
  run S5-warmup "churn warm-up $(n 10000) cycles"
  start_server
  bench 500 churn --cycles "$(n 10000)" --concurrency 500 --rooms 100 --timeout 120 --json "$OUT/S5-warmup.json"
  CURRENT=S5
  echo "=== S5: churn $(n 100000) cycles ($SERVER_NAME, same server) ==="
  bench 500 churn --cycles "$(n 100000)" --concurrency 500 --rooms 100 --timeout 300 --json "$OUT/S5.json"
  if ((!IS_LIMIT)) && command -v curl >/dev/null; then
    echo "server /api/stats after churn:"; curl -s --max-time 5 "127.0.0.1:$PORT/api/stats" | tee "$OUT/S5-stats.json"; echo
  fi
  stop_server
}

S6() {  # 10 % slow consumers (never read, 4 KiB SO_RCVBUF) among 10 rooms x 500, 10 msgs/s per room of ~8 KiB.
  # The server's socket send buffer is pinned to 64 KiB so that a slow client's backlog reaches the
  # 1 MiB queue limit in ~15 s instead of hiding in a 4 MiB autotuned kernel buffer.
  # S6-base is the same run without slow consumers (--slow-share 0): the reference for the others' p99.
  local share id
  for share in 0.1 0; do
    if [[ $share == 0 ]]; then id=S6-base; else id=S6; fi
    run "$id" "slow consumers: $share of 10 x $(n 500)"
    if ((IS_LIMIT)); then start_server --sndbuf 65536; else start_server --send-buffer-bytes 65536; fi
    bench "$((10 * $(n 500)))" slow --rooms 10 --members "$(n 500)" --rate 10 --payload 8192 --slow-share "$share" \
      --duration $((DURATION + 25)) --timeout $((DURATION + 100)) --json "$OUT/$id.json" --plot "$OUT/$id.svg"
    stop_server
  done
}

S7() {  # more joins than the server admits: count 503 + Retry-After
  if ((IS_LIMIT)); then echo "=== S7: skipped (limit-server has no admission limit) ==="; return 0; fi
  local limit; limit=$(n "$S7_LIMIT")
  run S7 "$(n $((S7_LIMIT + 2000))) joins into a node admitting $limit"
  start_server --max-connections "$limit"
  bench "$(n $((S7_LIMIT + 2000)))" surge --connections "$(n $((S7_LIMIT + 2000)))" --concurrency 1000 --hold 3 --timeout 60 --json "$OUT/S7.json"
  stop_server
}

S8() {  # 15,000 users, messages to random single users: 1,000 msgs/s (latency), then as fast as
  # 64 API connections get answers (S8-max: the messages/s the server sustains; asked 50,000/s)
  local rate id
  for rate in 1000 50000; do
    if ((rate == 1000)); then id=S8; else id=S8-max; fi
    run "$id" "$(n 15000) users, $rate msgs/s asked, to random users"
    start_server
    bench "$(n 15000)" user --users "$(n 15000)" --rate "$rate" --api-conns $((rate == 1000 ? 4 : 64)) \
      --duration "$DURATION" --timeout $((DURATION + 90)) --json "$OUT/$id.json" --plot "$OUT/$id.svg"
    stop_server
  done
}

if ((!APPEND)) || [[ ! -f $OUT/run.txt ]]; then
  : >"$OUT/commands.txt"
  : >"$OUT/loadavg.txt"
  : >"$OUT/schedstat.txt"
  : >"$OUT/run.txt"
  echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$OUT/run.txt"
fi
{
  echo "server=${SERVER//\{port\}/$PORT}"
  echo "server_name=$SERVER_NAME"
  echo "scale=$SCALE"
  echo "duration=$DURATION"
  echo "git_commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "git_dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l | tr -d ' ') files"
} >>"$OUT/run.txt"
{
  echo "nproc=$(nproc)"
  echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  echo "mem_total_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
  echo "kernel=$(uname -r)"
  echo "debian=$(cat /etc/debian_version 2>/dev/null || echo unknown)"
  echo "os=$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
  echo "ulimit_n=$(ulimit -n)"
} >"$OUT/machine.txt"
for s in "${SCENARIOS[@]}"; do "$s"; done
echo "finished=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$OUT/run.txt"
echo "results in $OUT"
