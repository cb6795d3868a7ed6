#!/usr/bin/env bash
# Prints a TCP port on 127.0.0.1 that nothing listens on (and, with --pair, whose +10000 and +20000
# are free too: the broker's epmd and Erlang distribution ports, see rabbitmq.sh).
set -euo pipefail
pair="${1:-}"
in_use() { ss -Htln "sport = :$1" | grep -q .; }
# Ports below the kernel's ephemeral range (32768+ here), so an outgoing connection of another test
# can't take the port between this pick and the server's bind. --pair: p + 20000 stays below too.
for _ in $(seq 1 200); do
  if [ "$pair" = "--pair" ]; then p=$(( (RANDOM % 2700) + 10000 )); else p=$(( (RANDOM % 12000) + 20000 )); fi
  in_use "$p" && continue
  if [ "$pair" = "--pair" ] && { in_use $((p + 10000)) || in_use $((p + 20000)); }; then continue; fi
  echo "$p"; exit 0
done
echo "no free port found" >&2; exit 1
