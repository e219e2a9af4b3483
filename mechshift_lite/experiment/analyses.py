"""The analyses of the report that run the models: direct logit attribution and the residual-stream
lens, neurons, ablations (ARM vs MDM).

Each reads every seed's models on the task's common-correct pool (:mod:`.pools`), through
:class:`~mechshift_lite.inputs.ModelInputs`, and reports its statistics over seeds and examples
with :mod:`.bootstrap`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .. import ablation, compare, neurons
from ..inputs import ModelInputs
from ..lens import answer_vocabulary, direct_logit_attribution, residual_lens, winners
from ..tasks import ioi
from ..zoo import KINDS
from .bootstrap import distinct_resamples, hierarchical_bootstrap, per_example
from .pools import model_key
from .statistics import Analysis

N_ABLATE = 3
N_RANDOM_DRAWS = 20
CATEGORIES = ("digit", "operator/punctuation", "name", "other word")


# ----- direct logit attribution (the former component logit lens) and the residual-stream lens ---------
def lens_analysis(models: dict, pairs, tokenizer, seeds: list[int], analysis: Analysis, n_boot: int) -> dict:
    """Direct logit attribution at the readout on the pool's clean inputs, ARM vs MDM (and the ARMc
    control), and the residual-stream logit lens per layer.

    Keys of issue 11 (the older keys are unchanged): ``entropy_top_vocab_{kind}`` (entropy of the
    top-K components over the answer vocabulary), ``entropy_top_matched_{kind}`` (the same at
    matched scale, :mod:`~mechshift_lite.lens`), their paired differences ``..._mdm_minus_arm`` and
    ``..._armc_minus_arm`` (per example, same examples), ``winners_{mdm,armc}_minus_arm`` (over
    seeds), and ``residual_{kind}``: per layer, the mean logit difference (answer - distractor) and
    the share of examples whose top token is the answer, when the model stops after that layer.
    """
    vocab = answer_vocabulary(pairs.answer_ids, pairs.distractor_ids)
    won, entropy_top, example, readings = {}, {}, {}, {}
    flat = {"vocab": {}, "matched": {}}
    for kind in KINDS:
        won[kind], entropy_top[kind], readings[kind] = {}, {}, {}
        for key in flat:
            flat[key][kind] = {}
        for s in seeds:
            model = models[f"{kind}/{s}"]
            inputs = ModelInputs.from_pairs(model, pairs, tokenizer)
            lens = direct_logit_attribution(model, inputs)
            won[kind][s] = winners(lens, pairs.answer_ids, pairs.distractor_ids)
            top = compare.top_components(analysis.scores(f"{kind}/{s}"), analysis.n, analysis.k)
            idx = [lens.names.index(c) for c in top]
            entropy_top[kind][s] = lens.entropy()[idx].mean(0)                           # [n_examples]
            flat["vocab"][kind][s] = lens.entropy(vocab)[idx].mean(0)
            flat["matched"][kind][s] = lens.entropy(vocab, matched=True)[idx].mean(0)
            readings[kind][s] = residual_lens(model, inputs)                                # [L+1, N, V]
            if s == seeds[0] and kind != "arm-continued":
                example[kind] = {"counts": won[kind][s].counts,
                                 "top_tokens": {c: [[tokenizer.tokens[t], round(v, 3)] for t, v in lens.top_tokens(c, 0, 5)] for c in top[:4]}}
    out = {"example_seed": seeds[0], "example": example, "prompt": pairs.examples[0].prompt,
           "answer_vocabulary_size": len(vocab), "n_seed_resamples": distinct_resamples(len(seeds))}
    for kind in ("arm", "mdm"):
        # counts of distinct winners shrink when examples are resampled: CI over seeds only
        out[f"winners_{kind}"] = hierarchical_bootstrap(seeds, None, lambda s, _: won[kind][s].n_unique, n_boot)
        out[f"winner_variance_{kind}"] = hierarchical_bootstrap(seeds, None, lambda s, _: won[kind][s].variance, n_boot)
        out[f"entropy_top_{kind}"] = per_example(entropy_top[kind], lambda e: float(e.mean()), n_boot)
    for kind in KINDS:
        for key, values in flat.items():
            out[f"entropy_top_{key}_{kind}"] = per_example(values[kind], lambda e: float(e.mean()), n_boot)
        out[f"residual_{kind}"] = _residual_lens_stats(readings[kind], pairs, n_boot)
    out["winners_armc"] = hierarchical_bootstrap(seeds, None, lambda s, _: won["arm-continued"][s].n_unique, n_boot)
    for kind, label in (("mdm", "mdm"), ("arm-continued", "armc")):
        out[f"winners_{label}_minus_arm"] = hierarchical_bootstrap(
            seeds, None, lambda s, _: won[kind][s].n_unique - won["arm"][s].n_unique, n_boot)
        for key, values in flat.items():
            paired = {s: values[kind][s] - values["arm"][s] for s in seeds}                 # same examples: paired
            out[f"entropy_top_{key}_{label}_minus_arm"] = per_example(paired, lambda e: float(e.mean()), n_boot)
    return out


def _residual_lens_stats(readings: dict[int, Tensor], pairs, n_boot: int) -> dict:
    """Per layer (``after embedding``, ``after layer 0``, ...): the mean logit difference and the
    share of examples with the answer on top, over seeds and examples, of residual-lens ``readings``."""
    rows = torch.arange(len(pairs.answer_ids))
    diff = {s: r[:, rows, pairs.answer_ids] - r[:, rows, pairs.distractor_ids] for s, r in readings.items()}   # [L+1, N]
    top = {s: (r.argmax(-1) == pairs.answer_ids).double() for s, r in readings.items()}
    n_readings = next(iter(readings.values())).shape[0]
    return {"labels": ["embedding"] + [f"layer {l}" for l in range(n_readings - 1)],
            "logit_diff": [per_example({s: d[i] for s, d in diff.items()}, lambda e: float(e.mean()), n_boot) for i in range(n_readings)],
            "answer_top": [float(torch.stack([t[i].mean() for t in top.values()]).mean()) for i in range(n_readings)]}


# ----- diffusion steps: what is committed, and the leak of the clean target ------------------------------
@torch.no_grad()
def commit_analysis(models: dict, pairs, tokenizer, seeds: list[int], steps: Sequence[int], views: dict) -> dict:
    """What the MDM's canvas at each diffusion step holds, and the metric on it (issue 11).

    ``views``: the canvases the report attributed, by model key (:func:`~.pools.step0_views`, :func:`~.pools.decoded_views`).
    Per step ``k`` (mean over seeds and examples): ``pad_share``, the share of the committed answer
    slots that hold ``[PAD]``; ``metric_clean`` and ``metric_corrupted_{clean,own}``, the logit
    difference on the clean canvas and on the corrupted canvas that copies the clean run's commits
    or holds the model's own (:meth:`~mechshift_lite.inputs.ModelInputs.from_pairs`). And
    ``explained_commit_step``: in free confidence decoding (nothing held), the mean and median
    step (0-based) at which the explained slot is committed, read from the ``"#pre"`` views
    (:meth:`~mechshift_lite.inputs.ModelInputs.before_commit`) instead of decoding again.
    """
    out = {"steps": list(steps), "pad_share": [], "metric_clean": [], "metric_corrupted_clean": [], "metric_corrupted_own": []}
    mean = lambda values: float(sum(values) / len(values))
    for k in steps:
        rows = {name: [] for name in ("pad_share", "metric_clean", "metric_corrupted_clean", "metric_corrupted_own")}
        for s in seeds:
            model = models[f"mdm/{s}"]
            for commits in ("clean", "own"):
                inputs = views[model_key("mdm", s, diffusion_step=k, copied_commits=commits == "clean")]
                metric = inputs.metric()
                rows[f"metric_corrupted_{commits}"].append(float(metric(inputs.run(model, "corrupted")).mean()))
            rows["metric_clean"].append(float(metric(inputs.run(model, "clean")).mean()))
            slots = torch.arange(inputs.clean_ids.shape[1])[None, :] > pairs.readout_pos[:, None]
            committed = slots & (inputs.clean_ids != tokenizer.mask_id)
            rows["pad_share"].append(float((inputs.clean_ids[committed] == tokenizer.pad_id).double().mean()) if committed.any() else 0.0)
        for name, values in rows.items():
            out[name].append(mean(values))
    first = []
    for s in seeds:   # the commit step (0-based, one token a step) is the number of tokens committed before it
        before = views[model_key("mdm", s, before_commit=True)]
        answer = torch.arange(before.clean_ids.shape[1])[None, :] > pairs.readout_pos[:, None]
        first.append((answer & (before.clean_ids != tokenizer.mask_id)).sum(1).double())
    first = torch.cat(first)
    out["explained_commit_step"] = {"mean": float(first.mean()), "median": float(first.median())}
    return out


# ----- neurons ---------------------------------------------------------------------------------------
def _categorise(token: str) -> int | None:
    """Token categories of the neuron analysis (:data:`CATEGORIES`): digit, operator/punctuation, name, other word."""
    if token.startswith("["):
        return None
    if token.isdigit():
        return 0
    if not token[0].isalpha():
        return 1
    return 2 if token in ioi.NAMES else 3


def pooled_neuron_activations(model, pools: Sequence, tokenizer, layer: int) -> tuple[Tensor, Tensor]:
    """MLP ``layer``'s activations on the clean inputs of several pair sets, as one sequence.

    Returns ``acts [1, N, d_mlp]`` and token ``categories [1, N]`` (index into :data:`CATEGORIES`,
    ``-1`` for special tokens), ``N`` = all positions of all pools (their lengths may differ).
    """
    acts_all, cats_all = [], []
    for pairs in pools:
        inputs = ModelInputs.from_pairs(model, pairs, tokenizer)
        acts = neurons.activations(model, inputs, layer)
        cats = neurons.token_categories(inputs.clean_ids, tokenizer.tokens, _categorise)
        acts_all.append(acts.reshape(-1, acts.shape[-1]))
        cats_all.append(cats.reshape(-1))
    return torch.cat(acts_all)[None], torch.cat(cats_all)[None]


def neuron_analysis(models: dict, pools: dict, tokenizer, seeds: list[int], n_boot: int, layer: int = 0) -> dict:
    """Layer-``layer`` MLP neurons over both tasks' pool prompts: selectivity and breadth, ARM vs MDM."""
    sel, brd, heat = {}, {}, {}
    for kind in ("arm", "mdm"):
        sel[kind], brd[kind] = {}, {}
        for s in seeds:
            acts, cats = pooled_neuron_activations(models[f"{kind}/{s}"], list(pools.values()), tokenizer, layer)
            real = (cats >= 0).long()
            profile = neurons.category_profile(acts, cats, len(CATEGORIES))
            s_vals = neurons.selectivity(profile)
            sel[kind][s] = s_vals[~s_vals.isnan()]
            brd[kind][s] = neurons.breadth(acts, real)
            if s == seeds[0]:
                top = neurons.top_neurons(acts, 16, real)
                heat[kind] = {"neurons": top.tolist(), "profile": profile[:, top].tolist()}
    out = {"layer": layer, "categories": list(CATEGORIES), "heatmap": heat}
    for kind in ("arm", "mdm"):
        out[f"selectivity_{kind}"] = per_example(sel[kind], lambda v: float(v.median()), n_boot)
        out[f"breadth_{kind}"] = per_example(brd[kind], lambda v: float(v.median()), n_boot)
    out.update(paired_neuron_analysis(models, pools, tokenizer, seeds, n_boot, layer))
    return out


