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
# Runs ctest in a build directory, then says how many tests skipped (a test that needs
# ../shared skips without it) and which, so a skip is never silent.
run_ctest() {
  local dir="$1" name="$2"; shift 2
  local log="$dir/ctest-last.log" rc=0
  (cd "$dir" && ctest --output-on-failure -j "$(nproc)" "$@" 2>&1 | tee "$log"; exit "${PIPESTATUS[0]}") || rc=1
  local skipped
  skipped=$(grep -c '(Skipped)$' "$log" || true)
  echo "== $name: $skipped tests skipped"
  grep '(Skipped)$' "$log" | sed 's/^[[:space:]]*/   /' || true
  return $rc
}
echo "== Release build: ctest"
run_ctest "$BUILD_DIR" "Release build" || status=1
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
  # process-lifetime allocations, so it is off. Every other report fails the run. The quick
  # study and the GPU check script only chain commands whose code every other suite runs
  # instrumented; under the sanitizers they would add minutes and no coverage.
  ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 run_ctest "$ASAN_DIR" "ASan + UBSan build" -E 'Study\.|GpuCheck\.' || status=1
fi
exit $status
