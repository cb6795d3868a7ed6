#!/usr/bin/env bash
# Starts or stops a private nginx load balancer in front of roomcast nodes (no systemd).
#   scripts/nginx.sh start DIR LISTEN_PORT NODE_PORT [NODE_PORT...]   -> waits until it answers
#   scripts/nginx.sh stop DIR
# The config is deploy/nginx.conf's upstream + server, with the ports filled in.
set -euo pipefail
cmd="${1:?start|stop}"; dir="${2:?dir}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
case "$cmd" in
start)
  listen="${3:?listen port}"; shift 3
  [ $# -gt 0 ] || { echo "usage: $0 start DIR LISTEN_PORT NODE_PORT..." >&2; exit 2; }
  servers=""
  for p in "$@"; do servers+="    server 127.0.0.1:$p max_fails=1 fail_timeout=2s;"$'\n'; done
  mkdir -p "$dir/tmp"
  # Every WebSocket through nginx holds two connections (client and upstream), each a file
  # descriptor of the worker that took it: one worker per core, each with every fd this machine
  # allows a process (its hard limit), and reuseport so the kernel spreads new connections over the
  # workers instead of one worker taking a whole surge (deploy/nginx.conf explains the numbers).
  nofile="$(ulimit -Hn)"
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nofile" -gt 1048576 ] && nofile=1048576
  cat > "$dir/nginx.conf" <<CONF
worker_processes auto;
worker_rlimit_nofile $nofile;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((nofile - 64)); }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream roomcast {
$servers  }
  server {
    listen 127.0.0.1:$listen reuseport backlog=4096;
    location / {
      proxy_pass http://roomcast;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
      proxy_connect_timeout 2s;
      proxy_next_upstream error timeout http_502 http_503;
    }
  }
}
CONF
  nginx -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$listen") 2>/dev/null; then echo "127.0.0.1:$listen"; exit 0; fi
    sleep 0.05
  done
  echo "nginx did not start; see $dir/error.log" >&2; exit 1
  ;;
stop)
  [ -f "$dir/nginx.pid" ] || exit 0
  kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
  for _ in $(seq 1 50); do [ -f "$dir/nginx.pid" ] || break; sleep 0.05; done
  rm -f "$dir/nginx.pid"
  ;;
*) echo "usage: $0 start|stop DIR ..." >&2; exit 2 ;;
esac
