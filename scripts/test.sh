#!/usr/bin/env bash
# Every test: installs what is missing, builds everything, runs ctest (unit,
# end-to-end and browser tests). The last lines are ctest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
cd build
ctest --output-on-failure --timeout 1200
