#!/usr/bin/env bash
# TLS measured (issue: reach every student): idle WebSocket connections and handshakes, three ways,
# with the same client (tools/bench/tls_idle.py, 3 processes):
#   plain      roomcast, ws://                        (the baseline)
#   native     roomcast with tls_cert/tls_key, wss://
#   nginx      nginx terminating TLS (scripts/nginx.sh, NGINX_TLS=terminate) in front of plain roomcast
# Server memory counts every server process (nginx master and workers + roomcast for the third).
#   tools/bench/run-tls.sh [--connections 15000] [--out build/bench-results/tls]
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=15000 out=build/bench-results/tls
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) conns=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
bin=build/release/roomcast
[ -x "$bin" ] || { echo "build the release preset first" >&2; exit 1; }
mkdir -p "$out/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$out/tls/key.pem" -out "$out/tls/cert.pem" 2>/dev/null

start_node() {  # start_node <port> [flags...]; prints the pid
  local port=$1
  shift
  # stdout too: $(start_node …) would wait for the server to close it
  "$bin" --listen-address 127.0.0.1 --port "$port" --threads 2 --log-level warn "$@" >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  echo "$pid"
}

run_one() {  # run_one <name> <port> <tls 0|1> <pids...>
  local name=$1 port=$2 tls=$3
  shift 3
  local pidargs=()
  for p in "$@"; do pidargs+=(--pid "$p"); done
  echo "# $name: tools/bench/tls_idle.py --port $port ${pidargs[*]} --connections $conns --procs 3 --tls $tls --settle 10"
  python3 tools/bench/tls_idle.py --port "$port" "${pidargs[@]}" --connections "$conns" --procs 3 --tls "$tls" \
    --settle 10 --json "$out/$name.json" > "$out/$name.txt" || true
}

p=$(scripts/free-port.sh)
pid=$(start_node "$p")
run_one plain "$p" 0 "$pid"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

p=$(scripts/free-port.sh)
pid=$(start_node "$p" --tls-cert "$out/tls/cert.pem" --tls-key "$out/tls/key.pem")
run_one native "$p" 1 "$pid"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

p=$(scripts/free-port.sh)
lb=$(scripts/free-port.sh)
pid=$(start_node "$p")
NGINX_TLS=terminate NGINX_TLS_CERT="$PWD/$out/tls/cert.pem" NGINX_TLS_KEY="$PWD/$out/tls/key.pem" \
  scripts/nginx.sh start "$out/nginx" "$lb" "$p" >/dev/null
master=$(cat "$out/nginx/nginx.pid")
workers=$(pgrep -P "$master" | tr '\n' ' ')
# shellcheck disable=SC2086
run_one nginx "$lb" 1 "$master" $workers "$pid"
scripts/nginx.sh stop "$out/nginx"
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
rows = [(n, json.load(open(f"{out}/{n}.json"))) for n in ("plain", "native", "nginx")]
print("| | roomcast, plain ws:// | roomcast, native TLS | nginx terminating TLS → roomcast |")
print("|---|---|---|---|")
for key, label in (("opened", "connections opened / failed"), ("server_bytes_per_connection", "server RSS per idle connection (bytes)"),
                   ("handshakes_per_server_cpu_s", "connects (TLS handshake + upgrade) per server CPU-second"),
                   ("server_cpu_s_connect", "server CPU for all connects (s)"), ("connect_phase_s", "connect phase, wall (s)")):
    cells = []
    for _, j in rows:
        cells.append(f"{j['opened']} / {j['failed']}" if key == "opened" else str(j.get(key)))
    print(f"| {label} | " + " | ".join(cells) + " |")
EOF
