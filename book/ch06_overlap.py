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
# - explain why overlap must be shown as a curve over N, not one point, and read it against its
#   N-free versions and the split-half noise ceiling of each model;
# - decide a direction by a paired difference and its control;
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
from mechshift_lite.experiment.pools import target_blind_rates
from mechshift_lite.experiment.bootstrap import distinct_resamples
from mechshift_lite.experiment.statistics import N_SPLITS
from mechshift_lite.experiment.verdicts import fmt, reliability_table, summary, table

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
# pairs (EAP-IG, $m = 5$, as in chapter 4), keep each model's top-$N$ edges by $|\text{score}|$
# (the same fraction of the graph's edges as the report below), and compare the two sets.

# %%
cfg = ExperimentConfig()
tok = zoo.tokenizer()
arm, mdm = zoo.load("arm", seed=0), zoo.load("mdm", seed=0)
pairs = task_pairs("ioi", tok, n=32, seed=0)


arm_scores, mdm_scores = (ml.attribute(model, ml.ModelInputs.from_pairs(model, pairs, tok), pairs.metric(),
                                       method=cfg.method, ig_steps=cfg.ig_steps) for model in (arm, mdm))
graph = arm.graph
N = round(cfg.edge_fraction * graph.n_edges)
top_arm, top_mdm = compare.top_edges(arm_scores, N), compare.top_edges(mdm_scores, N)
print(f"graph: {graph.n_edges} edges; top N = {N} ({cfg.edge_fraction:.0%})")
print(f"shared edges: {len(top_arm & top_mdm)}, Jaccard = {compare.jaccard(top_arm, top_mdm):.3f}, "
      f"chance = {compare.chance_jaccard(graph.n_edges, N, N):.3f}")

# %% [markdown]
# **1. The top-N Jaccard.** *(difficulty ★☆☆, importance ★★★, about 10 minutes)*
# Write `top_edges_jaccard(a, b, n) -> float`: `a` and `b` are the scores of every edge of one
# graph (two tensors `[n_edges]`, in the same edge order); rank each by $|\text{score}|$, keep the
# top `n` edge indices of each, and return $|A \cap B| / |A \cup B|$.
#
# ```{dropdown} Hint
# `torch.topk(a.abs(), n).indices` gives the top-`n` indices; turn them into Python sets.
# ```

# %% tags=["hide-input", "solution"]
def top_edges_jaccard(a, b, n):
    import torch

    top_a = set(torch.topk(a.abs(), n).indices.tolist())
    top_b = set(torch.topk(b.abs(), n).indices.tolist())
    return len(top_a & top_b) / len(top_a | top_b)


# %%
checks.top_edges_jaccard(top_edges_jaccard)

# %% [markdown]
# **2. Chance level.** *(difficulty ★★☆, importance ★★★, about 15 minutes)*
# Write `chance_jaccard(n_total, a, b) -> float`: the expected Jaccard index of two independent,
# uniformly random subsets of sizes `a` and `b` of `n_total` items. This is the grey line under
# every overlap of this chapter.
#
# ```{dropdown} Hint
# The size $k$ of the intersection follows a hypergeometric distribution,
# $P(k) = \binom{a}{k}\binom{n-a}{b-k} / \binom{n}{b}$; the Jaccard of an outcome is $k / (a + b - k)$.
# Sum over the possible $k$ (and count two empty sets as Jaccard 1).
# ```

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
n_components = graph.n_src - 1
K = round(cfg.component_fraction * n_components)
overlap = compare.component_overlap(arm_scores, mdm_scores, N, K)
print("ARM top components:", compare.top_components(arm_scores, N, K))
print("MDM top components:", compare.top_components(mdm_scores, N, K))
print(f"K = {K}: shared fraction {overlap.shared_fraction:.2f}, Jaccard {overlap.jaccard:.2f}, chance {K / n_components:.2f}")

