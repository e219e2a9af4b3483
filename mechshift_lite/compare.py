"""Comparing two sets of edge scores: overlaps, components, and where in depth attribution lives.

Definitions (ours where the paper is silent; the book quotes them from here):

* **Top-N edges** ``E_top``: the ``n`` real edges with the largest ``|score|``, *before* any
  pruning (the paper's "top 1000 attribution edges").
* **Edge overlap**: Jaccard ``|E_a ∩ E_b| / |E_a ∪ E_b|`` of the two top-N sets.
* **Chance level**: the expected Jaccard of two uniformly random edge sets of the same sizes
  drawn from the same graph (exact, from the hypergeometric distribution of the intersection).
* **Component score** (the paper's definition, with absolute values): for a head or MLP ``v``,
  ``s(v) = Σ |score(u→v)| + Σ |score(v→w)|`` over the top-N edges incident to ``v`` (a head's
  ``<q>``, ``<k>``, ``<v>`` inputs all count as inputs of the head). ``input`` and ``logits``
  are not components.
* **Top-K component overlap**: reported both as ``|A ∩ B| / K`` and as a Jaccard index.
* **Layer of an edge**: the layer of its source node (``input`` is its own bucket before
  layer 0), or of its destination (``logits`` is its own bucket after the last layer).
* **Early-layer fraction**: the share of attribution mass (sum of ``|score|``) on edges whose
  source is ``input`` or a node of the first ``ceil(L/3)`` layers.
* **Spearman** (agreement of two attributions, e.g. with exact patching): the Pearson correlation
  of the ranks.
* **Mean depth**: the mass-weighted mean of the source depth, ``input`` = 0 and a node of layer
  ``l`` = ``(l + 1) / L``; lower = computation front-loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch
from torch import Tensor

from .graph import Graph
from .scores import Scores


def _check_n(scores: Scores, n: int, what: str = "n") -> None:
    total = scores.graph.n_edges
    if not 0 < n <= total:
        raise ValueError(f"{what} must be between 1 and the number of edges ({total}); got {n}")


def _edge_magnitudes(scores: Scores) -> Tensor:
    """``[n_edges]`` |score| of the real edges, in ``graph.edge_names`` order."""
    return scores.tensor[scores.graph.edge_mask].abs().double()


def top_edge_indices(scores: Scores, n: int) -> Tensor:
    """Indices (into ``graph.edge_names``) of the top-``n`` edges by |score|; ties broken by index."""
    _check_n(scores, n)
    mags = _edge_magnitudes(scores)
    order = torch.argsort(-mags, stable=True)
    return order[:n]


def top_edges(scores: Scores, n: int) -> set[str]:
    """Names of the top-``n`` edges by |score| (no pruning)."""
    names = scores.graph.edge_names
    return {names[i] for i in top_edge_indices(scores, n).tolist()}


def jaccard(a: set, b: set) -> float:
    """``|a ∩ b| / |a ∪ b|`` (1.0 for two empty sets)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def chance_jaccard(n_total: int, size_a: int, size_b: int) -> float:
    """Expected Jaccard of two independent uniformly random subsets of sizes ``size_a`` and
    ``size_b`` of ``n_total`` items: the intersection ``k`` is hypergeometric."""
    if not (0 <= size_a <= n_total and 0 <= size_b <= n_total):
        raise ValueError(f"subset sizes must lie in [0, {n_total}]; got {size_a}, {size_b}")
    total = math.comb(n_total, size_b)
    expected = 0.0
    for k in range(max(0, size_a + size_b - n_total), min(size_a, size_b) + 1):
        p = math.comb(size_a, k) * math.comb(n_total - size_a, size_b - k) / total
        union = size_a + size_b - k
        expected += p * (k / union if union else 1.0)
    return expected


def edge_overlap(a: Scores, b: Scores, n: int) -> float:
    """Jaccard of the top-``n`` edge sets of two score sets."""
    a.check_same_graph(b)
    return jaccard(top_edges(a, n), top_edges(b, n))


def overlap_curve(a: Scores, b: Scores, ns: Sequence[int]) -> Tensor:
    """``[len(ns)]`` edge overlap for each ``n`` in ``ns``."""
    return torch.tensor([edge_overlap(a, b, n) for n in ns], dtype=torch.float64)


@lru_cache(maxsize=None)
def _edge_endpoints(graph: Graph) -> tuple[Tensor, Tensor]:
    """``[n_edges]`` forward index of each real edge's source, and of the node its destination
    feeds (a head for ``a1.h0<k>``; ``-1`` for ``logits``), in ``graph.edge_names`` order."""
    src, dst = graph.edge_mask.nonzero(as_tuple=True)
    return src, graph.dst_owner[dst]


