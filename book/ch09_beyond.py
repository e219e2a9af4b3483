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
# # 9. Beyond the paper: diffusion steps, ablations, trajectory
#
# The paper ends with checks it did not run and questions it left open. Three of them are cheap on
# the zoo, so we run them:
#
# 1. **Diffusion steps.** The paper attributes the MDM at one point of its denoising. Is the
#    circuit the same when part of the answer is already committed? (The paper reports more than
#    90% component overlap across steps.)
# 2. **Early-layer ablation.** If the MDM front-loads Countdown, ablating its most important
#    early components should hurt more than ablating as many random ones, and more than the same
#    ablation hurts the ARM.
# 3. **Trajectory.** Does rewiring happen early and abruptly in post-training, or gradually? The
#    zoo keeps the seed-0 MDM at several post-training steps.
#
# By the end of this chapter you will be able to:
#
# - attribute an MDM at diffusion step $k$, each canvas holding the tokens the model itself
#   commits for its prompt;
# - run a targeted ablation against a random control;
# - follow a circuit statistic along post-training checkpoints, next to accuracy.

# %% tags=["skip-execution", "remove-cell"]
# Colab / fresh environments: install the companion package pinned to this book release.
import sys
if "google.colab" in sys.modules:
    %pip install -q "mechshift-lite @ git+https://github.com/mechshift-lite/mechshift-lite@v0.1.0"

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown

import mechshift_lite as ml
from mechshift_lite import ablation, plots, viz, zoo
from mechshift_lite.teaching import checks
from mechshift_lite.experiment import analyses, task_pairs
from mechshift_lite.experiment.verdicts import fmt, versus
from mechshift_lite.viz import MDM_COLOR

result = ml.report(progress=False)
TASK_NAMES = {"ioi": "IOI", "countdown": "Countdown"}
tok = zoo.tokenizer()

# %% [markdown]
# ## 1. Circuits across diffusion steps
#
# At step $k$ the MDM's canvas holds the first $k$ tokens its own confidence decoding committed
# (one per step, the most confident first), and the rest stays masked. Two details make the
# comparison across steps fair:
#
# - the corrupted canvas keeps *the same positions masked*, but holds the tokens the model commits
#   when it decodes the corrupted prompt: each canvas is one the model would really reach, and the
#   corrupted one never holds tokens that give the clean target away;
# - the first answer slot, whose prediction the metric reads, is never committed: decoding goes on
#   around it, so every step explains the same decision.
#
# The report decodes its canvases with a float64 copy of each MDM (`pools.for_decisions`). The
# padding slots are predicted with probabilities so close to 1 that float32 cannot order their
# confidences: `log_softmax` subtracts two nearly equal numbers, and its rounding (about
# $10^{-6}$ at logits of size 10) is larger than the differences between them. Which pad is
# committed first then depends on the CPU's float32 kernels, and two machines gave two reports
# from the same zoo; in float64 they give one.
#
# Confidence decoding commits the easiest slots first, and on our canvases those are the padding
# slots at the end. Steps 4 to 24 therefore go from "a few pads known" to "almost the whole canvas
# known"; on Countdown the late steps reveal most of the equation around the masked first token.
# Here is one Countdown canvas at several steps:

# %%
mdm = zoo.load("mdm", seed=0)
cd_pairs = task_pairs("countdown", tok, n=4, seed=0)
show = lambda ids: tok.decode(ids.tolist()).replace("[MASK]", "_")   # _ = [MASK]
for k in [0] + result["tasks"]["countdown"]["diffusion_steps"]["steps"]:
    inputs = ml.ModelInputs.from_pairs(mdm, cd_pairs, tok, step=k, corrupted_commits="own")
    print(f"step {k:2d} clean    : {show(inputs.clean_ids[0])}")
print(f"step {k:2d} corrupted: {show(inputs.corrupted_ids[0])}")

# %%
plots.diffusion_steps(result);

# %% [markdown]
# A fixed step is not the same moment for every example: problems commit their first answer
# token at different steps (the mean and median are in the commits table below). The last row of
# each task puts every example at *its own*
# moment of decision, one step before its free decoding commits the explained slot
# (`ModelInputs.before_commit`).

