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
# # 4. From activation patching to EAP-IG
#
# Which parts of a model make it answer a prompt correctly? The most direct test is
# **activation patching**: run the clean prompt, but let one connection of the model carry what
# it carried on the corrupted prompt, and see how much the metric moves. The paper asks this
# question for every *edge* of the computational graph (a sender node's output, as read by one
# receiver). Patching is exact, but it costs one forward pass per edge. Edge attribution
# patching (EAP, {cite:p}`syed2023attribution`) and its integrated-gradients variant (EAP-IG,
# {cite:p}`hanna2024faith`) estimate all edges at once from gradients. This chapter derives both from patching and measures how good they are on the
# book's trained models.
#
# By the end of this chapter you will be able to:
#
# - patch one edge by hand with `run_with_nodes(..., overrides=...)` and check the result
#   against `ml.attribute(..., method="exact")`, the ground truth;
# - compute an edge's EAP score as $\Delta \cdot \nabla$ and say which approximation it makes;
# - explain why EAP-IG averages gradients along a straight path, what its number of steps
#   $m$ does, and check its *completeness* (the input edges add up to the total effect);
# - compare EAP and EAP-IG with exact patching on IOI, for the ARM and for the MDM;
# - read the `[source, destination]` score matrix that every later chapter builds on.

# %% tags=["skip-execution", "remove-cell"]
# Colab / fresh environments: install the companion package pinned to this book release.
import sys
if "google.colab" in sys.modules:
    %pip install -q "mechshift-lite @ git+https://github.com/mechshift-lite/mechshift-lite@v0.1.0"

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown
from matplotlib.colors import SymLogNorm

import mechshift_lite as ml
from mechshift_lite import compare, viz, zoo
from mechshift_lite.teaching import checks
from mechshift_lite.experiment import task_pairs

# %% [markdown]
# ## The models, the task and the metric
#
# We load the zoo's autoregressive model (ARM) and the masked diffusion model (MDM) that was
# post-trained from it (seed 0). Both have the same small architecture (printed below). We draw
# held-out IOI pairs (ABC corruption, chapter 2). The metric is the logit difference
# $\text{logit}[\text{IO}] - \text{logit}[\text{S}]$ at the last prompt position, one value
# per example.
#
# Exact patching runs the model once per edge, so this chapter uses only a few examples.
# `ml.ModelInputs.from_pairs` builds what each model reads, as one object: the clean and corrupted
# ids, their padding mask, the attention and the readout position. The ARM reads the prompt with
# causal attention, and the MDM reads the prompt followed by `[MASK]` up to the 40-token canvas,
# with bidirectional attention. `inputs.run_with_nodes(model, "clean")` runs the model on the
# clean ids (or `"corrupted"`) and records every node.

# %%
tok = zoo.tokenizer()
arm = zoo.load("arm", seed=0)
mdm = zoo.load("mdm", seed=0)
pairs = task_pairs("ioi", tok, n=8, seed=0)
metric = pairs.metric()
arm_inputs = ml.ModelInputs.from_pairs(arm, pairs, tok)

with torch.no_grad():
    clean, corrupted = arm_inputs.run_with_nodes(arm, "clean"), arm_inputs.run_with_nodes(arm, "corrupted")
clean_metric, corrupted_metric = metric(clean.logits), metric(corrupted.logits)
print(f"both models: {arm.cfg.n_layers} layers x {arm.cfg.n_heads} heads, d_model {arm.cfg.d_model}")
print(f"{len(pairs)} pairs, ARM inputs {tuple(arm_inputs.clean_ids.shape)}")
print(f"metric: clean {clean_metric.mean():+.2f}, corrupted {corrupted_metric.mean():+.2f}, "
      f"total effect {(corrupted_metric - clean_metric).mean():+.2f}")

# %% [markdown]
# ## Edges and their names
#
# An edge `u->v` joins a *source* (`input`, a head `a{l}.h{h}`, an MLP `m{l}`) to a
# *destination* that reads the residual stream downstream of it. A head reads the stream three
# times, through its query, key and value inputs, so `m0->a1.h3<q>` and `m0->a1.h3<k>` are
# different edges. Every edge sums over all positions.

