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
# # 7. Logit lens: what each component says
#
# Attribution tells us *which* edges matter for the metric. The component-wise logit lens (after
# the logit lens of {cite:t}`nostalgebraist2020logitlens`, which reads the residual stream of each
# layer through the unembedding) asks a more direct question: at the readout position, what does
# each head's and each MLP's output say about the next token, if we read it straight through the
# unembedding? The paper uses it to argue that the ARM solves Countdown with a few sharply
# specialised components, and the MDM with many components that each contribute a little
# ("distributed integration").
#
# By the end of this chapter you will be able to:
#
# - project a component's output through the final norm and the unembedding, and explain how the
#   norm's scale is handled;
# - check that the component logits add up to the model's own logits;
# - find the "winning" component of each example and measure how concentrated the winners are;
# - read the report's ARM vs MDM lens statistics with their intervals.

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
from mechshift_lite import lens, plots, viz, zoo
from mechshift_lite.teaching import checks
from mechshift_lite.experiment import task_pairs
from mechshift_lite.experiment.verdicts import fmt
from mechshift_lite.viz import ARM_COLOR, MDM_COLOR

# %% [markdown]
# ## The lens, and the final norm
#
# A component's output $o$ at the readout position is a vector in the residual stream. The model
# itself reads the *sum* of all outputs, $r$, through the final LayerNorm and the unembedding
# $W_U$. LayerNorm is not linear: it divides by the standard deviation of its input. There are two
# ways to read one component:
#
# - pass $o$ through a LayerNorm of its own: every component is rescaled to unit size, and small,
#   irrelevant outputs look as loud as large ones;
# - **freeze the scale at the real residual stream** (our choice; the paper does not say which it
#   used): $\text{lens}(o) = \big((o - \bar o)\,/\,\text{std}(r)\big) \odot w \; W_U$.
#
# With the frozen scale the norm is linear, so the component logits plus a constant (position
# embeddings, output biases, the norm's bias) add up *exactly* to the model's logits. This is also
# called direct logit attribution. Let us check that on the zoo's ARM and MDM.

# %%
tok = zoo.tokenizer()
models = {"ARM": zoo.load("arm", seed=0), "MDM": zoo.load("mdm", seed=0)}
TASK_NAMES = {"ioi": "IOI", "countdown": "Countdown"}
N_EXAMPLES = 32
pairs = {task: task_pairs(task, tok, n=N_EXAMPLES, seed=0) for task in TASK_NAMES}


lenses = {(name, task): lens.component_lens(model, ml.ModelInputs.from_pairs(model, pairs[task], tok))
          for name, model in models.items() for task in TASK_NAMES}
for (name, task), reading in lenses.items():
    rebuilt = reading.logits.sum(0) + reading.constant
    print(f"{name} {TASK_NAMES[task]:9s}: max |sum of component logits + constant - model logits| = "
          f"{(rebuilt - reading.model_logits).abs().max():.1e}")

# %% [markdown]
# **1. The frozen-scale projection.** *(difficulty ★★☆, importance ★★★, about 15 minutes)*
# Write `lens_projection(o, r, w, W_U, eps) -> Tensor` for a
# LayerNorm model: `o` and `r` are `[batch, d_model]` (a component's output and the full residual
# stream), `w` is the norm's weight `[d_model]`, `W_U` the unembedding `[d_model, vocab]`. Centre
# `o`, divide by the standard deviation of `r` (population variance plus `eps`), scale by `w`,
# and project. The check verifies that the projections of the parts of `r` add up to the model's
# own logits.
#
# ```{dropdown} Hint
# `r.var(-1, unbiased=False, keepdim=True)` is the population variance; `torch.rsqrt` of it plus
# `eps` is $1/\text{std}(r)$. Centre `o` with its *own* mean, scale with `r`'s standard deviation.
# ```

# %% tags=["hide-input", "solution"]
def lens_projection(o, r, w, W_U, eps):
    centred = o - o.mean(-1, keepdim=True)
    scale = torch.rsqrt(r.var(-1, unbiased=False, keepdim=True) + eps)
    return (centred * scale * w) @ W_U


