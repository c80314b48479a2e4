"""Loading kvscope HDF5 results and the figure style shared by the notebooks.

Every kvscope output carries `schema` and `schema_version` root attributes; `open_results`
refuses anything else with a message that says what was expected and how to fix it.
Needs only Debian's python3-h5py, python3-matplotlib and python3-numpy.
"""
import argparse
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Schema versions these notebooks understand.
SCHEMAS = {
    "kvscope.dump": 1,
    "kvscope.spectrum": 1,
    "kvscope.l2corr": 1,
    "kvscope.ppl": 3,
    "kvscope.perturb": 2,
    "kvscope.retrieval": 1,
}

# Okabe-Ito: distinguishable under the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#999999"]


class SchemaError(SystemExit):
    """Raised (and exits non-zero) when a file is not the kvscope result a notebook expects."""


def open_results(path, schema):
    """Opens a kvscope results file, checking its schema name, version and completeness."""
    if not os.path.exists(path):
        raise SchemaError(f"error: {path} does not exist; produce it with kvscope first (see README)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SchemaError(f"error: {path} is not a readable HDF5 file ({e})")
    got = f.attrs.get("schema")
    if isinstance(got, bytes):
        got = got.decode()
    want = SCHEMAS[schema]
    if got != schema:
        raise SchemaError(f"error: {path} is a '{got}' file; expected '{schema}' (schema version {want})")
    version = int(f.attrs.get("schema_version", -1))
    if version != want:
        raise SchemaError(
            f"error: {path} has {schema} schema version {version}; these notebooks read version {want}. "
            "Re-run the kvscope command with this checkout, or use notebooks from the kvscope version that wrote it.")
    if int(f.attrs.get("complete", 0)) != 1:
        raise SchemaError(f"error: {path} is incomplete (its run did not finish); re-run the kvscope command")
    return f


def attr(f, name, default=""):
    value = f.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def model_name(f):
    return os.path.basename(os.path.normpath(attr(f, "model_path", "model"))) or "model"


def parse_args(description, inputs):
    """--results DIR --out DIR, plus one --NAME FILE per input (default DIR/NAME.h5)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--results", default="results", help="directory holding the kvscope results files")
    p.add_argument("--out", default="figures", help="directory for the PNG and PDF figures")
    for name in inputs:
        p.add_argument(f"--{name}", default=None, help=f"{name} results file (default: RESULTS/{name}.h5)")
    # Notebook front ends pass their own arguments; ignore those we do not know.
    args, _ = p.parse_known_args(sys.argv[1:] if "ipykernel" not in sys.modules else [])
    for name in inputs:
        if getattr(args, name) is None:
            setattr(args, name, os.path.join(args.results, f"{name}.h5"))
    os.makedirs(args.out, exist_ok=True)
    return args


def style():
    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "legend.frameon": False,
    })


def save(fig, out_dir, name):
    """Writes NAME.png (for the README) and NAME.pdf (for papers); returns the paths."""
    paths = []
    for ext in ("png", "pdf"):
        path = os.path.join(out_dir, f"{name}.{ext}")
        fig.savefig(path, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    print("wrote " + ", ".join(paths))
    return paths


def layers_of(f):
    return [int(x) for x in attr(f, "layers").split(",") if x != ""]


def mean_std(stack, axis=0):
    a = np.asarray(stack, dtype=float)
    return np.nanmean(a, axis=axis), np.nanstd(a, axis=axis)
