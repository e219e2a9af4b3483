# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
#   mystnb:
#     execution_timeout: 900
# ---

# %% [markdown]
# # 6. ARM vs MDM circuits: overlap
#
# The paper's central table (its Table 1) compares the circuits of an autoregressive model (ARM)
# and of the masked diffusion model (MDM) post-trained from it, by the Jaccard index of their
# top-1000 edges {cite:p}`kong2026mechanism`. The index is far higher on the local task (IOI)
# than on the global planning task (Countdown): 0.193 against 0.008 for Qwen2.5-7B and Dream-7B,
# 0.088 against 0.032 for LLaMA-2-7B and DiffuLLaMA (numbers we know only from a machine-written
# summary of the paper; see {doc}`ch05b_the_paper`). From this the paper concludes that diffusion
# post-training *keeps* the ARM's circuitry for local tasks and *rewires* it for global ones.
#
# A Jaccard index is not the share of edges two circuits have in common. Two top-$N$ sets $A$ and
# $B$ that share $s$ edges have $|A \cap B| = s$ and $|A \cup B| = 2N - s$, so
#
# $$
# J = \frac{s}{2N - s} \iff J\,(2N - s) = s \iff \frac{s}{N} = \frac{2J}{1 + J}.
# $$
#
# The paper's IOI value of 0.193 therefore means that about a third of each circuit's top edges are
# also among the other's (the first cell below computes it for each of the paper's numbers). The
# IOI circuits share far more than the Countdown ones, but not most of their edges.
#
# One overlap number is hard to read on its own. Is 0.6 high? It depends on how much two circuits
# of the *same kind* of model differ. So every overlap here comes with three references the paper
# does not show:
#
# - **chance**: two random edge sets of the same size;
# - **seed baseline**: two ARMs trained from different seeds;
# - **training baseline**: the ARM and its *ARM-continued* control, trained for as many further
#   steps as the MDM was post-trained, but autoregressively.
#
# The shift the paper describes is what diffusion post-training changes *beyond* what further
# autoregressive training changes. All numbers are means over the zoo's seeds with 95% bootstrap
# intervals.
#
# By the end of this chapter you will be able to:
#
# - compute the edge Jaccard and the top-K component overlap of two score sets, and their chance level;
# - read the Table-1 analogue against its baselines;
# - explain why overlap must be shown as a curve over N, not one point;
# - measure where in depth attribution lives (the paper's "early-layer processing").

# %% tags=["skip-execution", "remove-cell"]
# Colab / fresh environments: install the companion package pinned to this book release.
import sys
if "google.colab" in sys.modules:
    %pip install -q "mechshift-lite @ git+https://github.com/mechshift-lite/mechshift-lite@v0.1.0"

# %%
from IPython.display import Markdown

import mechshift_lite as ml
from mechshift_lite import compare, plots, viz, zoo
from mechshift_lite.teaching import checks
from mechshift_lite.experiment import ExperimentConfig, task_pairs
from mechshift_lite.experiment.verdicts import summary, table

# %%
# The paper's Table 1 (v1), as a machine-written summary of the paper quotes it, and what each value
# means as a share of shared edges (s / N = 2J / (1 + J), two top-N sets of the same size N = 1000).
PAPER_JACCARD = {("IOI", "Qwen2.5-7B vs Dream-7B"): 0.193, ("IOI", "LLaMA-2-7B vs DiffuLLaMA"): 0.088,
                 ("Countdown", "Qwen2.5-7B vs Dream-7B"): 0.008, ("Countdown", "LLaMA-2-7B vs DiffuLLaMA"): 0.032}
shared_share = lambda j: 2 * j / (1 + j)
assert 0.30 < shared_share(PAPER_JACCARD["IOI", "Qwen2.5-7B vs Dream-7B"]) < 0.35  # "about a third", as the text says
Markdown("| task | pair | Jaccard $J$ (paper) | share of each top-1000 set in the other, $2J/(1+J)$ | shared edges |\n"
         "|---|---|---|---|---|\n" + "\n".join(f"| {task} | {pair} | {j} | {shared_share(j):.1%} | {1000 * shared_share(j):.0f} of 1000 |"
                                              for (task, pair), j in PAPER_JACCARD.items()))

