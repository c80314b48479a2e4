# %% [markdown]
# # How much one merge perturbs later attention
# Cosine similarity between the full-cache and perturbed attention outputs after one merge
# (WeightedKV, Fig. 2), per merge weighting and for eviction. Reads `perturb.h5` written by
# `kvscope perturb`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import kvscope_results as kr

args = kr.parse_args("Cosine similarity after one merge, per weighting", ["perturb"])
kr.style()
f = kr.open_results(args.perturb, "kvscope.perturb")
variants = [v for v in kr.attr(f, "variants").split(",") if v]
at, steps = int(f.attrs["at"]), int(f.attrs["steps"])
caption = f"{kr.model_name(f)}, merge at step {at}, {int(f.attrs['num_documents'])} document(s)"

# %% Cosine similarity of the attention output against steps after the merge (mean ± std over documents).
fig, ax = plt.subplots(figsize=(6.0, 3.6))
x = np.arange(1, steps + 1)
for v in variants:
    g = f[f"aggregate/{v}"]
    mean, std = g["cos_output_mean"][:], g["cos_output_std"][:]
    ax.plot(x, 1 - mean, label=v)
    ax.fill_between(x, np.clip(1 - mean - std, 1e-12, None), 1 - mean + std, alpha=0.15)
ax.set_yscale("log")
ax.set_xlabel("steps after the merge")
ax.set_ylabel("1 − cos(full, perturbed) of attention output")
ax.set_title(f"Output perturbation after one merge per head (mean ± std)\n{caption}")
ax.legend(fontsize=8)
kr.save(fig, args.out, "perturb_cosine_vs_steps")

# %% Summary: mean perturbation over the horizon and mean KL of the next-token distribution.
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
means = [1 - np.mean(f[f"aggregate/{v}/cos_output_mean"][:]) for v in variants]
kls = [np.mean(f[f"aggregate/{v}/kl_mean"][:]) for v in variants]
colors = [kr.PALETTE[i % len(kr.PALETTE)] for i in range(len(variants))]
axes[0].bar(variants, means, color=colors)
axes[0].set_ylabel("mean 1 − cos(output)")
axes[1].bar(variants, kls, color=colors)
axes[1].set_ylabel("mean KL(full ‖ perturbed), nats")
for ax in axes:
    ax.tick_params(axis="x", rotation=45)
    ax.set_yscale("symlog", linthresh=1e-9)
fig.suptitle(f"Perturbation per merge weighting — {caption}")
fig.tight_layout()
kr.save(fig, args.out, "perturb_summary")