N_TOP_NEURONS = 32


def paired_neuron_analysis(models: dict, pools: dict, tokenizer, seeds: list[int], n_boot: int, layer: int = 0) -> dict:
    """Issue 11's neurons: MDM - ARM and ARMc - ARM, neuron by neuron (:func:`~mechshift_lite.neurons.paired_mean_differences`),
    over all neurons and over the :data:`N_TOP_NEURONS` chosen symmetrically, with intervals over seeds
    and examples (the examples of both tasks' pools, resampled with their positions).

    Keys: ``paired_{selectivity,breadth}_{mdm,armc}_minus_arm`` (all neurons) and ``..._top`` (the top ones);
    ``tied_selectivity_{mdm,armc}``: the share of neurons whose selectivity on the whole pool is exactly
    the ARM's, mean over seeds (why the statistic is a mean: a median of differences sits on those ties).
    """
    per_seed, others = {}, (("mdm", "mdm"), ("arm-continued", "armc"))
    tied: dict[str, list[float]] = {label: [] for _, label in others}
    for s in seeds:
        views = {kind: _example_activations(models[f"{kind}/{s}"], list(pools.values()), tokenizer, layer) for kind in KINDS}
        acts = {kind: v[0] for kind, v in views.items()}
        _, cats, example = views["arm"]
        if any(not torch.equal(v[1], cats) for v in views.values()):
            raise ValueError("the models' views must hold the same prompt tokens in the same order")
        sel = {kind: neurons.neuron_statistics(acts[kind][None], cats[None], len(CATEGORIES))[0] for kind in KINDS}
        for kind, label in others:
            tied[label].append(float((sel[kind] == sel["arm"]).float().mean()))
        top = {kind: neurons.symmetric_top_neurons(acts["arm"][None], acts[kind][None], N_TOP_NEURONS) for kind, _ in others}
        per_seed[s] = ({kind: neurons.ExampleNeuronStatistics(a, cats, example, len(CATEGORIES)) for kind, a in acts.items()},
                       int(example.max()) + 1, top)
    memo: dict = {}

    def stats(s, rows: Tensor) -> dict:
        key = (s, tuple(rows.tolist()))
        if key not in memo:
            by_kind, n_examples, tops = per_seed[s]
            weights = torch.bincount(rows, minlength=n_examples)   # how often each example was drawn
            stats = {kind: of_examples.statistics(weights) for kind, of_examples in by_kind.items()}
            out = {}
            for kind, label in others:
                for suffix, chosen in (("", None), ("_top", tops[kind])):
                    for name, value in neurons.mean_differences(stats["arm"], stats[kind], chosen).items():
                        out[f"paired_{name}_{label}_minus_arm{suffix}"] = value
            memo[key] = out
        return memo[key]

    n_examples = {s: per_seed[s][1] for s in seeds}
    keys = stats(seeds[0], torch.arange(n_examples[seeds[0]])).keys()
    # every call draws the same replicates (same seed, units and sizes): the memo computes each once
    out = {key: hierarchical_bootstrap(seeds, lambda s: n_examples[s], lambda s, rows, key=key: stats(s, rows)[key], n_boot)
           for key in keys}
    out["n_top_neurons"] = N_TOP_NEURONS
    out.update({f"tied_selectivity_{label}": sum(shares) / len(shares) for label, shares in tied.items()})
    return out


