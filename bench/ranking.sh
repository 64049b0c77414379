#!/usr/bin/env bash
# Ranking benchmark (issue 4) on an ingested demo data folder:
#  1. Lift: for query photos, the product at similarity rank 20..50 (by look alone)
#     gets synthetic purchases; how often does the default profile bring it into
#     the top 10? Two popularity levels on two disjoint query sets: 1 purchase
#     (popularity value 0.5) and 5 purchases (0.83).
#  2. Cost: batch search of TIMED query photos (default 2000) by look alone (no
#     re-ranking) and with the default profile at candidate depth 100 and 200, run
#     side by side, interleaved, three rounds each; the start-up (one query) is
#     measured the same way and subtracted; medians are reported.
# Prints a Markdown block to paste into bench/RESULTS.md.
#
#   bench/ranking.sh DATA_DIR [QUERIES [TIMED]]   DATA_DIR: an ingested demo folder (with queries/
#                        and queries.jsonl), which is copied first and never changed; QUERIES:
#                        photos per popularity level (default 200); TIMED: photos timed (2000)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/lookalike
src=${1:?usage: bench/ranking.sh DATA_DIR [QUERIES]}
n=${2:-200}
timed=${3:-2000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src" "$work/data"
data="$work/data"

head -n $((2 * n)) "$data/queries.jsonl" | sed 's/.*"image":"\([^"]*\)".*/\1/' | sed "s|^|$data/|" > "$work/paths.txt"
"$bin" search --data "$data" --queries "$work/paths.txt" --k 50 --json --profile visual > "$work/visual.jsonl"

# The chosen product of query i is at similarity rank 20 + (i mod 31); the first n
# queries get 1 purchase, the next n get 5 (from distinct shoppers, an hour ago).
python3 - "$work" "$n" <<'PY'
import json, sys, datetime
work, n = sys.argv[1], int(sys.argv[2])
when = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
chosen = []
with open(f"{work}/visual.jsonl") as f, open(f"{work}/events.jsonl", "w") as out:
    for i, line in enumerate(f):
        results = json.loads(line)["results"]
        rank = 20 + i % 31
        pid = results[rank - 1]["product_id"]
        purchases = 1 if i < n else 5
        chosen.append({"query": i, "rank": rank, "product_id": pid, "purchases": purchases})
        for p in range(purchases):
            out.write(json.dumps({"type": "purchase", "product_id": pid, "user_id": f"bench-{i}-{p}", "time": when}) + "\n")
json.dump(chosen, open(f"{work}/chosen.json", "w"))
PY
"$bin" events --data "$data" --file "$work/events.jsonl" --json > "$work/events-summary.json"
"$bin" search --data "$data" --queries "$work/paths.txt" --k 10 --json > "$work/ranked.jsonl"

# Cost, interleaved: visual, default depth 100, default depth 200, three rounds, each
# for the timed photos and for one photo (the start-up: loading the index and model).
head -n "$timed" "$data/queries.jsonl" | sed 's/.*"image":"\([^"]*\)".*/\1/' | sed "s|^|$data/|" > "$work/timed.txt"
head -n 1 "$work/timed.txt" > "$work/one.txt"
for round in 1 2 3; do
  for mode in visual d100 d200; do
    case $mode in
      visual) args=(--profile visual) ;;
      d100) args=(--depth 100) ;;
      d200) args=(--depth 200) ;;
    esac
    for set in one timed; do
      start=$(date +%s.%N)
      "$bin" search --data "$data" --queries "$work/$set.txt" --k 10 --json "${args[@]}" > /dev/null
      end=$(date +%s.%N)
      echo "$mode-$set $start $end" >> "$work/times.txt"
    done
  done
done

echo "### $(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
python3 - "$work" "$n" "$(wc -l < "$work/timed.txt")" <<'PY'
import json, sys, statistics
work, n, timed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chosen = json.load(open(f"{work}/chosen.json"))
ranked = [json.loads(l)["results"] for l in open(f"{work}/ranked.jsonl")]
summary = json.load(open(f"{work}/events-summary.json"))
print(f"Events recorded: {summary['accepted']} (rejected {summary['rejected']}).")
print()
print("| popularity of the chosen product | queries | reached the top 10 | of them from rank 20-29 / 30-39 / 40-50 |")
print("|---|---|---|---|")
for purchases in (1, 5):
    rows = [c for c in chosen if c["purchases"] == purchases]
    hit = [c for c in rows if c["product_id"] in [r["product_id"] for r in ranked[c["query"]]]]
    def band(lo, hi):
        total = [c for c in rows if lo <= c["rank"] <= hi]
        got = [c for c in hit if lo <= c["rank"] <= hi]
        return f"{len(got)}/{len(total)}"
    value = 10 * purchases / (10 * purchases + 10)
    print(f"| {purchases} purchase{'s' if purchases > 1 else ''} (popularity value {value:.2f}) | {len(rows)} | "
          f"{len(hit)} ({100 * len(hit) / len(rows):.0f}%) | {band(20, 29)} / {band(30, 39)} / {band(40, 50)} |")
print()
times = {}
for line in open(f"{work}/times.txt"):
    mode, start, end = line.split()
    times.setdefault(mode, []).append(float(end) - float(start))
per_query = {}
for mode in ("visual", "d100", "d200"):
    total, startup = statistics.median(times[f"{mode}-timed"]), statistics.median(times[f"{mode}-one"])
    per_query[mode] = (total, startup, 1000 * (total - startup) / timed)
base = per_query["visual"][2]
print(f"| batch search of {timed} photos, k=10 | wall s (median of 3) | start-up s | ms per query after start-up | vs look alone |")
print("|---|---|---|---|---|")
for mode, label in (("visual", "look alone (`--profile visual`)"), ("d100", "default profile, depth 100"),
                    ("d200", "default profile, depth 200")):
    total, startup, ms = per_query[mode]
    print(f"| {label} | {total:.2f} | {startup:.2f} | {ms:.2f} | {ms / base:.2f}x |")
PY
