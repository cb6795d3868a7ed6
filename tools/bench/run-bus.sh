#!/usr/bin/env bash
# Cluster-bus throughput and latency (issues "cluster" and "no message lost"): publishes through
# node A's HTTP API in batches, members on node B, one private Redis and one private RabbitMQ.
#
#   tools/bench/run-bus.sh [--out DIR] [--duration S] [--batch N] [--conns C] [--transient] [--bare-window W]
#                          [--node-threads T]
#                          [--redis-publish script|bus] [STEP …]
#
# --transient: RabbitMQ messages not persisted (roomcast --rabbitmq-persistent false, amqp_bare
# --persistent 0); the broker then confirms without waiting for its disk.
# --bare-window: publisher-confirm window of the bare client (default 1000). Set it to C × N (the
# messages the roomcast runs have in flight at most) to compare the same number in flight.
# --node-threads: shards per roomcast node (default 2; two nodes with 1 each use the 2 cores once).
# --redis-publish: who PUBLISHes room messages with the redis bus: the history script (default,
# roomcast --redis-script-publish true) or the bus thread after the script's reply.
#
# Steps (default: all, in this order):
#   bare        amqp_bare: the broker's own confirmed ceiling (window 1000) — the reference
#   bare-5k     amqp_bare paced at 5,000 msgs/s: the broker's own latency
#   bare-10k    amqp_bare paced at 10,000 msgs/s
#   rabbit-max  roomcast, --bus rabbitmq, history off, asked 30k msgs/s: the rate it sustains
#   rabbit-5k   same, paced at 5,000 msgs/s       (latency)
#   rabbit-10k  same, paced at 10,000 msgs/s      (latency)
#   redis-max   roomcast, --bus redis, history on (Redis store), asked 50k msgs/s
#   redis-5k, redis-10k   same, paced at 5,000 / 10,000 msgs/s (latency)
#   redis1-5k, redis1-10k  ONE node with --bus redis publishing and receiving (its own messages come back from
#               Redis): the same processes as local-10k, so the difference is the bus path alone
#   local-5k    one node, --bus local, history on (Redis store), 5,000 msgs/s: latency without a bus
#   local-10k   same at 10,000 msgs/s
#   plain-5k, plain-10k   one node, --bus local, history off: the reference for the rabbitmq runs
#   plain-max   the same node asked 30k msgs/s: what one node's HTTP API takes in this publish pattern
# "Added by the bus" = p99 of the bus run minus p99 of the local run at the same rate. On 2 cores the
# two-node runs also pay for a second process; redis1-10k vs local-10k does not.
#
# Every run: 100 rooms × 1 member on node B (1 on the single node for local), roomcast-bench fanout
# with --api-batch N over C connections, --server-pid of the roomcast nodes (not Redis/RabbitMQ).
# Each step starts fresh nodes (a first 2 s run binds the rooms) and stops them by pid; Redis and
# RabbitMQ are stopped at the end. Ports 19600–19640. Bounded: every bench has --timeout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=build/bench-results/bus
DURATION=10
BATCH=100
CONNS=16
STEPS=()
PERSIST=1
WINDOW=1000
THREADS=2
SCRIPT_PUBLISH=true
while (($#)); do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --transient) PERSIST=0; shift ;;
    --bare-window) WINDOW=$2; shift 2 ;;
    --node-threads) THREADS=$2; shift 2 ;;
    --redis-publish) case $2 in script) SCRIPT_PUBLISH=true ;; bus) SCRIPT_PUBLISH=false ;;
                       *) echo "--redis-publish: script or bus" >&2; exit 2 ;; esac; shift 2 ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    bare|bare-5k|bare-10k|rabbit-max|rabbit-5k|rabbit-10k|redis-max|redis-5k|redis-10k|redis1-5k|redis1-10k|local-5k|local-10k|plain-5k|plain-10k|plain-max) STEPS+=("$1"); shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