# %% [markdown]
# **3. Component scores.** *(difficulty ★★☆, importance ★★☆, about 15 minutes)*
# Write `component_scores(edges) -> dict`, where `edges` maps the names of the top-N edges (such
# as `"a0.h1->a1.h0<k>"`) to their scores. A head's `<q>`, `<k>` and `<v>` inputs all belong to
# the head; `input` and `logits` are not components; use absolute values.
#
# ```{dropdown} Hint
# Split each name at `"->"`; the destination's head is the part before `"<"`. Add $|\text{score}|$
# to both ends of the edge.
# ```

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
# In Jupyter or Colab, this explorer moves $N$ and swaps the models compared, including the
# ARM-continued control (the page does not run it; the curves over $N$ below are its static
# counterpart).

# %% tags=["skip-execution"]
from mechshift_lite.teaching import explorers

control = zoo.load("arm-continued", seed=0)
control_scores = ml.attribute(control, ml.ModelInputs.from_pairs(control, pairs, tok), pairs.metric(),
                              method=cfg.method, ig_steps=cfg.ig_steps)
explorers.overlap_explorer({"ARM": arm_scores, "MDM": mdm_scores, "ARM-continued": control_scores})

# %% [markdown]
# ## The experiment
#
# One pair of circuits from one seed on 32 examples is an anecdote. The report
# (`ml.report()`, or `mechshift-lite report --out results/` on the command line) does it properly.
# The first call computes everything (several minutes, on one thread) and caches it under a key made
# of the zoo's checksums, the code and the configuration; the next chapters reuse the cache.

# %%
result = ml.report(progress=False)
seeds = result["seeds"]
blind = result["tasks"]["countdown"]["pool"]["target_blind"]
blind_any = target_blind_rates(task_pairs("countdown", tok, cfg.problems("countdown"), cfg.data_seed, countdown_selection="any"))
cd_pool = result["tasks"]["countdown"]["pool"]
Markdown(f"1. draw held-out problems ({cfg.problems('ioi')} IOI, {cfg.problems('countdown')} Countdown, of which only "
         f"{cd_pool['n_common_correct'] / cd_pool['n_drawn']:.0%} survive the filter) and keep the **common-correct pool**: "
         f"the problems that *every* model (ARM, MDM, ARM-continued, all {len(seeds)} seeds) answers correctly, so that all circuits "
         f"explain the same, successful behaviour. On Countdown a pair counts as right only when the model gets "
         f"*both* its decisions: the clean answer's first token on the clean prompt and the corrupted answer's on the "
         f"corrupted one; and its problems are **{cfg.countdown_selection}**: no rule that ignores the target predicts "
         f"their first token (the first digit of the largest operand does on "
         f"{blind['drawn']['largest operand']:.0%} of them, the commonest first move of the operands on "
         f"{blind['drawn']['most common']:.0%}; on as many problems drawn from all pairable ones they get "
         f"{blind_any['largest operand']:.0%} and {blind_any['most common']:.0%});\n"
         f"2. attribute every model on the first {cfg.max_pool} pairs of the pool (in draw order: a fixed cost whatever the "
         f"zoo's accuracy), in {cfg.n_chunks} fixed blocks of examples;\n"
         f"3. compute each statistic per seed and average over seeds; the 95% interval comes from a "
         f"hierarchical bootstrap ({result['n_boot']} replicates) that resamples seeds, then blocks of examples within them.\n\n"
         "| task | drawn | common-correct | attributed | accuracy of each model on the drawn problems |\n|---|---|---|---|---|\n" + "\n".join(
             f"| {task} | {t['pool']['n_drawn']} | {t['pool']['n_common_correct']} | {t['pool']['n_attributed']} | "
             + ", ".join(f"{key} {acc:.0%}" for key, acc in t["pool"]["accuracy"].items()) + " |"
             for task, t in result["tasks"].items()))

