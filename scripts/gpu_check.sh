#!/usr/bin/env bash
# The CUDA checks, in one run that fits a few minutes of a lent GPU machine: builds kvscope
# against the machine's CUDA LibTorch (with the Debian sysroot of ../shared/gpu) and prints
# one table.
#
#   golden     score on stories260K's golden prompt: cuda mean NLL against the cpu's and the
#              independent implementation's 0.1804
#   ppl        the embedded model, every policy at two budgets: cuda PPL within 1e-3 of cpu
#   dump       dump on cuda, read back by `info`
#   perturb    perturb on cuda
#   bench      decode and prefill on the Llama-3.2-1B shape in bfloat16, then --sweep 1,16,64
#
# Usage, from the project root:
#   bash scripts/gpu_check.sh [--build-dir DIR] [--skip-build] [--device cuda|cuda:N|cpu] [--quick]
# --device cpu --quick --skip-build runs the same checks on CPU with small shapes (to try the
# script where no GPU is lent). KVSCOPE_GPU_DIR names the folder holding build-on-device.sh
# and the sysroot (default ../shared/gpu; copy it into an ignored folder such as .gpu/ to
# carry it to a lent machine).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=build-cuda; SKIP_BUILD=0; DEVICE=cuda; QUICK=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --build-dir) BUILD=$2; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --device) DEVICE=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
GPU_DIR=${KVSCOPE_GPU_DIR:-$ROOT/../shared/gpu}
SHARED=${KVSCOPE_SHARED_DIR:-$ROOT/../shared}
PY=$(command -v python3)
# The checks read stories260K and a book from the shared data; without it there is nothing to compare.
[[ -d $SHARED/models/stories260K-hf && -f $SHARED/text/austen/emma.txt ]] || { echo "SKIP: $SHARED (stories260K, texts) not found; set KVSCOPE_SHARED_DIR"; exit 77; }
WORK_LOG=$ROOT/gpu_check_build.log
if [[ $SKIP_BUILD == 0 ]]; then
  [[ -f $GPU_DIR/build-on-device.sh ]] || { echo "gpu_check.sh: no build-on-device.sh in $GPU_DIR (set KVSCOPE_GPU_DIR)" >&2; exit 1; }
  start=$SECONDS
  bash "$GPU_DIR/build-on-device.sh" "$BUILD" -DKVSCOPE_BUILD_TESTS=OFF > "$WORK_LOG" 2>&1 || { tail -30 "$WORK_LOG"; exit 1; }
  echo "built $BUILD in $((SECONDS - start)) s"
fi
[[ -d /tmp/gpusys/usr ]] && export LD_LIBRARY_PATH=/tmp/gpusys/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
KV=$BUILD/tools/kvscope
[[ -x $KV ]] || { echo "gpu_check.sh: $KV is not built (drop --skip-build, or give --build-dir)" >&2; exit 1; }
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
ROWS=()
row() { ROWS+=("$(printf '| %-8s | %-4s | %5s | %s |' "$1" "$2" "$3" "$4")"); echo "${ROWS[-1]}"; }
# Runs CHECK with a time limit; a failure is a FAIL row, not the end of the script.
timed() {  # NAME LIMIT_SECONDS FUNCTION
  local start=$SECONDS out
  if out=$(timeout "$2" bash -c "set -euo pipefail; $3" 2>&1); then row "$1" ok $((SECONDS - start)) "$out"
  else row "$1" FAIL $((SECONDS - start)) "$(echo "$out" | tail -2 | tr '\n' ' ')"; fi
}

check_golden() {
  local dir=$SHARED/models/stories260K-hf
  $PY -c "import json,sys; print(' '.join(map(str, json.load(open(sys.argv[1]))['ids'])))" "$dir/golden/prompt_ids.json" > "$WORK/golden.ids"
  local ours cpu
  ours=$("$KV" score "$dir" --ids "$WORK/golden.ids" --device "$DEVICE" | grep -o 'mean_nll [0-9.]*' | awk '{print $2}')
  cpu=$("$KV" score "$dir" --ids "$WORK/golden.ids" --device cpu | grep -o 'mean_nll [0-9.]*' | awk '{print $2}')
  $PY -c "import sys; a, c = float(sys.argv[1]), float(sys.argv[2]); print(f'mean NLL {a:.6f} ({sys.argv[3]}), {c:.6f} (cpu), golden 0.1804'); sys.exit(abs(a - c) > 1e-4 or abs(a - 0.1804) > 5e-5)" "$ours" "$cpu" "$DEVICE"
}

