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
# # 11. Appendix: the zoo's recipe, and why the first zoo's MDMs failed Countdown
#
# *Runtime: about a minute on a laptop CPU (no GPU needed).*
#
# Every comparison in this book assumes that each model *does the task*: a circuit of a model
# that cannot solve Countdown explains nothing about global planning. The book's first zoo
# (recipe 0.1.0) failed that test. This appendix takes its failure apart, shows the recipe study
# that looked for a post-training recipe that keeps the ARM's skill, and checks the zoo the book
# now ships (the recipe the study found) with the same diagnostics.
#
# By the end of this appendix you will be able to:
#
# - read a Countdown failure as format, arithmetic or planning, with the package's diagnostics;
# - compare training recipes on short runs by what they fix, not only by exact accuracy;
# - score any model on a Countdown file in the HKUNLP / Dream format with `mechshift-lite eval`.

# %% tags=["skip-execution", "remove-cell"]
# Colab / fresh environments: install the companion package pinned to this book release.
import sys
if "google.colab" in sys.modules:
    %pip install -q "mechshift-lite @ git+https://github.com/mechshift-lite/mechshift-lite@v0.1.0"

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from mechshift_lite import diagnostics, viz, zoo
from mechshift_lite.zoo import study
from mechshift_lite.teaching import checks
from mechshift_lite.viz import ARM_COLOR, CONTROL_COLOR, MDM_COLOR

tok = zoo.tokenizer()
KIND_NAMES = {"arm": "ARM", "mdm": "MDM", "arm-continued": "ARM-continued"}

# %% [markdown]
# ## 1. The first zoo
#
# Seed 0 of the first zoo is kept in the package (`zoo.FIRST_ZOO_DIR`). Its manifest records each
# checkpoint's accuracies on fresh held-out sets (1000 IOI prompts, 500 Countdown-3 problems),
# measured on the float16 weights that ship, and the commit whose recipe rebuilds it.

# %%
FIRST = zoo.FIRST_ZOO_DIR
first = {e["kind"]: e for e in zoo.manifest(FIRST)["checkpoints"].values()}
rows = ["| model (recipe 0.1.0, seed 0) | IOI | Countdown-3 |", "| --- | --- | --- |"]
for kind, name in KIND_NAMES.items():
    m = first[kind]["accuracy"]
    rows.append(f"| {name} | {m['ioi_accuracy']:.1%} | {m['countdown3_accuracy']:.1%} |")
Markdown("\n".join(rows))

# %%
cd = {kind: first[kind]["accuracy"]["countdown3_accuracy"] for kind in KIND_NAMES}
Markdown(
    f"Every model solves IOI, but on Countdown-3 the first zoo's MDM solves {cd['mdm']:.1%} of the problems, "
    f"against {cd['arm']:.1%} for the ARM it was post-trained from (and {cd['arm-continued']:.1%} for the ARM "
    "trained on with its own objective)."
)

# %% [markdown]
# ## 2. Taking the failure apart
#
# Exact accuracy moves in coarse steps and hides *why* a model fails. The diagnostics of
# `mechshift_lite.diagnostics` score the decoded answers by their parts (is the answer a chain of two
# equations? is equation 1 true? does the chain end at the target?), and two probes read the model
# with the rest of the canonical answer given: the first answer token (the decision chapters 4 to 9
# attribute), and the digits of the intermediate result X with both of its copies masked (the MDM
# must compute X, not copy it; the ARM is teacher-forced).

# %%
problems = diagnostics.test_problems(200)
seed0 = {kind: diagnostics.countdown_diagnostics(zoo.load(kind, 0, zoo_dir=FIRST), tok, problems) for kind in KIND_NAMES}
LABELS = {
    "exact": "solved exactly", "well_formed": "chain of two equations", "eq1_true": "equation 1 true",
    "ends_at_target": "ends at the target", "first_token": "first token right (probe)",
    "x_digits": "digits of X right, X masked twice (probe)", "x_number": "all of X right (probe)",
    "x_digits_copy": "digits of X right, X visible in eq. 2 (probe)",
}
header = "| measure (first zoo, seed 0, 200 held-out problems) | " + " | ".join(KIND_NAMES.values()) + " |"
lines = [header, "| --- |" + " --- |" * len(KIND_NAMES)]
for key, label in LABELS.items():
    cells = [f"{seed0[kind][key]:.0%}" if key in seed0[kind] else "–" for kind in KIND_NAMES]
    lines.append(f"| {label} | " + " | ".join(cells) + " |")
