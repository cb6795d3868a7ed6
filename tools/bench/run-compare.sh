#!/usr/bin/env bash
# Side-by-side runs of the performance issue's scenarios S1–S4 against one system at a time:
#
#   tools/bench/run-compare.sh [options] SYSTEM [S1 S2 S3 S4]     SYSTEM = limit | roomcast | socketio | nchan
#
#   limit     tools/bench/limit-server, one node, no Redis (the machine's practical limit)
#   roomcast  two roomcast nodes (--bus redis, default history: Redis store) and one Redis
#   socketio  two Socket.IO 4 nodes (tools/bench/socketio/server.js, @socket.io/redis-adapter) and one Redis
#   nchan     two nginx + Nchan nodes (tools/bench/nchan, 2 workers each, channels in Redis) and one Redis
#
# Each scenario starts a fresh Redis and fresh nodes on fixed ports, runs roomcast-bench with
# --server-pid of every node process (nginx: master and workers; Redis is not included: its CPU is
# written separately as redis_cpu_s), writes $OUT/<scenario>.json and .txt, and stops everything it
# started by pid. S1/S2 connect to node A only; S3/S4 spread every room's members over both nodes
# (--target-spread members) and publish through node A.
#
#   --bench PATH      roomcast-bench (default: first of build/release/tools/bench, /tmp/wtb-benchbuild, /tmp/benchbuild)
#   --limit PATH      limit-server (default: next to roomcast-bench)
#   --roomcast PATH   roomcast binary (default build/release/roomcast)
#   --out DIR         default build/bench-results/compare/<system>
#   --scale F         multiply connection counts by F (quick runs: 0.1)
#   --duration S      publish time of S3/S4 (default 20)
#   --workers W       bench worker processes (default 2)
#   --nchan-workers N nginx worker_processes per Nchan node (default 2)
#   --grace S         S3/S4: wait S seconds after the last publish for deliveries (roomcast-bench default 3)
#   --connect-timeout S  roomcast-bench --connect-timeout (default 10: a join still unanswered then counts as failed)
#
# Ports (fixed): limit 19410; roomcast 19420/19421 + Redis 19425; socketio 19430/19431 + Redis 19435;
# nchan 19440/19441 + Redis 19445. Everything is bounded: roomcast-bench has --timeout, every wait
# loop has a limit, and the nodes are killed by pid at the end of each scenario (and on exit).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BENCH= LIMIT= ROOMCAST= OUT= SCALE=1 DURATION=20 WORKERS=2 NCHAN_WORKERS=2 GRACE=3 CONNECT_TIMEOUT=10
SOURCES=127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4
SYSTEM= SCENARIOS=()
while (($#)); do
  case $1 in
    --bench) BENCH=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --roomcast) ROOMCAST=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --nchan-workers) NCHAN_WORKERS=$2; shift 2 ;;
    --grace) GRACE=$2; shift 2 ;;
    --connect-timeout) CONNECT_TIMEOUT=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    limit|roomcast|socketio|nchan) SYSTEM=$1; shift ;;
    S[1-4]) SCENARIOS+=("$1"); shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ -n $SYSTEM ]] || { echo "usage: $0 [options] limit|roomcast|socketio|nchan [S1 S2 S3 S4]" >&2; exit 2; }
((${#SCENARIOS[@]})) || SCENARIOS=(S1 S2 S3 S4)

cd "$ROOT"
if [[ -z $BENCH ]]; then
  for b in build/release/tools/bench/roomcast-bench /tmp/wtb-benchbuild/roomcast-bench /tmp/benchbuild/roomcast-bench; do
    [[ -x $b ]] && { BENCH=$b; break; }
  done
fi
[[ -x ${BENCH:-} ]] || { echo "roomcast-bench not found (--bench)" >&2; exit 2; }
LIMIT=${LIMIT:-$(dirname "$BENCH")/limit-server}
ROOMCAST=${ROOMCAST:-build/release/roomcast}
OUT=${OUT:-build/bench-results/compare/$SYSTEM}
mkdir -p "$OUT"
RUNDIR=$(mktemp -d /tmp/run-compare-"$SYSTEM".XXXXXX)

case $SYSTEM in
  limit) PA=19410 PB= RP= FLAVOR=roomcast ;;
  roomcast) PA=19420 PB=19421 RP=19425 FLAVOR=roomcast ;;
  socketio) PA=19430 PB=19431 RP=19435 FLAVOR=socketio ;;
  nchan) PA=19440 PB=19441 RP=19445 FLAVOR=nchan ;;
