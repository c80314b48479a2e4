#!/usr/bin/env bash
# Regenerates the stories260K goldens from the llama2.c checkpoint and compares them with the
# stored ones. The data lives in ../shared (or $KVSCOPE_SHARED_DIR), which not every checkout
# has: without it the test reports SKIP (exit 77) instead of failing.
set -euo pipefail
SHARED="${KVSCOPE_SHARED_DIR:-$1}"
MODELS="$SHARED/models"
for f in "$MODELS/stories260K/stories260K.bin" "$MODELS/stories260K/tok512.bin" "$MODELS/stories260K-hf/golden/golden.h5"; do
  if [[ ! -f "$f" ]]; then
    echo "SKIP: $f not found (set KVSCOPE_SHARED_DIR to the shared data directory)"
    exit 77
  fi
done
exec /usr/bin/python3 "$(dirname "$0")/check_stories260k_golden.py" "$MODELS/stories260K-hf/golden"
