#!/usr/bin/env bash
# Configures and builds lookalike into build/ (Release). Arguments are build
# targets (default: everything, tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
if [ $# -gt 0 ]; then
  targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build build -j "$(nproc)" "${targets[@]}"
else
  cmake --build build -j "$(nproc)"
fi
