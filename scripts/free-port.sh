#!/usr/bin/env bash
# Prints a TCP port on 127.0.0.1 that nothing listens on (and, with --pair, whose +20000 is free
# too: RabbitMQ's distribution port).
set -euo pipefail
pair="${1:-}"
in_use() { ss -Htln "sport = :$1" | grep -q .; }
for _ in $(seq 1 200); do
  p=$(( (RANDOM % 20000) + 21000 ))
  in_use "$p" && continue
  if [ "$pair" = "--pair" ] && in_use $((p + 20000)); then continue; fi
  echo "$p"; exit 0
done
echo "no free port found" >&2; exit 1