# %%
def steps_rows(task):
    d, when = result["tasks"][task]["diffusion_steps"], result["tasks"][task]["diffusion_commits"]["explained_commit_step"]
    rows = [(str(k), c, e) for k, c, e in zip(d["steps"], d["component_overlap"], d["edge_overlap"])]
    rows.append((f"just before its own commit (mean {when['mean']:.1f})", d["before_commit"]["component_overlap"], d["before_commit"]["edge_overlap"]))
    return [f"| {TASK_NAMES[task]} | {k} | {fmt(c)} | {fmt(e)} |" for k, c, e in rows]


Markdown("| task | step | top-K component overlap with step 0 | edge Jaccard with step 0 |\n|---|---|---|---|\n"
         + "\n".join(row for task in TASK_NAMES for row in steps_rows(task)))

# %% [markdown]
# Why not simply copy the clean run's commits into the corrupted canvas? It would keep the two
# canvases alike, but it is not a state the model reaches from the corrupted prompt, and on
# Countdown the copied tokens (the equation that ends at the clean target) give the clean answer
# away. The report measures what the canvases hold (`experiment.analyses.commit_analysis`): the
# share of committed answer slots that are `[PAD]`, and the metric (logit difference, answer -
# distractor) on the clean canvas, on the corrupted canvas with the model's own commits (the one
# attributed) and on the copied canvas (measured only, never attributed).

# %%
def commits_table(task):
    c = result["tasks"][task]["diffusion_commits"]
    return "\n".join(f"| {TASK_NAMES[task]} | {k} | {pad:.0%} | {clean:.2f} | {mine:.2f} | {copied:.2f} |"
                     for k, pad, clean, copied, mine in zip(c["steps"], c["pad_share"], c["metric_clean"],
                                                            c["metric_corrupted_clean"], c["metric_corrupted_own"]))


Markdown("| task | step | committed slots that are `[PAD]` | metric, clean | "
         "metric, corrupted with its own commits | metric, corrupted with the clean commits copied |\n|---|---|---|---|---|---|\n"
         + "\n".join(commits_table(task) for task in TASK_NAMES) + "\n\n"
         + " ".join(f"In free confidence decoding the {TASK_NAMES[task]} MDM commits the explained (first answer) slot at step "
                    f"{c['explained_commit_step']['mean']:.1f} on average (median {c['explained_commit_step']['median']:.0f})."
                    for task in TASK_NAMES for c in [result["tasks"][task]["diffusion_commits"]]))

# %% [markdown]
# Read the step axis with the `[PAD]` column: the early steps mostly reveal padding, so "step 4"
# is hardly a different diffusion state. And a step later than the one at which the model would
# commit the explained slot asks about a canvas its own decoding never shows with that slot masked.

# %% [markdown]
# ## 2. Ablating the early components

# %%
Markdown(f"For each model we take its {analyses.N_ABLATE} highest-scoring components (chapter 6's component score) in "
         f"the first {result['tasks']['ioi']['ablation']['early_cutoff']} layer(s) and replace each one's output, at every position, by its "
         "mean *at that position* over the pool (**position-mean ablation**), then measure the drop in accuracy on the "
         "common-correct pool. The replacement is of the same kind for the ARM, the MDM and the control: a mean over "
         "all positions would, for the MDM, be mostly a mean over `[MASK]` slots. The random control ablates as many "
         f"components drawn from the **same layers** ({analyses.N_RANDOM_DRAWS} draws per seed, "
         "`ablation.layer_matched_random`), so a targeted drop above it says the attribution found the early "
         "components the model needs, not just that early layers matter. The **excess** is the targeted drop minus "
         "the matched one, per example; MDM - ARM and ARMc - ARM are paired on the same examples.")

# %%
plots.ablation(result);

# %%
def ablation_rows(task):
    a = result["tasks"][task]["ablation"]
    return "\n".join(f"| {TASK_NAMES[task]} | {label} | {', '.join(a[f'components_{kind}'])} | {fmt(a[f'drop_targeted_{key}'])} | "
                     f"{fmt(a[f'drop_matched_{key}'])} | {fmt(a[f'excess_{key}'])} |"
                     for kind, key, label in (("arm", "arm", "ARM"), ("mdm", "mdm", "MDM"), ("arm-continued", "armc", "ARMc")))


