#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite: the Release build, then
# the same tests built with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/; the
# quick study is left to the Release run). --no-sanitize skips the second stage.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${KVSCOPE_BUILD_DIR:-$ROOT/build}"
SANITIZE=1
for arg in "$@"; do
  case "$arg" in
    --no-sanitize) SANITIZE=0 ;;
    *) echo "test.sh: unknown option '$arg'" >&2; exit 2 ;;
  esac
done
bash "$ROOT/scripts/setup.sh"
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1
status=0
echo "== Release build: ctest"
(cd "$BUILD_DIR" && ctest --output-on-failure -j "$(nproc)") || status=1
if ((SANITIZE)); then
  echo "== ASan + UBSan build: ctest"
  ASAN_DIR="$ROOT/build-asan"
  if [[ ! -f "$ASAN_DIR/build.ninja" ]]; then
    cmake -S "$ROOT" -B "$ASAN_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVSCOPE_BUILD_BENCHMARKS=OFF \
      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
      "-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
      "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" >/dev/null
  fi
  cmake --build "$ASAN_DIR" --parallel "$(nproc)"
  # LibTorch itself is not instrumented; leak checking would report its intentional
  # process-lifetime allocations, so it is off. Every other report fails the run.
  (cd "$ASAN_DIR" && ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j "$(nproc)" -E 'Study\.') || status=1
fi
exit $status
