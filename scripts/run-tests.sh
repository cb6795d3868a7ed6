#!/usr/bin/env bash
# Runs every registered test of a build directory through ctest, with the real servers the
# integration tests need: one private rabbitmq-server for the whole run (it takes seconds to
# start), shared by tests through a per-test exchange prefix. Tests start their own redis-server
# and nginx through scripts/redis.sh and scripts/nginx.sh. Everything started here is stopped at
# the end, whatever happens.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-build/dev}"   # further arguments go to ctest (e.g. -R, -L)
cd "$here/$build"

work="$(mktemp -d /tmp/roomcast-test.XXXXXX)"
cleanup() {
  "$here/scripts/rabbitmq.sh" stop "$work/rabbitmq" || true
  rm -rf "$work"
}
trap cleanup EXIT

# The e2e tests need the npm packages of tests/e2e/package.json: playwright-core (the browser is
# Debian's chromium), ajv and yaml (the OpenAPI contract test). npm ci whenever one of them is
# missing, so that a checkout installed before a package was added gets it too.
e2e="$here/tests/e2e"
missing_npm=""
for pkg in $(sed -n '/"dependencies"/,/}/s/^ *"\([^"]*\)": *".*/\1/p' "$e2e/package.json"); do
  [ -f "$e2e/node_modules/$pkg/package.json" ] || missing_npm="$missing_npm $pkg"
done
if [ -n "$missing_npm" ]; then
  echo "run-tests: npm ci in tests/e2e (missing:$missing_npm)"
  (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error)
fi

amqp_port="$("$here/scripts/free-port.sh" --pair)"
echo "run-tests: starting rabbitmq-server on 127.0.0.1:$amqp_port"
export ROOMCAST_TEST_AMQP_URI="$("$here/scripts/rabbitmq.sh" start "$work/rabbitmq" "$amqp_port")"
export ROOMCAST_TEST_SCRIPTS="$here/scripts"
export ROOMCAST_TEST_TMP="$work"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --output-on-failure -j2 --timeout 300 "${@:2}"
