#!/usr/bin/env bash
# The main job. Installs what is missing, builds, and runs the whole study on the embedded
# model (data/models/tinybooks): dump -> spectrum -> l2corr -> perplexity sweep (every
# policy, three budgets, paired differences from the full cache) -> passkey retrieval (every
# policy, 50% and 10% budgets, cache cut after the prompt) -> perturbation -> figures, then
# prints a summary.
#
#   bash scripts/study.sh            full study (~2 min on 2 cores); figures go to figures/
#   bash scripts/study.sh --quick    small version (~30 s); figures go to the results directory
#
# Options: --model DIR (another Hugging Face model), --results-root DIR (default results/),
# --no-setup (skip install/build). The held-out text is the Epistles of the King James Bible
# (Romans to Jude), printed by the `bible` command of Debian's bible-kjv package, which
# setup installs; the embedded model never saw it in training.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${KVSCOPE_BUILD_DIR:-$ROOT/build}"
MODEL="$ROOT/data/models/tinybooks"
RESULTS_ROOT="$ROOT/results"
QUICK=0
SETUP=1
while (($#)); do
  case "$1" in
    --quick) QUICK=1 ;;
    --model) MODEL="$2"; shift ;;
    --results-root) RESULTS_ROOT="$2"; shift ;;
    --no-setup) SETUP=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "study.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
((SETUP)) && bash "$ROOT/scripts/setup.sh"
KV="$BUILD_DIR/tools/kvscope"
[[ -f "$MODEL/config.json" ]] || { echo "study.sh: no model at $MODEL" >&2; exit 1; }
command -v bible >/dev/null || { echo "study.sh: the 'bible' command (Debian package bible-kjv) is missing; run scripts/setup.sh" >&2; exit 1; }

# Perplexity uses sliding windows (stride half a window) inside the model's context, so the
# full-cache baseline never sees positions the model was not trained on; each window runs
# from an empty cache at the budget for most of its length.
# Passkey prompts fill a quarter, half and all of the model's context.
CONTEXT=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["max_position_embeddings"])' "$MODEL/config.json")
if ((QUICK)); then
  MODE=quick; TOKENS=1024; WINDOW=512; BUDGETS=64,128,256; DUMP_TOKENS=512; AT=64; STEPS=128
  PK_LENGTHS=$((CONTEXT / 4)),$((CONTEXT / 2)); PK_DEPTHS=0,0.5,1; PK_SEEDS=0
else
  MODE=full; TOKENS=4096; WINDOW=1024; BUDGETS=64,128,256; DUMP_TOKENS=1024; AT=100; STEPS=800
  PK_LENGTHS=$((CONTEXT / 4)),$((CONTEXT / 2)),$CONTEXT; PK_DEPTHS=0,0.25,0.5,0.75,1; PK_SEEDS=0,1
fi
NAME="study-$(basename "$MODEL")-$MODE-t$TOKENS-w$WINDOW-b${BUDGETS//,/_}"
RESULTS="$RESULTS_ROOT/$NAME"
n=2
while [[ -e "$RESULTS" ]]; do RESULTS="$RESULTS_ROOT/$NAME-run$n"; n=$((n + 1)); done  # never overwrite a previous run
mkdir -p "$RESULTS"
FIGURES="$ROOT/figures"
((QUICK)) && FIGURES="$RESULTS/figures"
TEXT="$RESULTS/kjv_epistles.txt"
bible Rom1:1-Jude1:25 > "$TEXT"
start=$(date +%s)
echo "== kvscope study ($MODE): $MODEL on the KJV Epistles; results in $RESULTS"
"$KV" info "$MODEL"
echo; echo "== 1/7 dump: keys (before/after RoPE), values, attention summaries; full attention for layer 1"
"$KV" dump "$MODEL" --text "$TEXT" --max-tokens "$DUMP_TOKENS" --attention full --attention-layers 1 -o "$RESULTS/dump.h5"
echo; echo "== 2/7 spectrum: are keys low-rank and values not?"
"$KV" spectrum "$RESULTS/dump.h5" -o "$RESULTS/spectrum.h5"
echo; echo "== 3/7 l2corr: does a low key norm mean high attention?"
"$KV" l2corr "$RESULTS/dump.h5" -o "$RESULTS/l2corr.h5"
echo; echo "== 4/7 ppl: every policy at budgets $BUDGETS over $TOKENS tokens (windows of $WINDOW, stride $((WINDOW / 2)))"
"$KV" ppl "$MODEL" --text "$TEXT" --max-tokens "$TOKENS" --budget "$BUDGETS" --protocol sliding --window "$WINDOW" \
  --weighting avg-attention,uniform,current-softmax -o "$RESULTS/ppl.h5" > "$RESULTS/ppl_table.txt"
echo; echo "== 5/7 passkey: every policy at 50% and 10% of each prompt, the cache cut after the prompt; lengths $PK_LENGTHS"
"$KV" passkey "$MODEL" --lengths "$PK_LENGTHS" --depths "$PK_DEPTHS" --key-seeds "$PK_SEEDS" --budget 0.5,0.1 --compress prefill \
  -o "$RESULTS/passkey.h5" > "$RESULTS/passkey_table.txt"
echo; echo "== 6/7 perturb: one merge at step $AT, followed for $STEPS steps"
"$KV" perturb "$MODEL" --text "$TEXT" --at "$AT" --steps "$STEPS" \
  --weighting avg-attention,acc-attention,uniform,current-softmax,key-norm,evict -o "$RESULTS/perturb.h5" > "$RESULTS/perturb_table.txt"
echo; echo "== 7/7 figures -> $FIGURES"
bash "$ROOT/notebooks_export/make_figures.sh" "$RESULTS" "$FIGURES" > "$RESULTS/figures.log"
echo
echo "================================ summary ================================"
cat "$RESULTS/ppl_table.txt"
echo
cat "$RESULTS/passkey_table.txt"
echo
cat "$RESULTS/perturb_table.txt"
echo
echo "results: $RESULTS"
echo "figures: $FIGURES"
echo "study finished in $(( $(date +%s) - start )) s"
