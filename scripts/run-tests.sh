#!/usr/bin/env bash
# Runs every registered test of a build directory through ctest.
# Servers that tests need (redis, rabbitmq, nginx) are started here once the cluster tests exist.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-build/dev}"
cd "$here/$build"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --output-on-failure -j2 --timeout 300
