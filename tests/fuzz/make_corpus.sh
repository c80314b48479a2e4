#!/usr/bin/env bash
# Regenerates the fuzz seed corpus (valid and broken inputs) with kvscope and spm_train.
# Usage: make_corpus.sh KVSCOPE_BINARY
set -euo pipefail
KV="$1"; HERE="$(cd "$(dirname "$0")" && pwd)"; C="$HERE/corpus"; TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
rm -rf "$C" && mkdir -p "$C"/{safetensors,config,selection,sentencepiece,tokenizer_json,dump_reader}
# safetensors: a tiny valid model file, and broken variants.
"$KV" random-model "$TMP/m" --spec layers=1,hidden=8,mlp=8,heads=2,kv_heads=1,vocab=16,context=32 >/dev/null
cp "$TMP/m/model.safetensors" "$C/safetensors/valid.safetensors"
head -c 200 "$TMP/m/model.safetensors" > "$C/safetensors/truncated.safetensors"
python3 - "$C/safetensors" <<'PY'
import json, struct, sys
d = sys.argv[1]
def st(header, data=b"", claimed=None):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h) if claimed is None else claimed) + h + data
open(f"{d}/huge_header.safetensors", "wb").write(st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"1234", claimed=1 << 63))
open(f"{d}/negative_shape.safetensors", "wb").write(st({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"1234"))
open(f"{d}/bf16.safetensors", "wb").write(st({"__metadata__": {"format": "pt"}, "a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, b"12345678"))
open(f"{d}/lying_shape.safetensors", "wb").write(st({"a": {"dtype": "F16", "shape": [3], "data_offsets": [0, 4]}}, b"1234"))
PY
# config.json
cp "$TMP/m/config.json" "$C/config/llama.json"
sed 's/"llama"/"qwen2"/' "$TMP/m/config.json" > "$C/config/qwen2.json"
sed 's/"rope_scaling": null/"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}/' "$TMP/m/config.json" > "$C/config/llama3.json"
sed 's/"llama"/"mistral", "sliding_window": 4/' "$TMP/m/config.json" > "$C/config/mistral.json"
printf '{"model_type": "llama", "vocab_size": 1' > "$C/config/broken.json"
cp "$HERE/regressions/config_huge_float.json" "$C/config/huge_float.json"
# selections: first byte is the count
printf '\x08%s' "0-3,7" > "$C/selection/range"
printf '\x20%s' "all" > "$C/selection/all"
printf '\x04%s' "3-1" > "$C/selection/reversed"
printf '\x02%s' "99999999999" > "$C/selection/huge"
# sentencepiece: a small BPE model trained here
python3 -c "print('\n'.join(['the cat sat on the mat', 'a bird sang in the tree', 'the sun rose over the hill'] * 50))" > "$TMP/t.txt"
spm_train --input="$TMP/t.txt" --model_prefix="$TMP/sp" --vocab_size=300 --model_type=bpe --byte_fallback=true \
  --normalization_rule_name=identity --minloglevel=2 >/dev/null 2>&1
cp "$TMP/sp.model" "$C/sentencepiece/bpe.model"
head -c 300 "$TMP/sp.model" > "$C/sentencepiece/truncated.model"
# tokenizer_json: small tokenizers of both families (byte-level; SentencePiece-style with
# byte fallback; Metaspace)
python3 - "$C/tokenizer_json" <<'PY'
import json, sys
d = sys.argv[1]
printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
codes, extra = {}, 0
for b in range(256):
    if b in printable: codes[b] = b
    else: codes[b] = 256 + extra; extra += 1
vocab = {chr(codes[b]): i for i, b in enumerate(sorted(codes, key=lambda b: (b not in printable, b)))}
merges = []
for a, b in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a")]:
    merges.append([a, b]); vocab.setdefault(a + b, len(vocab))
eot = len(vocab)
split = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
def added(content, i): return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
def template(tok, i): return {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": tok, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "pair": [], "special_tokens": {tok: {"id": tok, "ids": [i], "tokens": [tok]}}}
json.dump({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [added("<|endoftext|>", eot)], "normalizer": {"type": "NFC"},
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": split.replace("\\\\", "\\")}, "behavior": "Isolated", "invert": False},
                                                                 {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
           "post_processor": template("<|endoftext|>", eot), "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True, "vocab": vocab, "merges": merges}},
          open(f"{d}/byte_level.json", "w"), ensure_ascii=False)
v = {"<unk>": 0, "<s>": 1, "</s>": 2}
for b in range(256): v[f"<0x{b:02X}>"] = len(v)
for piece in ["▁", "t", "h", "e", "a", "▁t", "he", "▁the"]: v.setdefault(piece, len(v))
sp = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [added(c, i) for c, i in [("<unk>", 0), ("<s>", 1), ("</s>", 2)]],
      "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
      "pre_tokenizer": None, "post_processor": template("<s>", 1),
      "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
                                                   {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
      "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True, "vocab": v, "merges": ["▁ t", "h e", "▁t he"]}}
json.dump(sp, open(f"{d}/sentencepiece_style.json", "w"), ensure_ascii=False)
sp.update(normalizer=None, pre_tokenizer={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
          decoder={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False})
json.dump(sp, open(f"{d}/metaspace.json", "w"), ensure_ascii=False)
PY
# dump_reader: a tiny complete dump and a truncated one
printf '1 2 3 4 5 6 7 8' > "$TMP/ids.txt"
"$KV" dump "$TMP/m" --ids "$TMP/ids.txt" --attention full -o "$C/dump_reader/tiny.h5" >/dev/null
head -c 4000 "$C/dump_reader/tiny.h5" > "$C/dump_reader/truncated.h5"
du -sh "$C"
