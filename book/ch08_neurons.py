# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Neurons: sharp or broad?
#
# The paper's last piece of evidence is a set of neuron activation plots: in early layers the ARM's
# MLP neurons look sharp and token-specific, the MDM's broader. The paper shows plots and defines
# no statistic. Here we look at the same kind of plot on the zoo, and then turn it into two numbers
# per neuron, selectivity and breadth, so that ARM and MDM can be compared over seeds with
# intervals.
#
# By the end of this chapter you will be able to:
#
# - read the hidden activations of an MLP on task prompts;
# - group positions into token categories and compute a neuron's category profile;
# - compute selectivity (which categories a neuron fires for) and breadth (how often it fires);
# - compare the ARM's and the MDM's early-layer neurons with the report's statistics, neuron by
#   neuron against the ARM-continued control.

# %% tags=["skip-execution", "remove-cell"]
# Colab / fresh environments: install the companion package pinned to this book release.
import sys
if "google.colab" in sys.modules:
    %pip install -q "mechshift-lite @ git+https://github.com/mechshift-lite/mechshift-lite@v0.1.0"

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown

import mechshift_lite as ml
from mechshift_lite import neurons, plots, viz, zoo
from mechshift_lite.teaching import checks
from mechshift_lite.experiment import task_pairs
from mechshift_lite.experiment.analyses import CATEGORIES, pooled_neuron_activations
from mechshift_lite.experiment.verdicts import fmt, shift_holds, versus
from mechshift_lite.viz import ARM_COLOR, MDM_COLOR

# %% [markdown]
# ## Activations on one prompt
#
# `neurons.activations` returns the hidden units of one MLP, `act(x W_in + b_in)`, at every
# position: `[batch, pos, d_mlp]`. We read layer 0 (the first of our four layers) on one
# Countdown prompt, for the ARM and the MDM of seed 0. The MDM reads the prompt followed by the
# masked answer canvas; we show the prompt positions, which both models see.

# %%
tok = zoo.tokenizer()
models = {"ARM": zoo.load("arm", seed=0), "MDM": zoo.load("mdm", seed=0)}
N_PROMPTS = 32   # prompts of each task
pairs = {task: task_pairs(task, tok, n=N_PROMPTS, seed=0) for task in ("ioi", "countdown")}
LAYER = 0

acts = {}
for name, model in models.items():
    acts[name] = neurons.activations(model, ml.ModelInputs.from_pairs(model, pairs["countdown"], tok), LAYER)

prompt_len = int(pairs["countdown"].readout_pos[0]) + 1
tokens = [tok.tokens[t] for t in pairs["countdown"].clean_ids[0, :prompt_len].tolist()]
top = neurons.top_neurons(acts["ARM"][:, :prompt_len], 24)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
for ax, name in zip(axes, models):
    image = ax.imshow(acts[name][0, :prompt_len, top].T.numpy(), aspect="auto", cmap="RdBu_r", vmin=-2, vmax=2)
    ax.set_xticks(range(prompt_len), tokens, rotation=90, fontsize=7)
    ax.set_title(name, color=ARM_COLOR if name == "ARM" else MDM_COLOR)
axes[0].set_ylabel("neuron (the ARM's 24 most variable)")
axes[0].set_yticks(range(len(top)), top.tolist(), fontsize=6)
fig.colorbar(image, ax=axes, label="activation")
fig.suptitle(f"MLP {LAYER} on one Countdown prompt: the same neurons in the ARM and its MDM", fontsize=10);

# %% [markdown]
# The MDM starts from the ARM's weights, so its neuron $i$ is the ARM's neuron $i$ after
# post-training: the two panels show how each neuron changed. In Jupyter or Colab, the explorer
# below moves through the layers and the prompts (the page does not run it).

# %% tags=["skip-execution"]
from mechshift_lite.teaching import explorers

explorers.neuron_explorer(models, pairs["countdown"], tok)

