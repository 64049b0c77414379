#!/usr/bin/env bash
# HTTP search benchmark (issue 3 figures): starts `lookalike serve` on the demo
# catalog (default settings: 8 workers, queue 64) and posts a 28x28 PNG query photo
# to POST /v1/search?k=10 with wrk at 1, 8 and 32 concurrent connections, on
# loopback. Prints a Markdown block to paste into bench/RESULTS.md. wrk runs on the
# same machine and takes CPU from the server: say so when recording figures.
#
#   bench/http_search.sh [DEMO_DIR] [SECONDS]   (default demo-data, 10 s per level)
#   SEARCH_PARAMS=profile=visual bench/http_search.sh ...   adds query parameters to the search
#
# DEMO_DIR is a data folder holding the demo catalog (scripts/demo.sh makes one);
# it is built and ingested here when missing. Needs wrk (Debian package `wrk`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LOOKALIKE_BIN:-build/lookalike}
demo=${1:-demo-data}
seconds=${2:-10}
command -v wrk > /dev/null || { echo "http_search.sh: wrk is missing (apt-get install wrk)" >&2; exit 1; }
[ -x "$bin" ] || { echo "http_search.sh: $bin is missing (scripts/build.sh)" >&2; exit 1; }

if [ ! -f "$demo/catalog.db" ]; then
  [ -f "$demo/catalog.jsonl" ] || "$bin" demo-catalog --out "$demo"
  "$bin" ingest --data "$demo" --catalog "$demo/catalog.jsonl"
fi
query="$demo/queries/00000.png"
[ -f "$query" ] || { echo "http_search.sh: $query is missing" >&2; exit 1; }

work=$(mktemp -d)
key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2> /dev/null || true; wait "$server_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --data "$demo" --port 0 --search-key "$key" --admin-key "$key-admin" 2> "$work/serve.log" &
server_pid=$!
port=""
for _ in $(seq 1 600); do  # up to 60 s for the index to load
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/serve.log" | head -1)
  if [ -n "$port" ] && grep -q "ready:" "$work/serve.log"; then break; fi
  kill -0 "$server_pid" 2> /dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "ready:" "$work/serve.log" || { echo "http_search.sh: the server did not become ready" >&2; exit 1; }

cat > "$work/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BENCH_PNG"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/png"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.3f %.3f %.1f %d\n", summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6),
    e.connect + e.read + e.write + e.status + e.timeout))
end
LUA

export BENCH_PNG="$query" BENCH_KEY="$key"
url="http://127.0.0.1:$port/v1/search?k=10${SEARCH_PARAMS:+&$SEARCH_PARAMS}"
products=$(sed -n 's|.*ready: \([0-9]*\) products.*|\1|p' "$work/serve.log")
# Sanity check and warm-up.
curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: image/png' --data-binary "@$query" "$url" > /dev/null
wrk -t1 -c1 -d2s -s "$work/post.lua" "$url" > /dev/null

echo "### $(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
echo "POST /v1/search?k=10${SEARCH_PARAMS:+&$SEARCH_PARAMS} with a 28x28 PNG ($(stat -c %s "$query") bytes), $products products, ${seconds} s per level, wrk on the same machine (loopback):"
echo
echo "| clients | requests | requests/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|"
for clients in 1 8 32; do
  threads=$((clients < 2 ? clients : 2))
  line=$(wrk -t"$threads" -c"$clients" -d"${seconds}s" --timeout 5s -s "$work/post.lua" "$url" | grep '^RESULT')
  read -r _ requests p50 p99 rps errors <<< "$line"
  echo "| $clients | $requests | $rps | $p50 | $p99 | $errors |"
done
echo
echo "command: bench/http_search.sh $demo $seconds"