def _component_totals(scores: Scores, n: int) -> Tensor:
    """``[n_src]`` ``s(v)`` indexed by source node (entry 0, ``input``, is not a component)."""
    src, owner = _edge_endpoints(scores.graph)
    top = top_edge_indices(scores, n)
    mags = _edge_magnitudes(scores)[top]
    totals = torch.zeros(scores.graph.n_src, dtype=torch.float64).index_add_(0, src[top], mags)
    into_component = owner[top] >= 0
    return totals.index_add_(0, owner[top][into_component], mags[into_component])


def component_scores(scores: Scores, n: int) -> dict[str, float]:
    """``s(v)`` of every head and MLP over the top-``n`` edges (see the module docstring)."""
    totals = _component_totals(scores, n)
    return {name: float(totals[i]) for i, name in enumerate(scores.graph.src_names) if i > 0}


def top_components(scores: Scores, n: int, k: int) -> list[str]:
    """The ``k`` components with the highest ``s(v)`` over the top-``n`` edges (ties by graph order)."""
    totals = _component_totals(scores, n)[1:]
    if not 0 < k <= len(totals):
        raise ValueError(f"k must be between 1 and the number of components ({len(totals)}); got {k}")
    order = torch.argsort(-totals, stable=True)
    return [scores.graph.src_names[1 + i] for i in order[:k].tolist()]


@dataclass(frozen=True)
class ComponentOverlap:
    shared_fraction: float   # |A ∩ B| / K
    jaccard: float           # |A ∩ B| / |A ∪ B|


def component_overlap(a: Scores, b: Scores, n: int, k: int) -> ComponentOverlap:
    """Overlap of the top-``k`` components of two score sets (both over their top-``n`` edges)."""
    a.check_same_graph(b)
    top_a, top_b = set(top_components(a, n, k)), set(top_components(b, n, k))
    return ComponentOverlap(len(top_a & top_b) / k, jaccard(top_a, top_b))


@lru_cache(maxsize=None)
def _edge_layers(graph: Graph, by: str) -> tuple[list[str], Tensor]:
    """Bucket labels and the bucket of every real edge (``graph.edge_names`` order); computed once
    per graph shape (the bootstrap asks thousands of times)."""
    src, dst = graph.edge_mask.nonzero(as_tuple=True)
    L = graph.n_layers
    if by == "src":
        labels = ["input"] + [f"layer {l}" for l in range(L)]
        return labels, torch.tensor([graph.src_layer(int(s)) + 1 for s in src])
    if by == "dst":
        labels = [f"layer {l}" for l in range(L)] + ["logits"]
        return labels, torch.tensor([graph.layer_of_dst(int(d)) for d in dst])
    raise ValueError(f"by must be 'src' or 'dst'; got {by!r}")


def layer_distribution(scores: Scores, n: int | None = None, by: str = "src", weight: str = "mass") -> tuple[list[str], Tensor]:
    """Share of attribution per layer.

    Args:
        n: restrict to the top-``n`` edges (None: every edge).
        by: bucket edges by the layer of their ``"src"`` or ``"dst"`` node.
        weight: ``"mass"`` (sum of |score|) or ``"count"`` (number of edges; needs ``n``).

    Returns:
        ``(labels, shares)``; ``shares`` sums to 1.
    """
    labels, layer = _edge_layers(scores.graph, by)
    mags = _edge_magnitudes(scores)
    keep = torch.ones_like(mags, dtype=torch.bool) if n is None else torch.zeros_like(mags, dtype=torch.bool).index_fill(0, top_edge_indices(scores, n), True)
    if weight == "count":
        if n is None:
            raise ValueError("weight='count' needs n (the number of top edges to count)")
        values = keep.double()
    elif weight == "mass":
        values = mags * keep
    else:
        raise ValueError(f"weight must be 'mass' or 'count'; got {weight!r}")
    totals = torch.zeros(len(labels), dtype=torch.float64).index_add(0, layer, values)
    if totals.sum() == 0:
        raise ValueError("all scores are zero: there is no attribution to distribute")
    return list(labels), totals / totals.sum()


def early_layers(n_layers: int) -> int:
    """How many layers count as "early": ``ceil(n_layers / 3)``."""
    return math.ceil(n_layers / 3)


def early_fraction(scores: Scores, n: int | None = None) -> float:
    """Share of |score| mass on edges whose source is ``input`` or in the early layers."""
    _, shares = layer_distribution(scores, n, by="src")
    return float(shares[: 1 + early_layers(scores.graph.n_layers)].sum())


def mean_depth(scores: Scores, n: int | None = None) -> float:
    """Mass-weighted mean normalised source depth (``input`` 0, layer ``l`` -> ``(l+1)/L``)."""
    _, shares = layer_distribution(scores, n, by="src")
    depth = torch.arange(len(shares), dtype=torch.float64) / scores.graph.n_layers
    return float((shares * depth).sum())


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two score vectors ``[n]`` (real-valued scores: ties are not averaged)."""
    rank_a, rank_b = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([rank_a, rank_b]))[0, 1])
