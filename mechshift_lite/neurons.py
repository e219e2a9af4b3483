"""Neuron activations of one MLP over task examples: how selective, how broad.

Definitions (ours; the paper shows plots without defining a statistic):

* **activations**: the MLP's hidden units ``act(x @ W_in + b_in)`` (gpt2) or the SwiGLU product
  (llama), ``[batch, pos, d_mlp]``, on the same inputs the attribution uses.
* **category profile**: the mean activation of each neuron over the positions of each token
  category (e.g. digits, operators, names, other), ``[n_categories, d_mlp]``.
* **selectivity** of a neuron, in [0, 1]: ``1 - H(p) / log(C)`` where ``p`` is its positive
  category profile normalised to sum to 1. 1 = it fires for one category only (sharp,
  specialised); 0 = equally for all (broad). Neurons that never fire positively get NaN.
* **breadth** of a neuron, in [0, 1]: the fraction of real positions where its activation exceeds
  half of its maximum over the dataset. Low = it fires on few tokens.
* **paired neuron comparison** (issue 11, :func:`paired_mean_differences`): an MDM keeps its ARM's
  weights, so neuron ``i`` of one is neuron ``i`` of the other. The comparison is the mean over
  neurons of the per-neuron difference (MDM - ARM) of selectivity or breadth, on the same positions
  (a mean, not a median: many neurons have exactly the same selectivity in both models, often 1.0,
  and a median of differences then sits on that point mass at 0 whatever the others do), over
  neurons chosen by a criterion symmetric in the two models: all of them, or the ``k`` with the
  largest *mean of the two models'* activation variances (choosing by one model's variance makes
  the other look broader by regression to the mean).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from .inputs import ModelInputs, clean_input
from .model import Transformer


@torch.no_grad()
def activations(
    model: Transformer,
    input_ids: Tensor | ModelInputs,
    layer: int,
    attention_mask: Tensor | None = None,
    attention=None,
) -> Tensor:
    """``[batch, pos, d_mlp]`` hidden activations of MLP ``layer`` (on the clean ids of a
    :class:`~mechshift_lite.inputs.ModelInputs`, with its mask and attention)."""
    input_ids, attention_mask, attention = clean_input(input_ids, attention_mask, attention)
    if not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"layer must be in [0, {model.cfg.n_layers}); got {layer}")
    run = model.run_with_nodes(input_ids, attention_mask, attention=attention)
    block = model.blocks[layer]
    return block.mlp.hidden(block.ln2(run.inputs[f"m{layer}"]))


def token_categories(
    token_ids: Tensor, vocabulary: Sequence[str], categorise: Callable[[str], int | None]
) -> Tensor:
    """``[batch, pos]`` category index of each token (``-1`` where ``categorise`` returns None)."""
    table = torch.tensor([-1 if (c := categorise(t)) is None else c for t in vocabulary])
    return table[token_ids]


def category_profile(acts: Tensor, categories: Tensor, n_categories: int) -> Tensor:
    """``[n_categories, d_mlp]`` mean activation per category (positions with category -1 ignored).

    A category with no position gets NaN.
    """
    if acts.shape[:2] != categories.shape:
        raise ValueError(f"categories must have shape [batch, pos] = {tuple(acts.shape[:2])}; got {tuple(categories.shape)}")
    flat, cats = acts.reshape(-1, acts.shape[-1]), categories.reshape(-1)
    keep = cats >= 0
    sums = torch.zeros(n_categories, acts.shape[-1], dtype=acts.dtype).index_add(0, cats[keep], flat[keep])
    counts = torch.bincount(cats[keep], minlength=n_categories).to(acts.dtype)[:, None]
    return sums / counts


def selectivity(profile: Tensor) -> Tensor:
    """``[d_mlp]`` selectivity of each neuron from its category profile (see module docstring)."""
    positive = profile.nan_to_num(0.0).clamp(min=0)
    total = positive.sum(0)
    p = positive / total
    entropy = -(p * p.clamp(min=1e-12).log()).sum(0)
    out = 1 - entropy / math.log(profile.shape[0])
    return torch.where(total > 0, out, torch.full_like(out, float("nan")))


def breadth(acts: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """``[d_mlp]`` fraction of real positions where a neuron exceeds half its dataset maximum."""
    flat = acts.reshape(-1, acts.shape[-1])
    if attention_mask is not None:
        flat = flat[attention_mask.reshape(-1).bool()]
    threshold = flat.max(0).values / 2
    return (flat > threshold).double().mean(0)


def top_neurons(acts: Tensor, k: int, attention_mask: Tensor | None = None) -> Tensor:
    """Indices of the ``k`` neurons with the largest activation variance over real positions."""
    flat = acts.reshape(-1, acts.shape[-1])
    if attention_mask is not None:
        flat = flat[attention_mask.reshape(-1).bool()]
    if not 0 < k <= flat.shape[-1]:
        raise ValueError(f"k must be between 1 and d_mlp ({flat.shape[-1]}); got {k}")
    return flat.var(0).topk(k).indices


def symmetric_top_neurons(acts_a: Tensor, acts_b: Tensor, k: int, attention_mask: Tensor | None = None) -> Tensor:
    """Indices of the ``k`` neurons with the largest mean of the two models' activation variances
    over real positions (``acts_*``: ``[batch, pos, d_mlp]`` on the same inputs)."""
    if acts_a.shape != acts_b.shape:
        raise ValueError(f"the two models' activations must have one shape; got {tuple(acts_a.shape)} and {tuple(acts_b.shape)}")
    flat = lambda acts: acts.reshape(-1, acts.shape[-1]) if attention_mask is None else acts.reshape(-1, acts.shape[-1])[attention_mask.reshape(-1).bool()]
    if not 0 < k <= acts_a.shape[-1]:
        raise ValueError(f"k must be between 1 and d_mlp ({acts_a.shape[-1]}); got {k}")
    return ((flat(acts_a).var(0) + flat(acts_b).var(0)) / 2).topk(k).indices


def neuron_statistics(acts: Tensor, categories: Tensor, n_categories: int) -> tuple[Tensor, Tensor]:
    """Every neuron's selectivity and breadth, ``([d_mlp], [d_mlp])``, on the categorised positions.

    ``acts``: ``[batch, pos, d_mlp]``; ``categories``: ``[batch, pos]`` (``-1``: not a real token,
    left out of the profile and of the breadth).
    """
    return (selectivity(category_profile(acts, categories, n_categories)),
            breadth(acts, (categories >= 0).long()))


def mean_differences(stats_a: tuple[Tensor, Tensor], stats_b: tuple[Tensor, Tensor], neurons: Tensor | None = None) -> dict[str, float]:
    """Mean over ``neurons`` (None: all) of the per-neuron differences ``b - a`` of selectivity
    (neurons where both are defined) and of breadth; ``stats_*`` from :func:`neuron_statistics`."""
    pick = (lambda v: v) if neurons is None else (lambda v: v[neurons])
    (sel_a, brd_a), (sel_b, brd_b) = ((pick(sel), pick(brd)) for sel, brd in (stats_a, stats_b))
    both = ~(sel_a.isnan() | sel_b.isnan())
    diff_sel = (sel_b - sel_a)[both]
    return {"selectivity": float(diff_sel.mean()) if len(diff_sel) else float("nan"), "breadth": float((brd_b - brd_a).mean())}


def paired_mean_differences(acts_a: Tensor, acts_b: Tensor, categories: Tensor, n_categories: int,
                            neurons: Tensor | None = None) -> dict[str, float]:
    """Mean over ``neurons`` (None: all) of the per-neuron differences ``b - a`` of selectivity
    (neurons where both are defined) and of breadth, on the same positions (:func:`neuron_statistics`,
    :func:`mean_differences`)."""
    return mean_differences(neuron_statistics(acts_a, categories, n_categories),
                            neuron_statistics(acts_b, categories, n_categories), neurons)


class ExampleNeuronStatistics:
    """:func:`neuron_statistics` of any resample of whole examples, without gathering positions.

    A bootstrap over examples asks for the statistics of hundreds of resamples of the same
    positions. Both statistics are made of per-example sums: the category profile of a resample
    is the weighted sum of each example's category sums over the weighted sum of its category
    counts, and the breadth counts, per example, the positions above half the resample's maximum
    (itself the maximum of the examples drawn). So this keeps the per-example sums once, and each
    resample costs a few matrix-vector products and one comparison of every position.

    Args:
        acts: ``[N, d_mlp]`` activations at ``N`` categorised positions (no ``-1`` category).
        categories: ``[N]`` category index of each position, ``0 .. n_categories - 1``.
        example: ``[N]`` the example each position belongs to, ``0 .. n_examples - 1``.
        n_categories: number of categories.
    """

    def __init__(self, acts: Tensor, categories: Tensor, example: Tensor, n_categories: int):
        if acts.dim() != 2 or categories.shape != acts.shape[:1] or example.shape != acts.shape[:1]:
            raise ValueError(f"acts must be [N, d_mlp] with one category and one example per position; got "
                             f"{tuple(acts.shape)}, {tuple(categories.shape)}, {tuple(example.shape)}")
        if len(categories) and int(categories.min()) < 0:
            raise ValueError("every position needs a category >= 0: leave the uncategorised positions out first")
        self.acts, self.example = acts, example
        self.n_examples, self.n_categories = int(example.max()) + 1, n_categories
        cell = example * n_categories + categories                                              # [N]
        d = acts.shape[1]
        self.category_sums = torch.zeros(self.n_examples * n_categories, d, dtype=torch.float64).index_add_(
            0, cell, acts.double()).view(self.n_examples, n_categories * d)                     # [E, C * d]
        self.category_counts = torch.bincount(cell, minlength=self.n_examples * n_categories).double().view(
            self.n_examples, n_categories)                                                      # [E, C]
        self.example_max = torch.full((self.n_examples, d), float("-inf"), dtype=acts.dtype).scatter_reduce_(
            0, example[:, None].expand(-1, d), acts, "amax")                                    # [E, d]

    def statistics(self, weights: Tensor) -> tuple[Tensor, Tensor]:
        """``(selectivity [d_mlp], breadth [d_mlp])`` of the resample that holds example ``e``
        ``weights[e]`` times (``weights``: ``[n_examples]``, e.g. ``torch.bincount(rows)``): equal to
        :func:`neuron_statistics` of those examples' positions, repeated."""
        if weights.shape != (self.n_examples,) or int(weights.sum()) == 0:
            raise ValueError(f"weights must give each of the {self.n_examples} examples a count, not all zero; "
                             f"got shape {tuple(weights.shape)}")
        w = weights.double()
        profile = (w @ self.category_sums).view(self.n_categories, -1) / (w @ self.category_counts)[:, None]
        threshold = self.example_max[weights > 0].max(0).values / 2                             # [d]
        above = torch.zeros(self.n_examples, self.acts.shape[1], dtype=torch.float64).index_add_(
            0, self.example, (self.acts > threshold).double())                                 # [E, d] positions above
        breadth = (w @ above) / (w @ self.category_counts.sum(1))
        return selectivity(profile), breadth
