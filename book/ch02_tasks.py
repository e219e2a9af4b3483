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
# # 2. Two tasks: local and global
#
# The paper's claim is about two kinds of task. In a *local* task the next token can be worked out
# from a few earlier tokens by a simple rule, which is the kind of computation an autoregressive
# model (ARM) learns well. In a *global* task the first token of the answer depends on
# information that only makes sense once the whole problem is known: the model has to plan.
# This book uses one task of each kind: **indirect object identification** (IOI) and
# **Countdown**. This chapter builds both with `mechshift_lite.tasks` and uses the data to show
# which kind each one is.
#
# By the end of this chapter you will be able to:
#
# - generate IOI and Countdown problems, with their train/test hold-out, and explain why no
#   seed can leak a test problem into training;
# - build the *clean/corrupted pairs* and the *logit-difference metric* that every later
#   attribution uses, and say which token each metric reads and where;
# - show with data why IOI is local (one copying rule solves it) and why Countdown needs a plan
#   (the first answer token depends on the target, the last number of the prompt);
# - lay out one example on the shared 40-token canvas, as the ARM sees it and as the masked
#   diffusion model (MDM) sees it, and find the readout position.

# %% tags=["skip-execution", "remove-cell"]
# Colab / fresh environments: install the companion package pinned to this book release.
import sys
if "google.colab" in sys.modules:
    %pip install -q "mechshift-lite @ git+https://github.com/mechshift-lite/mechshift-lite@v0.1.0"

# %%
import re
from collections import Counter
from itertools import combinations

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from mechshift_lite import tasks, viz
from mechshift_lite.teaching import checks
from mechshift_lite.tasks import countdown, ioi
from mechshift_lite.experiment.pools import target_blind_rates
from mechshift_lite.tokenizer import split_words

# %% [markdown]
# Both tasks share one word-level vocabulary: special tokens, Countdown's digits and symbols,
# and IOI's words. Every digit is its own token, so `44` is two tokens, as in the
# character-level Countdown data of the Dream/DiffuLLaMA authors.

# %%
tok = tasks.build_tokenizer()
print(len(tok), "tokens; the first ones:", tok.tokens[:12])
print(split_words("Then, Mary and John went to the store."), split_words("15,44,79,50 [SEP] 44-15=29"))

# %% [markdown]
# ## IOI: a local task
#
# IOI comes from {cite:t}`wang2022ioi`. A sentence names two
# people, then mentions one of them again (the subject, S); the next word should be the other
# person, the indirect object (IO). The prompt is the sentence without that last word. Each of
# 8 sentence frames comes in two orders of the first mention: **BABA** (`S and IO`) and
# **ABBA** (`IO and S`), so there are 16 templates.