Markdown("| task | model | ablated (seed 0) | drop, targeted | drop, layer-matched random | excess |\n|---|---|---|---|---|---|\n"
         + "\n".join(ablation_rows(task) for task in TASK_NAMES) + "\n\n"
         + " ".join(f"{TASK_NAMES[task]}: excess MDM - ARM {fmt(result['tasks'][task]['ablation']['excess_mdm_minus_arm'])}, "
                    f"ARMc - ARM {fmt(result['tasks'][task]['ablation']['excess_armc_minus_arm'])}." for task in TASK_NAMES))

# %% [markdown]
# The same operation by hand, for one model: `ablation.mean_outputs(..., per_position=True)` takes
# each node's mean output at each position, and `ablation.ablated_logits` runs the model with the
# chosen nodes' outputs replaced by them.

# %%
ioi_pairs = task_pairs("ioi", tok, n=64, seed=1)
inputs = ml.ModelInputs.from_pairs(mdm, ioi_pairs, tok)
means = ablation.mean_outputs(mdm, inputs, mdm.graph.src_names[1:], per_position=True)
targeted = result["tasks"]["ioi"]["ablation"]["components_mdm"]
for nodes in ([], targeted, ablation.layer_matched_random(mdm.graph, targeted, seed=0)):
    logits = ablation.ablated_logits(mdm, inputs, nodes, "position-mean", means=means)
    accuracy = inputs.answer_is_top(logits).double().mean()
    print(f"MDM on 64 IOI pairs, ablating {nodes or 'nothing'}: accuracy {accuracy:.2f}")

# %% [markdown]
# **1. A fair random control.** *(difficulty ★★☆, importance ★★☆, about 15 minutes)*
# Write `layer_matched(graph, targeted, seed) -> list[str]`, the control the report uses: for each
# layer, draw as many of that layer's components (heads `a{l}.h{h}` and the MLP `m{l}`) as
# `targeted` has in it, distinct and uniformly at random, the same draw for the same seed. The
# targeted components themselves may be drawn: the control is "any components of these layers".
# Why per layer? Early layers matter more to every model (chapter 6), so a control drawn from all
# layers would mostly ablate late components, and any early ablation would beat it.
#
# ```{dropdown} Hint 1
# `ablation.layer_of(name)` gives a component's layer (`"a2.h1"` -> 2, `"m0"` -> 0); count the
# targeted components per layer with `collections.Counter`.
# ```
#
# ```{dropdown} Hint 2
# One `random.Random(seed)` for the whole draw; `rng.sample(candidates, k)` draws `k` distinct
# items. Go through the layers in a fixed order, so the same seed gives the same draw.
# ```

# %% tags=["hide-input", "solution"]
def layer_matched(graph, targeted, seed):
    import random
    from collections import Counter

    rng = random.Random(seed)
    per_layer = Counter(ablation.layer_of(name) for name in targeted)
    return [name for layer in sorted(per_layer)
            for name in rng.sample([n for n in graph.src_names[1:] if ablation.layer_of(n) == layer], per_layer[layer])]


# %%
checks.layer_matched_control(layer_matched)
assert layer_matched(mdm.graph, targeted, seed=0) == ablation.layer_matched_random(mdm.graph, targeted, seed=0)

# %% [markdown]
# ## 3. Rewiring along post-training
#
# The zoo keeps snapshots of the seed-0 MDM along its post-training (listed below); step 0 is the
# ARM's own weights read as an MDM (bidirectional attention, masked canvas). We attribute each
# checkpoint on the same pool and compare it with the ARM it started from; the dashed line is the
# ARM-continued control after the full run. The accuracy of each checkpoint (from the zoo's
# manifest) is shown beside it.

# %%
seed0_mdm = sorted(e["step"] for e in zoo.manifest()["checkpoints"].values() if e["kind"] == "mdm" and e["seed"] == 0)
print(f"seed 0's MDM at post-training steps {', '.join(map(str, seed0_mdm[:-1]))} and {seed0_mdm[-1]} (the final model)")
plots.trajectory(result);

# %%
snapshots = sorted((e for e in zoo.manifest()["checkpoints"].values() if e["kind"] == "mdm" and e["seed"] == 0),
                   key=lambda e: e["step"])
