#!/usr/bin/env bash
# Builds the embedded model's training and held-out texts from public-domain books that
# Debian packages ship: five Austen novels (r-cran-janeaustenr), Moby Dick (r-cran-tokenizers)
# and the King James Bible (bible-kjv-text). Held out: Persuasion, and the Epistles (Romans
# to Jude). The Bible comes from the `bible` command when present; otherwise, like the
# Austen and Melville texts, from TEXT_DIR (default ../shared/text; see its SOURCES.md).
# Usage: prepare_corpus.sh OUT_DIR [TEXT_DIR]
set -euo pipefail
OUT="$1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEXT="${2:-$ROOT/../shared/text}"
mkdir -p "$OUT/train" "$OUT/eval"
for novel in emma mansfieldpark northangerabbey prideprejudice sensesensibility; do
  cat "$TEXT/austen/$novel.txt" > "$OUT/train/austen_$novel.txt"
done
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
wc -c "$OUT"/train/* "$OUT"/eval/* | tail -1 >&2