Markdown("\n".join(lines))

# %%
arm, mdm = seed0["arm"], seed0["mdm"]
Markdown(
    f"The MDM writes well-formed chains ({mdm['well_formed']:.0%}) that end at the target "
    f"({mdm['ends_at_target']:.0%}), and picks the first token as often as the ARM "
    f"({mdm['first_token']:.0%} against {arm['first_token']:.0%}). What it lost is arithmetic: its "
    f"equation 1 is true in {mdm['eq1_true']:.0%} of its answers against {arm['eq1_true']:.0%} for the ARM, "
    f"and with X masked in both places it gets {mdm['x_digits']:.0%} of X's digits right, against "
    f"{mdm['x_digits_copy']:.0%} when it can copy X from equation 2."
)

# %% [markdown]
# ## 3. The recipe study
#
# Short post-training runs from the first zoo's seed-0 ARM, one change from its recipe (0.1.0)
# each, scored by the same diagnostics every 250 steps. Each run is a variant of that MDM recipe
# cut to the study's number of steps; its full description is in the `description` column, where
# "shipped" means the first zoo's recipe. The study is resumable: the table shows what has
# finished.
# Reproduce (one core, about ten minutes a run):
#
# ```bash
# nohup env OMP_NUM_THREADS=1 .venv/bin/python scripts/recipe_study.py > .cache/recipe_study.log 2>&1 &
# .venv/bin/python scripts/recipe_study.py --table
# ```

# %%
results = study.read_results()   # shipped with the package: mechshift_lite/zoo/recipe_study.jsonl
runs = study.curves(results)
Markdown(study.table(results))

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharex=True)
for name, rows in runs.items():
    for ax, key in zip(axes, ("x_digits", "exact")):
        ax.plot([r["step"] for r in rows], [r["metrics"][key] for r in rows], marker=".", label=name)
for ax, key in zip(axes, ("x_digits", "exact")):
    ax.axhline(arm[key], color=ARM_COLOR, linestyle="--", linewidth=1, label="first zoo's ARM")
    ax.axhline(mdm[key], color=MDM_COLOR, linestyle=":", linewidth=1, label="first zoo's MDM")
    ax.set_xlabel("post-training step")
    ax.set_ylabel(LABELS[key])
    ax.set_ylim(0, 1)
axes[0].set_title("Can the MDM still compute X?")
axes[1].set_title("Countdown-3 solved (confidence decoder)")
axes[1].legend(fontsize=7, ncol=2)
fig.suptitle("Recipe study: post-training runs from seed 0's ARM (or a longer-trained one)")
fig.tight_layout()
plt.show()

# %%
best = study.best(results)
TARGET = 0.55   # issue 12: an MDM that solves at least 55% of Countdown-3
start = best["changes"].get("start", "arm")
started_from = (f"the first zoo's {KIND_NAMES[start]}, which solves {first[start]['accuracy']['countdown3_accuracy']:.0%} "
                "of the zoo's test set" if start in first else
                "the 15000-step ARM of section 3a" if start == "arm-15k" else "an ARM the run pre-trained itself")
ZOO_RUN = "arm-15k+cd-16k"   # the run whose recipe the shipped zoo uses (checked two cells below)
zoo_run_end = max((r for r in results if r["run"] == ZOO_RUN), key=lambda r: r["step"])
display(Markdown(
    f"The best recipe is `{best['run']}` ({best['description']}): {best['metrics']['exact']:.1%} of the "
    f"study's held-out problems solved at step {best['step']}, starting from {started_from}. "
    + (f"That is below the {TARGET:.0%} target." if best["metrics"]["exact"] < TARGET else
       f"That meets the {TARGET:.0%} target on the study's problems.")
    + ("" if best["run"] == ZOO_RUN else
       f" The shipped zoo was trained with the recipe of `{ZOO_RUN}` ({zoo_run_end['metrics']['exact']:.1%} "
       f"at its last step, {zoo_run_end['step']}).")))