def _example_activations(model, pools: Sequence, tokenizer, layer: int) -> tuple[Tensor, Tensor, Tensor]:
    """MLP ``layer``'s activations ``[N, d_mlp]`` at the categorised (prompt) tokens of the clean
    inputs of several pair sets, their token categories ``[N]`` and the example each belongs to
    ``[N]`` (numbered across pools). Special tokens (``[BOS]``, ``[PAD]``, ``[MASK]``) are left out,
    so an ARM's and an MDM's views give the same positions in the same order."""
    acts_all, cats_all, example_all, offset = [], [], [], 0
    for pairs in pools:
        inputs = ModelInputs.from_pairs(model, pairs, tokenizer)
        acts = neurons.activations(model, inputs, layer)                                  # [B, P, d_mlp]
        cats = neurons.token_categories(inputs.clean_ids, tokenizer.tokens, _categorise)
        keep = cats >= 0
        acts_all.append(acts[keep])
        cats_all.append(cats[keep])
        example_all.append((torch.arange(acts.shape[0])[:, None] + offset).expand(acts.shape[:2])[keep])
        offset += acts.shape[0]
    return torch.cat(acts_all), torch.cat(cats_all), torch.cat(example_all)


# ----- ablations -------------------------------------------------------------------------------------
def _drops(model, inputs: ModelInputs, nodes, means) -> Tensor:
    """``[n_examples]`` 1 where the answer is no longer on top with ``nodes`` position-mean ablated."""
    logits = ablation.ablated_logits(model, inputs, nodes, "position-mean", means=means)
    return 1.0 - inputs.answer_is_top(logits).double()


