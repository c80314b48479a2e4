#!/usr/bin/python3
"""Writes NAME.nll for PolicyRefactorGolden: the per-token NLL of every policy, as C99 hex
floats (exact), from the two `kvscope ppl` sweeps the README of this directory names.
Run it only for a deliberate change of the numbers, and say why in the commit.

Usage: write_golden.py KVSCOPE MODEL_DIR NAME     (reads NAME.ids beside this script)
"""
import os
import subprocess
import sys
import tempfile

import h5py

kv, model, name = sys.argv[1:4]
here = os.path.dirname(os.path.abspath(__file__))
ids = os.path.join(here, name + ".ids")
lines = [f"# per-token NLL (hex floats) of `kvscope ppl MODEL --ids {name}.ids --budget 16,40 --weighting avg-attention,uniform "
         "--seed 3 --batch 1 --positions P`",
         "# written by write_golden.py; one line per run:",
         "# positions policy budget weighting token_index:nll ..."]
with tempfile.TemporaryDirectory() as tmp:
    for positions in ("original", "in-cache"):
        out = os.path.join(tmp, positions + ".h5")
        subprocess.run([kv, "ppl", model, "--ids", ids, "--budget", "16,40", "--weighting", "avg-attention,uniform",
                        "--positions", positions, "--seed", "3", "--batch", "1", "-o", out], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with h5py.File(out, "r") as f:
            for key in sorted(f["runs"].keys(), key=int):
                r = f["runs"][key]
                attr = lambda n: r.attrs[n].decode() if isinstance(r.attrs[n], bytes) else r.attrs[n]
                tokens = " ".join(f"{int(i)}:{float(x).hex()}" for i, x in zip(r["token_index"][:], r["nll"][:]))
                lines.append(f"{positions} {attr('policy')} {attr('budget_label')} {attr('weighting') or '-'} {tokens}")
with open(os.path.join(here, name + ".nll"), "w") as f:
    f.write("\n".join(lines) + "\n")