# %% [markdown]
# The shipped zoo's recipe (recorded stage by stage in its manifest) is that run's. It was found in
# two steps, which sections 3a and 3b retrace: a longer-trained ARM, then a longer post-training.
# It is trained in float32, as that run was, for five seeds, with its ARM-continued control
# and a from-scratch MDM. The cell checks that the manifest and the run agree:

# %%
from mechshift_lite.training import TrainConfig
from mechshift_lite.zoo import build

shipped_mdm = zoo.entry("mdm", 0)
shipped_arm = zoo.entry("arm", 0)
post = TrainConfig.from_dict(shipped_mdm["train_config"])
shipped_arm_steps = [stage["train_config"]["steps"] for stage in shipped_arm["stages"]]
assert post.steps == zoo_run_end["steps"] and zoo_run_end["changes"]["start"] == "arm-15k"
assert all(getattr(post, key) == value for key, value in zoo_run_end["changes"].items() if key != "start")
assert shipped_arm_steps == [3000, 4000, 8000]   # the chain the text below names
assert [st.config.to_dict() for st in build.stages("arm", 0)] == [st["train_config"] for st in shipped_arm["stages"]]
print(f"recipe {shipped_mdm['recipe']}: ARM {' + '.join(map(str, shipped_arm_steps))} AR steps, "
      f"MDM {post.steps} post-training steps, Countdown share {post.countdown_share:.0%} from step {post.countdown_share_from}")

# %% [markdown]
# ### 3a. A longer-trained ARM
#
# The first zoo's ARM had 3000 AR steps. The `arm-long` runs start from its ARM-continued control
# (3000 + 4000 AR steps); with 90% Countdown batches from step 250 (`arm-long+cd`, run for 1500,
# 4000 and 8000 steps) that start made the previous zoo (recipe 0.2.0). That zoo's ARM-continued
# control, trained 8000 more AR steps on the same Countdown-heavy batches (15000 in all), is the
# ARM of the zoo that ships. Does the longer ARM help the MDM? The run `arm-15k+cd-8k` post-trains
# it with the 8000-step recipe:

# %%
arm_long_cd = max((r for r in results if r["run"] == "arm-long+cd-8k"), key=lambda r: r["step"])
arm_15k = max((r for r in results if r["run"] == "arm-15k+cd-8k"), key=lambda r: r["step"])
arm_7k = seed0["arm-continued"]                   # the first zoo's control: the 7000-step ARM
arm_15k_diag = shipped_arm["diagnostics"]         # the same 200 problems (diagnostics.test_problems)
gain = arm_15k["metrics"]["exact"] - arm_long_cd["metrics"]["exact"]
arm_gain = arm_15k_diag["exact"] - arm_7k["exact"]
assert arm_15k["steps"] == arm_long_cd["steps"] and abs(gain) < arm_gain / 2   # what the text says
# the run lengths and step counts the text above names
assert sorted({r["steps"] for r in results if r["run"].startswith("arm-long+cd") and r["steps"] < post.steps}) == [1500, 4000, 8000]
assert [zoo.entry(k, 0, zoo_dir=FIRST)["step"] for k in ("arm", "arm-continued")] == shipped_arm_steps[:2] == [3000, 4000]
assert sum(shipped_arm_steps) == 15000 and sum(shipped_arm_steps[:2]) == 7000
Markdown(
    f"The 15000-step ARM solves {arm_15k_diag['exact']:.0%} of the diagnostic problems, "
    f"{arm_gain * 100:.0f} points more than the 7000-step ARM ({arm_7k['exact']:.0%}); after the same "
    f"{arm_15k['steps']} post-training steps its MDM solves {arm_15k['metrics']['exact']:.1%}, against "
    f"{arm_long_cd['metrics']['exact']:.1%} from the 7000-step ARM ({gain * 100:+.1f} points). At this length of "
    "post-training the MDM keeps little of the longer ARM's gain: what limits it is its post-training, "
    "not its starting point."
)

# %% [markdown]
# ### 3b. Longer post-training
#
# Does the MDM keep improving if post-training goes on? `arm-long+cd-16k` runs the 8000-step
# post-training for twice as many steps (its cosine schedule stretched to 16000 steps, so at step
# 8000 its learning rate is still high: compare runs at their ends, not at equal steps), and
# `arm-15k+cd-16k` does the same from the 15000-step ARM.