# %%
graph = arm.graph
print(f"{graph.n_src} sources x {graph.n_dst} destinations, {graph.n_edges} edges")
print("into a1.h3<q>:", [name for name in graph.edge_names if name.endswith("->a1.h3<q>")])
print("into m0:      ", [name for name in graph.edge_names if name.endswith("->m0")])

# %% [markdown]
# ## Patching one edge by hand
#
# To *corrupt* the edge `u->v`, run the clean prompt, but let destination `v` receive `u`'s
# output from the corrupted run instead of its clean one. Everything else stays clean. Because
# the residual stream is a sum of node outputs (chapter 1), that means adding
# $\text{out}_u(\text{corrupted}) - \text{out}_u(\text{clean})$ to `v`'s input, and to
# nothing else. `run_with_nodes(..., overrides={v: x})` replaces exactly one destination's input.
# The edge's effect is the change of the metric, averaged over the examples.

# %% [markdown]
# **1. Patch one edge.** *(difficulty ★★☆, importance ★★★, about 15 minutes)*
#
# Write `patch_edge(model, inputs, metric, edge) -> float`. `edge` is a name such as
# `"m0->a1.h3<q>"`; `inputs.run_with_nodes(model, "clean")` (or `"corrupted"`) returns a run whose
# `outputs[u]` and `inputs[v]` are `[batch, pos, d_model]`, and `metric(logits)` is `[batch]`.
# Run the clean prompt with destination `v`'s input replaced by its clean input plus
# $\text{out}_u(\text{corrupted}) - \text{out}_u(\text{clean})$, and return the mean over examples of
# the patched metric minus the clean metric.
#
# ```{dropdown} Hint 1
# `src, dst = edge.split("->")`. Three runs in all: clean, corrupted, and the patched clean run
# `inputs.run_with_nodes(model, "clean", overrides={dst: x})`.
# ```
#
# ```{dropdown} Hint 2
# Do not pass `corrupted.inputs[dst]`: that corrupts *every* edge into `v` at once.
# ```

# %% tags=["hide-input", "solution"]
def patch_edge(model, inputs, metric, edge):
    """Mean of metric(edge corrupted) - metric(clean) over the examples, by one patched forward pass."""
    src, dst = edge.split("->")
    with torch.no_grad():
        clean, corrupted = inputs.run_with_nodes(model, "clean"), inputs.run_with_nodes(model, "corrupted")
        x = clean.inputs[dst] + corrupted.outputs[src] - clean.outputs[src]
        patched = inputs.run_with_nodes(model, "clean", overrides={dst: x})
    return float((metric(patched.logits) - metric(clean.logits)).mean())


# %%
checks.patch_edge(patch_edge)

# %%
edges = ["a0.h0->m0", "m0->a1.h3<q>", "a1.h3->logits"]
by_hand = {edge: patch_edge(arm, arm_inputs, metric, edge) for edge in edges}
for edge, value in by_hand.items():
    print(f"{edge:15s} metric change {value:+.3f}")

# %% [markdown]
# `method="exact"` does the same for all edges (stacking many patched runs in one batch).
# Its scores are the ground truth for the estimates that follow. It costs one forward pass per
# edge and per example, which is the reason the estimates exist: the paper's 7-billion-parameter
# models have around a million edges (chapter 10 counts them).

# %%
exact = {"ARM": ml.attribute(arm, arm_inputs, metric, method="exact")}
for edge, value in by_hand.items():
    print(f"{edge:15s} by hand {value:+.6f}   exact {exact['ARM'].edge(edge):+.6f}")

# %% [markdown]
# The scores are signed: an edge whose corruption *lowers* the logit difference gets a negative
# score. That is the sign convention of the EAP-IG reference (score ≈ metric with the edge
# corrupted minus clean metric). The circuits of chapter 5 rank edges by $|\text{score}|$.
#
# ## EAP: one gradient for all edges
#
# Write $x_v$ for destination `v`'s input and $\Delta_u = \text{out}_u(\text{corrupted}) -
# \text{out}_u(\text{clean})$, a `[batch, pos, d_model]` tensor. Patching the edge adds $\Delta_u$
# to $x_v$. To first order, the metric changes by
#
# $$\text{score}(u \to v) \approx \Delta_u \cdot \frac{\partial\, \text{metric}}{\partial x_v},$$
#
# summed over positions and `d_model`, and averaged over examples. One forward pass gives every
# $\Delta_u$, and one backward pass gives the gradient at every destination: two runs for every
# edge of the graph. Here is one edge by hand. We make $x_v$ a leaf that requires a gradient and feed it back
# in with `overrides`.

