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
# # 5a. Reading the IOI circuit: what the heads do
#
# Chapter 5 extracted circuits as sets of edges, and chapter 6 counts how many edges the ARM's
# and the MDM's circuits share. A count does not say what the shared parts *do*. This chapter
# reads the toy's IOI circuit head by head, with the tools Wang et al. used on GPT-2 small
# {cite:p}`wang2022ioi`: each head's **direct effect** on the logit difference, and **attention
# scores** that identify head types. Then it asks whether each type exists in both models, and
# whether the same head keeps its role after post-training.
#
# By the end of this chapter you will be able to:
#
# - compute a head's direct effect on `logit[IO] - logit[S]` through the final norm with its scale
#   frozen, and check that all direct effects add up to the logit difference;
# - compute duplicate-token, previous-token and name-mover attention scores from the positions of
#   the names;
# - classify heads by documented thresholds and compare the roles of the ARM's and the MDM's heads;
# - read attention patterns of single heads, interactively and as a static figure.

# %% tags=["skip-execution", "remove-cell"]
# Colab / fresh environments: install the companion package pinned to this book release.
import sys
if "google.colab" in sys.modules:
    %pip install -q "mechshift-lite @ git+https://github.com/mechshift-lite/mechshift-lite@v0.1.0"

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

import mechshift_lite as ml
from mechshift_lite import heads, viz, zoo
from mechshift_lite.experiment import task_pairs
from mechshift_lite.teaching import checks

# %% [markdown]
# ## The prompts and the positions of the names
#
# We load the zoo's ARM and MDM (seed 0) and draw held-out IOI pairs (chapter 2). As in chapter 5,
# `ml.ModelInputs.from_pairs` gives each model its view: the prompt with causal attention for
# the ARM, the prompt followed by `[MASK]` slots with bidirectional attention for the MDM. Both
# read the answer at the same place, the last prompt token "to". Only the clean prompts are used
# here. `heads.ioi_positions` finds, in every prompt, the indirect object IO (the answer), the two
# mentions S1 and S2 of the subject (the distractor), and the readout position.

# %%
tok = zoo.tokenizer()
models = {"ARM": zoo.load("arm", seed=0), "MDM": zoo.load("mdm", seed=0)}
pairs = task_pairs("ioi", tok, n=64, seed=0)
views = {name: ml.ModelInputs.from_pairs(model, pairs, tok) for name, model in models.items()}
positions = heads.ioi_positions(views["ARM"])
assert all(torch.equal(getattr(positions, f), getattr(heads.ioi_positions(views["MDM"]), f)) for f in ("io", "s1", "s2", "end"))
example = 0
words = [tok.tokens[i] for i in views["ARM"].clean_ids[example, : int(positions.end[example]) + 1].tolist()]
print(" ".join(words))
print(f"IO '{words[positions.io[example]]}' at {int(positions.io[example])}, S1 '{words[positions.s1[example]]}' at "
      f"{int(positions.s1[example])}, S2 at {int(positions.s2[example])}, readout '{words[-1]}' at {int(positions.end[example])}")

# %% [markdown]
# ## Direct effects
#
# A head's output at the readout position is one of the vectors summed in the residual stream
# that the unembedding reads. Its **direct effect** on the logit difference is what it adds to
# `logit[IO] - logit[S]` by that route alone: the output, centred and divided by the scale the
# final norm computed from the *real* residual stream (frozen, as in chapter 7's direct logit
# attribution), times the norm's weight, dotted with `W_U[:, IO] - W_U[:, S]`. With the scale
# frozen the norm is linear, so the direct effects of the heads plus everything else (embeddings,
# MLPs, biases) add up to the model's own logit difference: the check below. The intervals are
# 95% bootstrap intervals over the prompts.

# %%
effects = {name: heads.direct_effects(model, views[name]) for name, model in models.items()}
for name, e in effects.items():
    gap = (e.per_prompt.sum((0, 1)) + e.rest - e.logit_diff).abs().max()
    assert gap < 1e-3, gap
    print(f"{name}: logit difference {e.logit_diff.mean():+.2f} = heads {e.per_prompt.sum((0, 1)).mean():+.2f} "
          f"+ the rest {e.rest.mean():+.2f}  (largest per-prompt gap {gap:.1e})")

# %%
n_layers, n_heads = models["ARM"].cfg.n_layers, models["ARM"].cfg.n_heads
names = heads.head_names(n_layers, n_heads)
fig, ax = plt.subplots(figsize=(10, 3.8))
where = np.arange(len(names))
for offset, (name, color) in zip((-0.2, 0.2), (("ARM", viz.ARM_COLOR), ("MDM", viz.MDM_COLOR))):
    e = effects[name]
    mean, low, high = (t.flatten().numpy() for t in (e.mean, e.low, e.high))
    ax.bar(where + offset, mean, width=0.4, color=color, label=name,
           yerr=np.stack([mean - low, high - mean]), capsize=2)
