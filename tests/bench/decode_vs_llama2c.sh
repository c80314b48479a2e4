#!/bin/bash
# Decode speed side by side with llama2.c's run.c on identical weights.
#
# Usage: tests/bench/decode_vs_llama2c.sh KVSCOPE_BINARY LLAMA2C_RUN_C [ROUNDS]
#   LLAMA2C_RUN_C: run.c from github.com/karpathy/llama2.c (nothing is downloaded here); it is
#   built outside the repository with gcc -Ofast -fopenmp -march=native.
# Two models: a 30 M random Llama (h512, mlp 1376, 8 layers, 8/2 heads, vocab 8000) decoded
# from position 0 to 1099 with 2 threads each, and stories260K (../shared) for up to 511 tokens (to its first predicted BOS) with
# one thread each, where fixed per-token costs dominate. Both programs decode greedily from
# BOS; the script checks that they produce the same tokens, then times llama2.c's generation
# ("achieved tok/s") and kvscope's teacher-forced decode of those tokens (`score --decode`:
# the same forward step, logits included). Rounds alternate; medians and ranges are printed.
set -euo pipefail
KV=$(realpath "$1"); RUN_C=$(realpath "$2"); ROUNDS=${3:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
SHARED=$(cd "$HERE/../../.." && pwd)/shared
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
gcc -Ofast -fopenmp -march=native "$RUN_C" -lm -o "$WORK/run"
echo 1 > "$WORK/bos.txt"

median_range() { sort -g | awk '{v[NR]=$1} END {m = NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; printf "%.0f [%.0f-%.0f]", m, v[1], v[NR]}'; }

compare() {  # NAME MODEL_DIR TOKENS THREADS
  local name=$1 dir=$2 n=$3 threads=$4
  /usr/bin/python3 "$HERE/to_llama2c.py" "$dir" "$WORK/$name.bin" "$WORK/$name.tok"
  local peer_ids ours_ids
  peer_ids=$(OMP_NUM_THREADS=$threads "$WORK/run" "$WORK/$name.bin" -z "$WORK/$name.tok" -t 0 -n "$n" 2>/dev/null | grep -o '<[0-9]*>' | tr -d '<>' | tr '\n' ' ')
  # llama2.c stops early when it predicts BOS; both then run that many steps.
  n=$(echo $peer_ids | wc -w)
  # llama2.c runs N forward steps (positions 0 to N-1) and prints the N tokens they predict.
  ours_ids=$("$KV" generate "$dir" --ids "$WORK/bos.txt" -n "$n" --print-ids --no-stop 2>/dev/null | tail -1)
  if [ "$(echo $peer_ids)" != "$(echo $ours_ids)" ]; then echo "$name: the two programs decode different tokens" >&2; exit 1; fi
  # The same N positions teacher-forced: BOS and the first N-1 predicted tokens.
  { echo 1; echo "$ours_ids" | tr ' ' '\n' | grep -v '^$' | head -n $((n - 1)); } > "$WORK/$name.ids"
  : > "$WORK/$name.peer"; : > "$WORK/$name.ours"
  for _ in $(seq "$ROUNDS"); do
    OMP_NUM_THREADS=$threads "$WORK/run" "$WORK/$name.bin" -z "$WORK/$name.tok" -t 0 -n "$n" 2>&1 | grep -o 'achieved tok/s: [0-9.]*' | awk '{print $3}' >> "$WORK/$name.peer"
    "$KV" score "$dir" --ids "$WORK/$name.ids" --decode --threads 1 --blas-threads "$threads" | grep -o '[0-9.]* tok/s' | awk '{print $1}' >> "$WORK/$name.ours"
  done
  local peer ours
  peer=$(median_range < "$WORK/$name.peer"); ours=$(median_range < "$WORK/$name.ours")
  printf '%-12s %5d tokens, %d thread(s): kvscope %s tok/s, llama2.c %s tok/s, ratio %.2f (same %d greedy tokens)\n' "$name" "$n" "$threads" \
    "$ours" "$peer" "$(echo "${ours%% *} / ${peer%% *}" | bc -l)" "$n"
}

"$KV" random-model "$WORK/m30" --spec layers=8,hidden=512,mlp=1376,heads=8,kv_heads=2,vocab=8000,context=2048 >/dev/null 2>&1
compare random-30M "$WORK/m30" 1100 2
if [ -d "$SHARED/models/stories260K-hf" ]; then compare stories260K "$SHARED/models/stories260K-hf" 511 1; fi
