#!/usr/bin/env bash
# A whole cluster on one machine: redis-server, rabbitmq-server, three roomcast nodes and nginx
# as the load balancer. `make cluster` / `make cluster-stop`.
#   scripts/cluster.sh start [BIN]   (BIN defaults to build/release/roomcast)
#   scripts/cluster.sh stop
# State (pids, logs, data) lives in $ROOMCAST_CLUSTER_DIR (default /tmp/roomcast-cluster); stop
# stops exactly what start started, by pid.
# This is a demo cluster on one machine: its nodes run with dev_kill = true, so the classroom page
# shows a "kill this node" button (ROOMCAST_CLUSTER_DEV_KILL=false turns it off).
# TLS (`make cluster TLS=1` = ROOMCAST_CLUSTER_TLS=terminate, or TLS=passthrough): a self-signed
# certificate for 127.0.0.1/localhost is made in $dir/tls; terminate: nginx speaks TLS, the nodes
# plain HTTP behind it; passthrough: nginx forwards TCP and the nodes speak TLS (tls_cert/tls_key).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${ROOMCAST_CLUSTER_DIR:-/tmp/roomcast-cluster}"
lb_port="${ROOMCAST_LB_PORT:-8090}"
node_ports=(${ROOMCAST_NODE_PORTS:-8091 8092 8093})
redis_port="${ROOMCAST_REDIS_PORT:-6390}"
amqp_port="${ROOMCAST_AMQP_PORT:-5690}"
dev_kill="${ROOMCAST_CLUSTER_DEV_KILL:-true}"
tls="${ROOMCAST_CLUSTER_TLS:-}"
[ "$tls" = 1 ] && tls=terminate
case "$tls" in ""|0) tls="" ;; terminate|passthrough) ;; *) echo "TLS must be 1, terminate or passthrough" >&2; exit 2 ;; esac

stop_all() {
  for f in "$dir"/node-*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    kill -TERM "$pid" 2>/dev/null || true
  done
  for f in "$dir"/node-*.pid; do
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
  "$here/scripts/nginx.sh" stop "$dir/nginx" || true
  "$here/scripts/rabbitmq.sh" stop "$dir/rabbitmq" || true
  "$here/scripts/redis.sh" stop "$dir/redis" || true
}

case "${1:-}" in
start)
  bin="${2:-$here/build/release/roomcast}"
  [ -x "$bin" ] || { echo "no binary at $bin (make build)" >&2; exit 1; }
  if ls "$dir"/node-*.pid >/dev/null 2>&1; then echo "a cluster is already running from $dir (make cluster-stop)" >&2; exit 1; fi
  mkdir -p "$dir"
  "$here/scripts/redis.sh" start "$dir/redis" "$redis_port" --persist >/dev/null
  uri="$("$here/scripts/rabbitmq.sh" start "$dir/rabbitmq" "$amqp_port")"
  key="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  echo "$key" > "$dir/api_key"
  node_tls=() scheme=http wscheme=ws node_scheme=http
  if [ -n "$tls" ]; then
    mkdir -p "$dir/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj /CN=localhost \
      -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$dir/tls/key.pem" -out "$dir/tls/cert.pem" 2>/dev/null
    scheme=https wscheme=wss
    if [ "$tls" = passthrough ]; then
      node_tls=(--tls-cert "$dir/tls/cert.pem" --tls-key "$dir/tls/key.pem")
      node_scheme=https
    fi
  fi
  for p in "${node_ports[@]}"; do
    ROOMCAST_API_KEY="$key" "$bin" --config "$here/deploy/roomcast.example.toml" --port "$p" --node-id "node-$p" \
      --bus rabbitmq --rabbitmq-uris "$uri" --registry redis --redis-address "127.0.0.1:$redis_port" \
      --web-root "$here/web" --dev-kill "$dev_kill" "${node_tls[@]}" >"$dir/node-$p.log" 2>&1 &
    echo $! > "$dir/node-$p.pid"
  done
  for p in "${node_ports[@]}"; do
    for _ in $(seq 1 100); do curl -kfs "$node_scheme://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  NGINX_TLS="$tls" NGINX_TLS_CERT="$dir/tls/cert.pem" NGINX_TLS_KEY="$dir/tls/key.pem" \
    "$here/scripts/nginx.sh" start "$dir/nginx" "$lb_port" "${node_ports[@]}" >/dev/null
  cat <<MSG
roomcast cluster is up (state in $dir)${tls:+, TLS: $tls, self-signed certificate $dir/tls/cert.pem (curl -k / --cacert)}
  load balancer  $scheme://127.0.0.1:$lb_port/   $wscheme://127.0.0.1:$lb_port/demo/websocket/{room}/{role}/{user}/{token}/{platform}
  classroom      $scheme://127.0.0.1:$lb_port/classroom.html   (dev_kill=$dev_kill: "kill this node" button)
  dashboard      $scheme://127.0.0.1:$lb_port/admin.html       (type the api_key below into the page)
  nodes          ${node_ports[*]/#/$node_scheme://127.0.0.1:}
  redis          127.0.0.1:$redis_port      rabbitmq  $uri
  api_key = $key
  try: curl -ks -X POST $scheme://127.0.0.1:$lb_port/api/publish -H "X-API-Key: $key" -H 'Content-Type: application/json' -d '{"room":"345","data":{"text":"hi"}}'
  stop: make cluster-stop
MSG
  ;;
stop) stop_all; echo "cluster stopped" ;;
*) echo "usage: $0 start [BIN] | stop" >&2; exit 2 ;;
esac
