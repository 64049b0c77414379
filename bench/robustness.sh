#!/usr/bin/env bash
# Instance robustness (issue 6): the distortion suite with the shipped model and
# with raw pixels on the demo catalog. Prints a Markdown table to paste into
# bench/RESULTS.md and the README.
#
#   bench/robustness.sh [DATA_DIR] [ITEMS] [SEED]    (defaults: demo-data 2000 1)
#
# DATA_DIR is a data folder ingested with the model to measure (scripts/demo.sh
# makes demo-data with the shipped model); a raw-pixel folder is ingested into a
# temp folder from $CATALOG (default DATA_DIR/catalog.jsonl, where demo.sh puts it).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/lookalike
demo=${1:-demo-data}
items=${2:-2000}
seed=${3:-1}
catalog=${CATALOG:-$demo/catalog.jsonl}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "### $(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
"$bin" ingest --data "$work/pixels" --catalog "$catalog" --model pixels --json > /dev/null
"$bin" --threads 1 eval-robustness --data "$demo" --items "$items" --seed "$seed" --json > "$work/model.json"
"$bin" --threads 1 eval-robustness --data "$work/pixels" --items "$items" --seed "$seed" --match similar --json > "$work/pixels.json"  # one view: the representation alone

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
m, p = (json.load(open(f"{work}/{name}.json")) for name in ("model", "pixels"))
print(f"{m['items']} products, seed {m['seed']}; model {m['model']} ({m['seconds']:.0f} s), raw pixels ({p['seconds']:.0f} s)")
print()
print("| distortion | model R@1 | R@10 | raw pixels R@1 | R@10 |")
print("|---|---|---|---|---|")
for a, b in zip(m["distortions"], p["distortions"]):
    name = a["distortion"] + (" (control, not in overall)" if a["distortion"] == "none" else "")
    print(f"| {name} | {a['recall_at_1']:.3f} | {a['recall_at_10']:.3f} | {b['recall_at_1']:.3f} | {b['recall_at_10']:.3f} |")
a, b = m["overall"], p["overall"]
print(f"| **overall** | **{a['recall_at_1']:.3f}** | **{a['recall_at_10']:.3f}** | **{b['recall_at_1']:.3f}** | **{b['recall_at_10']:.3f}** |")
PY
