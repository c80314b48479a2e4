#!/usr/bin/env bash
# Regenerates every figure from a results directory: make_figures.sh RESULTS_DIR [OUT_DIR]
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RESULTS="${1:?usage: make_figures.sh RESULTS_DIR [OUT_DIR]}"
OUT="${2:-$HERE/../figures}"
PY=/usr/bin/python3  # Debian's python3 has python3-h5py and python3-matplotlib
for nb in 01_spectra 02_l2_attention 03_perplexity 04_perturbation; do
  "$PY" "$HERE/$nb.py" --results "$RESULTS" --out "$OUT"
done
# Retrieval is its own sweep: drawn when the results directory has one.
if [[ -f "$RESULTS/passkey.h5" ]]; then
  "$PY" "$HERE/05_retrieval.py" --results "$RESULTS" --out "$OUT"
else
  echo "make_figures: no $RESULTS/passkey.h5 (kvscope passkey), so no passkey heatmap" >&2
fi
