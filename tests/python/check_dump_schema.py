"""Opens a kvscope dump with h5py and checks names, shapes and attributes against the
documented schema (docs/dump_schema.md). Usage: check_dump_schema.py FILE.h5 T LAYERS"""
import json
import sys

import h5py

path, T, n_layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
f = h5py.File(path, "r")


def text(obj, name):
    """String attributes are fixed-length UTF-8 by schema, so h5py hands back bytes."""
    value = obj.attrs[name]
    assert isinstance(value, bytes), f"{name}: expected a fixed-length string, got {type(value).__name__}"
    return value.decode("utf-8")


a = f.attrs
required = ["schema", "schema_version", "complete", "kvscope_version", "git_commit", "library_versions", "model_path",
            "model_config", "tokenizer", "command_line", "created", "stored_dtype", "compute_dtype", "attention_mode",
            "has_queries", "num_layers", "num_heads", "num_kv_heads", "head_dim", "layers", "full_attention_layers",
            "full_attention_heads", "num_documents"]
missing = [k for k in required if k not in a]
assert not missing, f"missing root attributes: {missing}"
assert text(f, "schema") == "kvscope.dump" and a["schema_version"] == 1 and a["complete"] == 1
cfg = json.loads(text(f, "model_config"))
H, KV, hd = int(a["num_heads"]), int(a["num_kv_heads"]), int(a["head_dim"])
assert cfg["num_attention_heads"] == H
doc = f["documents/0"]
assert doc.attrs["num_tokens"] == T and doc["token_ids"].shape == (T,)
layers = [int(x) for x in text(f, "layers").split(",")]
assert len(layers) == n_layers, layers
full = [int(x) for x in text(f, "full_attention_layers").split(",") if x]
heads = [int(x) for x in text(f, "full_attention_heads").split(",") if x]
expected = {
    "k_pre_rope": ((KV, T, hd), "kv_head,token,head_dim"), "k": ((KV, T, hd), "kv_head,token,head_dim"),
    "v": ((KV, T, hd), "kv_head,token,head_dim"), "q": ((H, T, hd), "head,token,head_dim"),
    "key_norm": ((KV, T), "kv_head,token"), "value_norm": ((KV, T), "kv_head,token"),
    "attention_received": ((H, T), "head,token"), "attention_received_others": ((H, T), "head,token"),
    "last_query_attention": ((H, T), "head,token"), "query_count": ((T,), "token"),
}
for l in layers:
    g = doc[f"layers/{l}"]
    for name, (shape, dims) in expected.items():
        assert g[name].shape == shape, (l, name, g[name].shape, shape)
        assert text(g[name], "dims") == dims, (l, name, text(g[name], "dims"))
    if l in full:
        att = g["attention"]
        assert att.shape == (len(heads), T, T) and text(att, "dims") == "head,query,key"
        assert list(att.attrs["heads"]) == heads
        rows = att[0].sum(axis=-1)
        assert abs(rows - 1).max() < 1e-4, "attention rows must sum to 1"
    assert g["k"].compression == "gzip" and g["k"].shuffle
print(f"h5py: {path} matches the documented schema ({len(layers)} layers, {T} tokens)")