# %%
solved = {kind: [e["accuracy"]["countdown3_accuracy"] for e in zoo.finals(kind)] for kind in zoo.KINDS}
mean_solved = {kind: sum(v) / len(v) for kind, v in solved.items()}
Markdown("The accuracies here are of the decision the attribution explains: the *first* answer token at the readout "
         "(on Countdown, of both prompts of the pair). The Countdown problems were chosen so that this first move needs "
         "the target, which makes them harder than the average problem, and the models agree on fewer of them, so that "
         "pool is smaller. A right first token is not a solved problem: end to end, the zoo's MDMs solve "
         f"{mean_solved['mdm']:.0%} of held-out Countdown-3 problems on average, their ARMs {mean_solved['arm']:.0%} and "
         f"the ARM-continued controls {mean_solved['arm-continued']:.0%} (chapter 3).")

# %% [markdown]
# Every measure of the rest of the chapter, defined once (the numbers are the code's, filled in
# when the page is built):

# %%
L = graph.n_layers
early_cutoff = compare.early_cutoff(L)
assert result["graph"]["n_edges"] == graph.n_edges and result["tasks"]["ioi"]["overlap"]["n_edges"] == N
assert result["tasks"]["ioi"]["overlap"]["k_components"] == K
assert result["tasks"]["ioi"]["reliability"]["n_splits"] == N_SPLITS
definitions = f"""**Definitions** (quoted from `mechshift_lite.compare` and `mechshift_lite.experiment`)

- **Top-N edges**: the $N$ edges with the largest $|\\text{{score}}|$, *before* pruning (the paper's
  "top 1000 edges"). The paper keeps 1000 of roughly $10^6$ edges of a 7B model (0.1%); our
  {L}-layer toy has {graph.n_edges} edges, so we keep a fraction ({cfg.edge_fraction:.0%}, $N = {N}$) large enough to be
  non-trivial, and show the whole curve over $N$.
- **Edge overlap** (top-N Jaccard): $|A \\cap B| / |A \\cup B|$ of the two top-N sets. **Chance**: the
  expected Jaccard of two uniformly random edge sets of the same sizes (exact, hypergeometric).
- **N-free agreements**, over all {graph.n_edges} edges: the **weighted Jaccard**
  $\\sum_e \\min(a_e, b_e) / \\sum_e \\max(a_e, b_e)$ of the $|\\text{{score}}|$ of each model, each normalised to
  sum 1, and the **edge Spearman**, the rank correlation of the two $|\\text{{score}}|$ vectors.
- **Component score**: $s(v) = \\sum |\\text{{score}}(u \\to v)| + \\sum |\\text{{score}}(v \\to w)|$ over the top-N
  edges at $v$ (the paper's definition); its **signed** variant $s_\\pm(v)$ sums the scores themselves.
  `input` and `logits` are not components. **Top-K overlap**: $|A \\cap B| / K$ with $K$ =
  {cfg.component_fraction:.0%} of the {n_components} heads and MLPs ($K = {K}$); chance is $K / {n_components}$.
- **Split-half ceiling** of one model: split its {cfg.n_chunks} blocks of examples at random into two halves of
  {cfg.n_chunks // 2}, and measure how well the two halves agree, with the same measure as the overlap it bounds
  (mean over {N_SPLITS} random splits, then over seeds). No two models can be expected to agree more than one
  model agrees with itself on other examples.
- **Paired difference**: a difference of two statistics computed per seed *on the same resampled
  blocks* (e.g. (ARM-ARMc overlap) - (ARM-MDM overlap)), so that what the two terms share cancels in
  every bootstrap replicate. With {len(seeds)} seeds there are only {distinct_resamples(len(seeds))} distinct
  resamples of the seeds, so the intervals are coarse.
- **Mean depth**: the $|\\text{{score}}|$-weighted mean normalised depth of the edges; a source in layer
  $l$ has depth $(l+1)/{L}$ (`input` 0), a destination in layer $l$ depth $l/{L}$ (`logits` 1), an
  edge the midpoint of the two. Lower is more front-loaded.
- **Early share**: the share of $|\\text{{score}}|$ on *early* edges, whose source is `input` or a node of the
  first {early_cutoff} layer(s) (`compare.early_cutoff`: the first quarter, at least layer 0); its chance level
  is the share of edges that are early.
"""
# a quoted block, not a MyST directive: Colab renders it too
Markdown("\n".join("> " + line for line in definitions.splitlines()))

