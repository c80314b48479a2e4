#!/usr/bin/env bash
# Makes a random model, dumps it through the CLI, and checks the file with h5py.
set -euo pipefail
KV="$1"; WORK="$2"
rm -rf "$WORK" && mkdir -p "$WORK"
"$KV" random-model "$WORK/model" --spec layers=3,hidden=32,mlp=48,heads=4,kv_heads=2,vocab=64,context=128 >/dev/null
printf '1 5 9 12 3 7 22 40 41 2 0 17 18 19 63 8 8 8 1 5 9' > "$WORK/ids.txt"
"$KV" dump "$WORK/model" --ids "$WORK/ids.txt" --attention full --attention-layers 1 --heads 0,2 --queries -o "$WORK/d.h5" >/dev/null
/usr/bin/python3 "$(dirname "$0")/check_dump_schema.py" "$WORK/d.h5" 21 3
