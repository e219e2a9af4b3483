"""The analyses of the report that run the models: component logit lens, neurons, ablations (ARM vs MDM).

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
from ..lens import component_lens, winners
from ..tasks import ioi
from .bootstrap import hierarchical_bootstrap, over_units, per_example
from .statistics import Analysis

N_ABLATE = 3
N_RANDOM_DRAWS = 20
CATEGORIES = ("digit", "operator/punctuation", "name", "other word")


# ----- component logit lens ----------------------------------------------------------------------
def lens_analysis(models: dict, pairs, tokenizer, seeds: list[int], analysis: Analysis, n_boot: int) -> dict:
    """Component logit lens at the readout on the pool's clean inputs, ARM vs MDM."""
    won, entropy_top, example = {}, {}, {}
    for kind in ("arm", "mdm"):
        won[kind], entropy_top[kind] = {}, {}
        for s in seeds:
            model = models[f"{kind}/{s}"]
            lens = component_lens(model, ModelInputs.from_pairs(model, pairs, tokenizer))
            won[kind][s] = winners(lens, pairs.answer_ids, pairs.distractor_ids)
            top = compare.top_components(analysis.scores(f"{kind}/{s}"), analysis.n, analysis.k)
            idx = [lens.names.index(c) for c in top]
            entropy_top[kind][s] = lens.entropy()[idx].mean(0)                           # [n_examples]
            if s == seeds[0]:
                example[kind] = {"counts": won[kind][s].counts,
                                 "top_tokens": {c: [[tokenizer.tokens[t], round(v, 3)] for t, v in lens.top_tokens(c, 0, 5)] for c in top[:4]}}
    out = {"example_seed": seeds[0], "example": example, "prompt": pairs.examples[0].prompt}
    for kind in ("arm", "mdm"):
        # counts of distinct winners shrink when examples are resampled: CI over seeds only
        out[f"winners_{kind}"] = hierarchical_bootstrap(seeds, None, lambda s, _: won[kind][s].n_unique, n_boot)
        out[f"winner_variance_{kind}"] = hierarchical_bootstrap(seeds, None, lambda s, _: won[kind][s].variance, n_boot)
        out[f"entropy_top_{kind}"] = per_example(entropy_top[kind], lambda e: float(e.mean()), n_boot)
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
    return out


# ----- ablations -------------------------------------------------------------------------------------
def _accuracy_with(model, inputs: ModelInputs, nodes, means) -> float:
    logits = ablation.ablated_logits(model, inputs, nodes, "mean", means=means)
    return float(inputs.answer_is_top(logits).double().mean())


def ablation_analysis(models: dict, pairs, tokenizer, seeds: list[int], analysis: Analysis) -> dict:
    """Mean-ablate each model's top early-layer components vs as many random ones (accuracy on the pool)."""
    early = compare.early_layers(analysis.graph.n_layers)
    out = {"n_ablated": N_ABLATE, "early_layers": early}
    for kind in ("arm", "mdm"):
        targeted, random_drop = [], []
        for s in seeds:
            model = models[f"{kind}/{s}"]
            inputs = ModelInputs.from_pairs(model, pairs, tokenizer)
            means = ablation.mean_outputs(model, inputs, analysis.graph.src_names[1:])
            totals = compare.component_scores(analysis.scores(f"{kind}/{s}"), analysis.n)
            ranked = sorted((c for c in totals if ablation.layer_of(c) < early), key=lambda c: -totals[c])[:N_ABLATE]
            targeted.append(1.0 - _accuracy_with(model, inputs, ranked, means))
            draws = [ablation.random_components(analysis.graph, N_ABLATE, seed=1000 * s + d) for d in range(N_RANDOM_DRAWS)]
            random_drop.append(sum(1.0 - _accuracy_with(model, inputs, nodes, means) for nodes in draws) / N_RANDOM_DRAWS)
            if s == seeds[0]:
                out[f"components_{kind}"] = ranked
        out[f"drop_targeted_{kind}"] = over_units(targeted)
        out[f"drop_random_{kind}"] = over_units(random_drop)
    return out
