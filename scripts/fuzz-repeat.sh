#!/usr/bin/env bash
# Runs the hostile-input suite N times in a row (default 20) and says how many runs failed.
# A flaky reader shows here, not at random in CI: `bash scripts/fuzz-repeat.sh 20`.
set -u
cd "$(dirname "$0")/.."
runs=${1:-20}
failed=0
for i in $(seq 1 "$runs"); do
  log=$(mktemp)
  if node --import tsx --test test/fuzz.test.ts >"$log" 2>&1; then
    echo "run $i: ok"
  else
    failed=$((failed + 1))
    echo "run $i: FAILED"
    grep -E '^not ok|error:' "$log" | head -5
  fi
  rm -f "$log"
done
echo "$((runs - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