# %% [markdown]
# ## Overlap on one pair of circuits
#
# Before the statistics, the measurement itself. We attribute the seed-0 ARM and MDM on 32 IOI
# pairs (EAP-IG, $m = 5$, as in chapter 4), keep each model's top-$N$ edges by $|\text{score}|$,
# and compare the two sets.

# %%
tok = zoo.tokenizer()
arm, mdm = zoo.load("arm", seed=0), zoo.load("mdm", seed=0)
pairs = task_pairs("ioi", tok, n=32, seed=0)


arm_scores, mdm_scores = (ml.attribute(model, ml.ModelInputs.from_pairs(model, pairs, tok), pairs.metric(),
                                       method="EAP-IG-inputs", ig_steps=5) for model in (arm, mdm))
graph = arm.graph
N = round(0.05 * graph.n_edges)
top_arm, top_mdm = compare.top_edges(arm_scores, N), compare.top_edges(mdm_scores, N)
print(f"graph: {graph.n_edges} edges; top N = {N} (5%)")
print(f"shared edges: {len(top_arm & top_mdm)}, Jaccard = {compare.jaccard(top_arm, top_mdm):.3f}, "
      f"chance = {compare.chance_jaccard(graph.n_edges, N, N):.3f}")

# %% [markdown]
# The ten strongest edges of each model (✓: in both top-N sets):

# %%
def ranked(scores, k=10):
    edges = sorted(compare.top_edges(scores, N), key=lambda e: -abs(scores.edge(e)))[:k]
    return [f"`{e}` ✓" if e in top_arm & top_mdm else f"`{e}`" for e in edges]


rows = "\n".join(f"| {i + 1} | {a} | {m} |" for i, (a, m) in enumerate(zip(ranked(arm_scores), ranked(mdm_scores))))
Markdown("| rank | ARM | MDM |\n|---|---|---|\n" + rows)

# %% [markdown]
# Edges are fine-grained: a circuit can keep the same heads and MLPs and route between them a
# little differently. The paper therefore also compares **components**. A component's score is
# the sum of $|\text{score}|$ over the top-$N$ edges that enter or leave it, and the top-$K$
# components of the two models are compared.

# %%
K = round(0.2 * (graph.n_src - 1))
overlap = compare.component_overlap(arm_scores, mdm_scores, N, K)
print("ARM top components:", compare.top_components(arm_scores, N, K))
print("MDM top components:", compare.top_components(mdm_scores, N, K))
print(f"K = {K}: shared fraction {overlap.shared_fraction:.2f}, Jaccard {overlap.jaccard:.2f}, chance {K / (graph.n_src - 1):.2f}")

# %% [markdown]
# In Jupyter or Colab, this explorer moves $N$ and swaps the models compared, including the
# ARM-continued control (the page does not run it; the curves over $N$ below are its static
# counterpart).

# %% tags=["skip-execution"]
from mechshift_lite.teaching import explorers

control = zoo.load("arm-continued", seed=0)
control_scores = ml.attribute(control, ml.ModelInputs.from_pairs(control, pairs, tok), pairs.metric(),
                              method="EAP-IG-inputs", ig_steps=5)
explorers.overlap_explorer({"ARM": arm_scores, "MDM": mdm_scores, "ARM-continued": control_scores})

