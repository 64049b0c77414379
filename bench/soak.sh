#!/usr/bin/env bash
# Soak (issue 5): `lookalike serve` on a copy of the demo catalog for MINUTES minutes
# under mixed load from 32 clients on loopback: 28 wrk connections searching by
# photo (POST /v1/search?k=10, the default ranking profile) and 4 writers that PUT
# products with a photo over and over (multipart; each writer cycles through 50
# product ids, so the catalog stays the same size and every PUT re-embeds a photo
# and rebuilds the index). wrk runs one minute at a time, so every minute gets its
# own p50/p99 and error count; the server's resident memory is sampled every 10 s.
# Prints a Markdown block for bench/RESULTS.md. wrk and curl take CPU from the server
# on the same machine: say so when recording figures.
#
#   bench/soak.sh DEMO_DIR [MINUTES]   (default 10 minutes)
#
# DEMO_DIR is an ingested demo catalog (scripts/demo.sh makes one); it is copied, not
# changed. Needs wrk and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LOOKALIKE_BIN:-build/lookalike}
demo=${1:?usage: bench/soak.sh DEMO_DIR [MINUTES]}
minutes=${2:-10}
search_clients=28
writers=4
for tool in wrk curl; do
  command -v "$tool" > /dev/null || { echo "soak.sh: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done
[ -f "$demo/catalog.db" ] || { echo "soak.sh: $demo is not an ingested data folder" >&2; exit 1; }

work=$(mktemp -d)
key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
server_pid=""
writer_pids=()
cleanup() {
  for p in "${writer_pids[@]}"; do kill "$p" 2> /dev/null || true; done
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2> /dev/null || true; wait "$server_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cp -r "$demo" "$work/data"
"$bin" serve --data "$work/data" --port 0 --search-key "$key" --admin-key "$key-admin" 2> "$work/serve.log" &
server_pid=$!
port=""
for _ in $(seq 1 600); do  # up to 60 s for the index to load
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/serve.log" | head -1)
  if [ -n "$port" ] && grep -q "ready:" "$work/serve.log"; then break; fi
  kill -0 "$server_pid" 2> /dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "ready:" "$work/serve.log" || { echo "soak.sh: the server did not become ready" >&2; exit 1; }
base="http://127.0.0.1:$port"
query="$demo/queries/00000.png"

cat > "$work/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BENCH_PNG"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/png"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.3f %.3f %.1f %d %d\n", summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests / (summary.duration / 1e6),
    e.connect + e.read + e.write + e.timeout, e.status))
end
LUA

# A writer: PUT product soak-W-(n mod 50) with the n-th query photo, until killed;
# one status code per line in its log.
writer() {
  local w=$1 n=0
  while true; do
    local photo
    photo=$(printf '%s/queries/%05d.png' "$demo" $(((w * 997 + n) % 10000)))
    curl -s -o /dev/null -w '%{http_code}\n' -X PUT -H "Authorization: Bearer $key-admin" \
      -F "product={\"title\":\"Soak item $w-$n\",\"category\":\"Shirt\",\"price\":$((10 + n % 90))}" \
      -F "image=@$photo;type=image/png" "$base/v1/products/soak-$w-$((n % 50))" >> "$work/writer-$w.log" || true
    n=$((n + 1))
  done
}
for w in $(seq 1 $writers); do
  writer "$w" &
  writer_pids+=($!)
done

rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }
(while kill -0 "$server_pid" 2> /dev/null; do rss_mib >> "$work/rss.log"; echo >> "$work/rss.log"; sleep 10; done) &
sampler=$!
writer_pids+=("$sampler")

export BENCH_PNG="$query" BENCH_KEY="$key"
echo "### $(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
echo "$minutes minutes: $search_clients wrk connections POST /v1/search?k=10 (default profile) and $writers writers"
echo "PUTting products with a photo (multipart), all on loopback on the same machine:"
echo
echo "| minute | searches | searches/s | p50 ms | p99 ms | socket errors | non-2xx | server RSS MiB at the end |"
echo "|---|---|---|---|---|---|---|---|"
for minute in $(seq 1 "$minutes"); do
  line=$(wrk -t2 -c"$search_clients" -d60s --timeout 10s -s "$work/post.lua" "$base/v1/search?k=10" | grep '^RESULT')
  read -r _ requests p50 p99 rps socket_errors non2xx <<< "$line"
  echo "| $minute | $requests | $rps | $p50 | $p99 | $socket_errors | $non2xx | $(rss_mib) |"
done
for p in "${writer_pids[@]}"; do kill "$p" 2> /dev/null || true; done
wait "${writer_pids[@]}" 2> /dev/null || true
writes=$(cat "$work"/writer-*.log | wc -l)
writes_ok=$(grep -c '^200$' <(cat "$work"/writer-*.log) || true)
writes_5xx=$(grep -c '^5' <(cat "$work"/writer-*.log) || true)
peak=$(awk '/^VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status")
samples=$(grep -c . "$work/rss.log" || true)
echo
echo "Writes: $writes PUTs, $writes_ok answered 200, $writes_5xx answered 5xx."
echo "Server memory: peak (VmHWM) $peak MiB; RSS samples every 10 s: first $(grep . "$work/rss.log" | head -1) MiB, last $(grep . "$work/rss.log" | tail -1) MiB ($samples samples)."
echo
echo "command: bench/soak.sh $demo $minutes"