# %% [markdown]
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
# ## Against the noise ceiling, with and without N
#
# Each overlap again, with the two N-free agreements, beside the split-half ceiling of each model
# and the paired difference (ARM-ARMc) - (ARM-MDM): how much more the ARM keeps under further
# autoregressive training than under diffusion post-training.

# %%
print(reliability_table(result))

# %%
def against_ceiling(task):
    t = result["tasks"][task]
    ceiling = max(t["reliability"][f"ceiling_edge_{kind}"]["mean"] for kind in ("arm", "mdm"))
    return (f"**{plots.TASK_TITLES[task]}**: the ARM-MDM top-{N} Jaccard {fmt(t['overlap']['edge_arm_mdm'])} is "
            f"{t['overlap']['edge_arm_mdm']['mean'] / ceiling:.0%} of the larger of the ARM's and the MDM's split-half "
            f"ceilings ({ceiling:.3f}); the ARM-ARMc Jaccard {fmt(t['overlap']['edge_arm_armc'])} is "
            f"{t['overlap']['edge_arm_armc']['mean'] / ceiling:.0%} of it.")


Markdown("\n\n".join(against_ceiling(task) for task in result["tasks"]))

# %% [markdown]
# The same paired differences as a figure, with the depth differences of the next section: a
# point whose interval crosses the dashed zero line is not separable from no difference.

# %%
plots.paired_differences(result);

# %% [markdown]
# The paper's first direction compares the *tasks*: the ARM-MDM overlap should be higher on IOI
# than on Countdown. The same seeds' models run both tasks, so the difference is paired over seeds,
# with each task's examples resampled independently. The control is the same difference for the
# ARM-ARMc overlap; the last column is the shift (ARM-ARMc minus ARM-MDM) of Countdown minus IOI.

# %%
between = result["between_tasks"]
Markdown("| measure | ARM-MDM, IOI - Countdown | ARM-ARMc, IOI - Countdown | shift, Countdown - IOI |\n|---|---|---|---|\n"
         + "\n".join(f"| {label} | {fmt(between[f'{m}_arm_mdm_ioi_minus_countdown'])} | "
                     f"{fmt(between[f'{m}_arm_armc_ioi_minus_countdown'])} | {fmt(between[f'{m}_shift_countdown_minus_ioi'])} |"
                     for m, label in (("edge", f"top-{N} Jaccard"), ("weighted", "weighted Jaccard"), ("spearman", "Spearman")))
         + f"\n\n({between['n_seed_resamples']} distinct seed resamples.)")

# %% [markdown]
# ## Overlap depends on N, and on K
#
# The paper reports one $N$. On a small graph the choice matters a lot: with $N$ close to the
# number of edges every pair of circuits overlaps completely, and with very small $N$ one swapped
# edge moves the Jaccard by a large step. So we show the curve.

# %%
plots.overlap_curve(result);

# %% [markdown]
# The same holds for the components: the top-K overlap over K, ranking components by $s(v)$
# (solid) and by the signed $s_\pm(v)$ (dotted). Chance rises with K, to 1 when every component is kept.

# %%
plots.component_curve(result);

# %%
Markdown(f"| task | pair | top-{K} overlap, $s(v)$ | top-{K} overlap, signed $s_\\pm(v)$ | chance |\n|---|---|---|---|---|\n"
         + "\n".join(f"| {task} | {label} | {fmt(o[f'component_{key}'])} | {fmt(o[f'component_signed_{key}'])} | {o['chance_component']:.2f} |"
                     for task, o in ((task, t["overlap"]) for task, t in result["tasks"].items())
                     for key, label in (("arm_mdm", "ARM-MDM"), ("arm_armc", "ARM-ARMc"), ("arm_arm", "ARM-ARM'"))))