# %%
for order, template in (ioi.TEMPLATES[0], ioi.TEMPLATES[len(ioi.TEMPLATES) // 2]):
    print(f"{order}: {template}")

# %%
ioi_test = ioi.generate(500, seed=0, split="test")
rows = [f"| {ex.meta['order']} | {ex.meta['io']} | {ex.meta['s']} | {ex.prompt} | **{ex.answer}** |" for ex in ioi_test[:6]]
Markdown("\n".join(["| order | IO | S | prompt | answer |", "|---|---|---|---|---|", *rows]))

# %% [markdown]
# ### Clean and corrupted prompts
#
# Attribution (later chapters) asks which parts of the model make the clean prompt give a
# different answer from a *corrupted* prompt. A corruption changes as little as possible. We
# use the two corruptions of the EAP-IG reference:
#
# - **ABC**: the second mention of S becomes a third name C. No name repeats, so the cue
#   "the repeated name is not the answer" is gone (IO stays the reference answer, for the metric);
# - **flipped**: the second mention of S becomes IO. Now IO is the repeated name, and the right
#   answer flips to S.
#
# Names are single tokens, so the two prompts of a pair align token by token. Below, the token
# that changed is shaded (hover a token to read its value).

# %%
ioi_pairs = {corruption: ioi.make_pairs(tok, ioi_test, corruption) for corruption in ioi.CORRUPTIONS}
length = int(ioi_pairs["ABC"].readout_pos[0]) + 1  # real tokens of the first pair
clean = ioi_pairs["ABC"].clean_ids[0, :length]
views = {"clean": (clean, ioi_test[0].answer)}
views |= {c: (p.corrupted_ids[0, :length], p.corrupted_examples[0].answer) for c, p in ioi_pairs.items()}
for label, (ids, answer) in views.items():
    display(Markdown(f"**{label}** (reference answer: {answer})"),
            viz.colored_tokens([tok.tokens[i] for i in ids], (ids != clean).float()))

# %% [markdown]
# ### The metric
#
# The metric is the logit difference $\text{logit}[\text{IO}] - \text{logit}[\text{S}]$ at the
# last prompt position (the word "to"), whose logits predict the next token, the answer. It is
# positive when the model prefers the right name.
#
# Why IOI is *local*: the answer is always one of the two names at the start of the sentence,
# and a two-step rule finds it: spot the name that occurs twice (a duplicate-token detector),
# then copy **the other name** (the rule that Wang et al. found a circuit of name-mover heads
# for). Let us write that rule as a "model": its logits are 1 at the readout for every name that
# occurs exactly once in the prompt, and 0 everywhere else. Then we read its metric on the
# clean and the two corrupted prompts.

# %%
name_ids = torch.tensor([tok.token_id(name) for name in ioi.NAMES])


def other_name_rule(pairs, ids):
    """The rule's logits [batch, pos, vocab]: 1 at the readout for each name that occurs once in ids [batch, pos]."""
    logits = torch.zeros(*ids.shape, len(tok))
    once = ((ids[:, :, None] == name_ids).sum(1) == 1).float()  # [batch, n_names]
    logits[torch.arange(len(ids))[:, None], pairs.readout_pos[:, None], name_ids] = once
    return logits


for corruption, pairs in ioi_pairs.items():
    metric = pairs.metric()
    clean_score = metric(other_name_rule(pairs, pairs.clean_ids)).mean()
    corrupted_score = metric(other_name_rule(pairs, pairs.corrupted_ids)).mean()
    print(f"{corruption:8s} clean: {clean_score:+.2f}   corrupted: {corrupted_score:+.2f}   ({len(pairs)} pairs)")

# %% [markdown]
# The rule is right on all 500 test sentences (+1). On ABC prompts it has no reason to prefer
# either name (0), and on flipped prompts it picks S (−1). So the task reduces to comparing name
# tokens and copying one of them: every step uses tokens that are already in the prompt, and
# nothing has to be worked out ahead of time.

# %% [markdown]
# ## Countdown: a task that needs a plan
#
# Countdown follows the rules of Stream of Search {cite:p}`gandhi2024sos`:
# combine the numbers with `+ - * /` to reach the target. Each step combines two available
# numbers into one (subtraction never goes negative, and division must be exact), and every
# number is used exactly once. The format is that of the HKUNLP Dream `cd3` data {cite:p}`ye2025dream`: the
# operands, then the target, then `[SEP]`; the answer is the chain of equations. The same group
# used Countdown to argue that discrete diffusion models learn planning tasks on which
# autoregressive models fail {cite:p}`ye2024beyond`.

# %%
cd_test = countdown.generate(300, seed=0, split="test")
rows = [f"| {ex.meta['numbers']} | {ex.meta['target']} | `{ex.prompt}` | `{ex.answer}` |" for ex in cd_test[:6]]
Markdown("\n".join(["| operands | target | prompt | canonical answer |", "|---|---|---|---|", *rows]))

# %% [markdown]
# `countdown.check` decides whether an answer is correct. It follows HKUNLP's `cd_metric`, made
# strict: every equation must be true and use numbers that are available at that point, and
# the chain must end at the target with every operand used once. Many answers can be correct;
# `countdown.solve` returns one of them, the *canonical* one.
#
# **1. Check a Countdown answer.** *(difficulty ★★☆, importance ★★☆, about 20 minutes)*
#
# Write `check_countdown(numbers, target, answer) -> bool` (`numbers` a list of ints, `target` an
# int, `answer` a string) that returns True when `answer` (equations like `44-15=29` separated by
# commas) is a correct solution: each equation reads `a op b = c` with `op` one of `+ - * /`, is
# true in integers (division exact), uses two numbers that are available at that point (the
# operands, plus the results of earlier equations, each usable once), and the chain ends with
# only the target left.
#
# ```{dropdown} Hint 1
# `re.fullmatch(r"(\d+)([+\-*/])(\d+)=(\d+)", equation)` parses one equation, or returns None.
# ```
#
# ```{dropdown} Hint 2
# Keep a list of the available numbers: remove both operands (fail if one is missing), append the
# result. At the end the list must be exactly `[target]`.
# ```

# %% tags=["hide-input", "solution"]
def check_countdown(numbers, target, answer):
    """True iff answer is a chain of true equations that uses every number once and ends at target."""
    available = list(numbers)
    for equation in answer.split(","):
        match = re.fullmatch(r"(\d+)([+\-*/])(\d+)=(\d+)", equation)
        if match is None:
            return False
        a, op, b, c = int(match[1]), match[2], int(match[3]), int(match[4])
        if not {"+": a + b == c, "-": a - b == c, "*": a * b == c, "/": b != 0 and a == b * c}[op]:
            return False
        for x in (a, b):
            if x not in available:
                return False
            available.remove(x)
        available.append(c)
    return available == [target]


# %%
checks.check_countdown(check_countdown)

# %% [markdown]
# A few answers to one problem, judged by yours and by `countdown.check`:

# %%
numbers, target = [15, 44, 79], 50
print("solve:", countdown.solve(numbers, target))
for answer, why in [("79+15=94,94-44=50", "canonical"), ("44-15=29,79-29=50", "another correct chain"),
                    ("44-15=29,79-29=51", "wrong arithmetic"), ("44-15=29,44+6=50", "44 reused, 6 invented"),
                    ("79-29=50", "29 invented, 15 and 44 unused"), ("79+44=123,123-15=108", "ends at 108")]:
    verdict = countdown.check(numbers, target, answer)
    assert check_countdown(numbers, target, answer) == verdict
    print(f"{answer:22s} {verdict!s:5s}  {why}")

# %% [markdown]
# **The canonical answer.** A model can only learn an answer exactly if the answer is a function
# of the prompt. So `solve` returns the first solution of a depth-first search in a fixed order:
# first the operations in the order `+ * - /`, then, for each operation, the pairs of numbers in
# index order. Each result is appended to the list, and every equation is written with the larger
# operand first. Why operations first? If the search tried pairs first, pair (0, 1) would start
# almost every answer, whatever the target. Only about a third of the problems would then have
# a second target with a different first token (below), against about three quarters with this
# order.

# %%
low, high = countdown.TARGET_RANGE  # targets have two digits
results = countdown.solutions(numbers)  # {reachable result: canonical answer}
print("operations in search order:", countdown.OPERATIONS)
print(f"{numbers} reach {len(results)} results; the two-digit ones:", {t: a for t, a in results.items() if low <= t <= high})

# %% [markdown]
# ### Why Countdown is global
#
# The first answer token is the first digit of the first equation's larger operand. It says
# which numbers to combine first. That choice depends on the **target**, and the target is the
# last number of the prompt. Take the operands `4, 7, 9` and look at the canonical first
# equation for every two-digit target they can reach:

# %%
def first_tokens(numbers):
    """{target: first answer token} for every two-digit target that ``numbers`` can reach."""
    return {t: split_words(a)[0] for t, a in countdown.solutions(numbers).items() if low <= t <= high}


example_numbers = [4, 7, 9]
answers = {t: a for t, a in sorted(countdown.solutions(example_numbers).items()) if low <= t <= high}
equations = sorted({a.split(",")[0] for a in answers.values()})
fig, ax = plt.subplots(figsize=(8, 3.5))
for token, color in zip(sorted({split_words(a)[0] for a in answers.values()}), (viz.ARM_COLOR, viz.MDM_COLOR, viz.CONTROL_COLOR)):
    targets = [t for t, a in answers.items() if split_words(a)[0] == token]
    ax.scatter(targets, [equations.index(answers[t].split(",")[0]) for t in targets], color=color, s=60,
               label=f"first answer token '{token}'")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
ax.set_yticks(range(len(equations)), equations)
ax.set_xlim(low - 2, high + 2)
ax.set_xlabel("target (the last number of the prompt)")
ax.set_ylabel("canonical first equation")
ax.set_title(f"Operands {example_numbers}: the target decides how the answer starts")
fig.tight_layout()
print(f"{len(answers)} two-digit targets, {len(equations)} different first equations, "
      f"{len({split_words(a)[0] for a in answers.values()})} different first tokens")

# %% [markdown]
# Thirteen targets lead to eight different first equations and two different first tokens. A model
# that writes `7` or `9` first has, in effect, chosen a plan for reaching a number it has only
# seen at the end of the prompt. How typical is this? For each of the 300 test problems, take all
# its reachable two-digit targets. Suppose a model could not see the target: its best guess for
# the first token is the most common one among those targets. How often would that guess be right?

# %%
per_problem = [first_tokens(ex.meta["numbers"]) for ex in cd_test]
blind = [Counter(tokens.values()).most_common(1)[0][1] / len(tokens) for tokens in per_problem]
shared = [sum(a == b for a, b in combinations(tokens.values(), 2)) / (len(tokens) * (len(tokens) - 1) / 2)
          for tokens in per_problem if len(tokens) > 1]
pairable = sum(countdown.pairable(ex) for ex in cd_test)
print(f"two targets of the same operands share the first token in {sum(shared) / len(shared):.0%} of target pairs")
print(f"best target-blind guess of the first token: right for {sum(blind) / len(blind):.0%} of targets on average")
print(f"problems with another target whose first token differs: {pairable} of {len(cd_test)}")

fig, ax = plt.subplots(figsize=(7, 3))
ax.hist(blind, bins=[i / 20 for i in range(10, 21)], color=viz.MDM_COLOR, edgecolor="white")
ax.axvline(sum(blind) / len(blind), color="black", linestyle="--", label="mean")
ax.legend()
ax.set_xlabel("share of the problem's targets for which the best blind guess is right")
ax.set_ylabel("test problems")
ax.set_title("Guessing the first token without reading the target")
fig.tight_layout()

# %% [markdown]
# The bar at 1.0 holds the problems whose two-digit targets all start the same way; they are the
# problems without a corrupted pair (below). Compare IOI, where a rule that never looks past the
# names is always right. In Countdown,
# a model that ignores the target gets the first token wrong for a large share of targets; to
# get it right it has to combine the target with all the operands *before* it writes anything.
# That is the planning step this book attributes.
#
# ### Clean and corrupted pairs
#
# The corrupted prompt keeps the operands and replaces the target by another reachable two-digit
# target $T'$ whose canonical answer starts with a **different** token. $T'$ is drawn at random
# among all such targets, with a generator seeded by the problem. Only the last number of the
# prompt changes, yet it changes the first answer token. Problems without such a $T'$ (about a
# quarter) are left out with `countdown.pairable`.
#
# The metric is the logit difference, at the last prompt position (`[SEP]`), between the clean
# answer's first token and the corrupted answer's first token. Reading one slot keeps the ARM
# and the MDM comparable: a log-probability of the whole answer would need the answer in the
# input (teacher forcing for the ARM, a partly unmasked canvas for the MDM), which changes what
# is being attributed.

# %%
cd_examples = [ex for ex in cd_test if countdown.pairable(ex)]
cd_pairs = countdown.make_pairs(tok, cd_examples)
real = int(cd_pairs.readout_pos[0]) + 1
clean = cd_pairs.clean_ids[0, :real]
for label, ids, ex in [("clean", clean, cd_pairs.examples[0]),
                       ("corrupted", cd_pairs.corrupted_ids[0, :real], cd_pairs.corrupted_examples[0])]:
    display(Markdown(f"**{label}**: canonical answer `{ex.answer}`"),
            viz.colored_tokens([tok.tokens[i] for i in ids], (ids != clean).float()))
print(f"readout position {int(cd_pairs.readout_pos[0])} ({tok.tokens[int(clean[-1])]}); metric = "
      f"logit['{tok.tokens[int(cd_pairs.answer_ids[0])]}'] - logit['{tok.tokens[int(cd_pairs.distractor_ids[0])]}']")

# %% [markdown]
# ### Target-dependent problems
#
# A pair still lets a rule that ignores the target decide its *clean* prompt: two such rules are
# the first digit of the largest operand, and the commonest first move of the operands over all
# their targets (`countdown.blind_first_tokens`). The report therefore keeps only
# **target-dependent** problems (`countdown.target_dependent`): pairable ones whose first answer
# token neither rule predicts, so that the decision the attribution explains needs the target.
# And a model counts as right on a pair only if it gets both prompts' first tokens, which no
# target-blind rule can: the two prompts share their operands and want different tokens.

# %%
dependent = [ex for ex in cd_examples if countdown.target_dependent(ex)]
dependent_rates = target_blind_rates(countdown.make_pairs(tok, dependent))
print(f"pairable problems: {len(cd_examples)}; target-blind rules right on "
      + ", ".join(f"{rule} {rate:.0%}" for rule, rate in target_blind_rates(cd_pairs).items()))
print(f"target-dependent problems: {len(dependent)} ({len(dependent) / len(cd_test):.0%} of all); the rules right on "
      + ", ".join(f"{rule} {rate:.0%}" for rule, rate in dependent_rates.items()))
assert all(rate == 0 for rate in dependent_rates.values())

# %% [markdown]
# ## Train and test never meet
#
# Each problem's split is decided by a stable hash (CRC-32) of its identity: the full sentence
# for IOI, and the *sorted* operands with the target for Countdown. So a reordering of a test
# problem is a test problem too. About 10% of all problems are test problems
# (`tasks.common.TEST_PERCENT`). The generators draw a problem, then keep it only if it belongs
# to the split asked for. Because the split depends on the problem and not on the seed, no
# seed and no sample size can put a test problem into training. Here the training sets are drawn
# with the *same* seed as the test sets:

# %%
ioi_train = ioi.generate(2000, seed=0, split="train")
cd_train = countdown.generate(1000, seed=0, split="train")


def problem(ex):
    """A problem's identity: the sentence for IOI; (sorted operands, target) for Countdown."""
    return (ex.prompt, ex.answer) if ex.task == "ioi" else (tuple(sorted(ex.meta["numbers"])), ex.meta["target"])


for name, train, test in [("IOI", ioi_train, ioi_test), ("Countdown", cd_train, cd_test)]:
    overlap = {problem(ex) for ex in train} & {problem(ex) for ex in test}
    print(f"{name:9s} train {len(train):4d}  test {len(test):3d}  problems in both: {len(overlap)}")
print("IOI test names also seen in training:", {ex.meta["io"] for ex in ioi_test} <= {ex.meta["io"] for ex in ioi_train})

# %% [markdown]
# For IOI the hold-out is by sentence: the test set uses the same names and frames as training,
# in combinations the model has never seen. The test checks the same skill on new inputs, not
# new words.
#
# ## One canvas, two views
#
# Every example lives on a canvas of `tasks.CANVAS` = 40 tokens. The **training sequence** is
# `[BOS] prompt answer [EOS]`, padded with `[PAD]`. For attribution we feed only the prompt:
#
# - the **ARM** sees `[BOS] prompt` (right-padded within a batch, with an attention mask);
# - the **MDM** sees `[BOS] prompt` followed by `[MASK]` up to the canvas, with full
#   bidirectional attention (`pairs.to_mdm(tok)`).
#
# Both models follow the *shift* of Dream {cite:p}`ye2025dream` and DiffuLLaMA {cite:p}`gong2024scaling`: the logits at position $i$ predict
# token $i+1$. So the first answer token is read at the last prompt position, `answer_start - 1`,
# for both models.
#
# **2. Find the readout.** *(difficulty ★☆☆, importance ★★★, about 5 minutes)*
#
# Write `readout_position(attention_mask) -> Tensor` that takes a right-padded mask
# `[batch, pos]` (1 on real tokens, 0 on `[PAD]`) of the ARM's input `[BOS] prompt` and returns,
# for each row, the position whose logits predict the first answer token (integers, `[batch]`).
#
# ```{dropdown} Hint
# The first answer token would sit just after the last real token, and the logits one position
# earlier predict it. With right padding, the number of real tokens tells you where that is.
# ```

# %% tags=["hide-input", "solution"]
def readout_position(attention_mask):
    """[batch] long: the last real position of each right-padded row."""
    return attention_mask.sum(1) - 1


# %%
checks.readout_position(readout_position)

# %% [markdown]
# The pairs carry their readout already (`pairs.readout_pos`); yours finds the same positions
# from the ARM's padding mask:

# %%
assert torch.equal(readout_position(cd_pairs.attention_mask), cd_pairs.readout_pos)
print("Countdown readouts of the first pairs:", readout_position(cd_pairs.attention_mask)[:8].tolist())

# %% [markdown]
# In the figure below the readout is the outlined cell, and the arrow points to the slot it predicts.

# %%
fig, axes = plt.subplots(2, 1, figsize=(12, 5))
for ax, (name, pairs) in zip(axes, [("IOI", ioi_pairs["ABC"]), ("Countdown", cd_pairs)]):
    one = pairs.select([0])
    training = tasks.encode_examples(tok, one.examples)
    readout = int(one.readout_pos[0])
    assert readout == int(training.answer_start[0]) - 1
    rows = {"training sequence": training.ids[0], "ARM input": one.clean_ids[0], "MDM input": one.to_mdm(tok).clean_ids[0]}
    for y, ids in enumerate(rows.values()):
        for x, i in enumerate(ids.tolist()):
            shade = {"[MASK]": "#f3c9a8", "[PAD]": "white"}.get(tok.tokens[i], "#dcdcdc" if x <= readout else "#bfe3bf")
            outline = y > 0 and x == readout
            ax.add_patch(plt.Rectangle((x, y), 1, 1, facecolor=shade, edgecolor="black" if outline else "white", lw=2))
            ax.text(x + 0.5, y + 0.5, tok.tokens[i], rotation=90, ha="center", va="center", fontsize=6)
    ax.annotate("", xy=(readout + 1.5, 2.95), xytext=(readout + 0.5, 2.95),
                arrowprops={"arrowstyle": "->", "connectionstyle": "arc3,rad=0.6"})
    ax.set(xlim=(0, tasks.CANVAS), ylim=(3.3, 0), yticks=[0.5, 1.5, 2.5], yticklabels=list(rows),
           xlabel="position", title=f"{name}: readout at position {readout}, predicting position {readout + 1}")
fig.suptitle("The 40-token canvas (grey: prompt, green: answer, orange: [MASK])")
fig.tight_layout()

# %% [markdown]
# ## Tokens and lengths
#
# How much of the canvas do the tasks use? Below are the lengths of the training sequences
# (`[BOS] prompt answer [EOS]`). Countdown with four operands is shown for comparison: its chains
# have one more equation, and most would not fit, which is why this book uses three operands.

# %%
lengths = {
    "IOI": ioi_train,
    "Countdown, 3 operands": cd_train,
    "Countdown, 4 operands": countdown.generate(40, seed=0, split="train", n_operands=4),
}
fig, ax = plt.subplots(figsize=(7, 3.2))
for (label, examples), color in zip(lengths.items(), (viz.ARM_COLOR, viz.MDM_COLOR, "grey")):
    used = tasks.encode_examples(tok, examples, length=64).answer_end + 1
    print(f"{label:22s} {len(examples):4d} examples, {int(used.min())}-{int(used.max())} tokens, "
          f"{(used > tasks.CANVAS).float().mean():.0%} longer than the canvas")
    ax.hist(used.tolist(), bins=range(10, 56), density=True, alpha=0.6, color=color, label=label)
ax.axvline(tasks.CANVAS, color="black", linestyle="--", label=f"canvas ({tasks.CANVAS} tokens)")
ax.set_xlabel("tokens in [BOS] prompt answer [EOS]")
ax.set_ylabel("share of examples")
ax.set_title("Sequence lengths per task")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# ## Exercises
#
# The checked exercises of this chapter sit where each idea is taught: checking a Countdown
# answer (exercise 1) and finding the readout (2).
#
# **3. (Open.)** *(difficulty ★★☆, importance ★★☆, about 20 minutes)* `make_pairs` contrasts first *tokens*, not first *equations*. In the figure for
# `4, 7, 9`, find two targets whose first equations differ but whose first tokens agree. What
# part of the plan does the one-slot metric miss? How could you measure it, and what would each
# model (ARM and MDM) need in its input for that measurement?

# %%
Markdown(viz.versions_footer())
