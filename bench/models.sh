#!/usr/bin/env bash
# The model table of issue 6: for each model file, category retrieval (P@10,
# mAP@100), instance robustness (Recall@1 and @10 over the distortion suite) and
# speed (images/s of the model alone, side by side in one bench-embed run, and of
# a whole ingest), so a shop can choose between them. Prints a Markdown table to
# paste into bench/RESULTS.md and the README.
#
#   bench/models.sh DEMO_DIR MODEL...     e.g. bench/models.sh demo-data models/*.lkm
#
# DEMO_DIR holds the demo catalog (scripts/demo.sh or `lookalike demo-catalog`).
# THREADS (default 2) is the thread count of ingest, eval and bench-embed; the
# robustness suite runs on one thread, as bench/robustness.sh does. ITEMS and SEED
# (defaults 2000 and 1) choose its products.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/lookalike
demo=${1:?usage: bench/models.sh DEMO_DIR MODEL...}
shift
[ $# -ge 1 ] || { echo "usage: bench/models.sh DEMO_DIR MODEL..." >&2; exit 2; }
threads=${THREADS:-2}
items=${ITEMS:-2000}
seed=${SEED:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "### $(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
n=0
bench_args=()
for model in "$@"; do
  n=$((n + 1))
  "$bin" --threads "$threads" ingest --data "$work/data$n" --catalog "$demo/catalog.jsonl" --model "$model" \
    --json > "$work/ingest$n.json"
  "$bin" --threads "$threads" eval --data "$work/data$n" --queries "$demo/queries.jsonl" --json > "$work/eval$n.json"
  "$bin" --threads 1 eval-robustness --data "$work/data$n" --items "$items" --seed "$seed" --json \
    > "$work/robust$n.json"
  bench_args+=(--model "$model")
done
"$bin" --threads "$threads" bench-embed "${bench_args[@]}" --images "$demo/images" --count 4000 --rounds 5 \
  --json > "$work/bench.json"

python3 - "$work" "$threads" "$@" <<'PY'
import json, sys
work, threads, models = sys.argv[1], sys.argv[2], sys.argv[3:]
load = lambda name: json.load(open(f"{work}/{name}.json"))
bench = load("bench")["models"]
first = bench[0]["images_per_second"]
print(f"{threads} threads; images/s of the model alone: median of 5 rounds over 4,000 demo photos, side by side")
print()
print("| model | P@10 | mAP@100 | instance R@1 | R@10 | model alone, images/s | vs first | ingest, images/s |")
print("|---|---|---|---|---|---|---|---|")
for i, path in enumerate(models, start=1):
    e, r, g, b = load(f"eval{i}"), load(f"robust{i}")["overall"], load(f"ingest{i}"), bench[i - 1]
    print(f"| {path} (`{e['model']}`) | {e['precision_at_10']:.4f} | {e['map_at_100']:.4f} | "
          f"{r['recall_at_1']:.3f} | {r['recall_at_10']:.3f} | {b['images_per_second']:.0f} | "
          f"{b['images_per_second'] / first:.2f}x | {g['images_per_second']:.0f} |")
PY