# %% [markdown]
# ## Where in depth attribution lives
#
# The paper's second observation is that the MDM "front-loads" Countdown: more of its
# attribution sits in early layers. The paper does not say where "early" ends, so we show the
# whole profile: the share of $|\text{score}|$ mass by the layer of each edge's source (top row,
# `input` its own bucket) and of its destination (bottom row, `logits` its own bucket), then
# summarise it by the mean depth, which needs no cut-off.

# %%
plots.depth_profiles(result);

# %%
kinds = (("arm", "ARM"), ("mdm", "MDM"), ("arm-continued", "ARMc"))
Markdown("| task | model | mean edge depth | mean source depth | mean destination depth | early share (chance) |\n|---|---|---|---|---|---|\n"
         + "\n".join(f"| {task} | {label} | {fmt(d[f'depth_edge_{kind}'])} | {fmt(d[f'depth_{kind}'])} | {fmt(d[f'depth_dst_{kind}'])} | "
                     f"{fmt(d[f'early_share_{kind}'])} ({d['early_share_chance']:.3f}) |"
                     for task, d in ((task, t["depth"]) for task, t in result["tasks"].items()) for kind, label in kinds))

# %% [markdown]
# The early share per model, with its chance level (dotted):

# %%
plots.early_share(result);

# %% [markdown]
# ## A second Countdown decision: the intermediate result
#
# The first answer token is one decision of the plan: which numbers to combine first. The report
# attributes a second one, later in the answer: the first digit of equation 1's result X (in
# `44-15=29,79-29=50`, the `2` of `29`). The pair is the same (same operands, another target), and
# each model is read where *it* writes X:
#
# - the ARM (and the ARM-continued control) is **teacher-forced**: it reads the prompt followed by
#   its own answer's equation 1 up to `=` (`44-15=`), and is read at that `=`. For it X is
#   arithmetic on the two numbers it has just written.
# - the MDM is read on its own canvas, **one step before its confidence decoding commits X's
#   first digit**, holding only the tokens it committed itself before that step
#   (`ModelInputs.before_commit`). The MDM may commit X before the numbers that make it, in which
#   case it must decide X from the operands and the target: the planning step again.
#
# A pair is kept when its two answers' prefixes have the same length (X starts at the same slot)
# and the two X start with different digits (`countdown.x_pairable`), and when every model gets
# both prompts' digit right where it is read. Only the final models are attributed on it.

# %%
x = result["tasks"]["countdown"]["x_decision"]
first = result["tasks"]["countdown"]
xo, xr, xp, fo = x["overlap"], x["reliability"], x["paired"], first["overlap"]
Markdown(f"Of the {first['pool']['n_drawn']} Countdown problems drawn, {x['pool']['n_drawn']} have a pair for this decision, "
         f"{x['pool']['n_common_correct']} are common-correct, and {x['pool']['n_attributed']} are attributed.\n\n"
         "| decision | ARM-MDM top-N Jaccard | ARM-ARMc | ceiling ARM | ceiling MDM | (ARM-ARMc) - (ARM-MDM) | "
         "MDM - ARM mean depth | ARMc - ARM mean depth |\n|---|---|---|---|---|---|---|---|\n"
         + "\n".join(f"| {label} | {fmt(t['overlap']['edge_arm_mdm'])} | {fmt(t['overlap']['edge_arm_armc'])} | "
                     f"{fmt(t['reliability']['ceiling_edge_arm'])} | {fmt(t['reliability']['ceiling_edge_mdm'])} | "
                     f"{fmt(t['paired']['edge_armc_minus_mdm'])} | {fmt(t['paired']['depth_mdm_minus_arm'])} | "
                     f"{fmt(t['paired']['depth_armc_minus_arm'])} |"
                     for label, t in (("first answer token", first), ("first digit of X", x))))

# %%
def excludes_zero(stat):
    return stat["lo"] > 0 or stat["hi"] < 0


