#!/usr/bin/env bash
# The main job on the bundled demo catalog: installs what is missing, builds,
# writes the demo catalog (60,000 Fashion-MNIST products, 10,000 query photos,
# and in a file of their own 1,000 families of colour variants with 2,000 shopper
# photos of them), ingests both with the shipped model, runs sample searches and the
# quality and colour evaluations, then serves the shop page and API at http://127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh lookalike
bin=build/lookalike
data=${LOOKALIKE_DEMO_DIR:-demo-data}

if [ ! -f "$data/catalog.jsonl" ] || [ ! -f "$data/variants.jsonl" ]; then
  "$bin" demo-catalog --out "$data"
fi
"$bin" ingest --data "$data" --catalog "$data/catalog.jsonl"
"$bin" info --data "$data"
for q in 00000 00001 00002; do
  category=$(grep "\"queries/$q.png\"" "$data/queries.jsonl" | sed 's/.*"category":"\([^"]*\)".*/\1/')
  echo
  echo "== query $data/queries/$q.png (category: $category)"
  "$bin" search --data "$data" --image "$data/queries/$q.png" --k 5
done
echo
echo "== category retrieval on the 10,000 query photos"
"$bin" eval --data "$data" --queries "$data/queries.jsonl"
echo
# The colour variants join after the category evaluation, so that it measures the
# 60,000 Fashion-MNIST products alone, as the README's figures do.
"$bin" ingest --data "$data" --catalog "$data/variants.jsonl"
echo "== colour: shopper photos of one colour variant, first result the same variant"
"$bin" eval-colour --data "$data" --queries "$data/variant-queries.jsonl"
echo
port=${LOOKALIKE_PORT:-8080}
echo "== serving the demo shop at http://127.0.0.1:$port (search open to all, writes need the admin key from $data/keys.json); Ctrl-C stops it"
exec "$bin" serve --data "$data" --host 127.0.0.1 --port "$port" --public-search
