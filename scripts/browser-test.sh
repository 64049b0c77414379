#!/usr/bin/env bash
# Browser tests of the shopper page (tests/browser/) against a real `lookalike serve`.
#
# Builds a small demo data folder in a temp dir with the shipped model, serves it on a
# free loopback port with --public-search, runs the tests in Debian's chromium through
# npm playwright-core, stops the server and exits with the tests' status.
#
#   scripts/browser-test.sh               uses build/lookalike
#   LOOKALIKE_BIN=path/to/lookalike scripts/browser-test.sh
#
# Optional: LOOKALIKE_CHROMIUM (default /usr/bin/chromium); KEEP_TMP=1 keeps the temp
# folder (data and server log); LOOKALIKE_TEST_MODEL=pixels ingests with another model
# (development only: the category checks are meant for the shipped model).
# Screenshots land in tests/browser/screenshots/.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${LOOKALIKE_BIN:-$root/build/lookalike}"
chromium="${LOOKALIKE_CHROMIUM:-/usr/bin/chromium}"
tests_dir="$root/tests/browser"

die() { echo "browser-test: $*" >&2; exit 2; }
[ -x "$bin" ] || die "no lookalike binary at $bin (build it first, or set LOOKALIKE_BIN)"
[ -x "$chromium" ] || die "no chromium at $chromium (scripts/setup.sh installs Debian's)"
command -v node >/dev/null || die "node is not installed (scripts/setup.sh installs it)"
command -v npm >/dev/null || die "npm is not installed (scripts/setup.sh installs it)"

if [ ! -d "$tests_dir/node_modules/playwright-core" ]; then
  echo "browser-test: npm ci in tests/browser"
  (cd "$tests_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/lookalike-browser.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "browser-test: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

data="$tmp/data"
echo "browser-test: demo catalog in $data"
"$bin" demo-catalog --out "$data" --products 2000 --queries 50 >"$tmp/demo-catalog.log" 2>&1 \
  || { cat "$tmp/demo-catalog.log" >&2; die "demo-catalog failed"; }
model_args=()
if [ -n "${LOOKALIKE_TEST_MODEL:-}" ]; then model_args=(--model "$LOOKALIKE_TEST_MODEL"); fi
"$bin" ingest --data "$data" --catalog "$data/catalog.jsonl" "${model_args[@]}" >"$tmp/ingest.log" 2>&1 \
  || { cat "$tmp/ingest.log" >&2; die "ingest failed"; }
tail -n 1 "$tmp/ingest.log"

free_port() {
  node -e 'const s = require("net").createServer();
           s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# Waits for 200 from /readyz; fails early if the server process exits.
wait_ready() {
  node -e '
    const [url, pid, seconds] = process.argv.slice(1);
    const deadline = Date.now() + Number(seconds) * 1000;
    const alive = () => { try { process.kill(Number(pid), 0); return true; } catch (_) { return false; } };
    (async () => {
      while (Date.now() < deadline) {
        if (!alive()) process.exit(3);
        try { if ((await fetch(url)).status === 200) process.exit(0); } catch (_) {}
        await new Promise((r) => setTimeout(r, 200));
      }
      process.exit(4);
    })();' "$1" "$2" "$3"
}

# A known search key, so the tests can check the page's key form against the server.
search_key="$(node -e 'console.log(require("crypto").randomBytes(16).toString("hex"))')"

# A port picked free can be taken before the server binds it: try a few.
url=""
for attempt in 1 2 3; do
  port="$(free_port)"
  LOOKALIKE_SEARCH_KEY="$search_key" \
    "$bin" serve --data "$data" --port "$port" --public-search >"$tmp/server.log" 2>&1 &
  server_pid=$!
  if wait_ready "http://127.0.0.1:$port/readyz" "$server_pid" 120; then
    url="http://127.0.0.1:$port"
    break
  fi
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  echo "browser-test: server not ready on port $port (attempt $attempt); its log:" >&2
  tail -n 20 "$tmp/server.log" >&2
done
[ -n "$url" ] || die "lookalike serve never became ready"
echo "browser-test: serving on $url"

set +e
LOOKALIKE_URL="$url" LOOKALIKE_DEMO="$data" LOOKALIKE_CHROMIUM="$chromium" LOOKALIKE_SEARCH_KEY="$search_key" \
  node --test "$tests_dir"/*.test.mjs
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "browser-test: tests failed; last lines of the server log:" >&2
  tail -n 30 "$tmp/server.log" >&2
fi
exit "$status"