# %%
src, dst = "a0.h0", "m0"
x_v = clean.inputs[dst].detach().clone().requires_grad_()
with_grad = arm_inputs.run_with_nodes(arm, "clean", overrides={dst: x_v})
(grad,) = torch.autograd.grad(metric(with_grad.logits).sum(), x_v)    # [batch, pos, d_model], per example
delta = corrupted.outputs[src] - clean.outputs[src]                   # [batch, pos, d_model]
eap_by_hand = (delta * grad).sum(dim=(1, 2)).mean()
eap = {"ARM": ml.attribute(arm, arm_inputs, metric, method="EAP")}
print(f"{src}->{dst}: EAP by hand {eap_by_hand:+.4f}, ml.attribute EAP {eap['ARM'].edge(f'{src}->{dst}'):+.4f}, "
      f"exact {exact['ARM'].edge(f'{src}->{dst}'):+.4f}")

# %% [markdown]
# One backward pass gives the gradient at *every* destination, not only at `m0`. A hook (a
# subclass of `ml.Hooks`, whose `dest_input` sees each destination's input on its way into the
# model) keeps every destination's input, and `torch.autograd.grad`
# returns the gradient of the metric with respect to all of them at once. The attention layer's
# hook receives the `[batch, pos, 3, heads, d_model]` q/k/v copies, which are `3 * heads`
# destinations; `graph.destinations_of` says which score columns each call covers.

# %%
class DestinationInputs(ml.Hooks):
    """Keeps every destination's input, with the score columns it covers."""

    def __init__(self, graph):
        self.graph, self.inputs = graph, []

    def dest_input(self, kind, layer, x):
        x = x.view_as(x)    # a view of its own: the residual stream itself also flows on downstream
        self.inputs.append((self.graph.destinations_of(kind, layer)[1], x))
        return x


hooks = DestinationInputs(graph)
grads_per_call = torch.autograd.grad(metric(arm_inputs.run(arm, "clean", hooks=hooks)).sum(),
                                     [x for _, x in hooks.inputs])
grads = torch.zeros(graph.n_dst, *clean.outputs["input"].shape)         # [n_dst, batch, pos, d_model]
for (columns, _), g in zip(hooks.inputs, grads_per_call):
    grads[columns] = g.flatten(2, 3).permute(2, 0, 1, 3) if g.dim() == 5 else g
clean_out = torch.stack([clean.outputs[name] for name in graph.src_names])        # [n_src, batch, pos, d_model]
corrupted_out = torch.stack([corrupted.outputs[name] for name in graph.src_names])
assert torch.allclose(grads[graph.dst_index(dst)], grad, atol=1e-5)      # the gradient at m0, as above
print(f"grads {tuple(grads.shape)}, source outputs {tuple(clean_out.shape)}")

# %% [markdown]
# **2. EAP for every edge.** *(difficulty ★★☆, importance ★★★, about 10 minutes)*
#
# Write `eap_scores(clean_out, corrupted_out, grads) -> Tensor` of shape `[n_src, n_dst]`:
# `clean_out` and `corrupted_out` are every source's output, `[n_src, batch, pos, d_model]`, and
# `grads` the metric's gradient at every destination's input, `[n_dst, batch, pos, d_model]`.
# Entry `[u, v]` is $\Delta_u \cdot \nabla_v$ summed over positions and `d_model`, averaged over
# the examples. (Pairs that are no edge, such as a late source into an early destination, get a
# number too; they are ignored.)
#
# ```{dropdown} Hint 1
# $\Delta_u$ is `corrupted_out - clean_out`, not the clean output: the score estimates the change
# the corruption makes.
# ```
#
# ```{dropdown} Hint 2
# One `torch.einsum("sbpd,tbpd->st", ...)` sums over the batch, positions and `d_model`; divide
# by the batch size for the mean.
# ```

