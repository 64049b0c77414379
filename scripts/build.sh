#!/usr/bin/env bash
# Configures and builds lookalike into build/ (Release). Arguments are build
# targets (default: everything, tests included).
#
#   scripts/build.sh --sanitize [targets]   builds build-asan/ instead: AddressSanitizer
#       and UndefinedBehaviorSanitizer (LOOKALIKE_SANITIZE) at -O1 with debug info;
#       default targets: the unit tests (what scripts/test.sh runs there).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
config=(-DCMAKE_BUILD_TYPE=Release)
sanitize=0
if [ "${1:-}" = "--sanitize" ]; then
  shift
  sanitize=1
  dir=build-asan
  config=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" -DLOOKALIKE_SANITIZE=ON)
fi
if command -v ccache >/dev/null 2>&1; then
  config+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$dir" "${config[@]}" >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
if [ $sanitize -eq 1 ] && [ ${#targets[@]} -eq 0 ]; then
  targets=(--target unit_tests)
fi
cmake --build "$dir" -j "$(nproc)" "${targets[@]}"
