#!/usr/bin/env bash
# Tokenizer throughput, kvscope beside the JavaScript reference, on the whole King James
# Bible with the Llama-3 and Llama-2 tokenizer.json (one thread each, encode only).
# Usage: tests/bench/tokenizer_throughput.sh [BUILD_DIR] [TEXT] [REPEATS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$ROOT/build}"
TEXT="${2:-$ROOT/../shared/text/kjv/kjv_bible.txt}"
REPEATS="${3:-3}"
if [[ ! -f "$TEXT" ]]; then TEXT="$(mktemp)"; bible -f 'Gen 1:1-Rev 22:21' > "$TEXT"; fi
for name in llama3 llama2; do
  dir="$ROOT/tests/js/node_modules/@lenml/tokenizer-$name/models"
  "$BUILD/tests/kvscope_bench_tokenizer" "$dir" "$TEXT" "$REPEATS"
  node "$ROOT/tests/bench/tokenizer_throughput.mjs" "$dir" "$TEXT" "$REPEATS"
done