# %% tags=["hide-input", "solution"]
def eap_scores(clean_out, corrupted_out, grads):
    """[n_src, n_dst] EAP scores: delta . grad, summed over positions and d_model, mean over examples."""
    delta = corrupted_out - clean_out
    return torch.einsum("sbpd,tbpd->st", delta, grads) / delta.shape[1]


# %%
checks.eap_scores(eap_scores)

# %% [markdown]
# `ml.attribute(..., method="EAP")` computes the same matrix, but multiplies each destination's
# gradient into the scores as soon as the backward pass reaches it, so it never stores `grads`
# (the largest buffer on a big model).

# %%
mine = eap_scores(clean_out, corrupted_out, grads).double()
package_gap = (mine - eap["ARM"].tensor)[graph.edge_mask].abs().max()
assert package_gap < 1e-4 * eap["ARM"].tensor.abs().max()
print(f"{graph.n_edges} edges from one backward pass; largest gap to ml.attribute's EAP: {package_gap:.1e}")

# %% [markdown]
# The two EAP numbers agree, but EAP is far from the exact value. The first-order estimate
# uses the slope of the metric at the clean input only. The trained model is confident on the
# clean prompts (the logit difference is large), and, as the next figure shows, the metric
# flattens out near the clean input. So the slope there underestimates how far the metric falls
# when the edge is corrupted.
#
# ## Integrated gradients: average the slope along the way
#
# Move the token embeddings in a straight line from the corrupted prompt to the clean one:
# $E(\alpha) = E_\text{corr} + \alpha\,(E_\text{clean} - E_\text{corr})$, with $\alpha$ from 0 to 1.
# Positions and everything downstream are recomputed. Below is the metric along this path
# (mean over examples), with EAP's tangent at the clean end ($\alpha = 1$). EAP-IG-inputs
# replaces the slope at $\alpha = 1$ by the mean slope at $\alpha = k/m$ for $k = 1, \dots, m$,
# a Riemann sum of the path integral. With $m = 1$ it is EAP. A straight line is the simplest
# path between the two prompts, and it is the one {cite:t}`hanna2024faith` use, following
# integrated gradients {cite:p}`sundararajan2017axiomatic`. Only the gradients
# are averaged: $\Delta_u$ stays the real corrupted-minus-clean difference.


# %%
class Interpolate(ml.Hooks):
    """Replaces the token embedding by E_corr + alpha (E_clean - E_corr)."""

    def __init__(self, corrupted_embedding, alpha):
        self.corrupted_embedding, self.alpha = corrupted_embedding, alpha

    def node_output(self, kind, layer, out):
        if kind != "input":
            return out
        return self.corrupted_embedding + self.alpha * (out - self.corrupted_embedding)


alphas = torch.linspace(0, 1, 21)
with torch.no_grad():
    path = [metric(arm_inputs.run(arm, "clean", hooks=Interpolate(corrupted.outputs["input"], a))).mean()
            for a in alphas]
