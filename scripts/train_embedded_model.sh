#!/usr/bin/env bash
# Retrains the embedded model data/models/tinybooks from scratch, exactly as it was made
# (README, "The embedded model"): the corpus from prepare_corpus.sh, then three stages of
# `kvscope train` on one output directory, each resuming the last one's checkpoint.
#
#   bash scripts/train_embedded_model.sh [OUT_DIR]     (default build/tinybooks-train)
#
# About 1 h 40 min on a 2-core machine; safe to interrupt and re-run (every stage resumes).
# Data order and initialisation are seeded; LibTorch's CPU kernels are deterministic for a
# given thread count (the model was trained with 2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KV="${KVSCOPE_BUILD_DIR:-$ROOT/build}/tools/kvscope"
OUT="${1:-$ROOT/build/tinybooks-train}"
CORPUS="$ROOT/build/corpus"
[[ -d "$CORPUS/train" ]] || bash "$ROOT/scripts/prepare_corpus.sh" "$CORPUS"
# Random words, then the same words again: copying drills, added from the second stage on
# (the first stage alone learned no copying in 2 M tokens).
DRILLS="$CORPUS/drills/copy_drills.txt"
if [[ ! -f "$DRILLS" ]]; then
  mkdir -p "$CORPUS/drills"
  /usr/bin/python3 "$ROOT/scripts/retrieval_corpus.py" --seed 4096 --chars 3000000 --kinds drill -o "$DRILLS" \
    "$CORPUS"/train/austen_*.txt "$CORPUS/train/mobydick.txt" "$CORPUS/train/kjv_genesis_to_acts.txt"
fi
COMMON=(--eval "$CORPUS/eval/austen_persuasion.txt" "$CORPUS/eval/kjv_epistles.txt" "$CORPUS/eval/frankenstein.txt"
        -o "$OUT" --vocab 4096 --hidden 256 --layers 4 --heads 8 --kv-heads 2 --mlp 688 --context 2048 --warmup 30
        --lr 2e-3 --eval-tokens 16384 --seed 1234 --checkpoint-every 25 --eval-every 50)
step_of() { [[ -f "$OUT/checkpoint.safetensors" ]] && /usr/bin/python3 - "$OUT/checkpoint.safetensors" <<'PY' || echo 0
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    print(json.loads(f.read(n))["__metadata__"]["step"])
PY
}
# 1. Books and retrieval documents, 512-token sequences, the schedule planned for 450 steps.
if (( $(step_of) < 250 )); then
  "$KV" train --train "$CORPUS"/train/*.txt "${COMMON[@]}" --seq-len 512 --batch 16 --steps 450 --stop-at 250 \
    $([[ -f "$OUT/checkpoint.safetensors" ]] && echo --resume)
fi
