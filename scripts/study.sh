#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the demonstration on the
# pretrained stories260K model when ../shared is present, else on a random micro-model.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${KVSCOPE_BUILD_DIR:-$ROOT/build}"
bash "$ROOT/scripts/setup.sh"
KV="$BUILD_DIR/tools/kvscope"
MODEL="${KVSCOPE_MODEL:-$ROOT/../shared/models/stories260K-hf}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if [[ ! -f "$MODEL/config.json" ]]; then
  echo "== no pretrained model at $MODEL; using a random micro-model (results are not meaningful)"
  MODEL="$WORK/random-model"
  "$KV" random-model "$MODEL" --spec layers=4,hidden=128,mlp=344,heads=8,kv_heads=2,vocab=512,context=1024
fi
echo "== kvscope info"
"$KV" info "$MODEL"
if [[ -f "$MODEL/tokenizer.model" ]]; then
  printf 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.' > "$WORK/prompt.txt"
  echo; echo "== kvscope score (chunked prefill, then token-by-token decode: they agree)"
  "$KV" score "$MODEL" --text "$WORK/prompt.txt"
  "$KV" score "$MODEL" --text "$WORK/prompt.txt" --decode
  echo; echo "== kvscope generate (greedy)"
  "$KV" generate "$MODEL" -n 64
  echo; echo "== kvscope generate (sampled, seed 1)"
  "$KV" generate "$MODEL" -n 48 --temperature 0.8 --top-k 40 --seed 1
fi
echo; echo "== kvscope bench"
"$KV" bench "$MODEL" --prefill 256 --context 256 --decode 64