esac
case $SYSTEM in
  roomcast) [[ -x $ROOMCAST ]] || { echo "$ROOMCAST missing: cmake --preset release && cmake --build build/release --target roomcast" >&2; exit 2; } ;;
  limit) [[ -x $LIMIT ]] || { echo "$LIMIT missing" >&2; exit 2; } ;;
  socketio) [[ -d tools/bench/socketio/node_modules/socket.io ]] || { echo "run: (cd tools/bench/socketio && npm ci)" >&2; exit 2; } ;;
  nchan) [[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ]] || { echo "apt-get install libnginx-mod-nchan" >&2; exit 2; } ;;
esac

n() { awk -v x="$1" -v s="$SCALE" 'BEGIN { v = int(x * s); if (v < 1) v = 1; print v }'; }

NODE_PIDS=()   # pids we started (node processes / nginx masters / roomcast / limit-server)
REDIS_UP=0
wait_port() {  # port, pid
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "process $2 for port $1 exited" >&2; return 1; }
    sleep 0.1
  done
  echo "nothing listens on $1 after 15 s" >&2; return 1
}
start_bg() {  # port, log, command...
  local port=$1 log=$2; shift 2
  "$@" >"$log" 2>&1 </dev/null &
  local pid=$!
  NODE_PIDS+=("$pid")
  wait_port "$port" "$pid"
}
start_system() {
  NODE_PIDS=()
  if [[ -n $RP ]]; then
    scripts/redis.sh start "$RUNDIR/redis" "$RP" >/dev/null
    REDIS_UP=1
  fi
  case $SYSTEM in
    limit)
      start_bg "$PA" "$OUT/server-$CURRENT-a.log" "$LIMIT" --port "$PA" --threads 2 --max-seconds 600 ;;
    roomcast)
      for node in a:$PA b:$PB; do
        start_bg "${node#*:}" "$OUT/server-$CURRENT-${node%%:*}.log" "$ROOMCAST" --port "${node#*:}" --node-id "${node%%:*}" \
          --threads 2 --log-level warn --web-root "" --bus redis --redis-address "127.0.0.1:$RP"
      done ;;
    socketio)
      for node in a:$PA b:$PB; do
        start_bg "${node#*:}" "$OUT/server-$CURRENT-${node%%:*}.log" node tools/bench/socketio/server.js --port "${node#*:}" \
          --redis "127.0.0.1:$RP"
      done ;;
    nchan)
      for node in a:$PA b:$PB; do
        NODE_PIDS+=("$(tools/bench/nchan/nchan.sh start "$RUNDIR/nchan-${node%%:*}" "${node#*:}" "127.0.0.1:$RP" "$NCHAN_WORKERS")")
      done ;;
  esac
  SERVER_PIDS=$(IFS=,; echo "${NODE_PIDS[*]}")
  if [[ $SYSTEM == nchan ]]; then  # masters and their workers
    local all=()
    for p in "${NODE_PIDS[@]}"; do all+=("$p"); while read -r w; do all+=("$w"); done < <(pgrep -P "$p"); done
    SERVER_PIDS=$(IFS=,; echo "${all[*]}")
  fi
}
stop_system() {
  if [[ $SYSTEM == nchan ]]; then
    for node in a b; do tools/bench/nchan/nchan.sh stop "$RUNDIR/nchan-$node" || true; done
  fi
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do
    for _ in $(seq 1 120); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  NODE_PIDS=()
  if ((REDIS_UP)); then scripts/redis.sh stop "$RUNDIR/redis" || true; REDIS_UP=0; fi
}
trap 'stop_system; rm -rf "$RUNDIR"' EXIT

proc_cpu() {  # utime+stime seconds of one pid
  awk -v t="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%.2f", (f[12] + f[13]) / t }' "/proc/$1/stat" 2>/dev/null || echo 0
}
redis_pid() { cat "$RUNDIR/redis/redis.pid" 2>/dev/null || true; }

bench() {  # mode, then flags
  local mode=$1; shift
  local rpid rcpu0=0 rcpu1=0
  rpid=$(redis_pid)
  [[ -n $rpid ]] && rcpu0=$(proc_cpu "$rpid")
  {
    echo "# system: $SYSTEM  scenario: $CURRENT  date: $(date -u +%FT%TZ)  load before: $(cat /proc/loadavg)"
    echo "# servers: $SERVER_PIDS"
    echo "+ roomcast-bench $mode --flavor $FLAVOR --server-pid <servers> --workers $WORKERS --sources $SOURCES $* --connect-timeout $CONNECT_TIMEOUT"
  } | tee "$OUT/$CURRENT.txt"
  echo "$CURRENT: roomcast-bench $mode --flavor $FLAVOR --workers $WORKERS --sources $SOURCES $* --connect-timeout $CONNECT_TIMEOUT" >>"$OUT/commands.txt"
  "$BENCH" "$mode" --flavor "$FLAVOR" --server-pid "$SERVER_PIDS" --workers "$WORKERS" --sources "$SOURCES" "$@" \
    --connect-timeout "$CONNECT_TIMEOUT" \
    | tee -a "$OUT/$CURRENT.txt"
  [[ -n $rpid ]] && rcpu1=$(proc_cpu "$rpid")
  {
    [[ -n $rpid ]] && echo "  redis_cpu_s                                $(awk -v a="$rcpu0" -v b="$rcpu1" 'BEGIN { printf "%.2f", b - a }')"
    echo "# load after: $(cat /proc/loadavg)"
  } | tee -a "$OUT/$CURRENT.txt"
}

