"""Writes a kvscope (Hugging Face layout, float32 safetensors) Llama model as llama2.c checkpoint and tokenizer files.

Usage: to_llama2c.py MODEL_DIR OUT_MODEL_BIN OUT_TOKENIZER_BIN
For the side-by-side decode benchmark (tests/bench/decode_vs_llama2c.sh): the same weights in llama2.c's legacy
format (7-int header, negative vocab for an untied classifier). Query and key rows are reordered per head from the
Hugging Face half-split RoPE layout to llama2.c's interleaved pairs, so both programs compute the same function and
greedy decoding gives the same tokens. The tokenizer names token i "<i>", so llama2.c's output reads back as ids.
Only the shapes llama2.c supports: rope_theta 10000, no biases, no scaling, rms_norm_eps 1e-5."""
import json
import struct
import sys

import numpy as np

model_dir, out_model, out_tok = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = json.load(open(f"{model_dir}/config.json"))
for key, want in (("rope_theta", 10000), ("rms_norm_eps", 1e-5), ("rope_scaling", None), ("attention_bias", False)):
    if cfg.get(key, want) != want:
        sys.exit(f"to_llama2c.py: {key} = {cfg.get(key)}, but llama2.c only computes {want}")

raw = open(f"{model_dir}/model.safetensors", "rb").read()
header_len = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + header_len])


def tensor(name):
    meta = header[name]
    if meta["dtype"] != "F32":
        sys.exit(f"to_llama2c.py: {name} is {meta['dtype']}; only float32 models are converted")
    begin, end = meta["data_offsets"]
    return np.frombuffer(raw[8 + header_len + begin:8 + header_len + end], dtype="<f4").reshape(meta["shape"])


dim, hidden, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
heads, kv_heads, vocab, seq_len = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"], cfg["max_position_embeddings"]
head_dim = dim // heads
tied = cfg.get("tie_word_embeddings", False)


def interleave_rope_rows(w, n_heads):
    # Row h*hd + 2j + t of the result is row h*hd + t*hd/2 + j of the Hugging Face weight.
    return w.reshape(n_heads, 2, head_dim // 2, w.shape[1]).transpose(0, 2, 1, 3).reshape(w.shape)


def per_layer(fmt, transform=lambda w: w):
    return [transform(tensor(fmt.format(i))) for i in range(layers)]


parts = [tensor("model.embed_tokens.weight")]
parts += per_layer("model.layers.{}.input_layernorm.weight")
parts += per_layer("model.layers.{}.self_attn.q_proj.weight", lambda w: interleave_rope_rows(w, heads))
parts += per_layer("model.layers.{}.self_attn.k_proj.weight", lambda w: interleave_rope_rows(w, kv_heads))
parts += per_layer("model.layers.{}.self_attn.v_proj.weight")
parts += per_layer("model.layers.{}.self_attn.o_proj.weight")
parts += per_layer("model.layers.{}.post_attention_layernorm.weight")
parts += per_layer("model.layers.{}.mlp.gate_proj.weight")
parts += per_layer("model.layers.{}.mlp.down_proj.weight")
parts += per_layer("model.layers.{}.mlp.up_proj.weight")
parts.append(tensor("model.norm.weight"))
parts.append(np.zeros(seq_len * head_dim, dtype="<f4"))  # the legacy format's unused RoPE tables
if not tied:
    parts.append(tensor("lm_head.weight"))
with open(out_model, "wb") as f:
    f.write(struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab if tied else -vocab, seq_len))
    for p in parts:
        f.write(np.ascontiguousarray(p, dtype="<f4").tobytes())

with open(out_tok, "wb") as f:
    names = [f"<{i}>".encode() for i in range(vocab)]
    f.write(struct.pack("<i", max(len(n) for n in names)))
    for n in names:
        f.write(struct.pack("<fi", 0.0, len(n)) + n)
