#!/usr/bin/env bash
# Overload: starts `lookalike serve` on a data folder with its defaults (8 workers,
# queue 64, 512 connections) and saturates it with wrk posting a query photo to
# POST /v1/search from far more connections than it can serve. Meanwhile a single
# client (curl) sends searches one at a time and times each answer. Prints, as
# Markdown: wrk's counts by status and latencies, the single client's answers and
# times, and the server's resident memory before, at the peak (VmHWM) and after.
#
#   bench/overload.sh DATA_DIR [CONNECTIONS] [SECONDS]   (default 1000 connections, 20 s)
#
# DATA_DIR must hold an ingested catalog with images/ (scripts/demo.sh makes one);
# the server creates uploads/ and imports/ in it. Needs wrk and curl. wrk runs on
# the same machine and takes CPU from the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LOOKALIKE_BIN:-build/lookalike}
data=${1:?usage: bench/overload.sh DATA_DIR [CONNECTIONS] [SECONDS]}
connections=${2:-1000}
seconds=${3:-20}
for tool in wrk curl; do
  command -v $tool > /dev/null || { echo "overload.sh: $tool is missing" >&2; exit 1; }
done
query=$(find "$data/images" -name '*.png' -print -quit)
[ -n "$query" ] || { echo "overload.sh: no PNG under $data/images" >&2; exit 1; }
ulimit -n 4096 2> /dev/null || true

work=$(mktemp -d)
key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -TERM "$server_pid" 2> /dev/null || true; wait "$server_pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" serve --data "$data" --port 0 --search-key "$key" --admin-key "$key-admin" 2> "$work/serve.log" &
server_pid=$!
port=""
for _ in $(seq 1 600); do
  port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/serve.log" | head -1)
  if [ -n "$port" ] && grep -q "ready:" "$work/serve.log"; then break; fi
  kill -0 "$server_pid" 2> /dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
grep -q "ready:" "$work/serve.log" || { echo "overload.sh: the server did not become ready" >&2; exit 1; }
mib() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$server_pid/status" | awk '{ printf "%.0f", $1 / 1024 }'; }
rss_before=$(mib VmRSS)

cat > "$work/post.lua" <<'LUA'
local f = assert(io.open(os.getenv("BENCH_PNG"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "image/png"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; busy = 0; other = 0 end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 elseif status == 503 then busy = busy + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local a, b, c = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("ok"); b = b + t:get("busy"); c = c + t:get("other") end
  io.write(string.format("RESULT %d %d %d %.1f %.1f %d\n", a, b, c, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
LUA

BENCH_PNG="$query" BENCH_KEY="$key" wrk -t 2 -c "$connections" -d "${seconds}s" --timeout 10s \
  -s "$work/post.lua" "http://127.0.0.1:$port/v1/search?k=10" > "$work/wrk.txt" 2>&1 &
wrk_pid=$!
sleep 3
: > "$work/single.txt"
for _ in $(seq 1 20); do
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H "Authorization: Bearer $key" \
    -H "Content-Type: image/png" --data-binary "@$query" "http://127.0.0.1:$port/v1/search?k=10" >> "$work/single.txt"
  sleep 0.5
done
wait "$wrk_pid"
sleep 1
read -r ok busy other p50 p99 errors <<< "$(sed -n 's/^RESULT //p' "$work/wrk.txt")"

echo "wrk: $connections connections for $seconds s (2 threads), POST /v1/search?k=10 with a 28x28 PNG:"
echo
echo "| 200 | 503 overloaded | other status | socket errors | p50 | p99 |"
echo "|---:|---:|---:|---:|---:|---:|"
echo "| $ok | $busy | $other | $errors | $p50 ms | $p99 ms |"
echo
echo "A single client meanwhile (20 searches, 0.5 s apart): $(awk '{ n[$1]++ } END { for (s in n) printf "%s x %d  ", s, n[s] }' "$work/single.txt")"
times() {  # status -> "median X ms, max Y ms" of the single client's answers with it
  awk -v s="$1" '$1 == s { print $2 * 1000 }' "$work/single.txt" | sort -n |
    awk '{ t[++n] = $1 } END { if (!n) { print "none"; exit } printf "median %.1f ms, max %.1f ms", t[int((n + 1) / 2)], t[n] }'
}
echo "time to a 503: $(times 503); time to a 200: $(times 200)"
echo
echo "Server resident memory: $rss_before MiB before, peak $(mib VmHWM) MiB, $(mib VmRSS) MiB after."
