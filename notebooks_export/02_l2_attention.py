# %% [markdown]
# # Key L2 norm against attention
# Low-norm keys receive high attention (Devoto et al., Figs. 1 and 8). Reads `l2corr.h5`
# written by `kvscope l2corr`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import kvscope_results as kr

args = kr.parse_args("Key norm vs attention: ALR and Spearman heatmaps, attention-loss curves", ["l2corr"])
kr.style()
f = kr.open_results(args.l2corr, "kvscope.l2corr")
layers = kr.layers_of(f)
agg = f["aggregate"]
caption = f"{kr.model_name(f)}, {int(f.attrs['num_documents'])} document(s)"


def heatmap(values, title, label, name, cmap):
    fig, ax = plt.subplots(figsize=(0.5 * values.shape[1] + 2.5, 0.4 * values.shape[0] + 1.8))
    im = ax.imshow(values, aspect="auto", cmap=cmap)
    ax.set_xlabel("query head")
    ax.set_ylabel("layer")
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels(layers)
    ax.set_title(f"{title}\n{caption}")
    fig.colorbar(im, ax=ax, label=label)
    kr.save(fig, args.out, name)


# %% ALR and Spearman heatmaps (layer x head).
heatmap(agg["alr_mean"][:], "Attention-loss ratio (lower: norm predicts attention)", "ALR", "l2_alr_heatmap", "viridis")
heatmap(agg["spearman_mean"][:], "Spearman(key norm, mean attention received)", "Spearman ρ", "l2_spearman_heatmap", "cividis")

# %% Attention loss against compression ratio for the most and least correlated heads.
spearman = agg["spearman_mean"][:]
flat = np.nan_to_num(spearman, nan=0.0)
most = np.unravel_index(np.argmin(flat), flat.shape)   # most negative: low norm <-> high attention
least = np.unravel_index(np.argmax(flat), flat.shape)
ratios = f["compression_ratios"][:]
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
for ax, (li, h), which in zip(axes, [most, least], ["most", "least"]):
    for key, label in [("loss_l2_mean", "drop highest norm (L2)"), ("loss_oracle_mean", "drop lowest attention (oracle)"),
                       ("loss_random_mean", "drop random")]:
        ax.plot(ratios, agg[key][li, h, :], label=label)
    ax.set_title(f"{which} correlated: layer {layers[li]}, head {h} (ρ = {spearman[li, h]:.2f})")
    ax.set_xlabel("compression ratio")
axes[0].set_ylabel("attention lost (last query)")
axes[0].legend()
fig.suptitle(f"Attention loss against compression — {caption}")
fig.tight_layout()
kr.save(fig, args.out, "l2_attention_loss")
