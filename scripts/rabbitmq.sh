#!/usr/bin/env bash
# Starts or stops a private rabbitmq-server on its own ports and temp dir (no systemd).
#   scripts/rabbitmq.sh start DIR [AMQP_PORT]   -> prints the AMQP URI; waits until it is ready
#   scripts/rabbitmq.sh stop DIR
#   scripts/rabbitmq.sh ctl DIR ARGS...          -> rabbitmqctl -n <node> ARGS (stop_app, start_app, ...)
# The node name, ports and directories all derive from DIR and AMQP_PORT, so several can coexist:
# AMQP on PORT, Erlang distribution on PORT+20000, and an epmd of the broker's own on PORT+10000.
# Erlang would otherwise start a shared epmd on 4369 that outlives the broker; this one is started
# here and stopped by its pid with the broker.
set -euo pipefail
cmd="${1:?start|stop}"; dir="${2:?dir}"; port="${3:-5673}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
name_file="$dir/nodename"
# Debian's /usr/sbin wrappers switch to the rabbitmq user (and its home and cookie); the real
# scripts run as the caller, with the cookie in DIR.
bin=/usr/lib/rabbitmq/bin
export HOME="$dir"
# The broker and rabbitmqctl find each other through this epmd (ERL_EPMD_PORT is read by erl).
# stop and ctl: the node name and its epmd port, from what start wrote.
use_node() {
  name="$(cat "$name_file")"
  ERL_EPMD_PORT=$(( $(sed -n 's/^roomcast_\([0-9]*\)@.*/\1/p' "$name_file") + 10000 ))
  export ERL_EPMD_PORT
}

case "$cmd" in
start)
  name="roomcast_$port@localhost"
  echo "$name" > "$name_file"
  export ERL_EPMD_PORT=$((port + 10000))
  # stdio to a file: a caller reading our stdout ($(...)) must not wait for epmd to exit.
  /usr/bin/epmd -port "$ERL_EPMD_PORT" -address 127.0.0.1 </dev/null >"$dir/epmd.log" 2>&1 &
  echo $! > "$dir/epmd.pid"
  for _ in $(seq 1 50); do
    /usr/bin/epmd -port "$ERL_EPMD_PORT" -names >/dev/null 2>&1 && break
    sleep 0.1
  done
  export RABBITMQ_NODENAME="$name"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$port"
  export RABBITMQ_DIST_PORT=$((port + 20000))
  export RABBITMQ_MNESIA_BASE="$dir/mnesia"
  export RABBITMQ_LOG_BASE="$dir/log"
  export RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
  export RABBITMQ_CONFIG_FILE="$dir/rabbitmq"   # .conf appended by rabbitmq
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
  echo "[]." > "$dir/enabled_plugins"
  cat > "$dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$port
loopback_users = none
log.console = false
log.file.level = warning
vm_memory_high_watermark.relative = 0.2
disk_free_limit.absolute = 50MB
CONF
  "$bin/rabbitmq-server" -detached >"$dir/start.log" 2>&1
  # The node registers with epmd a moment after -detached returns; await_startup needs it there.
  ok=""
  for _ in $(seq 1 120); do
    if "$bin/rabbitmqctl" -n "$name" -q ping >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.5
  done
  if [ -z "$ok" ] || ! timeout 60 "$bin/rabbitmqctl" -n "$name" await_startup >"$dir/await.log" 2>&1; then
    echo "rabbitmq did not start; see $dir" >&2
    tail -n 20 "$dir/start.log" "$dir/await.log" >&2 || true
    exit 1
  fi
  echo "amqp://guest:guest@127.0.0.1:$port/"
  ;;
stop)
  stop_epmd() {
    if [ -f "$dir/epmd.pid" ]; then
      kill "$(cat "$dir/epmd.pid")" 2>/dev/null || true
      rm -f "$dir/epmd.pid"
    fi
  }
  [ -f "$name_file" ] || { stop_epmd; exit 0; }
  use_node
  timeout 30 "$bin/rabbitmqctl" -n "$name" stop "$dir/rabbitmq.pid" >/dev/null 2>&1 || {
    [ -f "$dir/rabbitmq.pid" ] && kill -9 "$(cat "$dir/rabbitmq.pid")" 2>/dev/null || true
  }
  stop_epmd
  rm -f "$name_file"
  ;;
ctl)
  [ -f "$name_file" ] || { echo "no broker in $dir" >&2; exit 1; }
  use_node
  shift 2
  exec timeout 60 "$bin/rabbitmqctl" -n "$name" "$@"
  ;;
*) echo "usage: $0 start|stop|ctl DIR [PORT|ARGS...]" >&2; exit 2 ;;
esac
