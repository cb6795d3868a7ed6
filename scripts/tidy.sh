#!/usr/bin/env bash
# Runs clang-tidy (.clang-tidy's checks) over our sources with the dev build's compile commands.
#   scripts/tidy.sh [FILE...]    (default: every .cpp under src/)
# Exits non-zero when clang-tidy reports anything. `make tidy` builds the compile commands first.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
db="$here/build/dev"
[ -f "$db/compile_commands.json" ] || { echo "no $db/compile_commands.json (make dev-build)" >&2; exit 2; }
if [ $# -eq 0 ]; then mapfile -t files < <(cd "$here" && git ls-files 'src/*.cpp'); else files=("$@"); fi
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
# The build's flags, less the two warnings clang reads more strictly than gcc (-Wconversion includes
# sign conversions in clang; -Wshadow also fires on enumerators): gcc's verdict on those is the build's.
printf '%s\n' "${files[@]}" | (cd "$here" && xargs -P 2 -n 4 clang-tidy -p "$db" --quiet \
  --extra-arg=-Wno-unknown-warning-option --extra-arg=-Wno-unused-command-line-argument \
  --extra-arg=-Wno-sign-conversion --extra-arg=-Wno-shadow) >"$out" 2>/dev/null || true
grep -E '^/.*(warning|error):' "$out" | sort -u || true
n=$(grep -cE '^/.*(warning|error):' "$out" || true)
echo "clang-tidy: $n finding(s) in ${#files[@]} file(s)"
[ "$n" -eq 0 ]