# %% [markdown]
# ```{admonition} Definitions (quoted from `mechshift_lite.compare`)
# :class: note
# - **Top-N edges**: the $N$ edges with the largest $|\text{score}|$, *before* pruning (the paper's
#   "top 1000 edges"). The paper keeps 1000 of roughly $10^6$ edges of a 7B model (0.1%); our
#   4-layer toy has 479 edges, so we keep a fraction (5%, $N = 24$) large enough to be non-trivial
#   and show the whole curve over $N$ below.
# - **Edge overlap**: the Jaccard index $|A \cap B| / |A \cup B|$ of the two top-N sets.
# - **Chance**: the expected Jaccard of two uniformly random edge sets of the same sizes (exact,
#   from the hypergeometric distribution of the intersection).
# - **Component score** (the paper's definition, with absolute values):
#   $s(v) = \sum |\text{score}(u \to v)| + \sum |\text{score}(v \to w)|$ over the top-N edges at $v$.
#   `input` and `logits` are not components. **Top-K overlap**: $|A \cap B| / K$, with $K$ = 20% of
#   the 20 heads and MLPs ($K = 4$); chance is $K / 20$.
# - **Early-layer fraction**: the share of $|\text{score}|$ mass on edges whose source is the input
#   or a node in the first $\lceil L/3 \rceil$ layers.
# ```
#
# ## The experiment
#
# One pair of circuits from one seed on 32 examples is an anecdote. The report
# (`ml.report()`, or `mechshift-lite report --out results/` on the command line) does it properly:
#
# 1. draw 96 held-out problems per task and keep the **common-correct pool**: the problems that
#    *every* model (ARM, MDM, ARM-continued, all seeds) answers correctly, so that all circuits
#    explain the same, successful behaviour;
# 2. attribute every model on the pool in 8 fixed blocks of examples;
# 3. compute each statistic per seed and average over seeds; the 95% interval comes from a
#    hierarchical bootstrap that resamples seeds, then blocks of examples within them.
#
# The first call computes everything (a few minutes on two cores) and caches it under a key made
# of the zoo's checksums, the code and the configuration; the next chapters reuse the cache.

# %%
result = ml.report(progress=False)
cfg = ExperimentConfig()
print(f"seeds: {result['seeds']}; edges in the graph: {result['graph']['n_edges']}")
Markdown("| task | drawn | common-correct | accuracy of each model on the drawn problems |\n|---|---|---|---|\n" + "\n".join(
    f"| {task} | {t['pool']['n_drawn']} | {t['pool']['n_common_correct']} | "
    + ", ".join(f"{key} {acc:.0%}" for key, acc in t["pool"]["accuracy"].items()) + " |"
    for task, t in result["tasks"].items()))

# %% [markdown]
# The accuracies here are of the decision the attribution explains: the *first* answer token at
# the readout. Every model gets most IOI answers and a majority of Countdown first tokens right,
# but the nine models agree on fewer Countdown problems, so that pool is smaller. A right first
# token is not a solved problem: end to end, the MDMs solve far fewer Countdown problems than the
# ARMs (chapter 3).
#
# ## The Table-1 analogue

# %%
print(table(result))

# %%
plots.overlap_bars(result, "edge");

# %%
plots.overlap_bars(result, "component");

# %% [markdown]
# Read each ARM–MDM bar against its neighbours. The grey dashed line is chance. The green bar is
# what two independently trained ARMs share: circuits found by the same recipe from a different
# initialisation. The sky-blue bar is what the ARM shares with itself after more autoregressive
# training. An ARM–MDM overlap far above chance but at the ARM–ARM level says "the same kind of
# circuit, no more different than another seed's"; one below the ARM-continued bar says
# post-training *as a diffusion model* changed more than training as such.
#
# ## Overlap depends on N
#
# The paper reports one $N$. On a small graph the choice matters a lot: with $N$ close to the
# number of edges every pair of circuits overlaps completely, and with very small $N$ one swapped
# edge moves the Jaccard by a large step. So we show the curve.

# %%
plots.overlap_curve(result);

# %% [markdown]
# ## Where in depth attribution lives
#
# The paper's second observation is that the MDM "front-loads" Countdown: more of its
# attribution sits in early layers. We measure the share of $|\text{score}|$ mass by the layer of
# each edge's source node, and summarise it as the early-layer fraction. The paper does not say
# where "early" ends; here is what the code counts, quoted from it when the page is built:

