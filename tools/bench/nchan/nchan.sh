#!/usr/bin/env bash
# Starts or stops one nginx + Nchan node (Debian's nginx with libnginx-mod-nchan) in its own dir.
#   tools/bench/nchan/nchan.sh start DIR PORT [REDIS_HOST:PORT] [WORKERS]   -> prints the master pid
#   tools/bench/nchan/nchan.sh stop DIR
# The master runs in the foreground of a background job (daemon off), its pid in DIR/nginx.pid.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?start|stop}; dir=${2:?dir}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
case $cmd in
start)
  port=${3:?port}; redis=${4:-127.0.0.1:6379}; workers=${5:-2}
  module=/usr/lib/nginx/modules/ngx_nchan_module.so
  [[ -f $module ]] || { echo "$module missing: apt-get install libnginx-mod-nchan" >&2; exit 1; }
  mkdir -p "$dir/tmp"
  sed -e "s#@PORT@#$port#g" -e "s#@REDIS@#$redis#g" -e "s#@DIR@#$dir#g" -e "s#@WORKERS@#$workers#g" \
      -e "s#@MODULE@#$module#g" "$here/nchan.conf" >"$dir/nginx.conf"
  rm -f "$dir/nginx.pid"
  nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" >"$dir/stdout.log" 2>&1 </dev/null &
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && [[ -s $dir/nginx.pid ]]; then cat "$dir/nginx.pid"; exit 0; fi
    sleep 0.1
  done
  echo "nginx did not listen on $port; see $dir/error.log" >&2; exit 1 ;;
stop)
  [[ -s $dir/nginx.pid ]] || exit 0
  pid=$(cat "$dir/nginx.pid")
  kill -QUIT "$pid" 2>/dev/null || true   # graceful: workers finish, then the master exits
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$dir/nginx.pid" ;;
*) echo "usage: $0 start|stop DIR [PORT] [REDIS] [WORKERS]" >&2; exit 2 ;;
esac
