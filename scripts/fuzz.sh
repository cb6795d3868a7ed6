#!/usr/bin/env bash
# Runs every fuzz target of build/fuzz (the `fuzz` preset) for FUZZ_SECONDS each on the committed
# corpus tests/fuzz/corpus/<target>/, and fails on the first crash, leak, timeout or out-of-memory.
#   FUZZ_SECONDS=60 (default)   FUZZ_TARGETS="ws_frame jwt" (default: all)   FUZZ_JOBS=1
#   FUZZ_RUNS=10000000: stop each target after that many executions instead (FUZZ_SECONDS then caps it)
#   FUZZ_MERGE=1: merge the new inputs, minimized, into tests/fuzz/corpus/ (commit them)
# New inputs go to build/fuzz-work/corpus/<target>/ (the committed corpus is only read); a crash
# leaves its input in build/fuzz-work/artifacts/ - make it a unit test (docs/security.md).
# Executions per target: build/fuzz-work/summary.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-1}"
bin=build/fuzz/tests/fuzz
work=build/fuzz-work
targets="${FUZZ_TARGETS:-$(sed -n 's/^roomcast_fuzz_target(\([a-z_]*\) .*/\1/p' tests/fuzz/CMakeLists.txt | tr '\n' ' ')}"
mkdir -p "$work/artifacts"
summary="$work/summary.txt"
: > "$summary"
# Longest input per target: frames and API bodies need room; tokens and URLs don't.
max_len() {
  case "$1" in
    ws_frame | api | config | history_reply | deflate) echo 16384 ;;
    *) echo 4096 ;;
  esac
}
failed=0
for t in $targets; do
  exe="$bin/fuzz_$t"
  [ -x "$exe" ] || { echo "fuzz: $exe is missing (cmake --build --preset fuzz)" >&2; exit 2; }
  mkdir -p "$work/corpus/$t"
  log="$work/$t.log"
  echo "fuzz: $t for ${seconds}s"
  # Several jobs: libFuzzer runs them as child processes that log to fuzz-<n>.log in the cwd.
  parallel=()
  [ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
  [ -n "${FUZZ_RUNS:-}" ] && parallel+=(-runs="$FUZZ_RUNS")
  set +e
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a leak or blow-up fails the run.
  (cd "$work" && ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$here/$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
    "${parallel[@]}" -print_final_stats=1 -artifact_prefix="$here/$work/artifacts/$t-" \
    "$here/$work/corpus/$t" "$here/tests/fuzz/corpus/$t") > "$log" 2>&1
  rc=$?
  set -e
  if [ "$jobs" -gt 1 ]; then
    cat "$work"/fuzz-*.log >> "$log" 2>/dev/null || true
    rm -f "$work"/fuzz-*.log
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s+=$1} END {print s+0}')
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  echo "$t $runs executions in ${took:-$seconds}s, exit $rc" | tee -a "$summary"
  if [ "$rc" -ne 0 ]; then
    failed=1
    echo "fuzz: $t FAILED (exit $rc); the end of $log:" >&2
    grep -E "ERROR|SUMMARY|Test unit written|==[0-9]+==" "$log" | head -20 >&2 || true
    tail -20 "$log" >&2
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ] && [ "$rc" -eq 0 ]; then
    mkdir -p "$work/merged/$t"
    "$exe" -merge=1 -max_len="$(max_len "$t")" "$work/merged/$t" "tests/fuzz/corpus/$t" "$work/corpus/$t" >> "$log" 2>&1
    # Keep the seeds and the inputs that once found a bug (crash-*) by name; the rest of the
    # committed corpus becomes the minimized merge.
    find "tests/fuzz/corpus/$t" -type f ! -name 'seed-*' ! -name 'crash-*' -delete
    for f in "$work/merged/$t"/*; do
      [ -e "$f" ] || continue
      cmp -s "$f" "tests/fuzz/corpus/$t/$(basename "$f")" 2>/dev/null || cp "$f" "tests/fuzz/corpus/$t/"
    done
    rm -rf "$work/merged/$t"
  fi
done
exit "$failed"