# %%
long_runs = {name: rows for name, rows in runs.items() if name in ("arm-long+cd-16k", "arm-15k+cd-16k")}
for name, rows in long_runs.items():
    print(f"{name:16s} " + "  ".join(f"{r['step']:>5d}: {r['metrics']['exact']:.1%}" for r in rows))
end_16k, end_both = long_runs["arm-long+cd-16k"][-1], long_runs["arm-15k+cd-16k"][-1]
assert end_16k["steps"] == end_both["steps"] == post.steps
# what the text says: longer post-training helps, and the MDM still solves fewer than its 15000-step ARM
assert arm_long_cd["metrics"]["exact"] < end_16k["metrics"]["exact"] < arm_15k_diag["exact"]
assert arm_15k["metrics"]["exact"] < end_both["metrics"]["exact"] < arm_15k_diag["exact"]
gap = arm_15k_diag["exact"] - end_both["metrics"]["exact"]
Markdown(
    f"Twice the post-training lifts the MDM from {arm_long_cd['metrics']['exact']:.1%} ({arm_long_cd['steps']} steps) to "
    f"{end_16k['metrics']['exact']:.1%} ({end_16k['steps']} steps), equation 1 true in {end_16k['metrics']['eq1_true']:.0%} of its "
    f"answers ({arm_long_cd['steps']} steps: {arm_long_cd['metrics']['eq1_true']:.0%}). With both budgets longer (the "
    f"15000-step ARM, then {end_both['steps']} post-training steps) the MDM solves {end_both['metrics']['exact']:.1%}, "
    f"equation 1 true in {end_both['metrics']['eq1_true']:.0%}: {gap * 100:.0f} points below its own ARM "
    f"({arm_15k_diag['exact']:.0%}), where the issue's target asks for at most 5. That run is the recipe of the zoo "
    f"that ships, {shipped_mdm['recipe']} (`mechshift_lite.zoo.build`), for the MDM and for its ARM-continued control: "
    "it trades the gap target for the two accuracy targets. Section 4 shows how the five seeds came out."
)

# %% [markdown]
# ## 4. The zoo that ships, diagnosed
#
# Every checkpoint of the shipped zoo was scored by the same diagnostics when it was published (200
# held-out problems, in its manifest entry). The mean over the seeds, beside the first zoo's seed 0:

# %%
lines = ["| measure (200 held-out problems) | " + " | ".join(f"{n}, first zoo (seed 0) | {n}, zoo {shipped_mdm['recipe']} (mean of seeds)"
                                                           for n in KIND_NAMES.values()) + " |",
         "| --- |" + " --- |" * (2 * len(KIND_NAMES))]
shipped_diag = {kind: [e["diagnostics"] for e in zoo.finals(kind)] for kind in KIND_NAMES}
mean_diag = lambda kind, key: sum(d[key] for d in shipped_diag[kind]) / len(shipped_diag[kind])
for key in ("exact", "eq1_true", "ends_at_target", "first_token", "x_digits"):
    cells = [f"{seed0[kind][key]:.0%} | {mean_diag(kind, key):.0%} ({len(shipped_diag[kind])})" for kind in KIND_NAMES]
    lines.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
Markdown("\n".join(lines))

# %%
assert seed0["mdm"]["eq1_true"] < mean_diag("mdm", "eq1_true") < mean_diag("arm", "eq1_true")   # what the text says
assert mean_diag("mdm", "exact") < min(mean_diag("arm", "exact"), mean_diag("arm-continued", "exact"))
Markdown(
    f"The longer post-training with Countdown-heavy batches gave back much of the arithmetic: the MDM's "
    f"equation 1 is true in {mean_diag('mdm', 'eq1_true'):.0%} of its answers (the first zoo's: {seed0['mdm']['eq1_true']:.0%}), "
    f"and it solves {mean_diag('mdm', 'exact'):.0%} of the problems. It still solves fewer than its ARM "
    f"({mean_diag('arm', 'exact'):.0%}) and the ARM-continued control ({mean_diag('arm-continued', 'exact'):.0%}), "
    f"and its equation 1 is still true less often than the ARM's ({mean_diag('arm', 'eq1_true'):.0%}): "
    "arithmetic is still where it loses problems."
)

