# %% [markdown]
# # Perplexity with a budgeted KV cache
# Every policy against cache budget (WeightedKV, Table I), and log-perplexity against
# position for WeightedKV and its eviction ablation (Fig. 4). Reads `ppl.h5` written by
# `kvscope ppl`.

# %%
import collections
import os

import matplotlib.pyplot as plt
import numpy as np

import kvscope_results as kr

args = kr.parse_args("Perplexity against budget per policy; WeightedKV vs its eviction ablation", ["ppl"])
kr.style()
f = kr.open_results(args.ppl, "kvscope.ppl")
caption = (f"{kr.model_name(f)}, protocol {kr.attr(f, 'protocol')}, positions {kr.attr(f, 'positions')}, "
           f"{len(kr.attr(f, 'sources').splitlines())} document(s)")

runs = [f["runs"][k] for k in sorted(f["runs"].keys(), key=int)]
pooled = collections.OrderedDict()  # (policy, weighting) -> budget -> list of nll arrays
for r in runs:
    key = (kr.attr(r, "policy"), kr.attr(r, "weighting"))
    pooled.setdefault(key, collections.OrderedDict()).setdefault(int(r.attrs["budget"]), []).append(r["nll"][:])


def ppl_ci(nll):
    nll = np.asarray(nll)
    mean, se = nll.mean(), nll.std(ddof=1) / np.sqrt(len(nll))
    return np.exp(mean), np.exp(mean - 1.96 * se), np.exp(mean + 1.96 * se)


# %% Perplexity against budget, one line per policy, 95% intervals.
MARKERS = "osD^v<>pPX*h"
fig, ax = plt.subplots(figsize=(6.4, 4.0))
full = None
curves = [k for k in pooled if k[0] != "full"]
for i, ((policy, weighting), by_budget) in enumerate(pooled.items()):
    if policy == "full":
        full = ppl_ci(np.concatenate(next(iter(by_budget.values()))))
        continue
    budgets = sorted(by_budget)
    stats = [ppl_ci(np.concatenate(by_budget[b])) for b in budgets]
    y = np.array([s[0] for s in stats])
    err = np.array([[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]])
    label = policy + (f" ({weighting})" if weighting and weighting != "avg-attention" else "")
    style = "-" if policy == "weightedkv" else "--"
    j = curves.index((policy, weighting))
    # A small horizontal offset per curve keeps the intervals apart on the log axis.
    offset = 2 ** (0.06 * (j - (len(curves) - 1) / 2))
    ax.errorbar(np.array(budgets) * offset, y, yerr=err, marker=MARKERS[j % len(MARKERS)], capsize=2, linestyle=style,
                color=kr.PALETTE[j % len(kr.PALETTE)], label=label, markersize=4, linewidth=1.2)
if full:
    ax.axhline(full[0], color="black", linewidth=1, label="full cache")
ax.set_xscale("log", base=2)
ax.set_xlabel("cache budget (tokens)")
ax.set_ylabel("perplexity")
ax.set_title(f"Perplexity against cache budget (95% CI)\n{caption}")
ax.legend(fontsize=8, ncol=2)
kr.save(fig, args.out, "ppl_vs_budget")

# %% Perplexity difference from the full cache against budget, with paired bootstrap 95%
# intervals (methods §5.1): every run scores the same tokens as the full cache, so the
# variation they share cancels and differences the unpaired intervals above hide show.
rows = [f["summary"][k] for k in sorted(f["summary"].keys(), key=int)] if "summary" in f else []
paired = collections.OrderedDict()  # (policy, weighting) -> [(budget, delta, low, high)]
for r in rows:
    if "paired_delta_ppl" in r.attrs:
        paired.setdefault((kr.attr(r, "policy"), kr.attr(r, "weighting")), []).append(
            (int(r.attrs["budget"]), r.attrs["paired_delta_ppl"], r.attrs["paired_ci_low"], r.attrs["paired_ci_high"]))
fig, ax = plt.subplots(figsize=(6.4, 4.0))
for j, ((policy, weighting), points) in enumerate(paired.items()):
    points.sort()
    b = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points])
    err = np.array([[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]])
    label = policy + (f" ({weighting})" if weighting and weighting != "avg-attention" else "")
    offset = 2 ** (0.06 * (j - (len(paired) - 1) / 2))
    ax.errorbar(b * offset, y, yerr=err, marker=MARKERS[j % len(MARKERS)], capsize=2,
                linestyle="-" if policy == "weightedkv" else "--", color=kr.PALETTE[j % len(kr.PALETTE)], label=label,
                markersize=4, linewidth=1.2)
ax.axhline(0, color="black", linewidth=1)
ax.set_xscale("log", base=2)
ax.set_xlabel("cache budget (tokens)")
ax.set_ylabel("PPL - PPL(full cache)")
blocks = int(kr.attr(f, "bootstrap-block", 1) or 1)
ax.set_title(f"Perplexity cost of each policy (paired bootstrap 95% CI, {kr.attr(f, 'bootstrap')} resamples, "
             f"blocks of {blocks})\n{caption}")
if paired:
    ax.legend(fontsize=8, ncol=2)
else:
    ax.text(0.5, 0.5, "no full-cache run in this sweep: nothing to pair with", transform=ax.transAxes, ha="center")
kr.save(fig, args.out, "ppl_delta_vs_budget")

# %% Log perplexity against position: WeightedKV against its eviction ablation, smallest budget.
fig, ax = plt.subplots(figsize=(6.0, 3.6))
budgets = sorted({int(r.attrs["budget"]) for r in runs if kr.attr(r, "policy") == "weightedkv"})
if budgets:
    b = budgets[0]
    for policy, label in [("weightedkv", "WeightedKV (merge)"), ("weightedkv-evict", "eviction ablation"), ("full", "full cache")]:
        chosen = [r for r in runs if kr.attr(r, "policy") == policy and (policy == "full" or int(r.attrs["budget"]) == b)
                  and kr.attr(r, "weighting") in ("", "avg-attention") and int(r.attrs["document"]) == 0]
        if not chosen:
            continue
        r = chosen[0]
        nll, pos = r["nll"][:], r["token_index"][:]
        ax.plot(pos, np.cumsum(nll) / np.arange(1, len(nll) + 1), label=label)
    ax.set_title(f"Log average perplexity against position, budget {b}, document 0\n{caption}")
ax.set_xlabel("position (tokens)")
ax.set_ylabel("cumulative mean NLL (nats)")
ax.legend()
kr.save(fig, args.out, "ppl_vs_position")

# %% The Table I-style table as Markdown.
policy_budgets = sorted({b for (p, _), by in pooled.items() if p != "full" for b in by})
lines = ["| method | " + " | ".join(str(b) for b in policy_budgets) + " |", "|---|" + "---|" * len(policy_budgets)]
for (policy, weighting), by_budget in pooled.items():
    name = policy + (f" ({weighting})" if weighting else "")
    if policy == "full":
        p = ppl_ci(np.concatenate(next(iter(by_budget.values()))))[0]
        lines.append(f"| {name} | " + " | ".join(f"{p:.2f}" for _ in policy_budgets) + " |")
        continue
    cells = [f"{ppl_ci(np.concatenate(by_budget[b]))[0]:.2f}" if b in by_budget else "–" for b in policy_budgets]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
table = f"Perplexity (lower is better). {caption}.\n\n" + "\n".join(lines) + "\n"
with open(os.path.join(args.out, "ppl_table.md"), "w") as out:
    out.write(table)
print(table)
