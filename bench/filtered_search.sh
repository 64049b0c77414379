#!/usr/bin/env bash
# Filtered search benchmark (issue 4): recall@10 of filtered searches against
# the exact filtered search, and latency per query (p50, p99; one query at a
# time), at selectivities 100%, 10%, 1% and 0.1%, on the demo catalog and on a
# synthetic catalog of 1,000,000 vectors. Prints a Markdown block to paste into
# bench/RESULTS.md. Strategies: "exact" scans the matching vectors (the
# reference), "index" forces the index restricted to the matching vectors,
# "auto" is what searches do (chosen per query by the number of matching vectors).
#
#   bench/filtered_search.sh DEMO_DATA_DIR [SYNTHETIC_DIR] [SYNTHETIC_PRODUCTS]
#
# DEMO_DATA_DIR is an ingested demo data folder (with queries.jsonl beside its
# catalog, as scripts/demo.sh leaves it). SYNTHETIC_DIR (default
# /tmp/lookalike-synthetic-1m) is created on the first run (about 90 s for 1M) and
# reused afterwards; it uses IVF256,Flat because an HNSW32 graph over 1M vectors
# takes far longer than that to build on 2 cores (see RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/lookalike
demo=${1:?usage: bench/filtered_search.sh DEMO_DATA_DIR [SYNTHETIC_DIR] [SYNTHETIC_PRODUCTS]}
synthetic=${2:-/tmp/lookalike-synthetic-1m}
products=${3:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "### $(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), --threads 1"
echo
"$bin" --threads 1 bench-filter --data "$demo" --queries "$demo/queries.jsonl" --count 200 --json > "$work/demo.jsonl"
"$bin" --threads 1 bench-filter --data "$synthetic" --synthetic "$products" --index IVF256,Flat --count 100 \
  --json > "$work/synthetic.jsonl"
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
for name, title in (("demo", "demo catalog"), ("synthetic", "synthetic catalog")):
    rows = [json.loads(l) for l in open(f"{work}/{name}.jsonl")]
    print(f"{title}: {rows[0]['products']:,} products, index {rows[0]['index']}, k = {rows[0]['k']}")
    print()
    print("| selectivity | strategy | recall@10 | complete | p50 ms | p99 ms | chosen per query |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {100 * r['selectivity']:.2f}% | {r['strategy']} | {r['recall']:.4f} | {r['complete']:.3f} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['chosen']} |")
    print()
PY