# EAP's input edges add up to the slope at the clean end: d metric / d alpha = -sum of the input->* scores
slope = -sum(value for name, value in eap["ARM"].as_dict().items() if name.startswith("input->"))
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(alphas, path, marker="o", color=viz.ARM_COLOR, label="metric along the path (ARM)")
# what the text above says: the metric flattens near the clean end, so EAP's slope there is below
# the mean slope of the whole path, and underestimates how far the metric falls
end_slope = float((path[-1] - path[-2]) / (alphas[-1] - alphas[-2]))
mean_slope = float(path[-1] - path[0])
assert 0 < end_slope < mean_slope and abs(slope) < mean_slope, (end_slope, float(slope), mean_slope)
ax.plot([0, 1], [clean_metric.mean() - slope, clean_metric.mean()], "--", color="black", label="EAP: tangent at the clean end")
ax.set_xlabel(r"$\alpha$ (0 = corrupted token embeddings, 1 = clean)")
ax.set_ylabel("mean logit difference")
ax.set_title("The metric is not linear between the two prompts")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ### Derivation: integrated gradients is a line integral, and it is complete
#
# Take a scalar function $f$ of a vector, two inputs $x$ (clean) and $x'$ (corrupted), and the
# straight path $\gamma(\alpha) = x' + \alpha\,(x - x')$, which runs from $x'$ at $\alpha = 0$ to $x$ at
# $\alpha = 1$. The fundamental theorem of calculus along the path, then the chain rule, give
#
# $$
# f(x) - f(x') = \int_0^1 \frac{d}{d\alpha} f\big(\gamma(\alpha)\big)\, d\alpha
#   = \int_0^1 \nabla f\big(\gamma(\alpha)\big) \cdot (x - x')\, d\alpha
#   = \sum_j \underbrace{(x_j - x'_j) \int_0^1 \partial_j f\big(\gamma(\alpha)\big)\, d\alpha}_{\mathrm{IG}_j(x;\, x')} .
# $$
#
# The middle term is the line integral of the gradient field $\nabla f$ along $\gamma$; since $\nabla f$
# is a gradient, its value is the difference of $f$ at the two ends. Splitting the dot product by
# coordinate gives the *integrated gradient* $\mathrm{IG}_j$ of each coordinate
# {cite:p}`sundararajan2017axiomatic`, and the equation itself is **completeness**: the attributions
# add up to $f(x) - f(x')$ exactly, however curved $f$ is along the path. The gradient at one end
# alone (EAP) has this property only when $f$ is linear along the path.
#
# In practice the integral is a right Riemann sum over $m$ points,
#
# $$
# \mathrm{IG}_j(x;\, x') \approx (x_j - x'_j)\, \frac{1}{m} \sum_{k=1}^{m} \partial_j f\Big(x' + \tfrac{k}{m}(x - x')\Big),
# $$
#
# and the attributions then add up to the Riemann sum of $g(\alpha) = \frac{d}{d\alpha} f(\gamma(\alpha))$
# instead of its integral. The gap is at most $\max |g'| / (2m)$: it shrinks like $1/m$ (or faster,
# where the errors of the sub-intervals cancel). With $m = 1$ the only point is $\alpha = 1$, the clean input: EAP.
#
# The book's sign convention is the other way round (a score is "corrupted minus clean"), so our
# attributions are $-\mathrm{IG}_j = (x'_j - x_j) \cdot (\text{mean gradient})$, and they add up to
# $f(x') - f(x)$, the total effect. The checker of exercise 3 below tests exactly this.
#
# **Completeness.** The token embedding reaches the metric only through the destinations it
# feeds, and it enters each of their inputs $x_v$ additively, so
# $\partial\,\text{metric} / \partial E = \sum_v \partial\,\text{metric} / \partial x_v$: the dot product
# $\Delta_E \cdot \partial\,\text{metric} / \partial E$ splits into one term per `input->v` edge. So the
# scores of the `input->*` edges add up to the Riemann sum of the whole path integral, which tends to the total effect $\text{metric}(\text{corrupted}) - \text{metric}(\text{clean})$
# as $m$ grows; the gap of such a Riemann sum shrinks like $1/m$ or faster. EAP ($m = 1$) has no
# such guarantee.

# %% [markdown]
# **3. Integrated gradients in one function.** *(difficulty ★★☆, importance ★★★, about 15 minutes)*
#
# Write `integrated_gradients(grad_fn, clean, corrupted, m) -> Tensor` for a scalar function
# $f$ of a vector, given its gradient `grad_fn(x)` (a `[D]` tensor for a `[D]` input); `clean`
# and `corrupted` are `[D]`. Return the `[D]` per-coordinate attribution
# $(\text{corrupted} - \text{clean}) \odot \frac{1}{m}\sum_{k=1}^{m} \nabla f\big(\text{corrupted} +
# \tfrac{k}{m}(\text{clean} - \text{corrupted})\big)$, the grid of `EAP-IG-inputs`. Its sum
# tends to $f(\text{corrupted}) - f(\text{clean})$ as $m$ grows (the checker tests that too).
#
# ```{dropdown} Hint 1
# The grid is $k = 1, \dots, m$: it includes the clean end ($\alpha = 1$), so $m = 1$ is EAP,
# and it leaves out the corrupted end.
# ```
#
# ```{dropdown} Hint 2
# The difference is corrupted minus clean, the direction of the corruption, as for $\Delta_u$.
# ```

