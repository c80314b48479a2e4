#!/usr/bin/env bash
# Retrains the embedded model data/models/tinybooks from scratch, exactly as it was made
# (README, "The embedded model"): the retrieval corpus (prepare_corpus.sh --retrieval), two
# files of copying drills, then four stages of `kvscope train` on one output directory, each
# resuming the previous stage's checkpoint.
#
#   bash scripts/train_embedded_model.sh [OUT_DIR] [-- extra kvscope train options]
#
# OUT_DIR defaults to build/tinybooks-train. About 70 minutes on a 2-core machine; on a GPU
# pass `-- --device cuda` (the stages are the same; CUDA kernels do not promise the CPU's
# bit-for-bit repeatability). Safe to interrupt: run it again and it continues from the last
# finished stage's checkpoint. Data order and initialisation are seeded; LibTorch's CPU
# kernels are deterministic for a given thread count (the model was trained with 2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KV="${KVSCOPE_BUILD_DIR:-$ROOT/build}/tools/kvscope"
OUT="$ROOT/build/tinybooks-train"
if [[ $# -gt 0 && "$1" != "--" ]]; then OUT="$1"; shift; fi
[[ "${1:-}" == "--" ]] && shift
EXTRA=("$@")
CORPUS="$ROOT/build/corpus-retrieval"
PY=/usr/bin/python3
[[ -d "$CORPUS/train" ]] || bash "$ROOT/scripts/prepare_corpus.sh" --retrieval "$CORPUS"
# Random words (or numbers), then the same run again: the plainest copying task.
BOOKS=("$CORPUS"/train/austen_*.txt "$CORPUS/train/mobydick.txt" "$CORPUS/train/kjv_genesis_to_acts.txt")
mkdir -p "$CORPUS/drills"
[[ -f "$CORPUS/drills/copy_drills.txt" ]] ||
  "$PY" "$ROOT/scripts/retrieval_corpus.py" --seed 4096 --chars 3000000 --kinds drill -o "$CORPUS/drills/copy_drills.txt" "${BOOKS[@]}"
[[ -f "$CORPUS/drills/copy_drills_2.txt" ]] ||
  "$PY" "$ROOT/scripts/retrieval_corpus.py" --seed 4097 --chars 6000000 --kinds drill -o "$CORPUS/drills/copy_drills_2.txt" "${BOOKS[@]}"

COMMON=(--eval "$CORPUS/eval/austen_persuasion.txt" "$CORPUS/eval/kjv_epistles.txt" "$CORPUS/eval/frankenstein.txt"
        -o "$OUT" --vocab 4096 --hidden 256 --layers 4 --heads 8 --kv-heads 2 --mlp 688 --context 2048 --warmup 30
        --lr 2e-3 --eval-tokens 16384 --seed 1234 --eval-every 50 "${EXTRA[@]}")
checkpoint_step() {
  [[ -f "$OUT/checkpoint.safetensors" ]] || { echo 0; return; }
  "$PY" - "$OUT/checkpoint.safetensors" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    print(json.loads(f.read(n))["__metadata__"]["step"])
PY
}
# stage UNTIL TRAIN_FILES... -- OPTIONS...: runs a stage unless the checkpoint is already past it.
stage() {
  local until="$1"; shift
  local files=()
  while [[ "$1" != "--" ]]; do files+=("$1"); shift; done
  shift
  local at; at=$(checkpoint_step)
  ((at >= until)) && return 0
  local resume=(); ((at > 0)) && resume=(--resume)
  echo "== stage to step $until (from $at)"
  "$KV" train --train "${files[@]}" "${COMMON[@]}" "$@" "${resume[@]}"
}
T=("$CORPUS"/train/*.txt)
D1="$CORPUS/drills/copy_drills.txt"
D2="$CORPUS/drills/copy_drills_2.txt"
# 1. Books and retrieval documents; 512-token sequences; a schedule planned for 450 steps.
stage 250 "${T[@]}" -- --seq-len 512 --batch 16 --steps 450 --stop-at 250 --checkpoint-every 25
# 2-3. The first stage learned no copying in 2 M tokens: drills added, then more drills
#      (45% of the stream); the schedule re-planned for 650 steps.
stage 375 "${T[@]}" "$D1" -- --seq-len 512 --batch 16 --steps 650 --stop-at 375 --checkpoint-every 25
stage 450 "${T[@]}" "$D1" "$D2" -- --seq-len 512 --batch 16 --steps 650 --stop-at 450 --checkpoint-every 25
# 4. The whole context: 2,047-token sequences, the schedule closing at step 550.
stage 550 "${T[@]}" "$D1" "$D2" -- --seq-len 2047 --batch 4 --steps 550 --checkpoint-every 10
echo "model: $OUT (copy config.json, model.safetensors, tokenizer.model, tokenizer_config.json, generation_config.json and training_log.txt to data/models/tinybooks)"
