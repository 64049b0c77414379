#!/usr/bin/env bash
# Engine-core benchmark on the demo catalog (issue 2 figures): ingest speed,
# category retrieval quality with the shipped default model and with raw pixels, and
# batch search throughput. Prints a Markdown block to paste into bench/RESULTS.md.
#
#   bench/core.sh [DEMO_DIR]     (default demo-data; built by scripts/demo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/lookalike
demo=${1:-demo-data}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[ -f "$demo/catalog.jsonl" ] || "$bin" demo-catalog --out "$demo"

echo "### $(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
# The data folders live beside the catalog so image paths resolve the same way.
cnn="$work/cnn"; pixels="$work/pixels"
"$bin" ingest --data "$cnn" --catalog "$demo/catalog.jsonl" --json > "$work/ingest-cnn.json"
"$bin" ingest --data "$pixels" --catalog "$demo/catalog.jsonl" --model pixels --json > "$work/ingest-pixels.json"
"$bin" eval --data "$cnn" --queries "$demo/queries.jsonl" --json > "$work/eval-cnn.json"
"$bin" eval --data "$pixels" --queries "$demo/queries.jsonl" --json > "$work/eval-pixels.json"
sed 's/.*"image":"\([^"]*\)".*/\1/' "$demo/queries.jsonl" | sed "s|^|$demo/|" > "$work/paths.txt"
start=$(date +%s.%N)
"$bin" search --data "$cnn" --queries "$work/paths.txt" --k 10 --json > "$work/search.jsonl"
end=$(date +%s.%N)
queries=$(wc -l < "$work/search.jsonl")

python3 - "$work" "$queries" "$start" "$end" <<'PY'
import json, sys
work, queries, start, end = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
load = lambda name: json.load(open(f"{work}/{name}.json"))
ic, ip, ec, ep = load("ingest-cnn"), load("ingest-pixels"), load("eval-cnn"), load("eval-pixels")
print("| what | shipped default model | raw pixels (floor) |")
print("|---|---|---|")
print(f"| P@1 | {ec['precision_at_1']:.4f} | {ep['precision_at_1']:.4f} |")
print(f"| P@10 | {ec['precision_at_10']:.4f} | {ep['precision_at_10']:.4f} |")
print(f"| mAP@100 | {ec['map_at_100']:.4f} | {ep['map_at_100']:.4f} |")
print(f"| eval throughput (k=100), queries/s | {ec['queries_per_second']:.0f} | {ep['queries_per_second']:.0f} |")
print(f"| ingest of {ic['images_embedded']} images, images/s | {ic['images_per_second']:.0f} | {ip['images_per_second']:.0f} |")
secs = end - start
print(f"| batch search (k=10, {queries} queries, incl. start-up), queries/s | {queries/secs:.0f} | |")
print()
print(f"model: {ec['model']}")
PY
