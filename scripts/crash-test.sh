#!/usr/bin/env bash
# The crash test: kills `lookalike serve` with SIGKILL at random moments while
# clients add, update and delete products over the API, restarts it and checks
# that every acknowledged write survived (tests/crash/crash_test.cpp says how).
#
#   scripts/crash-test.sh [CYCLES] [SEED]     (default: 100 cycles, seed 1)
#
# Builds what it needs, prints progress on stderr and a JSON summary on stdout;
# exits 0 only when nothing acknowledged was lost. Further crash_test options
# (--work DIR --keep, --model pixels, --min-run-ms, --max-run-ms) go in CRASH_TEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-100}
seed=${2:-1}
scripts/build.sh lookalike crash_test >/dev/null
echo "crash test: $cycles cycles, seed $seed, on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))" >&2
# shellcheck disable=SC2086
exec build/crash_test --lookalike build/lookalike --cycles "$cycles" --seed "$seed" ${CRASH_TEST_ARGS:-}