# %%
L = graph.n_layers
Markdown(f"> `compare.early_layers`: {compare.early_layers.__doc__.strip()}\n>\n"
         f"> `compare.early_fraction`: {compare.early_fraction.__doc__.strip()}\n\n"
         f"With our {L} layers, {compare.early_layers(L)} layers are early, so the early-layer fraction is the share of "
         f"$|\\text{{score}}|$ on edges from `input` and from layers 0 to {compare.early_layers(L) - 1} "
         f"(the first {1 + compare.early_layers(L)} groups of bars in the layer distribution below).")

# %%
plots.layer_distribution(result);

# %%
plots.early_fraction(result);

# %% [markdown]
# ## What the miniature says
#
# The report checks the paper's three directions and prints the numbers that decide each one.
# Whatever the answer, it is shown: a miniature that disagrees with the paper is a result too
# (the cautions at the end of this chapter say what could explain a disagreement).

# %%
Markdown("| the paper's direction | holds here? | evidence (mean [95% CI]) |\n|---|---|---|\n" + "\n".join(
    f"| {v['claim']} | {'yes' if v['holds'] else '**no**'} | {v['evidence']} |" for v in result["verdict"]))

# %% [markdown]
# The same numbers in sentences (`experiment.verdicts.summary`). Two statistics are called "above" or
# "below" each other only when their 95% intervals do not overlap.

# %%
Markdown(summary(result))

# %% [markdown]
# Three cautions when reading these numbers. First, the toy has 4 layers and 479 edges, so
# "early" is a coarse bucket and $N = 24$ edges is a small set. Second, the MDMs here solve few
# Countdown problems end to end, while the pool only asks for the first answer token: the circuits
# explain that first decision, not the whole plan, and an MDM that has not learnt to plan may not
# show the rewiring the paper describes. Third, every interval is over three seeds: it shows how
# much the numbers move between training runs, and it is wide for exactly that reason.
#
# ## Exercises
#
# **1. Chance level.** Write `chance_jaccard(n_total, a, b) -> float`: the expected Jaccard index
# of two independent, uniformly random subsets of sizes `a` and `b` of `n_total` items. (The size
# of their intersection follows a hypergeometric distribution.)

# %% tags=["hide-input", "solution"]
def chance_jaccard(n_total, a, b):
    from math import comb

    expected = 0.0
    for k in range(max(0, a + b - n_total), min(a, b) + 1):
        p = comb(a, k) * comb(n_total - a, b - k) / comb(n_total, b)
        union = a + b - k
        expected += p * (k / union if union else 1.0)
    return expected


# %%
checks.chance_jaccard(chance_jaccard)

# %% [markdown]
# **2. Component scores.** Write `component_scores(edges) -> dict`, where `edges` maps the names
# of the top-N edges (such as `"a0.h1->a1.h0<k>"`) to their scores. A head's `<q>`, `<k>` and `<v>`
# inputs all belong to the head; `input` and `logits` are not components; use absolute values.

# %% tags=["hide-input", "solution"]
def component_scores(edges):
    totals = {}
    for edge, score in edges.items():
        source, destination = edge.split("->")
        for node in (source, destination.split("<")[0]):
            if node not in ("input", "logits"):
                totals[node] = totals.get(node, 0.0) + abs(score)
    return totals


# %%
checks.component_scores(component_scores)

# %% [markdown]
# **3. (Open.) Choose N by faithfulness.** Instead of a fixed fraction, pick for each model the
# smallest $N$ whose circuit reaches 80% faithfulness (chapter 5, `ml.faithfulness_curve`), then
# compare the circuits at those sizes. Do the ARM and the MDM need the same $N$ on each task?
# How does that change the Table-1 analogue?
#
# **4. (Open.)** The seed baseline compares two ARMs. Which other pair would make a fair
# baseline for the ARM–MDM overlap on Countdown, given that the MDM solves fewer problems?

# %%
Markdown(viz.versions_footer())
