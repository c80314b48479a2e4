#!/usr/bin/env bash
# Installs every Debian package kvscope needs, then configures and builds it (Release).
# Idempotent: packages already present are skipped and nothing is printed for them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${KVSCOPE_BUILD_DIR:-$ROOT/build}"

PACKAGES=(
  build-essential cmake ninja-build ccache git pkg-config
  libtorch-dev libhdf5-dev hdf5-tools libeigen3-dev liblapacke-dev libopenblas-dev
  libsentencepiece-dev sentencepiece nlohmann-json3-dev libcli11-dev libpcre2-dev libicu-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-h5py python3-matplotlib python3-numpy
  bible-kjv
  clang libclang-rt-dev
  libopenmpi-dev openmpi-bin openssh-client
)
# Node runs the reference tokenizer in the tests. Debian's npm comes as its own package;
# a Node installed from elsewhere (NodeSource) ships npm inside and conflicts with it.
command -v node >/dev/null || PACKAGES+=(nodejs)
command -v npm >/dev/null || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO="sudo"
  fi
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The reference tokenizers, at the versions pinned in tests/js/package-lock.json.
if [[ ! -f "$ROOT/tests/js/node_modules/.package-lock.json" || "$ROOT/tests/js/package-lock.json" -nt "$ROOT/tests/js/node_modules/.package-lock.json" ]]; then
  echo "setup: installing the reference tokenizers (npm ci in tests/js)" >&2
  (cd "$ROOT/tests/js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

if [[ "${KVSCOPE_SKIP_BUILD:-0}" == 1 ]]; then exit 0; fi

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# Cache hits across checkouts in other directories (a CI clone, a second worktree).
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1
if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
fi
cmake --build "$BUILD_DIR" --parallel "$(nproc)"
