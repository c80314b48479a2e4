#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the study pipeline that exists
# today on the pretrained stories260K model (../shared) or, on a machine without it, a
# random micro-model (pipeline demonstration only): dump -> spectrum -> l2corr -> ppl sweep.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${KVSCOPE_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/setup.sh"
KV="$BUILD_DIR/tools/kvscope"
SHARED="$ROOT/../shared"
MODEL="${KVSCOPE_MODEL:-$SHARED/models/stories260K-hf}"
TEXT="${KVSCOPE_TEXT:-$SHARED/text/austen/persuasion.txt}"
RESULTS="$ROOT/results/study-$(basename "$MODEL")-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS"
INPUT=(--text "$TEXT")
if [[ ! -f "$MODEL/config.json" || ! -f "$TEXT" ]]; then
  echo "== no pretrained model or text found; using a random micro-model (a pipeline demonstration, not a result)"
  MODEL="$RESULTS/random-model"
  "$KV" random-model "$MODEL" --spec layers=4,hidden=128,mlp=344,heads=8,kv_heads=2,vocab=512,context=1024
  python3 -c "import random; random.seed(0); print(' '.join(str(random.randrange(512)) for _ in range(600)))" > "$RESULTS/ids.txt"
  INPUT=(--ids "$RESULTS/ids.txt")
fi
echo "== results in $RESULTS"
"$KV" info "$MODEL"
echo; echo "== dump (keys, values, attention summaries; full attention for layer 1)"
"$KV" dump "$MODEL" "${INPUT[@]}" --max-tokens 512 --attention full --attention-layers 1 -o "$RESULTS/dump.h5"
echo; echo "== spectrum: keys are low-rank, values are not"
"$KV" spectrum "$RESULTS/dump.h5" -o "$RESULTS/spectrum.h5"
echo; echo "== l2corr: low key norm, high attention"
"$KV" l2corr "$RESULTS/dump.h5" -o "$RESULTS/l2corr.h5"
echo; echo "== ppl: every policy at three budgets"
"$KV" ppl "$MODEL" "${INPUT[@]}" --max-tokens 512 --budget 64,128,256 -o "$RESULTS/ppl.h5"
echo; echo "== bench"
"$KV" bench "$MODEL" --prefill 256 --context 256 --decode 64