# %% [markdown]
# ## From plots to numbers
#
# A plot of a few neurons on one prompt invites over-reading. We summarise every neuron of the
# layer over the positions of the `N_PROMPTS` prompts of *each* task together, so that all four token
# categories occur (a Countdown prompt alone has only digits and punctuation, and every neuron
# would look "selective").
#
# ```{admonition} Definitions (quoted from `mechshift_lite.neurons`)
# :class: note
# - **Token categories**: digit, operator or punctuation, name, other word (special tokens such as
#   `[BOS]` and `[MASK]` are left out).
# - **Category profile** of a neuron: its mean activation over the positions of each category.
# - **Selectivity**, in $[0, 1]$: $1 - H(p)/\log C$, where $p$ is the positive part of the profile
#   normalised to sum to 1 and $C$ the number of categories. 1 = fires for one category only;
#   0 = equally for all. Neurons that never fire positively are left out (NaN).
# - **Breadth**, in $[0, 1]$: the fraction of real positions where the neuron exceeds half of its
#   maximum over the dataset. Low = fires on few tokens.
# ```
#
# **1. Selectivity.** *(difficulty ★★☆, importance ★★★, about 15 minutes)*
# Write `selectivity(profile) -> Tensor`: `profile` is `[categories, neurons]`;
# keep its positive part, normalise each neuron's column to sum to 1, and return
# $1 - H(p) / \log C$ per neuron, with NaN for neurons whose positive part is all zero.
#
# ```{dropdown} Hint
# `profile.clamp(min=0)` keeps the positive part; divide by its column sums. Use $0 \log 0 = 0$
# (clamp $p$ away from zero inside the log only) and `torch.where` to put NaN where a column sums to 0.
# ```

# %% tags=["hide-input", "solution"]
def selectivity(profile):
    import math

    positive = profile.clamp(min=0)
    total = positive.sum(0)
    p = positive / total
    entropy = -(p * p.clamp(min=1e-12).log()).sum(0)
    out = 1 - entropy / math.log(profile.shape[0])
    return torch.where(total > 0, out, torch.full_like(out, float("nan")))


# %%
checks.selectivity(selectivity)

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name, model in models.items():
    acts, categories = pooled_neuron_activations(model, list(pairs.values()), tok, LAYER)
    sel = neurons.selectivity(neurons.category_profile(acts, categories, len(CATEGORIES)))
    brd = neurons.breadth(acts, (categories >= 0).long())
    color = ARM_COLOR if name == "ARM" else MDM_COLOR
    axes[0].hist(sel[~sel.isnan()].numpy(), bins=20, range=(0, 1), alpha=0.6, color=color, label=name)
    axes[1].hist(brd.numpy(), bins=20, range=(0, 1), alpha=0.6, color=color, label=name)
    print(f"{name}: median selectivity {sel.nanmedian():.3f}, median breadth {brd.median():.3f}")
axes[0].set_xlabel("selectivity")
axes[1].set_xlabel("breadth")
axes[0].set_ylabel("neurons")
axes[0].legend(fontsize=8)
fig.suptitle(f"MLP {LAYER} neurons on {N_PROMPTS} IOI and {N_PROMPTS} Countdown prompts (seed 0)", fontsize=10)
fig.tight_layout()

# %% [markdown]
# ## Over seeds
#
# The report computes the category profiles on both tasks' common-correct pools together, for
# every seed, and gives the median selectivity and breadth with their intervals. The bootstrap
# resamples the seeds, then, within each seed drawn, the layer's *neurons*: one row per neuron (its
# selectivity or its breadth), whose median is taken. The prompts are not resampled: every replicate
# uses the profiles computed on the whole pool (`experiment.analyses.neuron_analysis`). So the
# interval says how much the median moves between seeds and between neurons, not between prompt
# sets. The heatmaps show the mean activation per category of the 16 most variable
# neurons of seed 0.

# %%
result = ml.report(progress=False)
plots.neuron_heatmaps(result);

# %%
n = result["neurons"]
Markdown("| statistic (MLP %d) | ARM | MDM |\n|---|---|---|\n" % n["layer"] + "\n".join(
    f"| median {key} | " + " | ".join(f"{n[f'{key}_{kind}']['mean']:.3f} [{n[f'{key}_{kind}']['lo']:.3f}, {n[f'{key}_{kind}']['hi']:.3f}]"
                                      for kind in ("arm", "mdm")) + " |"
    for key in ("selectivity", "breadth")))

