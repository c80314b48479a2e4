#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a fixed time from
# the seed corpus in tests/fuzz/corpus. Any crash, hang (> 10 s on one input) or sanitizer
# report fails the script. Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] (default 60)
# KVSCOPE_FUZZ_TARGETS="dump_reader config" runs only those targets.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
OUT="${KVSCOPE_FUZZ_DIR:-$ROOT/build-fuzz}"
mkdir -p "$OUT"
command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ missing; run scripts/setup.sh" >&2; exit 1; }
HDF5_INC=$(pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
HDF5_LIB="$(pkg-config --libs hdf5 2>/dev/null || echo "-L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5") -lz"
FLAGS=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I"$ROOT/lib" $HDF5_INC
       -I/usr/include/torch/csrc/api/include -DKVSCOPE_FUZZING)
cat > "$OUT/version_info.cpp" <<'CPP'
#include "core/version.h"
namespace kvscope {
const char* version() { return "fuzz"; }
const char* git_commit() { return "fuzz"; }
}  // namespace kvscope
CPP
CORE=("$ROOT"/lib/core/{selection,library_versions}.cpp "$ROOT"/lib/io/{safetensors,mapped_file,h5,h5_storage_check,provenance}.cpp
      "$ROOT"/lib/model/{config,sentencepiece_model,hf_bpe,hf_decoder,hf_normalizer,hf_pre_tokenizer,hf_tokenizer,pcre2_regex,utf8}.cpp
      "$ROOT"/lib/dump/dump_reader.cpp "$OUT/version_info.cpp")
TEXT_LIBS=$(pkg-config --libs libpcre2-8 icu-uc)
status=0
printf '%-22s %12s %10s %s\n' target executions seconds result
# Leaks inside libhdf5's own error paths are reported by LeakSanitizer but are not ours.
export LSAN_OPTIONS="suppressions=$ROOT/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
for target in ${KVSCOPE_FUZZ_TARGETS:-safetensors config selection sentencepiece tokenizer_json dump_reader}; do
  bin="$OUT/fuzz_$target"
  clang++ "${FLAGS[@]}" "$ROOT/tests/fuzz/fuzz_$target.cpp" "${CORE[@]}" $HDF5_LIB $TEXT_LIBS -o "$bin"
  corpus="$OUT/corpus_$target"
  rm -rf "$corpus" && mkdir -p "$corpus"
  cp "$ROOT/tests/fuzz/corpus/$target"/* "$corpus"/ 2>/dev/null || true
  log="$OUT/fuzz_$target.log"
  if (cd "$OUT" && "$bin" "$corpus" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 > "$log" 2>&1); then
    result=ok
  else
    result="FAILED (see $log)"
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  printf '%-22s %12s %10s %s\n' "$target" "$runs" "$SECONDS_PER_TARGET" "$result"
done
exit $status