# %%
scratch = zoo.finals("mdm-scratch")
steps = lambda e: sum(stage["train_config"]["steps"] for stage in e["stages"])
post_trained = zoo.finals("mdm")
# what the text says: as many steps as the ARM, and fewer problems solved than every post-trained MDM
assert all(steps(e) == steps(zoo.entry("arm", e["seed"])) for e in scratch)
assert all(e["diagnostics"]["exact"] < min(m["diagnostics"]["exact"] for m in post_trained) for e in scratch)
Markdown("The reference without an ARM, an MDM trained from a fresh init on the same data for as many steps as "
         "the ARM: " + "; ".join(
             f"seed {e['seed']}, {steps(e)} steps: {e['diagnostics']['exact']:.0%} solved, equation 1 true in "
             f"{e['diagnostics']['eq1_true']:.0%}, first token {e['diagnostics']['first_token']:.0%}" for e in scratch)
         + ". At this budget the AR initialisation is what gives the post-trained MDM its Countdown skill."
         if scratch else "The zoo holds no from-scratch MDM.")

# %% [markdown]
# ## 5. Scoring a model on outside data
#
# `mechshift-lite eval countdown FILE.jsonl --kind mdm --seed 0` reads problems in the HKUNLP /
# Dream format (`{"input": "15,44,79,50", "output": "44-15=29,79-29=50"}`: the operands, then the
# target), decodes each with the model's own decoder, scores it with `countdown.check`, and prints
# the accuracy with a 95% interval; one line per problem says whether it lies in this project's
# training split. Problems the zoo's tokenizer cannot write (operands outside 1..99, targets
# outside 10..99, other than 3 operands) are skipped and counted. The same, from Python:

# %%
from mechshift_lite import countdown_eval
from mechshift_lite.tasks import countdown

sample = Path("/tmp") / "countdown_sample.jsonl"
outside = countdown.generate(40, seed=11, split="test") + countdown.generate(10, seed=11, split="train")
sample.write_text("".join(json.dumps({"input": ",".join(map(str, ex.meta["numbers"] + [ex.meta["target"]])),
                                      "output": ex.answer}) + "\n" for ex in outside))
found = countdown_eval.read_problems(sample)
for kind in ("arm", "mdm"):
    s = countdown_eval.evaluate(zoo.load(kind, 0), tok, found).summary()
    print(f"{KIND_NAMES[kind]:4s} seed 0: {s['accuracy']:.1%} solved, 95% CI [{s['ci95'][0]:.1%}, {s['ci95'][1]:.1%}], "
          f"{s['n_scored']} scored, {s['n_in_training_split']} of them in the training split, {s['n_skipped']} skipped")

# %% [markdown]
# ## Exercises
#
# **1. The interval of a small evaluation.** *(difficulty ★★☆, importance ★★☆, about 10 minutes)*
# Fifty problems give a wide interval, and near 0% or 100% the textbook interval
# $\hat p \pm 1.96\sqrt{\hat p(1-\hat p)/n}$ is wrong (at $\hat p = 0$ it has width zero).
# Write `wilson(k, n) -> (low, high)`, the 95% Wilson score interval: the values of $p$ for which
# $|\hat p - p| \le z\sqrt{p(1-p)/n}$ with $z = 1.96$; solving the quadratic gives the centre
# $(\hat p + z^2/2n)/(1 + z^2/n)$ and the half-width $z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}/(1 + z^2/n)$.
#
# ```{dropdown} Hint
# Compute $\hat p = k/n$ first; clip the bounds to $[0, 1]$. With $n = 0$ nothing is known: return $(0, 1)$.
# ```

# %% tags=["hide-input", "solution"]
def wilson(k, n):
    import math

    if n == 0:
        return 0.0, 1.0
    z, p = 1.959963984540054, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# %%
checks.wilson_interval(wilson)

# %% [markdown]
# **2. (Open.)** *(difficulty ★★★, importance ★★☆, about 20 minutes)* The MDM copies X well (equation 2 visible) but computes it badly (both copies
# masked). Which change of the objective would pose "compute X" more often during training? Look
# at how `diffusion.forward_mask` draws the masked slots, estimate how often both copies of X are
# masked while the operands are visible, and propose a masking distribution that raises it.

# %%
Markdown(viz.versions_footer())
