# %% [markdown]
# # Passkey retrieval under a compressed cache
# Exact-match accuracy per depth (rows) and prompt length (columns), one panel per policy and
# budget, over the key seeds of each cell. Reads `passkey.h5` written by `kvscope passkey`
# (or any `kvscope needle` results file given with --passkey).

# %%
import collections

import matplotlib.pyplot as plt
import numpy as np

import kvscope_results as kr

args = kr.parse_args("Passkey accuracy heatmaps (depth x length) per policy and budget", ["passkey"])
kr.style()
f = kr.open_results(args.passkey, "kvscope.retrieval")
cells = [f["cells"][k] for k in sorted(f["cells"].keys(), key=int)]
task = kr.attr(f, "task")
lengths = sorted({int(c.attrs["length"]) for c in cells})
depths = sorted({float(c.attrs["depth"]) for c in cells})
panels = collections.OrderedDict()  # (policy, budget label, weighting) -> (depth, length) -> [exact]
for c in cells:
    key = (kr.attr(c, "policy"), kr.attr(c, "budget_label"), kr.attr(c, "weighting"))
    panels.setdefault(key, collections.defaultdict(list))[(float(c.attrs["depth"]), int(c.attrs["length"]))].append(
        int(c.attrs["exact"]))

# %% One heatmap per (policy, budget): a row per budget, the policies across it, the full
# cache (which has no budget) first in every row.
budgets = list(collections.OrderedDict.fromkeys(k[1] for k in panels if k[1] != "full")) or ["full"]
policies = list(collections.OrderedDict.fromkeys((k[0], k[2]) for k in panels))
fig, axes = plt.subplots(len(budgets), len(policies), figsize=(0.8 + 1.55 * len(policies), 0.9 + 1.45 * len(budgets)),
                         squeeze=False, constrained_layout=True)
image = None
for i, budget in enumerate(budgets):
    for j, (policy, weighting) in enumerate(policies):
        ax = axes[i][j]
        key = next((k for k in panels if k[0] == policy and k[2] == weighting and k[1] in ("full", budget)), None)
        if key is None:
            ax.axis("off")
            continue
        grid = np.full((len(depths), len(lengths)), np.nan)
        for (d, l), hits in panels[key].items():
            grid[depths.index(d), lengths.index(l)] = np.mean(hits)
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="upper")
        for (r, col), value in np.ndenumerate(grid):
            if not np.isnan(value):
                ax.text(col, r, f"{100 * value:.0f}", ha="center", va="center", fontsize=6,
                        color="black" if value > 0.6 else "white")
        ax.set_xticks(range(len(lengths)), [str(l) for l in lengths], fontsize=6)
        ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths] if j == 0 else [], fontsize=6)
        ax.grid(False)
        name = policy + (f" ({weighting})" if weighting and weighting != "avg-attention" else "")
        ax.set_title(f"{name}\n{'full cache' if key[1] == 'full' else 'budget ' + key[1]}", fontsize=7)
        if j == 0:
            ax.set_ylabel("depth", fontsize=7)
        if i == len(budgets) - 1:
            ax.set_xlabel("length", fontsize=7)
if image is not None:
    fig.colorbar(image, ax=axes, shrink=0.8, label="exact-match accuracy (numbers: %)")
fig.suptitle(f"{task.capitalize()} retrieval, {kr.model_name(f)}, cache compressed at {kr.attr(f, 'compress')}, "
             f"{len(set(int(c.attrs['key_seed']) for c in cells))} key(s) per cell", fontsize=9)
kr.save(fig, args.out, f"{task}_heatmap")
