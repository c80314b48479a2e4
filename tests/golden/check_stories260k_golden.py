#!/usr/bin/python3
"""Regenerates the stories260K goldens from the original llama2.c checkpoint and compares
them with the stored ones.

Usage: check_stories260k_golden.py GOLDEN_DIR [--checkpoint BIN] [--tokenizer TOKBIN]

GOLDEN_DIR is shared/models/stories260K-hf/golden; the checkpoint and tokenizer default to
shared/models/stories260K/{stories260K,tok512}.bin beside it. Token ids must match exactly,
floats within TOL absolute. Exits 1 with a one-line reason on the first mismatch.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

TOL = 1e-6
FILES = ["prompt_ids.json", "prompt_logits.npy", "greedy.json", "layer_kv.npz", "golden.h5"]


class Mismatch(Exception):
    pass


def same_ints(what, got, want):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or not np.array_equal(got, want):
        if got.shape == want.shape:
            first = int(np.flatnonzero(got.ravel() != want.ravel())[0])
            raise Mismatch(f"{what}: first differs at index {first} ({got.ravel()[first]} vs {want.ravel()[first]})")
        raise Mismatch(f"{what}: shape {got.shape} vs {want.shape}")


def close_floats(what, got, want):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise Mismatch(f"{what}: shape {got.shape} vs {want.shape}")
    if got.dtype != want.dtype:
        raise Mismatch(f"{what}: dtype {got.dtype} vs {want.dtype}")
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if got.size else 0.0
    if not diff <= TOL:
        raise Mismatch(f"{what}: max |diff| {diff:.3g} > {TOL:g}")
    return diff


def same_value(what, got, want):
    if got != want:
        raise Mismatch(f"{what}: {got!r} vs {want!r}")


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_prompt_ids(new, ref):
    a, b = load_json(new), load_json(ref)
    same_value("prompt_ids.json keys", sorted(a), sorted(b))
    for key in ("text", "add_bos", "T"):
        same_value(f"prompt_ids.json {key}", a[key], b[key])
    same_ints("prompt_ids.json ids", a["ids"], b["ids"])
    return 0.0


def check_prompt_logits(new, ref):
    return close_floats("prompt_logits.npy", np.load(new), np.load(ref))


def check_greedy(new, ref):
    a, b = load_json(new), load_json(ref)
    same_value("greedy.json keys", sorted(a), sorted(b))
    for key in ("prompt_ids", "new_ids", "all_ids"):
        same_ints(f"greedy.json {key}", a[key], b[key])
    for key in ("n_new", "argmin_margin_step", "text"):
        same_value(f"greedy.json {key}", a[key], b[key])
    return close_floats("greedy.json min_top1_top2_margin", a["min_top1_top2_margin"], b["min_top1_top2_margin"])


def check_layer_kv(new, ref):
    with np.load(new) as a, np.load(ref) as b:
        same_value("layer_kv.npz arrays", sorted(a.files), sorted(b.files))
        return {k: close_floats(f"layer_kv.npz {k}", a[k], b[k]) for k in sorted(b.files)}


def check_h5(new, ref):
    def datasets(f):
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        return sorted(names)

    diffs = {}
    with h5py.File(new, "r") as a, h5py.File(ref, "r") as b:
        same_value("golden.h5 datasets", datasets(a), datasets(b))
        for name in datasets(b):
            x, y = a[name][()], b[name][()]
            if np.issubdtype(y.dtype, np.integer):
                same_value(f"golden.h5 {name} dtype", x.dtype, y.dtype)
                same_ints(f"golden.h5 {name}", x, y)
            else:
                diffs[name] = close_floats(f"golden.h5 {name}", x, y)
    return diffs


CHECKS = {
    "prompt_ids.json": check_prompt_ids,
    "prompt_logits.npy": check_prompt_logits,
    "greedy.json": check_greedy,
    "layer_kv.npz": check_layer_kv,
    "golden.h5": check_h5,
}


def largest(d):
    return max(d.values()) if isinstance(d, dict) else d


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("golden", help="the stored golden directory")
    ap.add_argument("--checkpoint")
    ap.add_argument("--tokenizer")
    args = ap.parse_args()
    models = os.path.dirname(os.path.dirname(os.path.abspath(args.golden)))
    checkpoint = args.checkpoint or os.path.join(models, "stories260K", "stories260K.bin")
    tokenizer = args.tokenizer or os.path.join(models, "stories260K", "tok512.bin")

    maker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "make_stories260k_golden.py")
    with tempfile.TemporaryDirectory(prefix="stories260k_golden_") as out:
        run = subprocess.run([sys.executable, maker, "--checkpoint", checkpoint, "--tokenizer", tokenizer, "--out", out],
                             capture_output=True, text=True)
        if run.returncode != 0:
            tail = (run.stderr.strip().splitlines() or ["(no output)"])[-1]
            print(f"FAIL: generator exited {run.returncode}: {tail}")
            return 1
        try:
            stored = sorted(set(os.listdir(args.golden)) - {"README.md"})
            same_value("files in the golden directory", stored, sorted(FILES))
            same_value("files written by the generator", sorted(os.listdir(out)), sorted(FILES))
            results = {name: CHECKS[name](os.path.join(out, name), os.path.join(args.golden, name)) for name in FILES}
        except Mismatch as e:
            print(f"FAIL: {e}")
            return 1

    print(f"stories260K goldens regenerated from {os.path.basename(checkpoint)} match {args.golden} "
          f"(ids exact, floats within {TOL:g}):")
    for name, diff in results.items():
        detail = ""
        if isinstance(diff, dict):
            detail = " (" + ", ".join(f"{k} {v:.2g}" for k, v in diff.items() if v) + ")" if any(diff.values()) else ""
        print(f"  {name:18s} max |diff| {largest(diff):.3g}{detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
