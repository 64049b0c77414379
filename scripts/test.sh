#!/usr/bin/env bash
# Every test: installs what is missing, builds everything, runs ctest (unit,
# end-to-end and browser tests), then builds the unit tests with AddressSanitizer
# and UndefinedBehaviorSanitizer (build-asan/, LOOKALIKE_SANITIZE) and runs them
# (label unit). The last lines are the summary of both runs.
#
# LOOKALIKE_SKIP_SANITIZED=1 skips the sanitized run (a quicker local check).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1
scripts/build.sh || exit 1
log_dir="$(mktemp -d)"
trap 'rm -rf "$log_dir"' EXIT

(cd build && ctest --output-on-failure --timeout 1200) 2>&1 | tee "$log_dir/normal.log"
normal=${PIPESTATUS[0]}

sanitized=0
if [ "${LOOKALIKE_SKIP_SANITIZED:-0}" != 1 ]; then
  start=$(date +%s)
  {
    scripts/build.sh --sanitize &&
      (cd build-asan && ctest -L unit --output-on-failure --timeout 1200)
  } 2>&1 | tee "$log_dir/sanitized.log"
  sanitized=${PIPESTATUS[0]}
  echo "sanitized build and unit tests took $(($(date +%s) - start)) s"
fi

summary() {  # ctest's "N% tests passed, ..." line, or why there is none
  grep -E "tests passed|No tests were found" "$1" | tail -n 1 || echo "did not run to the end (see above)"
}
echo
echo "== summary =="
echo "all tests (build/):                   $(summary "$log_dir/normal.log")"
if [ "${LOOKALIKE_SKIP_SANITIZED:-0}" != 1 ]; then
  echo "unit tests, ASan+UBSan (build-asan/): $(summary "$log_dir/sanitized.log")"
fi
[ "$normal" -eq 0 ] && [ "$sanitized" -eq 0 ]
