#!/usr/bin/env bash
# Installs everything lookalike needs to build, test and run, from Debian's archive
# only. Idempotent: packages already present are left alone, and apt-get update runs
# at most once per call, only when something is missing.
set -euo pipefail

# libopenblas0-openmp: FAISS and libtorch link libblas.so.3; without OpenBLAS,
# Debian's reference BLAS makes exact search about 7x slower (bench/RESULTS.md).
packages=(
  build-essential cmake make pkg-config git ca-certificates
  libtorch-dev libfaiss-dev libopenblas0-openmp libopencv-dev libsqlite3-dev libssl-dev zlib1g-dev
  nlohmann-json3-dev libcli11-dev libcpp-httplib-dev libonnx-dev libprotobuf-dev
  libgtest-dev libgmock-dev
  dataset-fashion-mnist
)

# Browser tests (scripts/browser-test.sh): Debian's chromium driven by npm
# playwright-core. Node.js and npm come from Debian only when no node is on PATH:
# a machine that already has a (newer) Node.js keeps it.
packages+=(chromium)
if ! command -v node >/dev/null 2>&1; then
  packages+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
  echo "setup: warning: node is on PATH but npm is not; the browser tests need npm" >&2
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
