#!/usr/bin/env bash
# Text search (issue 4): a photo plus the text "Northwind" must return Northwind
# products of the photo's category, and what text costs in latency against the photo
# alone. Quality: the first N demo query photos searched with the CLI (k 10, default
# profile) alone and with --text Northwind. Latency: `lookalike serve` on the folder,
# then N rounds of photo / photo + text / text alone requests over HTTP on loopback,
# interleaved so that load on a shared machine hits every mode alike. Prints Markdown
# rows to paste into bench/RESULTS.md.
#
#   bench/text_search.sh DEMO_DIR [N]   (default N 300)
#
# DEMO_DIR is an ingested demo data folder; it is opened read-write (an older store is
# migrated to full-text search on first open), so use a copy of a shared one.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${LOOKALIKE_BIN:-build/lookalike}
demo=${1:?usage: bench/text_search.sh DEMO_DIR [N]}
n=${2:-300}
[ -x "$bin" ] || { echo "text_search.sh: $bin is missing (scripts/build.sh)" >&2; exit 1; }
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

python3 - "$demo" "$n" "$work" <<'PY'
import json, sys
demo, n, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]
queries = [json.loads(l) for l in open(f'{demo}/queries.jsonl')][:n]
open(f'{work}/paths.txt', 'w').write(''.join(f'{demo}/{q["image"]}\n' for q in queries))
json.dump([q['category'] for q in queries], open(f'{work}/categories.json', 'w'))
PY
"$bin" search --data "$demo" --queries "$work/paths.txt" --k 10 --json > "$work/photo.jsonl"
"$bin" search --data "$demo" --queries "$work/paths.txt" --k 10 --json --text Northwind > "$work/text.jsonl"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
categories = json.load(open(f'{work}/categories.json'))
print('| search | queries | full pages (10) | Northwind share of results | same category as the photo (P@10) | P@1 |')
print('|---|---|---|---|---|---|')
for name, f in [('photo', 'photo.jsonl'), ('photo + "Northwind"', 'text.jsonl')]:
    rows = [json.loads(l) for l in open(f'{work}/{f}')]
    hits = [(h, c) for r, c in zip(rows, categories) for h in r['results']]
    full = sum(len(r['results']) == 10 for r in rows)
    northwind = sum(h['brand'] == 'Northwind' for h, _ in hits) / len(hits)
    same = sum(h['category'] == c for h, c in hits) / len(hits)
    top1 = sum(bool(r['results']) and r['results'][0]['category'] == c for r, c in zip(rows, categories)) / len(rows)
    print(f'| {name} | {len(rows)} | {full} | {northwind:.4f} | {same:.4f} | {top1:.4f} |')
PY

port=$((20000 + RANDOM % 20000))
"$bin" serve --data "$demo" --port "$port" --public-search > "$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/readyz" > /dev/null 2>&1 && break
  sleep 0.5
done
python3 - "http://127.0.0.1:$port" "$n" "$work/paths.txt" <<'PY'
import json, statistics, sys, time, urllib.parse, urllib.request
base, n, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3]
images = [open(p.strip(), 'rb').read() for p in open(paths)][:n]
def post(url, body, content_type):
    request = urllib.request.Request(base + url, data=body, method='POST')
    if content_type:
        request.add_header('Content-Type', content_type)
    started = time.perf_counter()
    with urllib.request.urlopen(request) as response:
        data = json.loads(response.read())
    return (time.perf_counter() - started) * 1000, data['matched']
q = urllib.parse.quote
modes = {
    'photo': lambda i: post('/v1/search?k=10', images[i], 'image/png'),
    'photo + "Northwind"': lambda i: post('/v1/search?k=10&text=Northwind', images[i], 'image/png'),
    'photo + "leather"': lambda i: post('/v1/search?k=10&text=leather', images[i], 'image/png'),
    'text "northwind leather"': lambda i: post('/v1/search?k=10&text=' + q('northwind leather'), b'', None),
    'text "shirt"': lambda i: post('/v1/search?k=10&text=shirt', b'', None),
}
times = {m: [] for m in modes}
matched = {}
for i in range(len(images)):
    for m, f in modes.items():
        ms, matched[m] = f(i)
        times[m].append(ms)
base_p50 = statistics.median(times['photo'])
print()
print('| search (HTTP, k 10, default profile) | products matching | requests | p50 ms | p95 ms | p50 / photo |')
print('|---|---|---|---|---|---|')
for m, t in times.items():
    t.sort()
    p50 = statistics.median(t)
    print(f'| {m} | {matched[m]} | {len(t)} | {p50:.1f} | {t[int(0.95 * (len(t) - 1))]:.1f} | {p50 / base_p50:.2f} |')
PY