# %%
checks.lens_projection(lens_projection)


# %% [markdown]
# ## What single components say
#
# For the first IOI example, here are the five top tokens of the components that push hardest
# towards the answer (the indirect object) over the distractor (the subject).

# %%
example = 0
print("prompt:", pairs["ioi"].examples[example].prompt, "| answer:", tok.tokens[int(pairs["ioi"].answer_ids[example])])
for name in models:
    reading = lenses[(name, "ioi")]
    diffs = reading.logit_diff(pairs["ioi"].answer_ids, pairs["ioi"].distractor_ids)[:, example]
    print(f"\n{name}")
    for i in diffs.argsort(descending=True)[:3].tolist():
        tops = ", ".join(f"{tok.tokens[t]} {v:+.1f}" for t, v in reading.top_tokens(reading.names[i], example, 5))
        print(f"  {reading.names[i]:6s} logit diff {diffs[i]:+6.2f}   top tokens: {tops}")

# %% [markdown]
# The same question for every component at once: the mean logit difference
# (answer minus distractor) each component writes, averaged over the examples drawn above.

# %%
fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
for ax, task in zip(axes, TASK_NAMES):
    names = lenses[("ARM", task)].names
    width = 0.4
    for i, (name, color) in enumerate((("ARM", ARM_COLOR), ("MDM", MDM_COLOR))):
        diffs = lenses[(name, task)].logit_diff(pairs[task].answer_ids, pairs[task].distractor_ids).mean(1)
        ax.bar([x + (i - 0.5) * width for x in range(len(names))], diffs.tolist(), width, color=color, label=name)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylabel("mean logit diff")
    ax.set_title(TASK_NAMES[task], fontsize=9)
axes[0].legend(fontsize=8)
axes[1].set_xticks(range(len(names)), names, rotation=90, fontsize=8)
fig.suptitle(f"Direct effect of each component on answer vs distractor (seed 0, {N_EXAMPLES} examples)", fontsize=10)
fig.tight_layout()

# %% [markdown]
# ## Winners: specialised or distributed?
#
# The paper's "unique explanatory components" figure counts, over a set of examples, which
# components explain the answer. We make that precise:
#
# ```{admonition} Definitions (quoted from `mechshift_lite.lens`)
# :class: note
# - The **winner** of an example is the component (head or MLP, not the input embedding) whose
#   lens gives the largest $\text{logit}[\text{answer}] - \text{logit}[\text{distractor}]$.
# - **Distinct winners**: how many components win at least one example. **Winner variance**: the
#   variance of their win counts. Sharp specialisation = few winners, high variance.
# - **Lens entropy**: the entropy (nats) of $\text{softmax}(\text{lens}(o))$. Low = the component
#   points at a few tokens; high = a flat, distributed contribution.
# ```

# %%
for (name, task), reading in lenses.items():
    stats = lens.winners(reading, pairs[task].answer_ids, pairs[task].distractor_ids)
    ranked = sorted(stats.counts.items(), key=lambda item: -item[1])
    print(f"{name} {TASK_NAMES[task]:9s}: {stats.n_unique} distinct winners, variance {stats.variance:5.1f}: {ranked}")

# %% [markdown]
# ## Over seeds and the common-correct pool
#
# The report repeats this on every seed's ARM and MDM, on the common-correct pool of chapter 6,
# and adds the mean lens entropy of each model's top-K components (by attribution).

# %%
result = ml.report(progress=False)
plots.lens_summary(result);

# %%
Markdown("| task | statistic | ARM | MDM |\n|---|---|---|---|\n" + "\n".join(
    f"| {TASK_NAMES[task]} | {label} | " + " | ".join(
        f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]" for s in (result['tasks'][task]['lens'][f'{key}_arm'], result['tasks'][task]['lens'][f'{key}_mdm'])) + " |"
    for task in TASK_NAMES
    for key, label in (("winners", "distinct winners"), ("winner_variance", "winner variance"), ("entropy_top", "lens entropy of top-K"))))

