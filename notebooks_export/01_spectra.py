# %% [markdown]
# # Singular-value spectra of keys and values
# Keys are low-rank, values are not (WeightedKV, Fig. 1). Reads `spectrum.h5` written by
# `kvscope spectrum`. Run as a script: `python3 notebooks_export/01_spectra.py --results DIR --out figures/`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import kvscope_results as kr

args = kr.parse_args("Spectra of keys (before/after RoPE) and values", ["spectrum"])
kr.style()
f = kr.open_results(args.spectrum, "kvscope.spectrum")
kinds = [k for k in kr.attr(f, "kinds").split(",") if k]
labels = {"k_pre_rope": "keys before RoPE", "k": "keys after RoPE", "v": "values"}
layers = kr.layers_of(f)
docs = sorted(f["documents"].keys(), key=int)
caption = f"{kr.model_name(f)}, {len(docs)} document(s), {len(layers)} layers"

# %% Normalised singular values, averaged over documents, layers and heads, with a spread band.
fig, ax = plt.subplots(figsize=(5.2, 3.6))
for kind in kinds:
    g = f[f"aggregate/{kind}"]
    mean, std = g["normalized_mean"][:], g["normalized_std"][:]
    x = np.arange(1, len(mean) + 1)
    ax.plot(x, mean, label=labels.get(kind, kind))
    ax.fill_between(x, np.clip(mean - std, 0, None), mean + std, alpha=0.2)
ax.set_xlabel("singular value index")
ax.set_ylabel(r"$\sigma_i / \sigma_1$")
ax.set_title(f"Normalised singular values (mean ± std)\n{caption}")
ax.legend()
kr.save(fig, args.out, "spectra_normalized")

# %% Per-layer panels.
cols = min(4, len(layers))
rows = int(np.ceil(len(layers) / cols))
fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), squeeze=False, sharey=True)
for i, layer in enumerate(layers):
    ax = axes[i // cols][i % cols]
    for kind in kinds:
        curves = [f[f"documents/{d}/layers/{layer}/{kind}/normalized"][:] for d in docs]
        width = min(c.shape[1] for c in curves)
        mean = np.mean(np.concatenate([c[:, :width] for c in curves]), axis=0)
        ax.plot(np.arange(1, width + 1), mean, label=labels.get(kind, kind))
    ax.set_title(f"layer {layer}")
    ax.set_xlabel("index")
for j in range(len(layers), rows * cols):
    axes[j // cols][j % cols].axis("off")
axes[0][0].set_ylabel(r"$\sigma_i / \sigma_1$")
axes[0][0].legend(fontsize=8)
fig.suptitle(f"Normalised singular values per layer (mean over heads and documents) — {caption}")
fig.tight_layout()
kr.save(fig, args.out, "spectra_per_layer")

# %% Effective rank (90% energy) per layer.
fig, ax = plt.subplots(figsize=(5.2, 3.4))
for kind in kinds:
    g = f[f"aggregate/{kind}"]
    ax.errorbar(layers, g["rank90_mean"][:], yerr=g["rank90_std"][:], marker="o", capsize=3, label=labels.get(kind, kind))
ax.set_xlabel("layer")
ax.set_ylabel("effective rank (90% energy)")
ax.set_title(f"Effective rank per layer (mean ± std over heads and documents)\n{caption}")
ax.legend()
kr.save(fig, args.out, "spectra_effective_rank")
