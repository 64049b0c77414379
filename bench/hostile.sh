#!/usr/bin/env bash
# Hostile images against a running server: starts `lookalike serve` on a data
# folder (default settings: 8 workers, 16 MiB bodies), posts every file of
# tests/support/hostile_images.h to POST /v1/search one by one, then each from 8
# clients at once, and the two largest images the limits let through (50,000,000
# pixels of zeros). Prints, as Markdown: per file its size, the status, the time to
# the answer, and the server's peak resident memory (VmHWM) after it; then that the
# server still answers a normal search.
#
#   bench/hostile.sh DATA_DIR
#
# DATA_DIR must hold an ingested catalog (scripts/demo.sh makes one); the server
# creates uploads/ and imports/ in it, so use a copy of a folder you want untouched.
# Needs curl and build/lookalike, build/write_hostile_images.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LOOKALIKE_BIN:-build/lookalike}
writer=${LOOKALIKE_HOSTILE_WRITER:-build/write_hostile_images}
data=${1:?usage: bench/hostile.sh DATA_DIR}
for tool in "$bin" "$writer"; do
  [ -x "$tool" ] || { echo "hostile.sh: $tool is missing (scripts/build.sh)" >&2; exit 1; }
done
command -v curl > /dev/null || { echo "hostile.sh: curl is missing" >&2; exit 1; }

work=$(mktemp -d)
key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2> /dev/null || true; wait "$server_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$writer" "$work/images" > "$work/list.txt"
"$bin" serve --data "$data" --port 0 --search-key "$key" --admin-key "$key-admin" 2> "$work/serve.log" &
server_pid=$!
port=""
for _ in $(seq 1 600); do
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/serve.log" | head -1)
  if [ -n "$port" ] && grep -q "ready:" "$work/serve.log"; then break; fi
  kill -0 "$server_pid" 2> /dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "ready:" "$work/serve.log" || { echo "hostile.sh: the server did not become ready" >&2; exit 1; }

mib() { awk -v kb="$1" 'BEGIN { printf "%.0f", kb / 1024 }'; }
status_kb() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$server_pid/status"; }
post() {  # file -> "status seconds"
  curl -s -o /dev/null -w '%{http_code} %{time_total}' -H "Authorization: Bearer $key" \
    -H "Content-Type: image/jpeg" --data-binary "@$1" "http://127.0.0.1:$port/v1/search"
}

echo "Server ready: resident $(mib "$(status_kb VmRSS)") MiB, peak $(mib "$(status_kb VmHWM)") MiB."
echo
echo "| file | bytes | status | expected | time to the answer | server peak RSS after |"
echo "|---|---:|---:|---:|---:|---:|"
failures=0
while read -r name bytes expected; do
  case "$name" in allowed-*) continue ;; esac
  read -r status seconds <<< "$(post "$work/images/$name")"
  [ "$status" = "$expected" ] || failures=$((failures + 1))
  printf '| %s | %s | %s | %s | %.1f ms | %s MiB |\n' "$name" "$bytes" "$status" "$expected" \
    "$(awk -v s="$seconds" 'BEGIN { print s * 1000 }')" "$(mib "$(status_kb VmHWM)")"
done < "$work/list.txt"

echo
start=$(date +%s.%N)
clients=()
for _ in 1 2 3 4 5 6 7 8; do
  (while read -r name _ expected; do
    case "$name" in allowed-*) continue ;; esac
    read -r status _ <<< "$(post "$work/images/$name")"
    [ "$status" = "$expected" ] || echo "MISMATCH $name $status" >> "$work/mismatch.txt"
  done < "$work/list.txt") &
  clients+=($!)
done
wait "${clients[@]}"
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
total=$(grep -vc '^allowed-' "$work/list.txt")
echo "8 clients posting all $total files each at once: $((8 * total)) requests in $elapsed s," \
  "$( [ -f "$work/mismatch.txt" ] && wc -l < "$work/mismatch.txt" || echo 0) with an unexpected status;" \
  "server peak RSS $(mib "$(status_kb VmHWM)") MiB."

echo
echo "| largest allowed image | bytes | status | time | server peak RSS after |"
echo "|---|---:|---:|---:|---:|"
while read -r name bytes expected; do
  case "$name" in allowed-*) ;; *) continue ;; esac
  read -r status seconds <<< "$(post "$work/images/$name")"
  printf '| %s | %s | %s | %.0f ms | %s MiB |\n' "$name" "$bytes" "$status" \
    "$(awk -v s="$seconds" 'BEGIN { print s * 1000 }')" "$(mib "$(status_kb VmHWM)")"
done < "$work/list.txt"
big="$work/images/allowed-7071x7071-rgba16.png"
clients=()
for _ in 1 2 3 4 5 6 7 8; do
  post "$big" > /dev/null &
  clients+=($!)
done
wait "${clients[@]}"
echo
echo "8 clients posting allowed-7071x7071-rgba16.png at once: server peak RSS $(mib "$(status_kb VmHWM)") MiB."

query=$(find "$data/images" -name '*.png' -print -quit 2> /dev/null || true)
if [ -n "$query" ]; then
  read -r status seconds <<< "$(curl -s -o /dev/null -w '%{http_code} %{time_total}' \
    -H "Authorization: Bearer $key" -H "Content-Type: image/png" --data-binary "@$query" \
    "http://127.0.0.1:$port/v1/search?k=10")"
  echo "Afterwards a normal search: $status in $(awk -v s="$seconds" 'BEGIN { printf "%.1f", s * 1000 }') ms."
fi
[ "$failures" -eq 0 ]
