#!/usr/bin/env bash
# Fails when a C++ file we own differs from .clang-format's layout (CI runs this; `make format`
# rewrites the files). Lists the files and the first lines of the difference.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
command -v clang-format >/dev/null || { echo "check-format: clang-format is not installed (deploy/packages.txt)" >&2; exit 2; }
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cpp' '*.hpp')
bad=0
for f in "${files[@]}"; do
  if ! diff -q "$f" <(clang-format --style=file "$f") >/dev/null; then
    echo "check-format: $f is not formatted (make format):"
    diff -u "$f" <(clang-format --style=file "$f") | sed -n '3,14p'
    bad=$((bad + 1))
  fi
done
echo "check-format: $(clang-format --version | head -1): ${#files[@]} files, $bad not formatted"
[ "$bad" -eq 0 ]