ax.axhline(0, color="grey", lw=0.8)
ax.set_xticks(where, names, rotation=90)
ax.set_ylabel("direct effect on logit[IO] - logit[S]")
ax.set_title("Each head's direct effect at the readout (mean over prompts, 95% bootstrap interval)")
ax.legend()
fig.tight_layout()

# %%
def top_heads(e, k=4):
    order = e.mean.flatten().abs().argsort(descending=True)[:k]
    return [names[i] for i in order.tolist()]


def share(e, layer):
    return float(e.per_prompt[layer].sum(0).mean() / e.logit_diff.mean())


Markdown(" ".join(
    f"In the {name}, the heads with the largest direct effects are {', '.join(top_heads(e))}; the heads of layer 1 "
    f"together write {share(e, 1):.0%} of the mean logit difference ({e.logit_diff.mean():.2f}) directly."
    for name, e in effects.items()))

# %% [markdown]
# ## Attention scores that identify head types
#
# Wang et al. named IOI heads by what they attend to. Three of their types can be read from one
# clean run, with `heads.head_scores`, from the attention patterns `[layer, head, prompt, query, key]`:
#
# - a **duplicate-token** head attends from S2 to S1: the later mention of a name finds its
#   earlier copy (score: the attention probability S2 → S1);
# - a **previous-token** head attends from every position to the one before it (score: the mean
#   attention $i \to i - 1$ over the prompt);
# - a **name mover** attends from the readout to IO rather than to S, and copies the name it
#   reads into the logits (score: attention readout → IO minus readout → S1 and S2; a name mover
#   also needs a positive direct effect).
#
# For scale, the attention each key would get if a head spread its attention evenly:

# %%
patterns = {name: heads.attention_patterns(model, views[name]) for name, model in models.items()}
scores = {name: heads.head_scores(patterns[name], positions) for name in models}
keys_seen = (positions.end + 1).float()                     # causal: the query at the readout sees the prompt
Markdown(f"A prompt has {keys_seen.mean():.1f} tokens on average, so even attention from the readout gives each key "
         f"{(1 / keys_seen).mean():.3f} in the ARM; the MDM's queries see the whole canvas of "
         f"{views['MDM'].clean_ids.shape[1]} positions, {1 / views['MDM'].clean_ids.shape[1]:.3f} per key.")

# %%
cell = lambda t: f"{float(t):.2f}"
rows = []
for i, head in enumerate(names):
    e = {name: effects[name] for name in models}
    de = [f"{float(e[m].mean.flatten()[i]):+.2f} [{float(e[m].low.flatten()[i]):+.2f}, {float(e[m].high.flatten()[i]):+.2f}]"
          for m in models]
    got = [cell(getattr(scores[m], kind).flatten()[i]) for kind in ("duplicate", "previous", "io", "s") for m in models]
    rows.append(f"| {head} | {de[0]} | {de[1]} | " + " | ".join(got) + " |")
Markdown("\n".join([
    "| head | direct effect ARM | direct effect MDM | S2→S1 ARM | S2→S1 MDM | i→i−1 ARM | i→i−1 MDM "
    "| end→IO ARM | end→IO MDM | end→S ARM | end→S MDM |",
    "|---|---|---|---|---|---|---|---|---|---|---|", *rows]))

# %% [markdown]
# ## Attention patterns of the top heads, on one prompt
#
# The heads with the largest direct effects in the ARM, plus the ARM's strongest duplicate-token
# and previous-token heads, drawn for the prompt above in both models. Rows are queries (the
# position attending), columns keys. The MDM's canvas is cut after the answer slot, so its rows
# do not sum to 1: the rest of the attention goes to the later `[MASK]` slots.

# %%
strongest = lambda t: names[int(t.flatten().argmax())]
shown = list(dict.fromkeys([*top_heads(effects["ARM"], 2), strongest(scores["ARM"].duplicate), strongest(scores["ARM"].previous)]))
index = [(int(h[1]), int(h.split(".h")[1])) for h in shown]
crop = {"ARM": int(positions.end[example]) + 1, "MDM": int(positions.end[example]) + 2}
views_of_example = {}
for name in models:
    tokens = [tok.tokens[i] for i in views[name].clean_ids[example, : crop[name]].tolist()]
    attention = torch.stack([patterns[name][layer, head, example, : crop[name], : crop[name]] for layer, head in index])
    views_of_example[name] = (tokens, attention)
    display(Markdown(f"**{name}**"))
    display(viz.attention_patterns(tokens, attention, head_labels=[f"{name} {h}" for h in shown]))

# %%
for name, (tokens, attention) in views_of_example.items():
    viz.attention_patterns_figure(tokens, attention, head_labels=shown, title=f"{name}: the top heads on one prompt")