((${#STEPS[@]})) || STEPS=(bare bare-5k bare-10k rabbit-max rabbit-5k rabbit-10k redis-max redis-10k local-5k local-10k plain-5k plain-10k)

BIN=build/release/roomcast
BENCH=build/release/tools/bench/roomcast-bench
BARE=build/release/tools/bench/amqp_bare
for b in "$BIN" "$BENCH" "$BARE"; do [[ -x $b ]] || { echo "missing $b: make build (release preset)" >&2; exit 2; }; done
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/roomcast-bus.XXXXXX)
AMQP_PORT=19601 REDIS_PORT=19602 PA=19611 PB=19612
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  scripts/rabbitmq.sh stop "$WORK/rmq" >/dev/null 2>&1 || true
  scripts/redis.sh stop "$WORK/redis" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The broker only when a step needs it (it takes ~10 s to start).
URI=""
for s in "${STEPS[@]}"; do
  case $s in bare*|rabbit*) URI=$(scripts/rabbitmq.sh start "$WORK/rmq" "$AMQP_PORT"); break ;; esac
done
scripts/redis.sh start "$WORK/redis" "$REDIS_PORT" >/dev/null

{
  echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "# duration ${DURATION}s, --api-batch $BATCH, --api-conns $CONNS, persistent $PERSIST, redis script publish $SCRIPT_PUBLISH, bare window $WINDOW, node threads $THREADS"
} | tee "$OUT/summary.txt"

node() {  # name port extra-args…
  local name=$1 port=$2; shift 2
  "$BIN" --port "$port" --node-id "$name$port" --threads "$THREADS" --log-level warn --web-root "" \
    --registry redis --redis-address "127.0.0.1:$REDIS_PORT" "$@" >"$OUT/$CURRENT-$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 50); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "node $name did not start; see $OUT/$CURRENT-$name.log" >&2
  return 1
}
stop_nodes() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

g() { awk -v k="$1" '$1 == k { print $2 }' "$OUT/$CURRENT.txt"; }  # a value of the current bench report
fanout() {  # target api rate-per-room extra…
  local target=$1 api=$2 rate=$3; shift 3
  local pids; pids=$(IFS=,; echo "${PIDS[*]}")
  # bind the rooms first (2 s at 1 msg/s per room), so the measured run is steady state
  "$BENCH" fanout --target "$target" --api "$api" --rooms 100 --members 1 --rate 1 --duration 2 \
    --api-conns "$CONNS" --api-batch "$BATCH" --timeout 40 >/dev/null 2>&1 || true
  local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "+ roomcast-bench fanout --target $target --api $api --rooms 100 --members 1 --rate $rate --duration $DURATION --api-conns $CONNS --api-batch $BATCH $*" >>"$OUT/summary.txt"
  "$BENCH" fanout --target "$target" --api "$api" --rooms 100 --members 1 --rate "$rate" --duration "$DURATION" \
    --api-conns "$CONNS" --api-batch "$BATCH" --server-pid "$pids" --grace 5 --timeout $((DURATION + 60)) \
    --json "$OUT/$CURRENT.json" "$@" >"$OUT/$CURRENT.txt" 2>&1
  printf '%-11s load %-15s sent %8s/s  loss %s dup %s reord %s  p50 %s us  p99 %s us  server cpu %s s\n' "$CURRENT" "$load" \
    "$(awk -v n="$(g messages_published)" -v d="$DURATION" 'BEGIN { printf "%.0f", n / d }')" \
    "$(g loss)" "$(g duplicates)" "$(g reordered)" "$(g latency_p50_us)" "$(g latency_p99_us)" "$(g server_cpu_s_publish)" | tee -a "$OUT/summary.txt"
}

RP=(--rabbitmq-persistent true); ((PERSIST)) || RP=(--rabbitmq-persistent false)
rabbit() { node a "$PA" --bus rabbitmq --rabbitmq-uris "$URI" --rabbitmq-prefix "b$CURRENT" --history "* 0 0s" "${RP[@]}"
           node b "$PB" --bus rabbitmq --rabbitmq-uris "$URI" --rabbitmq-prefix "b$CURRENT" --history "* 0 0s" "${RP[@]}"; }
bare() {  # step name, extra amqp_bare flags
  local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "+ amqp_bare --uri $URI --seconds $DURATION --size 200 --persistent $PERSIST --confirm window --window $WINDOW ${*:2}" >>"$OUT/summary.txt"
  timeout $((DURATION + 60)) "$BARE" --uri "$URI" --seconds "$DURATION" --size 200 --persistent "$PERSIST" --confirm window \
    --window "$WINDOW" "${@:2}" >"$OUT/$1.txt" 2>&1
  printf '%-11s load %-15s %s | %s\n' "$1" "$load" "$(grep -o 'end-to-end [0-9]* msgs/s' "$OUT/$1.txt")" \
    "$(grep -o 'p50 [0-9]* us, p99 [0-9]* us' "$OUT/$1.txt")" | tee -a "$OUT/summary.txt"
}
RB=(--bus redis --redis-script-publish "$SCRIPT_PUBLISH")
redisbus() { node a "$PA" "${RB[@]}"; node b "$PB" "${RB[@]}"; }

for CURRENT in "${STEPS[@]}"; do
  case $CURRENT in
    bare) bare bare ;;
    bare-5k) bare bare-5k --rate 5000 --messages $((5000 * DURATION)) ;;
    bare-10k) bare bare-10k --rate 10000 --messages $((10000 * DURATION)) ;;
    rabbit-max) rabbit; fanout "127.0.0.1:$PB" "127.0.0.1:$PA" 300; stop_nodes ;;
    rabbit-5k) rabbit; fanout "127.0.0.1:$PB" "127.0.0.1:$PA" 50; stop_nodes ;;
    rabbit-10k) rabbit; fanout "127.0.0.1:$PB" "127.0.0.1:$PA" 100; stop_nodes ;;
    redis-max) redisbus; fanout "127.0.0.1:$PB" "127.0.0.1:$PA" 500; stop_nodes ;;
    redis-10k) redisbus; fanout "127.0.0.1:$PB" "127.0.0.1:$PA" 100; stop_nodes ;;
    redis-5k) redisbus; fanout "127.0.0.1:$PB" "127.0.0.1:$PA" 50; stop_nodes ;;
    redis1-5k) node a "$PA" "${RB[@]}"; fanout "127.0.0.1:$PA" "127.0.0.1:$PA" 50; stop_nodes ;;
    redis1-10k) node a "$PA" "${RB[@]}"; fanout "127.0.0.1:$PA" "127.0.0.1:$PA" 100; stop_nodes ;;
    local-5k) node a "$PA" --bus local --history-store redis; fanout "127.0.0.1:$PA" "127.0.0.1:$PA" 50; stop_nodes ;;
    local-10k) node a "$PA" --bus local --history-store redis; fanout "127.0.0.1:$PA" "127.0.0.1:$PA" 100; stop_nodes ;;
    plain-5k) node a "$PA" --bus local --history "* 0 0s"; fanout "127.0.0.1:$PA" "127.0.0.1:$PA" 50; stop_nodes ;;
    plain-10k) node a "$PA" --bus local --history "* 0 0s"; fanout "127.0.0.1:$PA" "127.0.0.1:$PA" 100; stop_nodes ;;
    plain-max) node a "$PA" --bus local --history "* 0 0s"; fanout "127.0.0.1:$PA" "127.0.0.1:$PA" 300; stop_nodes ;;
  esac
done
echo "results in $OUT"
