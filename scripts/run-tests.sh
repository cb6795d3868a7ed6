#!/usr/bin/env bash
# Runs every registered test of a build directory through ctest, with the real servers the
# integration tests need: one private rabbitmq-server for the whole run (it takes seconds to
# start), shared by tests through a per-test exchange prefix. Tests start their own redis-server
# and nginx through scripts/redis.sh and scripts/nginx.sh. Everything started here is stopped at
# the end, whatever happens.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-build/dev}"
cd "$here/$build"

work="$(mktemp -d /tmp/roomcast-test.XXXXXX)"
cleanup() {
  "$here/scripts/rabbitmq.sh" stop "$work/rabbitmq" || true
  rm -rf "$work"
}
trap cleanup EXIT

# Browser tests need playwright-core from npm (the browser is Debian's chromium).
if [ ! -d "$here/tests/e2e/node_modules/playwright-core" ]; then
  echo "run-tests: npm ci in tests/e2e"
  (cd "$here/tests/e2e" && npm ci --no-audit --no-fund --loglevel=error)
fi

amqp_port="$("$here/scripts/free-port.sh" --pair)"
echo "run-tests: starting rabbitmq-server on 127.0.0.1:$amqp_port"
export ROOMCAST_TEST_AMQP_URI="$("$here/scripts/rabbitmq.sh" start "$work/rabbitmq" "$amqp_port")"
export ROOMCAST_TEST_SCRIPTS="$here/scripts"
export ROOMCAST_TEST_TMP="$work"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --output-on-failure -j2 --timeout 300
