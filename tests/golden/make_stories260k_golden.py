#!/usr/bin/python3
"""Reference outputs for stories260K from the original llama2.c checkpoint.

Reads `stories260K.bin` and `tok512.bin` in llama2.c's own formats (run.c), runs a
float64 numpy forward pass in llama2.c's layout (interleaved RoPE pairs, q/k rows as
trained), and writes the files described in shared/models/stories260K-hf/golden/README.md.

Nothing here reads the safetensors conversion or uses HF conventions, so a mistake made
in the conversion (or in kvscope's loader, RoPE or tokenizer) cannot cancel out against
the same mistake here. The only HF-specific step is the final reordering of each key
head's dims, which the README defines so the saved keys compare with an HF-layout model.

Usage: make_stories260k_golden.py --checkpoint stories260K.bin --tokenizer tok512.bin --out DIR
"""
import argparse
import json
import os
import struct
import sys

import h5py
import numpy as np

PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
BOS = 1
N_NEW = 64
RMS_EPS = 1e-5
ROPE_THETA = 10000.0


# ---------------------------------------------------------------------------
# Checkpoint (llama2.c run.c: read_checkpoint + memory_map_weights)

class Model:
    pass


def load_checkpoint(path):
    with open(path, "rb") as f:
        raw = f.read()
    header = struct.unpack("<7i", raw[:28])
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = header
    # run.c: a negative vocab_size marks a classifier stored separately from the embeddings.
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // n_heads
    kv_dim = head * n_kv_heads
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        if pos + n > data.size:
            sys.exit(f"{path}: truncated while reading a tensor of shape {shape}")
        out = data[pos:pos + n].reshape(shape).astype(np.float64)
        pos += n
        return out

    m = Model()
    m.dim, m.hidden, m.n_layers, m.n_heads, m.n_kv_heads = dim, hidden, n_layers, n_heads, n_kv_heads
    m.vocab, m.seq_len, m.head = vocab, seq_len, head
    m.emb = take(vocab, dim)
    m.rms_att = take(n_layers, dim)
    m.wq = take(n_layers, dim, dim)
    m.wk = take(n_layers, kv_dim, dim)
    m.wv = take(n_layers, kv_dim, dim)
    m.wo = take(n_layers, dim, dim)
    m.rms_ffn = take(n_layers, dim)
    m.w1 = take(n_layers, hidden, dim)
    m.w2 = take(n_layers, dim, hidden)
    m.w3 = take(n_layers, hidden, dim)
    m.rms_final = take(dim)
    # Legacy precomputed RoPE tables, still present in the file; RoPE is recomputed below.
    take(seq_len, head // 2)
    take(seq_len, head // 2)
    m.wcls = m.emb if shared else take(vocab, dim)
    if pos != data.size:
        sys.exit(f"{path}: {data.size - pos} floats left after the last tensor; layout not understood")
    return m


# ---------------------------------------------------------------------------
# Tokenizer (llama2.c run.c: build_tokenizer, encode, decode)

class Tokenizer:
    def __init__(self, path, vocab_size):
        self.pieces, self.scores = [], []
        with open(path, "rb") as f:
            (self.max_token_length,) = struct.unpack("<i", f.read(4))
            for _ in range(vocab_size):
                score, n = struct.unpack("<fi", f.read(8))
                self.scores.append(score)
                self.pieces.append(f.read(n))
            if f.read(1):
                sys.exit(f"{path}: more entries than the checkpoint's vocab_size {vocab_size}")
        # run.c looks pieces up by bsearch over a sorted copy; with no duplicate pieces that
        # is a plain map.
        self.lookup = {}
        for i, p in enumerate(self.pieces):
            if p in self.lookup:
                sys.exit(f"{path}: piece {p!r} appears twice; lookup would be ambiguous")
            self.lookup[p] = i

    def encode(self, text):
        """Ids without BOS, as run.c's encode(text, bos=0, eos=0)."""
        data = text.encode("utf-8")
        ids = []
        if data:
            # SentencePiece's add_dummy_prefix: a leading space, merged like any other piece.
            ids.append(self.lookup[b" "])
        # One id per UTF-8 code point, or its bytes through the byte-fallback pieces
        # <0x00>..<0xFF>, which follow the three control tokens.
        i = 0
        while i < len(data):
            j = i + 1
            while j < len(data) and (data[j] & 0xC0) == 0x80 and j - i < 4:
                j += 1
            cp = data[i:j]
            if cp in self.lookup:
                ids.append(self.lookup[cp])
            else:
                ids.extend(b + 3 for b in cp)
            i = j
        # Merge the adjacent pair whose merged piece scores best; the leftmost wins a tie
        # (run.c compares with a strict >), until no pair forms a piece.
        while True:
            best_score, best_id, best_idx = None, -1, -1
            for k in range(len(ids) - 1):
                merged = self.lookup.get(self.pieces[ids[k]] + self.pieces[ids[k + 1]])
                if merged is not None and (best_score is None or self.scores[merged] > best_score):
                    best_score, best_id, best_idx = self.scores[merged], merged, k
            if best_idx < 0:
                return ids
            ids[best_idx:best_idx + 2] = [best_id]

    def decode(self, ids, prev=BOS):
        out = bytearray()
        for t in ids:
            piece = self.pieces[t]
            # After BOS, SentencePiece drops the dummy-prefix space.
            if prev == BOS and piece.startswith(b" "):
                piece = piece[1:]
            if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
                piece = bytes([int(piece[3:5], 16)])
            out += piece
            prev = t
        return out.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------
# Forward (llama2.c layout, float64)

def rmsnorm(x, w):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + RMS_EPS) * w


def rope_interleaved(x, positions, head):
    """x [n_heads, T, head]: dims (2j, 2j+1) rotate by pos * theta^(-2j/head)."""
    j = np.arange(head // 2, dtype=np.float64)
    freq = ROPE_THETA ** (-2.0 * j / head)
    ang = positions[:, None].astype(np.float64) * freq[None, :]
    cos, sin = np.cos(ang), np.sin(ang)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def forward(m, ids):
    """One causal pass over ids from position 0. Returns logits [T, vocab] and per-layer
    (k before RoPE [kv_heads, T, head], v [kv_heads, T, head], attention [heads, T, T])."""
    T = len(ids)
    H, KV, D = m.n_heads, m.n_kv_heads, m.head
    positions = np.arange(T)
    mask = np.triu(np.ones((T, T), dtype=bool), k=1)
    x = m.emb[np.asarray(ids)]
    layers = []
    for l in range(m.n_layers):
        xb = rmsnorm(x, m.rms_att[l])
        q = (xb @ m.wq[l].T).reshape(T, H, D).transpose(1, 0, 2)
        k = (xb @ m.wk[l].T).reshape(T, KV, D).transpose(1, 0, 2)
        v = (xb @ m.wv[l].T).reshape(T, KV, D).transpose(1, 0, 2)
        qr = rope_interleaved(q, positions, D)
        kr = rope_interleaved(k, positions, D)
        group = H // KV
        kr_h = np.repeat(kr, group, axis=0)  # query head h reads KV head h // group
        v_h = np.repeat(v, group, axis=0)
        scores = qr @ kr_h.transpose(0, 2, 1) / np.sqrt(D)
        scores = np.where(mask[None], -np.inf, scores)
        scores -= scores.max(axis=-1, keepdims=True)
        att = np.exp(scores)
        att /= att.sum(axis=-1, keepdims=True)
        o = (att @ v_h).transpose(1, 0, 2).reshape(T, H * D)
        x = x + o @ m.wo[l].T
        xb = rmsnorm(x, m.rms_ffn[l])
        g = xb @ m.w1[l].T
        u = xb @ m.w3[l].T
        x = x + ((g / (1.0 + np.exp(-g))) * u) @ m.w2[l].T
        layers.append((k, v, att))
    logits = rmsnorm(x, m.rms_final) @ m.wcls.T
    return logits, layers


def to_hf_head_layout(k, head):
    """Reorders each head's dims from llama2.c's interleaved pairs (index 2j+c) to the
    rotate_half layout of the permuted HF k_proj (index c*head/2 + j)."""
    perm = np.array([2 * j + c for c in range(2) for j in range(head // 2)])
    return k[..., perm]


def mean_nll(logits, targets):
    top = logits.max(axis=-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(targets)), targets]))


def greedy(m, prompt, n_new):
    """Argmax continuation, recomputing the whole prefix each step (no cache to get wrong).
    Also returns each step's top-1 minus top-2 logit gap."""
    ids = list(prompt)
    margins = []
    for _ in range(n_new):
        logits, _ = forward(m, ids)
        last = logits[-1]
        second, first = np.sort(last)[-2:]
        margins.append(float(first - second))
        ids.append(int(np.argmax(last)))
    return ids[len(prompt):], margins


# ---------------------------------------------------------------------------
# Output

def as_saved(x):
    # C order: the transposes above leave some arrays Fortran-ordered, which np.save would
    # record in the .npy header and which simple .npy readers do not handle.
    return np.ascontiguousarray(x, dtype=np.float32)


def write_json(path, obj):
    # One key per line, lists kept on one line, so that diffs stay readable.
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in obj.items())
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n" + body + "\n}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="llama2.c stories260K.bin")
    ap.add_argument("--tokenizer", required=True, help="llama2.c tok512.bin")
    ap.add_argument("--out", required=True, help="directory to write the golden files into")
    args = ap.parse_args()

    m = load_checkpoint(args.checkpoint)
    tok = Tokenizer(args.tokenizer, m.vocab)
    os.makedirs(args.out, exist_ok=True)

    ids = [BOS] + tok.encode(PROMPT)
    T = len(ids)
    logits, layers = forward(m, ids)
    write_json(os.path.join(args.out, "prompt_ids.json"),
               {"text": PROMPT, "add_bos": True, "T": T, "ids": ids})
    np.save(os.path.join(args.out, "prompt_logits.npy"), as_saved(logits))

    kv = {}
    for l, (k, v, att) in enumerate(layers):
        kv[f"k_pre_rope_L{l}"] = as_saved(to_hf_head_layout(k, m.head))
        kv[f"v_L{l}"] = as_saved(v)
        kv[f"attn_L{l}"] = as_saved(att)
    np.savez(os.path.join(args.out, "layer_kv.npz"), **kv)

    new_ids, margins = greedy(m, [BOS], N_NEW)
    step = int(np.argmin(margins))
    write_json(os.path.join(args.out, "greedy.json"), {
        "prompt_ids": [BOS],
        "n_new": N_NEW,
        "new_ids": new_ids,
        "all_ids": [BOS] + new_ids,
        "text": tok.decode(new_ids),
        "min_top1_top2_margin": margins[step],
        "argmin_margin_step": step,
    })

    with h5py.File(os.path.join(args.out, "golden.h5"), "w") as f:
        f["prompt_ids"] = np.asarray(ids, dtype=np.int64)
        f["prompt_logits"] = as_saved(logits)
        f["greedy_prompt_ids"] = np.asarray([BOS], dtype=np.int64)
        f["greedy_new_ids"] = np.asarray(new_ids, dtype=np.int64)
        for l in range(m.n_layers):
            f[f"layers/{l}/k_pre_rope"] = kv[f"k_pre_rope_L{l}"]
            f[f"layers/{l}/v"] = kv[f"v_L{l}"]
            f[f"layers/{l}/attn"] = kv[f"attn_L{l}"]
        # Written last: with this order (and groups made implicitly by the dataset paths) the
        # file is byte-identical to the stored one, so a diff of the two files is meaningful.
        f.attrs["description"] = ("Same content as prompt_ids.json, prompt_logits.npy, greedy.json and "
                                  "layer_kv.npz, for readers without numpy: see README.md")

    nll = mean_nll(logits[:-1], ids[1:])
    print(f"wrote {args.out}: T={T}, prompt mean NLL {nll:.4f} nats/token, "
          f"greedy min margin {margins[step]:.3f} at step {step}")


if __name__ == "__main__":
    main()