# %% [markdown]
# The number of distinct winners is a count over a fixed set of examples, so its interval comes
# from resampling the seeds only (resampling examples with replacement would shrink the count).
# A difference between ARM and MDM supports the paper's picture only if it holds on both tasks and
# across seeds; the verdict table in chapter 6 states whether it does.
#
# ## Flatness at matched scale
#
# The lens entropy above mixes two things with flatness. A component with a *small* output has
# small logits and so a flat softmax, whatever it points at; and over the whole vocabulary, words
# the task never answers count as much as its answers. The report therefore also measures it at
# matched scale:
#
# :::{admonition} Definitions (quoted from `mechshift_lite.lens`)
# :class: note
# - **Answer vocabulary**: every token that is a clean answer or a distractor somewhere in the pool.
# - **Entropy over the answer vocabulary**: the entropy of the softmax of a component's logits
#   restricted to the answer vocabulary.
# - **At matched scale**: the same, after rescaling the component's output to the norm of the
#   residual stream it is read from ($o \cdot |c(r)| / |c(o)|$, $c$ the norm's centring), so that
#   a small output no longer reads flat.
# - **Residual-stream logit lens**: the final norm and unembedding applied to the residual stream
#   itself after the embedding and after each layer: what the model would answer if it stopped there.
# :::
#
# Each entropy is the mean over the model's top-K components (by attribution) and over the pool's
# examples; the differences MDM - ARM and ARMc - ARM are paired (same examples), with intervals over
# seeds and examples.

# %%
lens_of = {task: result["tasks"][task]["lens"] for task in TASK_NAMES}
vocabulary_sizes = ", ".join(f"{TASK_NAMES[task]} {lens_of[task]['answer_vocabulary_size']} tokens" for task in TASK_NAMES)
Markdown(f"Answer vocabulary: {vocabulary_sizes}.\n\n"
         "| task | entropy of top-K | ARM | MDM | ARM-continued | MDM - ARM (paired) | ARMc - ARM (paired) |\n|---|---|---|---|---|---|---|\n"
         + "\n".join(f"| {TASK_NAMES[task]} | {label} | " + " | ".join(fmt(lens_of[task][f"entropy_top_{key}_{kind}"])
                                                               for kind in ("arm", "mdm", "arm-continued", "mdm_minus_arm", "armc_minus_arm")) + " |"
                      for task in TASK_NAMES for key, label in (("vocab", "answer vocabulary"), ("matched", "answer vocabulary, matched scale"))))

# %% [markdown]
# ## The residual stream, layer by layer
#
# Direct logit attribution splits the final answer among components. The logit lens proper asks
# a different question: after how many layers is the answer already there? We read the residual
# stream after the embedding and after each layer through the final norm and the unembedding.

# %%
plots.residual_lens(result);

# %%
def answer_top_row(task, kind, label):
    reading = lens_of[task][f"residual_{kind}"]
    return f"| {TASK_NAMES[task]} | {label} | " + " | ".join(f"{share:.0%}" for share in reading["answer_top"]) + " |"


labels = lens_of["ioi"]["residual_arm"]["labels"]
Markdown("Share of examples whose top token is the answer, when the model stops after:\n\n"
         f"| task | model | {' | '.join(labels)} |\n|---|---|" + "---|" * len(labels) + "\n"
         + "\n".join(answer_top_row(task, kind, label) for task in TASK_NAMES
                      for kind, label in (("arm", "ARM"), ("mdm", "MDM"), ("arm-continued", "ARM-continued"))))

# %% [markdown]
# ## Exercises
#
# **2. (Open.) The other choice.** *(difficulty ★★☆, importance ★★☆, about 30 minutes)*
# Pass each component's output through a LayerNorm of its own
# instead, recompute the winners for the ARM and the MDM, and compare. Which components change
# rank the most, and why are they the ones with small outputs?
#
# **3. (Open.) Components needed.** *(difficulty ★★★, importance ★★☆, about 30 minutes)*
# The winner looks at one component at a time. Two heads that each add half of the
# answer never win. Define a statistic that counts how many components are needed to reach 50% of
# the total logit difference, and compare ARM and MDM with it.

# %%
Markdown(viz.versions_footer())
