#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz/, LOOKALIKE_FUZZ: ASan, UBSan
# and coverage instrumentation) and runs each for a set time, starting from the
# committed regression corpus tests/fuzz/corpus/<target>/. New inputs the fuzzer
# finds go to build-fuzz/corpus/<target>/ (not committed); a crash is written to
# build-fuzz/findings/<target>/ and ends that target's run with an error.
# Fixed crashes belong in tests/fuzz/corpus/<target>/ (replayed by the unit test
# fuzz_corpus in every build).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    default: 60 s, every target
#
# Prints one line per target: seconds, executions, corpus size, result.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
all=(image_decode catalog_jsonl catalog_csv request_json filter_expression http_request)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

for tool in clang++; do
  command -v "$tool" >/dev/null || { echo "fuzz.sh: $tool is needed (apt-get install clang)" >&2; exit 1; }
done
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" \
  -DCMAKE_CXX_COMPILER=clang++ -DLOOKALIKE_FUZZ=ON "${launcher[@]}" >/dev/null
build_targets=()
for t in "${targets[@]}"; do build_targets+=(--target "fuzz_$t"); done
cmake --build build-fuzz -j "$(nproc)" "${build_targets[@]}"

status=0
summary=()
for t in "${targets[@]}"; do
  work="build-fuzz/corpus/$t"
  findings="build-fuzz/findings/$t"
  mkdir -p "$work" "$findings"
  log="build-fuzz/$t.log"
  set +e
  # -rss_limit_mb: a decode that escapes the limits shows up as an out-of-memory finding.
  "build-fuzz/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=65536 \
    -print_final_stats=1 -artifact_prefix="$findings/" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  corpus=$(find "$work" -type f | wc -l)
  result="ok"
  if [ $rc -ne 0 ]; then
    result="FINDING (exit $rc; see $log and $findings/)"
    status=1
  fi
  summary+=("$(printf '%-14s %5s s  %10s executions  %6s corpus inputs  %s' "$t" "$seconds" "${runs:-?}" "$corpus" "$result")")
done
printf '%s\n' "${summary[@]}"
exit $status