steps = [e["step"] for e in snapshots]
fig, ax = plt.subplots(figsize=(6, 3))
for key, label, style in (("ioi_accuracy", "IOI", "-"), ("countdown3_accuracy", "Countdown", "--")):
    ax.plot(steps, [e["accuracy"][key] for e in snapshots], style, marker="o", color=MDM_COLOR, label=label)
ax.set_xlabel("post-training step")
ax.set_ylabel("accuracy (held-out test set)")
ax.set_ylim(0, 1.05)
ax.legend(fontsize=8)
ax.set_title("The seed-0 MDM along post-training", fontsize=9)
fig.tight_layout()

# %% [markdown]
# ## What to take from this chapter
#
# The three checks, in numbers (mean [95% CI]; "above"/"below" only when the intervals do not
# overlap):

# %%
t = result["tasks"]
fmt = lambda s: f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]"
steps = {task: t[task]["diffusion_steps"] for task in TASK_NAMES}
drops = {task: t[task]["ablation"] for task in TASK_NAMES}
paths = {task: t[task]["trajectory"] for task in TASK_NAMES}
last = steps["countdown"]["steps"][-1]
Markdown("\n".join([
    f"- **Diffusion steps.** With {last} tokens committed, the MDM's top-K components overlap those of step 0 by "
    f"{fmt(steps['countdown']['component_overlap'][-1])} on Countdown and {fmt(steps['ioi']['component_overlap'][-1])} on IOI; "
    f"its top-N edges by {fmt(steps['countdown']['edge_overlap'][-1])} and {fmt(steps['ioi']['edge_overlap'][-1])}. "
    f"Just before each example commits its first answer token: {fmt(steps['countdown']['before_commit']['component_overlap'])} "
    f"and {fmt(steps['ioi']['before_commit']['component_overlap'])} (components), "
    f"{fmt(steps['countdown']['before_commit']['edge_overlap'])} and {fmt(steps['ioi']['before_commit']['edge_overlap'])} (edges).",
    *(f"- **Early-layer ablation, {TASK_NAMES[task]}.** The MDM loses {fmt(a['drop_targeted_mdm'])} of its accuracy, "
      f"{versus(a['drop_targeted_mdm'], a['drop_targeted_arm'])} the ARM's loss {fmt(a['drop_targeted_arm'])}; "
      f"layer-matched random components cost the MDM {fmt(a['drop_matched_mdm'])}. Excess over the matched control, "
      f"MDM - ARM: {fmt(a['excess_mdm_minus_arm'])} (ARMc - ARM: {fmt(a['excess_armc_minus_arm'])})." for task, a in drops.items()),
    *(f"- **Trajectory, {TASK_NAMES[task]}.** The ARM-MDM edge Jaccard is {fmt(p['edge_arm_mdm'][0])} at step {p['steps'][0]}, "
      f"{fmt(p['edge_arm_mdm'][1])} at step {p['steps'][1]} and {fmt(p['edge_arm_mdm'][-1])} at the end "
      f"(ARM vs ARM-continued: {fmt(p['edge_arm_armc'])})." for task, p in paths.items()),
]))

# %%
Markdown(f"These are single figures on a toy, with intervals over {len(result['seeds'])} seeds (over examples only "
         "for the trajectory, which follows one seed).")

# %% [markdown]
# They show what the paper's claims would need to survive: a
# circuit that is stable while the MDM denoises, early components whose ablation is specifically
# harmful, and a rewiring whose timing can be located in post-training. Note that step 0 of the
# trajectory is the ARM's weights read *as an MDM*: bidirectional attention on a masked canvas the
# ARM never saw, so its low overlap with the ARM says more about the change of input than about
# training. The same code runs on real checkpoints (chapter 10).
#
# ## Exercises
#
# **2. (Open.) How many components?** *(difficulty ★★☆, importance ★★☆, about 30 minutes)*
# The report ablates a fixed number of early components against layer-matched random ones. Redo
# the position-mean comparison for 1 to 6 components. Does the excess of the MDM grow faster or
# slower than the ARM's, and what would each say about a "distributed" early computation?
#
# **3. (Open.) Free canvases.** *(difficulty ★★★, importance ★★☆, about 45 minutes)*
# Attribute the MDM at diffusion step $k$ *without* sharing the committed tokens
# between clean and corrupted canvases (let each canvas commit its own answer). How do the
# circuits change, and what is the attribution then measuring?

# %%
Markdown(viz.versions_footer())
