#!/usr/bin/env bash
# Starts or stops a private nginx load balancer in front of roomcast nodes (no systemd).
#   scripts/nginx.sh start DIR LISTEN_PORT NODE_PORT [NODE_PORT...]   -> waits until it answers
#   scripts/nginx.sh stop DIR
# The config is deploy/nginx.conf's upstream + server, with the ports filled in.
# TLS (NGINX_TLS_CERT and NGINX_TLS_KEY: PEM files):
#   NGINX_TLS=terminate    nginx speaks TLS to clients and plain HTTP to the nodes
#   NGINX_TLS=passthrough  nginx forwards the TCP stream (stream module), the nodes speak TLS
#                          themselves (tls_cert/tls_key): nginx never sees the plaintext
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
  tls="${NGINX_TLS:-}"
  listen_opts="reuseport backlog=4096"
  tls_lines=""
  if [ "$tls" = terminate ]; then
    listen_opts="ssl $listen_opts"
    tls_lines="ssl_certificate ${NGINX_TLS_CERT:?NGINX_TLS_CERT}; ssl_certificate_key ${NGINX_TLS_KEY:?NGINX_TLS_KEY};
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off;"
  fi
  if [ "$tls" = passthrough ]; then
    # TCP only: no HTTP in nginx, so no Upgrade headers to pass and no buffering to turn off.
    cat > "$dir/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes auto;
worker_rlimit_nofile $nofile;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $((nofile - 64)); }
stream {
  upstream roomcast {
$servers  }
  server {
    listen 127.0.0.1:$listen reuseport backlog=4096;
    proxy_pass roomcast;
    proxy_connect_timeout 2s;
    proxy_timeout 1h;
  }
}
CONF
  else
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
    listen 127.0.0.1:$listen $listen_opts;
    $tls_lines
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
  fi
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