# %%
Markdown(f"Here the MDM's median selectivity is **{versus(n['selectivity_mdm'], n['selectivity_arm'])}** the ARM's, "
         f"and its median breadth **{versus(n['breadth_mdm'], n['breadth_arm'])}** the ARM's "
         "(\"above\" or \"below\" only when the 95% intervals do not overlap).")

# %%
Markdown("The paper's picture predicts a lower selectivity and a higher breadth for the MDM. Whether the "
         f"intervals separate tells us whether {len(result['seeds'])} seeds are enough to see it. Note that these "
         "statistics mix the two tasks' prompts: a neuron that fires on every digit is \"selective\" by category "
         "even if it is broad within Countdown.")

# %% [markdown]
# ## Neuron by neuron, paired
#
# Two medians of different populations compare the layers as wholes. But the MDM is post-trained
# *from* the ARM, so neuron $i$ of the MDM started as neuron $i$ of the ARM: we can take, for every
# neuron, the difference MDM - ARM of its selectivity and of its breadth on the same positions,
# and report the mean difference (`neurons.paired_mean_differences`; a mean, not a median, for a
# reason the numbers below show). The ARM-continued control gets the
# same treatment (ARMc - ARM). Besides all neurons, the report takes the most active ones, chosen
# *symmetrically* (`neurons.symmetric_top_neurons`: the largest mean of the two models' activation
# variances), so that the choice favours neither model. Here the bootstrap resamples the seeds,
# then, within each seed drawn, the *examples* (each prompt with all its positions), and recomputes
# the profiles on the resampled prompts: the interval is over seeds and examples.

# %%
def paired_row(label, key):
    return f"| {label} | " + " | ".join(fmt(n[f"paired_{key}_{other}_minus_arm{suffix}"])
                                         for suffix in ("", "_top") for other in ("mdm", "armc")) + " |"


Markdown(f"| mean per-neuron difference (MLP {n['layer']}) | MDM - ARM, all | ARMc - ARM, all | "
         f"MDM - ARM, top {n['n_top_neurons']} | ARMc - ARM, top {n['n_top_neurons']} |\n|---|---|---|---|---|\n"
         + paired_row("selectivity", "selectivity") + "\n" + paired_row("breadth", "breadth"))

# %%
Markdown(f"Why a mean: {n['tied_selectivity_armc']:.0%} of the layer's neurons have *exactly* the ARM's selectivity "
         f"in the ARM-continued model, and {n['tied_selectivity_mdm']:.0%} in the MDM (mean over seeds; a neuron "
         "that fires positively for one category only, for example, has selectivity 1 in both). With that many exact ties, "
         "the median of the per-neuron differences can sit on zero whatever the other neurons do; the mean "
         "cannot (`tests/test_neurons.py` checks both on a known answer).")

# %%
def paired_reading(key, sign, suffix=""):
    difference, control = n[f"paired_{key}_mdm_minus_arm{suffix}"], n[f"paired_{key}_armc_minus_arm{suffix}"]
    return "holds" if shift_holds(difference, control, sign) else "does not hold"


Markdown("The paper's picture, read by the rule of chapter 6 (the paired interval excludes zero on the claimed side, "
         "the ARM-continued control's does not): a *lower* selectivity of the MDM "
         f"{paired_reading('selectivity', -1)} over all neurons and {paired_reading('selectivity', -1, '_top')} over the top "
         f"{n['n_top_neurons']}; a *higher* breadth {paired_reading('breadth', +1)} over all neurons and "
         f"{paired_reading('breadth', +1, '_top')} over the top {n['n_top_neurons']}.")

# %% [markdown]
# ## Exercises
#
# **2. (Open.) The last layer.** *(difficulty ★★☆, importance ★★☆, about 20 minutes)*
# Repeat the statistics on the last MLP layer instead of the first. Is the
# difference between ARM and MDM larger early or late, as the paper's "early-layer processing"
# would predict?
#
# **3. (Open.) Finer categories.** *(difficulty ★★★, importance ★☆☆, about 40 minutes)*
# Our categories are coarse. Split "digit" into the numbers of the prompt and the
# target, and find neurons of the MDM that distinguish them. Does the ARM have them too?

# %%
Markdown(viz.versions_footer())