# %% [markdown]
# ## Roles, and whether they survive post-training
#
# `heads.classify` gives each head the roles its scores pass (thresholds in the module's
# docstring: attention of at least `heads.MIN_ATTENTION` to the expected key for duplicate- and
# previous-token heads; for a name mover, attention to IO exceeding attention to S by at least
# `heads.MIN_NAME_MOVER` *and* a direct effect whose interval lies above 0). `heads.compare_roles`
# then asks, role by role, which of the ARM's heads keep their role, with the same index, in the MDM
# post-trained from it.

# %%
roles = {name: heads.classify(scores[name], effects[name]) for name in models}
comparison = heads.compare_roles(roles["ARM"], roles["MDM"])
listed = lambda hs: ", ".join(hs) if hs else "none"
lines = [f"Thresholds: attention ≥ {heads.MIN_ATTENTION} (duplicate-, previous-token), "
         f"IO − S attention ≥ {heads.MIN_NAME_MOVER} and direct effect > 0 (name mover).", ""]
kinds = {"name-mover": "name_mover", "duplicate-token": "duplicate", "previous-token": "previous"}
for row in comparison:
    if row.exists_in_both:
        verdict = f"exists in both; kept by {listed(row.kept)}" + (f", lost by {listed(row.lost)}" if row.lost else "") \
            + (f", new in the MDM: {listed(row.gained)}" if row.gained else "")
    elif row.before:
        verdict = "exists in the ARM only: post-training removed it (at these thresholds)"
    elif row.after:
        verdict = "exists in the MDM only"
    else:
        verdict = "found in neither model"
    lines.append(f"- **{row.role}**: ARM {listed(row.before)}; MDM {listed(row.after)}. The role {verdict}.")
    for head in (*row.lost, *row.gained):   # how far from the line a head that changed role is
        i, kind = names.index(head), kinds[row.role]
        lines.append(f"  - {head}'s {row.role} score: ARM {float(getattr(scores['ARM'], kind).flatten()[i]):.3f}, "
                     f"MDM {float(getattr(scores['MDM'], kind).flatten()[i]):.3f}; threshold "
                     f"{heads.MIN_NAME_MOVER if kind == 'name_mover' else heads.MIN_ATTENTION}.")
s_reader = strongest(scores["ARM"].s)
lines += ["", f"Not one of the three types, but visible in the table: {s_reader} attends from the readout to S "
          f"(S1 + S2: {float(scores['ARM'].s.flatten()[names.index(s_reader)]):.2f} in the ARM, "
          f"{float(scores['MDM'].s.flatten()[names.index(s_reader)]):.2f} in the MDM), "
          "which could tell later heads at the readout which name is the subject."]
Markdown("\n".join(lines))

# %% [markdown]
# Absolute thresholds are harsher on the MDM: its queries spread attention over the whole canvas,
# `[MASK]` slots included, so the same preference for one key gives a smaller probability. Compare
# a lost role's scores with the even-attention baseline above before reading it as a lost mechanism.
#
# The head types are a vocabulary for hypotheses, not proof: a direct effect says nothing about
# what a head does *through* later heads (its indirect effect), and an attention score says where
# a head looks, not what it moves. Chapter 4's attributions and chapter 5's circuits test the
# causal part; this chapter says what the heads of those circuits look like.
#
# **1. The duplicate-token score.** *(difficulty ★★☆, importance ★★★, about 15 minutes)*
#
# Write `duplicate_score(patterns, s1, s2) -> Tensor` that takes attention patterns
# `[layer, head, prompt, query, key]` and the positions `s1`, `s2` `[prompt]` of the two mentions of
# S, and returns `[layer, head]`: the attention from S2 to S1, averaged over the prompts.
#
# ```{dropdown} Hint
# Index the prompt, query and key dimensions together: `patterns[:, :, rows, s2, s1]` with
# `rows = torch.arange(n_prompts)` picks one entry per prompt; then average over the last dimension.
# ```

# %% tags=["hide-input", "solution"]
def duplicate_score(patterns, s1, s2):
    """[L, H, N, P, P] attention, [N] positions -> [L, H] mean attention S2 -> S1."""
    rows = torch.arange(patterns.shape[2])
    return patterns[:, :, rows, s2, s1].mean(-1)


# %%
checks.duplicate_score(duplicate_score)
for name in models:
    assert torch.allclose(duplicate_score(patterns[name], positions.s1, positions.s2),
                          heads.duplicate_token_scores(patterns[name], positions)), name
print("duplicate_score agrees with heads.duplicate_token_scores on both models")

# %% [markdown]
# ## Exercises
#
# The checked exercise of this chapter sits where the scores are taught (exercise 1).
#
# **2. (Open.)** *(difficulty ★★☆, importance ★★☆, about 20 minutes)* The MDM attends in both directions, so S1 can look *ahead* at S2. Compute the
# attention S1 → S2 of every MDM head (the ARM's is 0 by construction). Does a head of the MDM
# find duplicates backwards? Would you call it a duplicate-token head?

# %%
Markdown(viz.versions_footer())