check_ppl() {
  local tokens=2048 window=1024 budgets=128,256
  [[ $QUICK == 1 ]] && { tokens=300; window=200; budgets=32,64; }
  local side dev
  for side in checked reference; do
    dev=$([[ $side == checked ]] && echo "$DEVICE" || echo cpu)
    "$KV" ppl data/models/tinybooks --text "$SHARED/text/austen/emma.txt" --max-tokens $tokens --protocol sliding --window $window \
      --budget $budgets --device "$dev" -o "$WORK/ppl-$side.h5" > /dev/null 2> "$WORK/ppl-$side.err" || { tail -1 "$WORK/ppl-$side.err"; return 1; }
  done
  $PY - "$WORK/ppl-checked.csv" "$WORK/ppl-reference.csv" <<'PYEOF'
import csv, sys
rows = [{(r["policy"], r["budget"], r["weighting"]): r for r in csv.DictReader(open(p))} for p in sys.argv[1:]]
worst = max(abs(float(rows[0][k]["ppl"]) - float(rows[1][k]["ppl"])) for k in rows[1])
speed = sum(float(r["tokens_per_second"]) for r in rows[0].values()) / sum(float(r["tokens_per_second"]) for r in rows[1].values())
print(f"{len(rows[1])} rows, largest PPL difference {worst:.2e}; mean tok/s ratio to cpu {speed:.2f}")
sys.exit(worst > 1e-3 or rows[0].keys() != rows[1].keys())
PYEOF
}

check_dump() {
  "$KV" dump data/models/tinybooks --text "$SHARED/text/austen/emma.txt" --max-tokens 512 --device "$DEVICE" -o "$WORK/d.h5" > /dev/null 2>&1
  "$KV" info "$WORK/d.h5" | grep -E '^(model|document 0)' | tr '\n' ' '
}

check_perturb() {
  "$KV" perturb data/models/tinybooks --text "$SHARED/text/austen/emma.txt" --at 256 --steps 64 --device "$DEVICE" \
    -o "$WORK/p.h5" 2>&1 | tail -1
}

SHAPE=layers=16,hidden=2048,mlp=8192,heads=32,kv_heads=8,vocab=128256,context=4096
DTYPE=bfloat16
[[ $QUICK == 1 ]] && { SHAPE=layers=2,hidden=256,mlp=512,heads=4,kv_heads=2,vocab=4000,context=2048; DTYPE=float32; }
check_bench() {
  "$KV" bench --random $SHAPE --dtype $DTYPE --device "$DEVICE" --prefill 512 --context 1024 --decode 64 --repeat 2 | grep -E '^(prefill|decode)' | tr '\n' ' '
}
check_sweep() {
  "$KV" bench --random $SHAPE --dtype $DTYPE --device "$DEVICE" --sweep 1,16,64 --sweep-tokens 512 --sweep-budget 128 --repeat 1 \
    | grep '^sweep' | sed 's/ runs x 512 tokens (budget 128)//' | tr -s ' ' | tr '\n' ';'
}

export KV WORK DEVICE SHARED PY QUICK SHAPE DTYPE
export -f check_golden check_ppl check_dump check_perturb check_bench check_sweep
echo "kvscope GPU check: $("$KV" --version), device $DEVICE$([[ $QUICK == 1 ]] && echo ' (quick shapes)')"
echo "| check    | ok   |     s | result |"
echo "|----------|------|-------|--------|"
timed golden 60 check_golden
timed ppl 180 check_ppl
timed dump 60 check_dump
timed perturb 60 check_perturb
timed bench 120 check_bench
timed sweep 240 check_sweep
failed=$(printf '%s\n' "${ROWS[@]}" | grep -c '| FAIL |' || true)
echo "$failed of ${#ROWS[@]} checks failed"
[[ $failed == 0 ]]
