#!/usr/bin/env bash
# Runs scripts/study.sh --quick and checks that every result file and figure exists.
set -euo pipefail
ROOT="$1"; WORK="$2"
rm -rf "$WORK" && mkdir -p "$WORK"
bash "$ROOT/scripts/study.sh" --quick --no-setup --results-root "$WORK" > "$WORK/study.log" 2>&1 || { tail -30 "$WORK/study.log"; exit 1; }
R=$(ls -d "$WORK"/study-*)
for f in dump.h5 spectrum.h5 spectrum.csv l2corr.h5 l2corr.csv ppl.h5 ppl.csv ppl.md passkey.h5 passkey.md perturb.h5 perturb.csv; do
  [[ -s "$R/$f" ]] || { echo "missing result: $f"; exit 1; }
done
for fig in spectra_normalized spectra_per_layer spectra_effective_rank l2_alr_heatmap l2_spearman_heatmap l2_attention_loss \
           ppl_vs_budget ppl_delta_vs_budget ppl_vs_position perturb_cosine_vs_steps perturb_summary passkey_heatmap; do
  for ext in png pdf; do [[ -s "$R/figures/$fig.$ext" ]] || { echo "missing figure: $fig.$ext"; exit 1; }; done
done
grep -q "| weightedkv | 64 | avg-attention |" "$R/ppl_table.txt" || { echo "no WeightedKV row in the table"; exit 1; }
grep -q "| streaming | 0.1 | - |" "$R/passkey_table.txt" || { echo "no streaming row in the passkey table"; exit 1; }
# A second run never overwrites the first.
echo "study --quick: every result file and figure present"