# %% tags=["hide-input", "solution"]
def integrated_gradients(grad_fn, clean, corrupted, m):
    """Per-coordinate IG attribution [D], on the grid alpha = k/m, k = 1..m."""
    grads = [grad_fn(corrupted + k / m * (clean - corrupted)) for k in range(1, m + 1)]
    return (corrupted - clean) * torch.stack(grads).mean(dim=0)


# %%
checks.integrated_gradients(integrated_gradients)

# %% [markdown]
# On the model, `EAP-IG-inputs` moves the token embeddings along this grid. Its `input->*`
# edges should then add up to the total effect, with a gap that shrinks as $m$ grows:

# %%
def input_sum(scores):
    return sum(value for name, value in scores.as_dict().items() if name.startswith("input->"))


total = float((corrupted_metric - clean_metric).mean())
steps = [1, 2, 5, 10, 20, 50]
ig_by_steps = {m: ml.attribute(arm, arm_inputs, metric, method="EAP-IG-inputs", ig_steps=m, progress=False)
               for m in steps}
gaps = [abs(input_sum(s) - total) / abs(total) for s in ig_by_steps.values()]
for m, gap in zip(steps, gaps):
    print(f"m = {m:2d}: sum of input->* scores {input_sum(ig_by_steps[m]):+.3f} (total effect {total:+.3f}), relative gap {gap:.1%}")
assert all(later < earlier for earlier, later in zip(gaps, gaps[1:])), gaps   # the gap shrinks as m grows

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.loglog(steps, gaps, marker="o", color=viz.ARM_COLOR, label="ARM, IOI")
ax.loglog(steps, [gaps[0] / m for m in steps], "--", color="grey", label=r"$\propto 1/m$")
ax.set_xlabel("integration steps m")
ax.set_ylabel("|sum of input edges - total effect| / |total|")
ax.set_title("Completeness of EAP-IG-inputs")
ax.legend()
fig.tight_layout()

# %%
gap = dict(zip(steps, gaps))
Markdown(f"EAP's input edges account for only {input_sum(eap['ARM']) / total:.0%} of the total effect: the tangent "
         f"of the figure above. With $m = 5$ the gap is {gap[5]:.1%}, with $m = 50$ {gap[50]:.1%}. The EAP-IG reference "
         "code uses $m = 5$ in its examples (the paper does not say which $m$ it used), and so do we from now on.")

# %% [markdown]
# ### Derivation: why $\Delta_u$ times the averaged gradient scores an edge
#
# Patching the edge $u \to v$ adds $\Delta_u$ to $x_v$ and to nothing else. Write $g_v(\delta)$ for the
# metric of the clean run in which $x_v$ is replaced by $x_v + \delta$, everything downstream of $v$
# recomputed. The edge's exact score is $g_v(\Delta_u) - g_v(0)$, and the fundamental theorem of
# calculus along the segment $\delta = \beta\,\Delta_u$, $\beta \in [0, 1]$, writes it as
#
# $$
# \text{exact}(u \to v) = g_v(\Delta_u) - g_v(0)
#   = \Delta_u \cdot \int_0^1 \frac{\partial\, \text{metric}}{\partial x_v}\Big|_{x_v + \beta \Delta_u} d\beta ,
# $$
#
# the dot product summed over positions and `d_model`. So *every* edge score, the exact one
# included, is the difference the sender sends times a gradient at the receiver averaged along a
# path. The methods differ only in which gradients they average:
#
# | method | the gradient $\partial\,\text{metric} / \partial x_v$ taken at | runs for all edges |
# |---|---|---|
# | exact patching | the points of the edge's own segment (the integral itself) | one forward pass per edge |
# | EAP | $\beta = 0$: the clean run (a first-order Taylor expansion) | the two runs that give $\Delta_u$, one backward |
# | EAP-IG-inputs | $\alpha = k/m$ on the one shared path from the corrupted to the clean embeddings | the same two runs, then $m$ forward and backward |
#
# Three consequences. If the metric is linear in $x_v$, the gradient is constant and all three
# agree. The shared path is what makes EAP-IG cheap: one backward pass per step gives the gradient
# at every destination at once. And on that path *every* sender of $v$ is partly corrupted, so
# EAP-IG measures an edge's effect in a partly corrupted model, the situation of a circuit with many
# edges removed (chapter 5), rather than alone in a clean one. The next section shows where that
# difference is visible.
#
# ## How good are the estimates?
#
# Now every edge: EAP and EAP-IG ($m = 5$) against exact patching, for the ARM and for the MDM.
# For the MDM, `ml.ModelInputs.from_pairs` gives the canvas with `[MASK]` slots and bidirectional attention;
# the pairs and the readout position are the same. Two numbers summarise the agreement:
#
# - the **Spearman** rank correlation, over all edges and over the 20 edges with the largest
#   exact $|\text{score}|$ (the ones a circuit keeps);
# - the **top-N agreement**: the Jaccard index of the $N$ edges with the largest $|\text{score}|$
#   under each method, with $N$ = 5% of the graph's edges (the size chapters 5 and 6 use), the
#   overlap statistic of the paper.