def ablation_analysis(models: dict, pairs, tokenizer, seeds: list[int], analysis: Analysis, n_boot: int = 500) -> dict:
    """Position-mean ablation (:mod:`~mechshift_lite.ablation`: each output replaced by its mean at
    that position over the pool, the same kind of replacement for every model) of each model's top
    :data:`N_ABLATE` early components (:func:`~mechshift_lite.compare.early_cutoff`), against
    layer-matched random components (:data:`N_RANDOM_DRAWS` draws), ARM, MDM and the ARMc control.

    Keys: ``drop_targeted_{kind}``, ``drop_matched_{kind}`` (accuracy drops on the pool) and
    ``excess_{kind}`` (targeted minus matched, per example, paired), intervals over seeds and
    examples (``kind``: ``arm``, ``mdm``, ``armc``); ``excess_{mdm,armc}_minus_arm`` (per seed,
    the examples are shared); ``components_{arm,mdm,arm-continued}``: seed 0's targeted components.
    """
    early = compare.early_cutoff(analysis.graph.n_layers)
    out = {"early_cutoff": early, "n_ablated": N_ABLATE}
    excess = {}
    for kind in KINDS:
        targeted, matched, excess[kind] = {}, {}, {}
        for s in seeds:
            model = models[f"{kind}/{s}"]
            inputs = ModelInputs.from_pairs(model, pairs, tokenizer)
            means = ablation.mean_outputs(model, inputs, analysis.graph.src_names[1:], per_position=True)
            totals = compare.component_scores(analysis.scores(f"{kind}/{s}"), analysis.n)
            ranked = sorted((c for c in totals if ablation.layer_of(c) < early), key=lambda c: -totals[c])[:N_ABLATE]
            targeted[s] = _drops(model, inputs, ranked, means)
            matched[s] = torch.stack([_drops(model, inputs, ablation.layer_matched_random(analysis.graph, ranked, 1000 * s + d), means)
                                      for d in range(N_RANDOM_DRAWS)]).mean(0)
            excess[kind][s] = targeted[s] - matched[s]
            if s == seeds[0]:
                out[f"components_{kind}"] = ranked
        label = "armc" if kind == "arm-continued" else kind
        out[f"drop_targeted_{label}"] = per_example(targeted, lambda e: float(e.mean()), n_boot)
        out[f"drop_matched_{label}"] = per_example(matched, lambda e: float(e.mean()), n_boot)
        out[f"excess_{label}"] = per_example(excess[kind], lambda e: float(e.mean()), n_boot)
    for kind, label in (("mdm", "mdm"), ("arm-continued", "armc")):
        paired = {s: excess[kind][s] - excess["arm"][s] for s in seeds}
        out[f"excess_{label}_minus_arm"] = per_example(paired, lambda e: float(e.mean()), n_boot)
    return out
