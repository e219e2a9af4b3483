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
# # 5. Extracting circuits
#
# Chapter 4 gave every edge a score. A **circuit** is a small set of edges that is supposed to
# carry the model's behaviour on a task. This chapter turns scores into circuits the way the
# EAP-IG reference does, and then tests the circuits: run the model with *only* the circuit's
# edges carrying clean information, and see how much of the clean behaviour is left. The paper
# compares the ARM's and the MDM's circuits, so both have to be extracted the same way and
# checked for quality before they are compared (chapters 6 to 9).
#
# By the end of this chapter you will be able to:
#
# - choose edges with `top_n`, `greedy` and `threshold`, and explain why `n` counts the edges
#   *before* pruning;
# - prune a circuit to its fixed point and count what pruning removes;
# - evaluate a circuit by patching every edge outside it, and check that the empty circuit
#   reproduces the corrupted run and the full circuit the clean run;
# - compute faithfulness curves for the ARM and the MDM on IOI and Countdown, and read them;
# - draw a circuit by layer and head.

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
from mechshift_lite import compare, plots, viz, zoo
from mechshift_lite.teaching import checks
from mechshift_lite.experiment import task_pairs

# %% [markdown]
# ## Scores to start from
#
# We load the zoo's ARM and MDM (seed 0) and draw held-out pairs of each task (chapter 2). The
# pairs are split in two halves: circuits are **chosen** on the first half and **evaluated** on
# the second, so that a circuit is never tested on the examples its edges were picked on (a
# circuit fitted to its own examples would look more faithful than it is). Every (model, task)
# combination gets EAP-IG scores ($m = 5$, chapter 4) on the first half. `ml.ModelInputs.from_pairs` gives
# each model its view of the pairs: the prompt with causal attention for the ARM, the masked
# canvas with bidirectional attention for the MDM.

