#!/usr/bin/env bash
# Builds the embedded model's training and held-out texts from public-domain books that
# Debian packages ship: five Austen novels (r-cran-janeaustenr), Moby Dick (r-cran-tokenizers)
# and the King James Bible (bible-kjv-text). Held out: Persuasion, and the Epistles (Romans to
# Jude). The Bible comes from the `bible` command when present; otherwise, like the other
# books, from TEXT_DIR (default ../shared/text; see its SOURCES.md).
#
# --retrieval (the mix for a model that must use its whole context): three of the novels
# re-typeset with curly quotes, apostrophes and em dashes (typeset_text.py), synthetic
# retrieval documents (retrieval_corpus.py, seeded), and Frankenstein (modern typography)
# held out too.
# Usage: prepare_corpus.sh [--retrieval] OUT_DIR [TEXT_DIR]
set -euo pipefail
RETRIEVAL=0
if [[ "${1:-}" == "--retrieval" ]]; then RETRIEVAL=1; shift; fi
OUT="$1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEXT="${2:-$ROOT/../shared/text}"
mkdir -p "$OUT/train" "$OUT/eval"
PY=/usr/bin/python3
for novel in emma mansfieldpark northangerabbey prideprejudice sensesensibility; do
  if ((RETRIEVAL)) && [[ " emma mansfieldpark prideprejudice " == *" $novel "* ]]; then
    "$PY" "$ROOT/scripts/typeset_text.py" "$TEXT/austen/$novel.txt" "$OUT/train/austen_${novel}_typeset.txt"
  else
    cat "$TEXT/austen/$novel.txt" > "$OUT/train/austen_$novel.txt"
  fi
done
if ((RETRIEVAL)); then cat "$TEXT/frankenstein/frankenstein.txt" > "$OUT/eval/frankenstein.txt"; fi
cat "$TEXT/austen/persuasion.txt" > "$OUT/eval/austen_persuasion.txt"
cat "$TEXT/mobydick/mobydick_pg2701.txt" > "$OUT/train/mobydick.txt"
if command -v bible >/dev/null; then
  bible Gen1:1-Acts28:31 > "$OUT/train/kjv_genesis_to_acts.txt"
  bible Rev1:1-Rev22:21 > "$OUT/train/kjv_revelation.txt"
  bible Rom1:1-Jude1:25 > "$OUT/eval/kjv_epistles.txt"
else
  KJV="$TEXT/kjv/kjv_bible.txt"
  start=$(grep -n '^Romans 1$' "$KJV" | cut -d: -f1)
  end=$(grep -n '^Revelation 1$' "$KJV" | cut -d: -f1)
  head -n $((start - 2)) "$KJV" > "$OUT/train/kjv_genesis_to_acts.txt"
  tail -n +$((end - 1)) "$KJV" > "$OUT/train/kjv_revelation.txt"
  sed -n "$((start - 1)),$((end - 2))p" "$KJV" > "$OUT/eval/kjv_epistles.txt"
fi
if ((RETRIEVAL)); then
  # Filler and passages for the synthetic documents come from the training books only.
  "$PY" "$ROOT/scripts/retrieval_corpus.py" --seed 2048 --chars 4000000 -o "$OUT/train/retrieval_synthetic.txt" \
    "$OUT"/train/austen_*.txt "$OUT/train/mobydick.txt" "$OUT/train/kjv_genesis_to_acts.txt"
fi
wc -c "$OUT"/train/* "$OUT"/eval/* | tail -1 >&2