TARGET_A=127.0.0.1:$PA
TARGETS=$TARGET_A
[[ -n $PB ]] && TARGETS=$TARGET_A,127.0.0.1:$PB

S1() {  # surge: 15,000 joins into node A (1,000 connects in flight)
  CURRENT=S1; echo "=== S1 $SYSTEM: surge $(n 15000) joins into one node ==="
  start_system
  bench surge --target "$TARGET_A" --connections "$(n 15000)" --concurrency 1000 --rooms 100 --hold 5 --timeout $((CONNECT_TIMEOUT + 110)) \
    --json "$OUT/S1.json"
  stop_system
}
S2() {  # memory per idle connection: 15,000 into node A at 3,000/s, held 10 s
  CURRENT=S2; echo "=== S2 $SYSTEM: $(n 15000) idle connections into one node ==="
  start_system
  bench hold --target "$TARGET_A" --connections "$(n 15000)" --rate 3000 --concurrency 2000 --rooms 100 --duration 10 \
    --timeout $((CONNECT_TIMEOUT + 110)) --json "$OUT/S2.json"
  stop_system
}
S3() {  # fan-out: 10 rooms x 1,000 members over both nodes, 20 then 5 msgs/s per room, published via node A
  for rate in 20 5; do
    CURRENT=S3-$rate; echo "=== S3 $SYSTEM: 10 rooms x $(n 1000) members, $rate msgs/s per room ==="
    start_system
    bench fanout --target "$TARGETS" --target-spread members --api "$TARGET_A" --rooms 10 --members "$(n 1000)" \
      --rate "$rate" --duration "$DURATION" --grace "$GRACE" --timeout $((DURATION + GRACE + 90)) --json "$OUT/S3-$rate.json" --plot "$OUT/S3-$rate.svg"
    stop_system
  done
}
S4() {  # 10,000 subscribers in one room over both nodes, 5 msgs/s, published via node A
  CURRENT=S4; echo "=== S4 $SYSTEM: $(n 10000) subscribers in 1 room, 5 msgs/s ==="
  start_system
  bench fanout --target "$TARGETS" --target-spread members --api "$TARGET_A" --rooms 1 --members "$(n 10000)" --rate 5 \
    --duration "$DURATION" --grace "$GRACE" --timeout $((DURATION + GRACE + 90)) --json "$OUT/S4.json" --plot "$OUT/S4.svg"
  stop_system
}

: >"$OUT/commands.txt"
{
  echo "system: $SYSTEM"
  case $SYSTEM in
    limit) echo "node: $LIMIT --port $PA --threads 2 --max-seconds 600" ;;
    roomcast) echo "nodes: $ROOMCAST --port $PA|$PB --node-id a|b --threads 2 --log-level warn --web-root \"\" --bus redis --redis-address 127.0.0.1:$RP"
              echo "worktree HEAD: $(git rev-parse --short HEAD 2>/dev/null)  roomcast binary built: $(stat -c %y "$ROOMCAST")" ;;
    socketio) echo "nodes: node tools/bench/socketio/server.js --port $PA|$PB --redis 127.0.0.1:$RP  (node $(node --version))" ;;
    nchan) echo "nodes: tools/bench/nchan/nchan.sh start DIR $PA|$PB 127.0.0.1:$RP $NCHAN_WORKERS  ($(nginx -v 2>&1), $(dpkg-query -W -f='libnginx-mod-nchan ${Version}' libnginx-mod-nchan 2>/dev/null))" ;;
  esac
  [[ -n $RP ]] && echo "redis: scripts/redis.sh start DIR $RP  ($(redis-server --version | awk '{print $3}'))"
  echo "bench: $BENCH  scale: $SCALE  duration: $DURATION  workers: $WORKERS  grace: $GRACE  connect-timeout: $CONNECT_TIMEOUT"
} >"$OUT/setup.txt"
# The same run.txt as run-standard.sh, so report.py can show when, at which commit and with which server.
{
  echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "server=$(sed -n 's/^nodes*: //p' "$OUT/setup.txt" | head -1)"
  echo "server_name=$SYSTEM"
  echo "git_commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "git_dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l | tr -d ' ') files"
} >"$OUT/run.txt"
for s in "${SCENARIOS[@]}"; do "$s"; done
echo "finished=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$OUT/run.txt"
echo "results in $OUT"
