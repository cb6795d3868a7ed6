#!/usr/bin/env bash
# Starts or stops a private redis-server on its own port and temp dir (no systemd).
#   scripts/redis.sh start DIR [PORT] [--persist]   -> waits until PING answers
#   scripts/redis.sh stop DIR
set -euo pipefail
cmd="${1:?start|stop}"; dir="${2:?dir}"; port="${3:-6380}"; persist="${4:-}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
case "$cmd" in
start)
  save='save ""'
  appendonly="appendonly no"
  if [ "$persist" = "--persist" ]; then appendonly="appendonly yes"; save='save 1 1'; fi
  cat > "$dir/redis.conf" <<CONF
bind 127.0.0.1
port $port
dir $dir
pidfile $dir/redis.pid
logfile $dir/redis.log
daemonize yes
$save
$appendonly
appendfsync everysec
CONF
  echo "$port" > "$dir/port"
  redis-server "$dir/redis.conf"
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && { echo "127.0.0.1:$port"; exit 0; }
    sleep 0.05
  done
  echo "redis did not start; see $dir/redis.log" >&2; exit 1
  ;;
stop)
  [ -f "$dir/port" ] || exit 0
  redis-cli -p "$(cat "$dir/port")" shutdown nosave >/dev/null 2>&1 || {
    [ -f "$dir/redis.pid" ] && kill -9 "$(cat "$dir/redis.pid")" 2>/dev/null || true; }
  rm -f "$dir/port"
  ;;
*) echo "usage: $0 start|stop DIR [PORT] [--persist]" >&2; exit 2 ;;
esac