# %%
tok = zoo.tokenizer()
models = {"ARM": zoo.load("arm", seed=0), "MDM": zoo.load("mdm", seed=0)}
pairs = {task: task_pairs(task, tok, n=64, seed=0) for task in ("ioi", "countdown")}
TASK_NAMES = {"ioi": "IOI", "countdown": "Countdown"}
halves = {task: (torch.arange(len(p) // 2), torch.arange(len(p) // 2, len(p))) for task, p in pairs.items()}
for task, (chosen_on, evaluated_on) in halves.items():
    print(f"{TASK_NAMES[task]}: {len(chosen_on)} pairs to choose circuits on, {len(evaluated_on)} held-out pairs to evaluate them on")

views = {(model_name, task): ml.ModelInputs.from_pairs(model, pairs[task], tok)
         for model_name, model in models.items() for task in pairs}
inputs = {key: x.select(halves[key[1]][0]) for key, x in views.items()}    # circuits are chosen here
held_out = {key: x.select(halves[key[1]][1]) for key, x in views.items()}  # and evaluated here

scores = {}
for (model_name, task), x in inputs.items():
    model, metric = models[model_name], x.metric()
    scores[model_name, task] = ml.attribute(model, x, metric, method="EAP-IG-inputs", ig_steps=5)
    with torch.no_grad():
        clean, corrupted = metric(x.run(model, "clean")).mean(), metric(x.run(model, "corrupted")).mean()
    print(f"{model_name} {TASK_NAMES[task]:9s}: metric clean {clean:+.2f}, corrupted {corrupted:+.2f}")

graph = models["ARM"].graph
arm_ioi = scores["ARM", "ioi"]

# %% [markdown]
# ## Three ways to choose edges
#
# - `ml.top_n(scores, n)` keeps the `n` edges with the largest $|\text{score}|$;
# - `ml.threshold(scores, t)` keeps the edges with $|\text{score}| \ge t$;
# - `ml.greedy(scores, n)` grows the circuit backwards from `logits`: it starts with the edges
#   into `logits` as candidates, and repeatedly adds the best candidate. When that candidate's
#   sender is new, the sender's own incoming edges become candidates too.
#
# All three then **prune** the result (next section), so a circuit usually keeps fewer edges than
# it was asked for. With `t` set to the `n`-th largest $|\text{score}|$, `threshold` keeps the same
# edges as `top_n`. Greedy can differ, because it only ever adds edges that connect to what it
# already has.

# %%
magnitudes = arm_ioi.values.abs().sort(descending=True).values
rows = []
for n in (10, 24, 48):
    by_rank, by_value = ml.top_n(arm_ioi, n), ml.threshold(arm_ioi, float(magnitudes[n - 1]))
    grown = ml.greedy(arm_ioi, n)
    rows.append(f"| {n} | {by_rank.n_edges} ({len(by_rank.nodes)}) | {by_value.n_edges} ({len(by_value.nodes)}) "
                f"| {grown.n_edges} ({len(grown.nodes)}) | {compare.jaccard(by_rank.edges, grown.edges):.2f} |")
Markdown("\n".join(["ARM, IOI. Edges kept after pruning (nodes in brackets):", "",
                    "| n asked | top_n | threshold at the n-th score | greedy | Jaccard(top_n, greedy) |",
                    "|---|---|---|---|---|", *rows]))

# %% [markdown]
# ## Pruning
#
# An edge only matters if information can flow through it from the input to the logits. `prune`
# repeats two steps until nothing changes: a node stays only if it has an edge in and an edge out
# (`input` needs no edge in, `logits` always stays, and a head's edges in are those into its
# `<q>`, `<k>` and `<v>`); then every edge between nodes that left is removed. One removal can
# cause the next, which is why it runs to a fixed point.
#
# **1. Prune to a fixed point.** *(difficulty ★★☆, importance ★★☆, about 15 minutes)*
#
# Write `prune_edges(edges) -> set` for a set of edge names such as `"a0.h1->a1.h0<k>"`,
# `"m0->logits"`, `"input->m1"`, returning the set of edges that survive. A node (`input`,
# `a{l}.h{h}`, `m{l}`) stays only if it has an edge in and an edge out, where `input` needs no
# edge in, `logits` always stays, and an edge into `a1.h0<q>`, `<k>` or `<v>` is an edge into the
# node `a1.h0`. Drop the edges whose sender or receiver left, and repeat until nothing changes.
#
# ```{dropdown} Hint 1
# `edge.split("->")` gives sender and receiver; `receiver.split("<")[0]` turns `a1.h0<k>` into
# the node `a1.h0`.
# ```
#
# ```{dropdown} Hint 2
# Loop: compute the set of nodes that stay, keep the edges between them, and stop when a pass
# keeps every edge. One pass is not enough: removing one dead end can create another.
# ```

# %% tags=["hide-input", "solution"]
def prune_edges(edges):
    """The edges of ``edges`` that lie between nodes with an edge in and an edge out, at the fixed point."""
    edges = set(edges)
    while True:
        senders = {edge.split("->")[0] for edge in edges}
        fed = {edge.split("->")[1].split("<")[0] for edge in edges}
        alive = {node for node in senders if node in fed or node == "input"} | {"logits"}
        kept = {edge for edge in edges if edge.split("->")[0] in alive and edge.split("->")[1].split("<")[0] in alive}
        if kept == edges:
            return kept
        edges = kept


# %%
checks.prune_edges(prune_edges)

# %% [markdown]
# `ml.prune` does the same on a `Circuit`. Here are the ARM's ten best IOI edges before pruning,
# and what each of the two prunings keeps:

# %%
top10 = compare.top_edges(arm_ioi, 10)
unpruned = ml.Circuit.from_edges(graph, top10)
pruned = ml.prune(unpruned)
assert prune_edges(top10) == pruned.edges
for edge in sorted(top10, key=lambda e: -abs(arm_ioi.edge(e))):
    print(f"{edge:16s} score {arm_ioi.edge(edge):+7.3f}   {'kept' if edge in pruned.edges else 'pruned'}")
print(f"\nbefore pruning: {unpruned.n_edges} edges, nodes {sorted(unpruned.nodes)}")
print(f"after pruning:  {pruned.n_edges} edges, nodes {sorted(pruned.nodes)}")

# %% [markdown]
# Every pruned edge has a sender without an edge in among the ten, or a receiver without an
# edge out: it lies on no path from `input` to `logits` that the list contains. Pruning never looks
# at the scores. How many edges survive pruning, as a function of the number asked for?

# %%
asked = list(range(1, 61))
fig, ax = plt.subplots(figsize=(6, 3.5))
for (model_name, task), color, style in ((("ARM", "ioi"), viz.ARM_COLOR, "-"), (("MDM", "ioi"), viz.MDM_COLOR, "-"),
                                        (("ARM", "countdown"), viz.ARM_COLOR, "--"), (("MDM", "countdown"), viz.MDM_COLOR, "--")):
    kept = [ml.top_n(scores[model_name, task], n).n_edges for n in asked]
    ax.plot(asked, kept, style, color=color, label=f"{model_name}, {TASK_NAMES[task]}")
ax.plot(asked, asked, ":", color="grey", label="kept = asked")
ax.set_xlabel("n: edges asked for (top_n, before pruning)")
ax.set_ylabel("edges kept after pruning")
ax.set_title("Pruning removes edges that connect nothing")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Evaluating a circuit
#
# `ml.evaluate` runs the clean input, and every edge **outside** the circuit carries its sender's
# output from the corrupted run (the patching rule of chapter 4, applied to all absent edges at
# once). It returns one metric value per example. From here on, every evaluation uses the
# held-out half of the pairs. Two sanity checks follow from this rule: with
# no edge in the circuit, every destination gets corrupted inputs, so we get the corrupted run;
# with every edge in it, we get the clean run.

# %% [markdown]
# **2. Evaluate a circuit by hand.** *(difficulty ★★★, importance ★★☆, about 30 minutes)*
#
# Write `evaluate_by_hand(model, inputs, metric, circuit_edges) -> Tensor [N]` with the rule
# above, from `run_with_nodes` alone (chapter 4's `patch_edge` did it for one edge).
# `circuit_edges` is a set of edge names; every other edge of `model.graph.edge_names` is absent.
# A destination's input is the residual stream it reads: in a run where the destinations before
# it are already patched, add to it, for each absent edge `u->v` into it, `u`'s corrupted output
# minus `u`'s output *in that run*. Patch the destinations in forward order, one group at a
# time: the head inputs of layer 0 (they read the same stream), then MLP 0 (it also reads layer
# 0's heads), then layer 1, and so on, `logits` last; return the metric of the run with every
# destination patched.
#
# ```{dropdown} Hint 1
# `model.graph.dst_names` lists the destinations in forward order; `dst.split(".")[0]` names its
# group (`"a0"` for `a0.h1<q>`, `"m0"`, ..., `"logits"`). One run per group:
# `run = inputs.run_with_nodes(model, "clean", overrides=overrides)`, then add the group's
# destinations to `overrides`.
# ```
#
# ```{dropdown} Hint 2
# Why not one clean run for every destination? Once the heads of layer 0 are patched, their
# outputs change, and a later destination's clean input no longer holds them: subtract the
# outputs of the run that has the earlier patches.
# ```

# %% tags=["hide-input", "solution"]
def evaluate_by_hand(model, inputs, metric, circuit_edges):
    """[N] metric values when every edge outside ``circuit_edges`` carries its sender's corrupted output."""
    graph = model.graph
    corrupted = inputs.run_with_nodes(model, "corrupted")
    groups = {}                                    # forward order: a0's head inputs, m0, a1's, ..., logits
    for dst in graph.dst_names:
        groups.setdefault(dst.split(".")[0], []).append(dst)
    overrides = {}
    for group in groups.values():
        run = inputs.run_with_nodes(model, "clean", overrides=overrides)   # the earlier groups patched
        for dst in group:
            absent = [e.split("->")[0] for e in graph.edge_names if e.endswith("->" + dst) and e not in circuit_edges]
            overrides[dst] = run.inputs[dst] + sum((corrupted.outputs[u] - run.outputs[u] for u in absent),
                                                   torch.zeros_like(run.inputs[dst]))
    return metric(inputs.run_with_nodes(model, "clean", overrides=overrides).logits)


# %%
checks.evaluate_circuit(evaluate_by_hand)

# %%
N_TOP = round(0.05 * graph.n_edges)  # 5% of the edges: the circuit size chapters 4 and 6 use
model, x = models["ARM"], held_out["ARM", "ioi"]
metric = x.metric()
empty = ml.Circuit.from_edges(graph, [])
full = ml.Circuit.from_mask(graph, graph.edge_mask)
with torch.no_grad():
    clean_values, corrupted_values = metric(x.run(model, "clean")), metric(x.run(model, "corrupted"))
empty_values = ml.evaluate(model, empty, x, metric, allow_empty=True)
full_values = ml.evaluate(model, full, x, metric)
print(f"empty circuit: mean {empty_values.mean():+.3f}; corrupted run {corrupted_values.mean():+.3f}; "
      f"max |difference| {(empty_values - corrupted_values).abs().max():.1e}")
print(f"full circuit:  mean {full_values.mean():+.3f}; clean run     {clean_values.mean():+.3f}; "
      f"max |difference| {(full_values - clean_values).abs().max():.1e}")
scale = clean_values.abs().max()
assert (empty_values - corrupted_values).abs().max() < 1e-4 * scale and (full_values - clean_values).abs().max() < 1e-4 * scale
circuit = ml.top_n(arm_ioi, N_TOP)
circuit_values = ml.evaluate(model, circuit, x, metric)
with torch.no_grad():
    by_hand = evaluate_by_hand(model, x, metric, circuit.edges)
assert (by_hand - circuit_values).abs().max() < 1e-3 * scale   # exercise 2 agrees with ml.evaluate
print(f"top-{N_TOP} circuit ({circuit.n_edges} edges after pruning): mean {circuit_values.mean():+.3f}")

# %% [markdown]
# ## Faithfulness
#
# Where does a circuit's metric fall between the two ends? **Faithfulness** puts the empty
# circuit at 0 and the full model at 1, using the mean metric over the examples (as the MIB
# circuit benchmark does):
#
# $$\text{faithfulness} = \frac{\overline{m}_\text{circuit} - \overline{m}_\text{empty}}{\overline{m}_\text{clean} - \overline{m}_\text{empty}}.$$
#
# **3. Faithfulness from three means.** *(difficulty ★☆☆, importance ★★★, about 5 minutes)*
#
# Write `faithfulness(circuit, empty, clean) -> float`, where each argument holds the per-example
# metric values `[N]` of the circuit, the empty circuit and the clean run.
#
# ```{dropdown} Hint
# Take the three means first, then the ratio; the mean of per-example ratios is a different
# number (the open question at the end looks at it).
# ```

# %% tags=["hide-input", "solution"]
def faithfulness(circuit, empty, clean):
    """(mean circuit - mean empty) / (mean clean - mean empty) of per-example metric values [N]."""
    return float((circuit.mean() - empty.mean()) / (clean.mean() - empty.mean()))


# %%
checks.faithfulness(faithfulness)

# %% [markdown]
# The top-$N$ circuit of the previous section, from the values computed there:

# %%
print(f"top-{N_TOP} circuit, ARM on IOI: faithfulness {faithfulness(circuit_values, empty_values, clean_values):.2f}")

# %% [markdown]
# It can exceed 1: a circuit that drops edges that *work against* the answer does better than
# the whole model. `ml.faithfulness_curve` evaluates circuits of growing size in one batched
# pass and reports the area under the curve (over the fraction of edges kept). We ask for
# circuits from 5 edges up to the whole graph, for both models on both tasks.

# %%
EDGE_COUNTS = sorted({5, 10, 15, 20, N_TOP, 30, 40, 60, 80, 120, 240, graph.n_edges})


def curve(model_name, task, method_scores, select=ml.top_n):
    """Faithfulness of the circuits chosen from ``method_scores``, on the held-out pairs."""
    x = held_out[model_name, task]
    return ml.faithfulness_curve(models[model_name], method_scores, x, x.metric(), edge_counts=EDGE_COUNTS, select=select)


def smallest_faithful(result, level=0.8):
    """Edges (after pruning) of the smallest circuit on the curve with faithfulness >= level."""
    return next((kept for kept, f in zip(result.circuit_edges, result.faithfulness) if f >= level), None)


curves = {key: curve(*key, method_scores) for key, method_scores in scores.items()}
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, task in zip(axes, pairs):
    ax.set_prop_cycle(color=[viz.ARM_COLOR, viz.MDM_COLOR])
    ml.plot_faithfulness({model_name: curves[model_name, task] for model_name in models}, ax=ax)
    ax.set_title(f"{TASK_NAMES[task]}: EAP-IG top-n circuits")
fig.suptitle("Faithfulness of circuits of growing size")
fig.tight_layout()
for (model_name, task), result in curves.items():
    print(f"{model_name} {TASK_NAMES[task]:9s}: area {result.area:.3f}; faithfulness at n = {N_TOP}: "
          f"{result.faithfulness[EDGE_COUNTS.index(N_TOP)]:.2f}; >= 0.8 from {smallest_faithful(result)} edges after pruning")
# the package's curve at n = N_TOP is exercise 3's number for the top-N circuit evaluated above
assert abs(curves["ARM", "ioi"].faithfulness[EDGE_COUNTS.index(N_TOP)] - faithfulness(circuit_values, empty_values, clean_values)) < 1e-3

# %%
def compare_sizes(sizes: dict[str, int | None]) -> str:
    """Words for how the smallest 0.8-faithful circuits of two or more curves compare (``sizes``: label -> edges)."""
    found = {label: n for label, n in sizes.items() if n is not None}
    missing = [label for label in sizes if label not in found]
    if len(found) < 2:
        return "not every curve reaches 0.8" + (f" ({', '.join(missing)} do not)" if missing else "")
    (small_label, small), (big_label, big) = min(found.items(), key=lambda kv: kv[1]), max(found.items(), key=lambda kv: kv[1])
    words = "about the same size" if big <= 1.25 * small else f"{big / small:.1f}× as many edges for {big_label} as for {small_label}"
    return words + (f"; {', '.join(missing)} never reach 0.8 on the curve" if missing else "")


sizes, areas = {}, {}
for task in pairs:
    sizes[task] = {m: smallest_faithful(curves[m, task]) for m in models}
    areas[task] = {m: curves[m, task].area for m in models}
Markdown("On the held-out pairs, faithfulness reaches 0.8 from " + "; ".join(
    f"{sizes[t]['ARM']} (ARM) and {sizes[t]['MDM']} (MDM) edges on {TASK_NAMES[t]} ({compare_sizes(sizes[t])}), "
    f"areas {areas[t]['ARM']:.3f} and {areas[t]['MDM']:.3f}" for t in pairs) + ".")

# %% [markdown]
# That matters for the next chapters. Comparing the ARM's top-$N$ circuit with the MDM's at one
# $N$ only makes sense if both circuits are faithful at that size; where one model needs more
# edges than the other, its circuit at the same $N$ is the less complete of the two. That is why
# chapter 6 shows the overlap over a range of $N$, not only at one.
#
# The area summarises the whole curve, but it is dominated by the large circuits, where the
# methods differ much less (the spreads are printed below the figure). The small circuits on the
# left tell methods apart. The next figure uses them
# to compare the scores of chapter 4: circuits from EAP, from EAP-IG, and EAP-IG with greedy
# selection, for the ARM.

# %%
variant_curves = {}
fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
for ax, task in zip(axes, pairs):
    x = inputs["ARM", task]
    eap = ml.attribute(models["ARM"], x, x.metric(), method="EAP")
    variants = {"EAP-IG, top_n": curves["ARM", task], "EAP, top_n": curve("ARM", task, eap),
                "EAP-IG, greedy": curve("ARM", task, scores["ARM", task], select=ml.greedy)}
    variant_curves[task] = variants
    ax.set_prop_cycle(color=[viz.ARM_COLOR, "black", viz.CONTROL_COLOR], linestyle=["-", "--", ":"])
    ml.plot_faithfulness(variants, ax=ax)
    ax.set_title(f"ARM, {TASK_NAMES[task]}")
    for label, result in variants.items():
        print(f"ARM {TASK_NAMES[task]:9s} {label:15s}: area {result.area:.3f}, "
              f"faithfulness at n = 10, {N_TOP}, 40: {', '.join(f'{result.faithfulness[EDGE_COUNTS.index(n)]:.2f}' for n in (10, N_TOP, 40))}")
fig.suptitle("Which scores make the better small circuits?")
fig.tight_layout()

# %%
small = [i for i, n in enumerate(EDGE_COUNTS) if n <= 40]
large = [i for i, n in enumerate(EDGE_COUNTS) if n >= 120]
spread = lambda v, at: max(max(c.faithfulness[i] for c in v.values()) - min(c.faithfulness[i] for c in v.values()) for i in at)
for task, v in variant_curves.items():   # what the text says: the large circuits are alike, the small ones tell methods apart
    print(f"{TASK_NAMES[task]}: spread of faithfulness over the methods, n <= 40: {spread(v, small):.2f}; n >= 120: {spread(v, large):.2f}")
    assert spread(v, large) < spread(v, small) / 2
gap = lambda a, b: max(abs(a.faithfulness[i] - b.faithfulness[i]) for i in small)
need = {task: {label: smallest_faithful(c) for label, c in v.items()} for task, v in variant_curves.items()}
Markdown(" ".join(
    f"On {TASK_NAMES[task]}, up to 40 edges, EAP's curve is at most {gap(v['EAP-IG, top_n'], v['EAP, top_n']):.2f} from "
    f"EAP-IG's and greedy selection's at most {gap(v['EAP-IG, top_n'], v['EAP-IG, greedy']):.2f} from top-n's; faithfulness "
    "reaches 0.8 from " + ", ".join(f"{'no size on the curve' if n is None else f'{n} edges'} with {label}"
                                    for label, n in need[task].items())
    + f" ({compare_sizes(need[task])})." for task, v in variant_curves.items()))

# %% [markdown]
# Where the curves part, it is for a reason chapter 4 showed: EAP shrinks some large scores much
# more than others, and that reorders exactly the edges a small circuit keeps, while greedy
# selection can trade a high-scoring edge for a path that reaches the logits. Which choice makes
# the smaller faithful circuit depends on the model and the task. The paper, like this book,
# uses EAP-IG with top-n.

# %% [markdown]
# ## Drawing a circuit
#
# `plots.draw_circuit` places every node by layer (x) and by head, with the MLP on the bottom
# row (y). Each edge of the circuit is a curve with width proportional to its $|\text{score}|$,
# coloured by the input it reaches. Below are the top-$N$ circuits ($N$ = 5% of the edges, the size the
# comparison chapters use) of both models on both tasks.

# %%
fig, axes = plt.subplots(2, 2, figsize=(15, 8))
for row, task in zip(axes, pairs):
    for ax, model_name in zip(row, models):
        task_scores = scores[model_name, task]
        circuit = ml.top_n(task_scores, N_TOP)
        plots.draw_circuit(circuit, task_scores, ax=ax)
        ax.set_title(f"{model_name}, {TASK_NAMES[task]}: {circuit.n_edges} edges, {len(circuit.nodes)} nodes",
                     color=viz.ARM_COLOR if model_name == "ARM" else viz.MDM_COLOR)
fig.suptitle(f"Top-{N_TOP} EAP-IG circuits")
fig.tight_layout()

# %% [markdown]
# A drawing shows one circuit at one size, for a handful of examples: a good place for
# hypotheses, and a bad place for conclusions. Chapters 6 to 9 measure the differences between
# the ARM's and the MDM's circuits over many examples and several training seeds.
#
# ## Exercises
#
# The checked exercises of this chapter sit where each idea is taught: pruning (exercise 1),
# evaluating a circuit (2) and faithfulness (3).
#
# **4. (Open.)** *(difficulty ★★☆, importance ★★☆, about 20 minutes)* Faithfulness is a ratio of *means*. Compute the per-example ratio
# $(m_\text{circuit} - m_\text{empty}) / (m_\text{clean} - m_\text{empty})$ for the top-$N$ circuit
# of the ARM on IOI, and plot its distribution. Is the circuit equally faithful on every example?
# Which examples would you look at first, and what would you expect to find in them?

# %%
Markdown(viz.versions_footer())