# %%
mdm_inputs = ml.ModelInputs.from_pairs(mdm, pairs, tok)
print(f"MDM inputs {tuple(mdm_inputs.clean_ids.shape)}, attention: {mdm_inputs.attention}")
exact["MDM"] = ml.attribute(mdm, mdm_inputs, metric, method="exact")
eap["MDM"] = ml.attribute(mdm, mdm_inputs, metric, method="EAP")
eap_ig = {"ARM": ig_by_steps[5],
          "MDM": ml.attribute(mdm, mdm_inputs, metric, method="EAP-IG-inputs", ig_steps=5)}

N_TOP = round(0.05 * graph.n_edges)
agreement = {}  # (model, method) -> the numbers printed below, checked after the figure
fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
for ax, model_name in zip(axes, ("ARM", "MDM")):
    truth = exact[model_name].values
    top = truth.abs().argsort(descending=True)[:20]
    for label, estimate, marker in (("EAP", eap[model_name], "x"), ("EAP-IG", eap_ig[model_name], "o")):
        color = viz.ARM_COLOR if model_name == "ARM" else viz.MDM_COLOR
        ax.scatter(truth, estimate.values, marker=marker, s=25, alpha=0.7, color=color if label == "EAP-IG" else "black",
                   label=label)
        agreement[model_name, label] = a = {
            "all": compare.spearman(estimate.values, truth), "top": compare.spearman(estimate.values[top], truth[top]),
            "jaccard": compare.edge_overlap(estimate, exact[model_name], N_TOP),
            "size": float((estimate.values[top] / truth[top]).median())}  # estimate / exact on the top-20 edges
        print(f"{model_name} {label:6s}: Spearman all edges {a['all']:.3f}, top-20 exact edges {a['top']:.3f}, "
              f"top-{N_TOP} Jaccard {a['jaccard']:.2f}, median estimate/exact on the top 20 {a['size']:.2f}")
    lim = 1.2 * float(truth.abs().max())
    ax.plot([-lim, lim], [-lim, lim], color="grey", linewidth=0.8, label="estimate = exact")
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_yscale("symlog", linthresh=0.1)
    ax.set_xlabel("exact patching score (symmetric log scale)")
    ax.set_ylabel("estimated score")
    ax.set_title(f"{model_name}, IOI ({len(pairs)} pairs)")
    ax.legend()
fig.suptitle("Edge scores: gradient estimates against exact patching")
fig.tight_layout()

# %%
# The claims of the next paragraph, checked on the numbers above: the build fails if one stops holding.
for model_name in ("ARM", "MDM"):
    a_eap, a_ig = agreement[model_name, "EAP"], agreement[model_name, "EAP-IG"]
    assert a_eap["size"] < 1 and abs(a_ig["size"] - 1) < abs(a_eap["size"] - 1), (model_name, a_eap, a_ig)  # EAP shrinks
    assert a_eap["top"] > 0.8, (model_name, a_eap)                                   # ... but ranks the large edges
    assert a_ig["jaccard"] >= 0.8, (model_name, a_ig)                                # EAP-IG finds the top N
    assert a_eap["all"] > a_ig["all"], (model_name, a_eap, a_ig)                     # EAP wins over all edges