shift = xp["edge_armc_minus_mdm"]
Markdown(f"On X the MDM keeps {xo['edge_arm_mdm']['mean']:.2f} of the ARM's top-{N} edges (Jaccard) where the "
         f"ARM-continued control keeps {xo['edge_arm_armc']['mean']:.2f}; the paired difference {fmt(shift)} "
         + ("excludes zero" if excludes_zero(shift) else "does not exclude zero")
         + f" (on the first answer token: {fmt(first['paired']['edge_armc_minus_mdm'])}). The MDM's mean edge depth "
         f"minus the ARM's is {fmt(xp['depth_mdm_minus_arm'])} on X, against {fmt(xp['depth_armc_minus_arm'])} for the "
         "control. The two models are read on different inputs here (the ARM sees the equation it wrote, the MDM only "
         "what it committed), so a low overlap says that they decide X differently, which is the question, and not "
         "that one of them decides it worse: every model in the pool gets X right.")

# %% [markdown]
# ## What the miniature says
#
# The report checks the paper's three directions and prints the numbers that decide each one.
# Whatever the answer, it is shown: a miniature that disagrees with the paper is a result too
# (the cautions at the end of this chapter say what could explain a disagreement). Each direction
# is decided by one rule, on a paired difference and its ARM-continued control:

# %%
Markdown(f"> A direction **{result['verdict_paired_rule']}**.\n\n"
         "| the paper's direction | holds here? | evidence (mean [95% CI], paired) |\n|---|---|---|\n" + "\n".join(
             f"| {v['claim']} | {'yes' if v['holds'] else '**no**'} | {v['evidence']} |" for v in result["verdict_paired"]))

# %% [markdown]
# The older reading compared point estimates and separate intervals, without the control
# (`experiment.verdicts.verdict`, kept so the two can be compared):

# %%
Markdown("| the paper's direction | holds here? | evidence (mean [95% CI]) |\n|---|---|---|\n" + "\n".join(
    f"| {v['claim']} | {'yes' if v['holds'] else '**no**'} | {v['evidence']} |" for v in result["verdict"]))

# %% [markdown]
# The overlaps in sentences (`experiment.verdicts.summary`). Two statistics are called "above" or
# "below" each other there only when their 95% intervals do not overlap; a paired difference
# above decides more sharply, because what its two terms share cancels.

# %%
Markdown(summary(result))

# %% [markdown]
# Three cautions when reading these numbers.

# %%
Markdown(f"First, the toy has {L} layers and {graph.n_edges} edges, so \"early\" is a coarse bucket and $N = {N}$ "
         f"edges is a small set. Second, the MDMs here solve {mean_solved['mdm']:.0%} of Countdown problems end to end "
         f"(their ARMs {mean_solved['arm']:.0%}), while the pools ask for one token: the first answer token, and in the section above X's first digit. "
         "The circuits explain those decisions, not the whole plan, and two models can share them while they differ "
         "in the rest of the plan. Third, every interval is over "
         f"{len(seeds)} seeds ({distinct_resamples(len(seeds))} distinct resamples of them): it shows how much the numbers "
         "move between training runs, and it is wide for exactly that reason.")

# %% [markdown]
# ## Exercises
#
# **4. (Open.) Choose N by faithfulness.** *(difficulty ★★★, importance ★★☆, about 45 minutes)*
# Instead of a fixed fraction, pick for each model the smallest $N$ whose circuit reaches 80%
# faithfulness (chapter 5, `ml.faithfulness_curve`), then compare the circuits at those sizes.
# Do the ARM and the MDM need the same $N$ on each task? How does that change the Table-1 analogue?
#
# **5. (Open.) A fair baseline.** *(difficulty ★★☆, importance ★★☆, about 15 minutes)*
# The seed baseline compares two ARMs. Which other pair would make a fair baseline for the
# ARM–MDM overlap on Countdown, given that the MDM solves fewer problems?

# %%
Markdown(viz.versions_footer())
