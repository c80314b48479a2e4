#!/usr/bin/env bash
# Produces a small results set with the CLI (stories260K when ../shared is present, else a
# random micro-model), runs every notebook on it, and checks each figure exists as a
# non-empty PNG and PDF; then checks that a results file of another schema version is
# refused with a message naming the versions.
set -euo pipefail
KV="$1"; WORK="$2"; ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
rm -rf "$WORK" && mkdir -p "$WORK/results" "$WORK/figures"
MODEL="$ROOT/../shared/models/stories260K-hf"
BOOK="$ROOT/../shared/text/austen/emma.txt"
if [[ -f "$MODEL/config.json" && -f "$BOOK" ]]; then
  INPUT=(--text "$BOOK")
else
  MODEL="$WORK/model"
  "$KV" random-model "$MODEL" --spec layers=2,hidden=32,mlp=48,heads=4,kv_heads=2,vocab=64,context=512 >/dev/null
  python3 -c "print(' '.join(str((i * 7 + 3) % 64) for i in range(400)))" > "$WORK/ids.txt"
  INPUT=(--ids "$WORK/ids.txt")
fi
R="$WORK/results"
"$KV" dump "$MODEL" "${INPUT[@]}" --max-tokens 200 -o "$R/dump.h5" >/dev/null
"$KV" spectrum "$R/dump.h5" -o "$R/spectrum.h5" >/dev/null 2>&1
"$KV" l2corr "$R/dump.h5" -o "$R/l2corr.h5" >/dev/null 2>&1
"$KV" ppl "$MODEL" "${INPUT[@]}" --max-tokens 200 --budget 32,64 --policy full,streaming,h2o,weightedkv,weightedkv-evict -o "$R/ppl.h5" >/dev/null 2>&1
"$KV" perturb "$MODEL" "${INPUT[@]}" --at 40 --steps 50 --weighting avg-attention,uniform,evict -o "$R/perturb.h5" >/dev/null 2>&1
# Passkey needs a tokenizer, which the random fallback lacks: the embedded model has one.
"$KV" passkey "$ROOT/data/models/tinybooks" --lengths 256,400 --depths 0,0.5,1 --key-seeds 0 --policy full,streaming,weightedkv --budget 64 \
  -o "$R/passkey.h5" >/dev/null 2>&1
bash "$ROOT/notebooks_export/make_figures.sh" "$R" "$WORK/figures" >/dev/null
for fig in spectra_normalized spectra_per_layer spectra_effective_rank l2_alr_heatmap l2_spearman_heatmap l2_attention_loss \
           ppl_vs_budget ppl_delta_vs_budget ppl_vs_position perturb_cosine_vs_steps perturb_summary passkey_heatmap; do
  for ext in png pdf; do
    [[ -s "$WORK/figures/$fig.$ext" ]] || { echo "missing or empty: $fig.$ext"; exit 1; }
  done
done
[[ -s "$WORK/figures/ppl_table.md" ]] || { echo "missing ppl_table.md"; exit 1; }
# Another schema version is refused, naming both versions.
cp "$R/spectrum.h5" "$WORK/v2.h5"
/usr/bin/python3 -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); f.attrs['schema_version'] = 2" "$WORK/v2.h5"
if msg=$(/usr/bin/python3 "$ROOT/notebooks_export/01_spectra.py" --spectrum "$WORK/v2.h5" --out "$WORK/figures" 2>&1); then
  echo "a version-2 file was accepted"; exit 1
fi
grep -q "schema version 2; these notebooks read version 1" <<<"$msg" || { echo "unclear refusal: $msg"; exit 1; }
echo "notebooks: 12 figures as PNG and PDF, and a foreign schema version refused"