fmt = lambda key, method: " and ".join(f"{agreement[m, method][key]:.2f}" for m in ("ARM", "MDM"))
Markdown(f"On the 20 largest edges, EAP's estimates are a median {fmt('size', 'EAP')} of the exact score (ARM and MDM), "
         f"EAP-IG's {fmt('size', 'EAP-IG')}. Top-{N_TOP} Jaccard with exact patching: EAP {fmt('jaccard', 'EAP')}, "
         f"EAP-IG {fmt('jaccard', 'EAP-IG')}. Spearman over all edges: EAP {fmt('all', 'EAP')}, EAP-IG {fmt('all', 'EAP-IG')}.")

# %% [markdown]
# Read the plot before the numbers (both axes are logarithmic on each side of zero). For the
# large edges, EAP's points (crosses) lie closer to zero than the diagonal: EAP ranks them roughly
# in the right order, but it shrinks their size, as the tangent above predicted. EAP-IG's points
# (circles) follow the diagonal there, and EAP-IG finds nearly the same top-N edges as exact
# patching (a Jaccard of at least 0.8, checked in the cell that prints the numbers). On top-N
# agreement alone EAP can do as well or better on some models: the two differ in size more than
# in ranking.
#
# Over *all* edges, EAP has the higher rank correlation. That number is dominated by the
# hundreds of edges with tiny scores. Patching one small edge barely moves the model away from
# the clean input, and there EAP's tangent is exactly the right first-order estimate. EAP-IG
# takes its gradients along the path, where *all* of the input is partly corrupted, so its small
# scores describe the edge in that context, which is not what single-edge patching measures.
#
# Which context matters? A circuit is evaluated with hundreds of edges corrupted at once, not
# one. Chapter 5 tests the methods on that task: circuits built from each method's scores, and
# how much of the model's behaviour they keep.
#
# ## The score matrix
#
# `Scores.tensor` is a dense `[n_src, n_dst]` matrix: row = the sender, column = the receiver.
# The upper right is empty because a source can only feed destinations downstream of it (the
# causal structure of the graph). Here are the EAP-IG scores of both models. The colour scale is
# logarithmic on both sides of zero, so that the many small scores stay visible next to the few
# large ones.

# %%
fig, axes = plt.subplots(2, 1, figsize=(12, 9))
for ax, (model_name, scores) in zip(axes, eap_ig.items()):
    matrix = scores.tensor.masked_fill(~graph.edge_mask, float("nan"))
    vmax = float(scores.tensor.abs().max())
    norm = SymLogNorm(linthresh=0.01 * vmax, vmin=-vmax, vmax=vmax)   # small scores stay visible
    image = ax.imshow(matrix, cmap="RdBu", norm=norm, aspect="auto")
    ax.set_yticks(range(graph.n_src), graph.src_names, fontsize=7)
    ax.set_xticks(range(graph.n_dst), graph.dst_names, fontsize=6, rotation=90)
    ax.set_xlabel("destination (the receiving input)")
    ax.set_ylabel("source node")
    ax.set_title(f"EAP-IG scores, {model_name} on IOI (blank: no edge)")
    fig.colorbar(image, ax=ax, label="score (symmetric log scale)")
fig.tight_layout()

# %% [markdown]
# Compare the two matrices row by row: which sources carry the large scores in each model, and
# in which layers? Chapters 6 to 9 turn such comparisons into numbers over many examples and
# seeds.
#
# ## Exercises
#
# The checked exercises of this chapter sit where each idea is taught: patching one edge
# (exercise 1), EAP for every edge (2) and integrated gradients (3).
#
# **4. (Open.)** *(difficulty ★★★, importance ★★☆, about 30 minutes)* Exact patching changes one edge with all others clean, and EAP-IG integrates
# along a path where all inputs change together. Find an edge whose exact score is small but
# whose EAP-IG score is large (or the reverse) in the scatter above. Patch it by hand with
# `patch_edge`, then patch it again with the *other* edges into the same destination corrupted
# too. Which of the two numbers does EAP-IG resemble, and why?

# %%
Markdown(viz.versions_footer())
