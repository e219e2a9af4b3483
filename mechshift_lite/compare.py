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

Added for issue 11 (measures that separate a shift from noise):

* **Weighted Jaccard** (N-free overlap): ``Σ_e min(|a_e|, |b_e|) / Σ_e max(|a_e|, |b_e|)`` over
  every real edge; each score set is first divided by its total ``|score|`` mass, so two models
  whose scores differ only by a scale factor overlap fully.
* **Edge Spearman** (N-free): :func:`spearman` of the ``|score|`` of every real edge.
* **Signed component score** (the paper's formula): ``s±(v) = Σ score(u→v) + Σ score(v→w)``
  over the top-N edges incident to ``v``, signs kept; components are ranked by ``|s±(v)|``, so
  a component whose edges cancel ranks low. ``signed=False`` (the default) is the ``|score|``
  variant above.
* **Depth of an edge**: positions along the residual stream, ``0`` = the embedding, ``l + 1`` =
  after layer ``l``. A source of layer ``l`` writes at ``l + 1`` (``input`` at ``0``); a
  destination of layer ``l`` reads at ``l`` (``logits`` at ``L``). Normalised by ``L``:
  ``depth_src = (l + 1) / L``, ``depth_dst = l / L``, and the edge's depth is their midpoint.
  :func:`mean_depth` with ``by="edge"`` is the mass-weighted mean edge depth (the scalar of the
  report's depth); ``by="src"`` (the default, the older definition) and ``by="dst"`` weigh one end.
* **Early** (the one definition of the report's new keys and of the text, :func:`early_cutoff`):
  an edge is early when its source is ``input`` or a node of the first ``max(1, L // 4)`` layers
  (``input`` and layer 0 of 4). The **early share** is the
  share of ``|score|`` mass on early edges; its **chance level** is the share of *edges* that
  are early (the early share of scores of equal magnitude), because bucketing by source gives
  early sources more edges. (:func:`early_fraction`, with ``ceil(L/3)`` layers, is the older
  definition, kept for the report's ``early_*`` keys.)
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


def _component_totals(scores: Scores, n: int, signed: bool = False) -> Tensor:
    """``[n_src]`` ``s(v)`` (or ``s±(v)`` when ``signed``) indexed by source node (entry 0, ``input``,
    is not a component)."""
    src, owner = _edge_endpoints(scores.graph)
    top = top_edge_indices(scores, n)
    values = scores.tensor[scores.graph.edge_mask].double() if signed else _edge_magnitudes(scores)
    mags = values[top]
    totals = torch.zeros(scores.graph.n_src, dtype=torch.float64).index_add_(0, src[top], mags)
    into_component = owner[top] >= 0
    return totals.index_add_(0, owner[top][into_component], mags[into_component])


def component_scores(scores: Scores, n: int) -> dict[str, float]:
    """``s(v)`` of every head and MLP over the top-``n`` edges (see the module docstring)."""
    totals = _component_totals(scores, n)
    return {name: float(totals[i]) for i, name in enumerate(scores.graph.src_names) if i > 0}


def top_components(scores: Scores, n: int, k: int, signed: bool = False) -> list[str]:
    """The ``k`` components with the highest ``s(v)`` over the top-``n`` edges (ties by graph order);
    ``signed``: the highest ``|s±(v)|`` (the paper's signed score, module docstring)."""
    totals = _component_totals(scores, n, signed)[1:].abs()
    if not 0 < k <= len(totals):
        raise ValueError(f"k must be between 1 and the number of components ({len(totals)}); got {k}")
    order = torch.argsort(-totals, stable=True)
    return [scores.graph.src_names[1 + i] for i in order[:k].tolist()]


@dataclass(frozen=True)
class ComponentOverlap:
    shared_fraction: float   # |A ∩ B| / K
    jaccard: float           # |A ∩ B| / |A ∪ B|


def component_overlap(a: Scores, b: Scores, n: int, k: int, signed: bool = False) -> ComponentOverlap:
    """Overlap of the top-``k`` components of two score sets (both over their top-``n`` edges;
    ``signed``: ranked by the paper's signed score)."""
    a.check_same_graph(b)
    top_a, top_b = set(top_components(a, n, k, signed)), set(top_components(b, n, k, signed))
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


def mean_depth(scores: Scores, n: int | None = None, by: str = "src") -> float:
    """Mass-weighted mean normalised depth of the edges (``by="src"``: of their source, ``input`` 0,
    layer ``l`` -> ``(l+1)/L``; ``"dst"``: of their destination, layer ``l`` -> ``l/L``, ``logits`` 1;
    ``"edge"``: of the midpoint of the two). Lower = computation front-loaded."""
    mags = _masses(scores, n)
    return float((mags * edge_depth(scores.graph, by)).sum() / mags.sum())


# ----- issue 11: N-free overlaps, signed components, depth ------------------------------------------
def weighted_jaccard(a: Scores, b: Scores) -> float:
    """``Σ min(|a|, |b|) / Σ max(|a|, |b|)`` over every real edge, each set normalised to unit ``|score|``
    mass first (see the module docstring); 1 for proportional scores, 0 for disjoint supports."""
    a.check_same_graph(b)
    ma, mb = _edge_magnitudes(a), _edge_magnitudes(b)
    if ma.sum() == 0 or mb.sum() == 0:
        raise ValueError("weighted_jaccard needs scores with some nonzero edge in both sets")
    ma, mb = ma / ma.sum(), mb / mb.sum()
    return float(torch.minimum(ma, mb).sum() / torch.maximum(ma, mb).sum())


def edge_spearman(a: Scores, b: Scores) -> float:
    """Spearman rank correlation of the ``|score|`` of every real edge of two score sets (N-free)."""
    a.check_same_graph(b)
    return spearman(_edge_magnitudes(a), _edge_magnitudes(b))


def signed_component_scores(scores: Scores, n: int) -> dict[str, float]:
    """The paper's ``s±(v)``: signed sum of the scores of the top-``n`` edges into and out of ``v``."""
    totals = _component_totals(scores, n, signed=True)
    return {name: float(totals[i]) for i, name in enumerate(scores.graph.src_names) if i > 0}


def early_cutoff(n_layers: int) -> int:
    """How many layers are early: ``max(1, n_layers // 4)``; an edge is early when its source is
    ``input`` or a node of those layers (the first quarter of the network, at least layer 0)."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1; got {n_layers}")
    return max(1, n_layers // 4)


@lru_cache(maxsize=None)
def _edge_depths(graph: Graph) -> tuple[Tensor, Tensor]:
    """``[n_edges]`` normalised depth of each real edge's source and destination (module docstring)."""
    src, dst = graph.edge_mask.nonzero(as_tuple=True)
    L = graph.n_layers
    src_depth = torch.tensor([graph.src_layer(int(s)) + 1 for s in src], dtype=torch.float64) / L
    dst_depth = torch.tensor([graph.layer_of_dst(int(d)) for d in dst], dtype=torch.float64) / L
    return src_depth, dst_depth


def edge_depth(graph: Graph, by: str = "edge") -> Tensor:
    """``[n_edges]`` normalised depth of every real edge: of its ``"src"``, its ``"dst"`` or their midpoint (``"edge"``)."""
    src_depth, dst_depth = _edge_depths(graph)
    if by == "src":
        return src_depth
    if by == "dst":
        return dst_depth
    if by == "edge":
        return (src_depth + dst_depth) / 2
    raise ValueError(f"by must be 'src', 'dst' or 'edge'; got {by!r}")


@lru_cache(maxsize=None)
def early_edges(graph: Graph) -> Tensor:
    """``[n_edges]`` bool: the early edges (source ``input`` or in the first :func:`early_cutoff` layers)."""
    src, _ = graph.edge_mask.nonzero(as_tuple=True)
    return torch.tensor([graph.src_layer(int(s)) < early_cutoff(graph.n_layers) for s in src])


def early_share(scores: Scores, n: int | None = None) -> float:
    """Share of ``|score|`` mass (of the top-``n`` edges, or all) on early edges: sources ``input``
    and the nodes of the first :func:`early_cutoff` layers (the first quarter, at least layer 0)."""
    mags = _masses(scores, n)
    return float(mags[early_edges(scores.graph)].sum() / mags.sum())


def early_share_chance(graph: Graph) -> float:
    """The early share of scores that all have the same magnitude: the share of edges that are early."""
    return float(early_edges(graph).double().mean())


def _masses(scores: Scores, n: int | None) -> Tensor:
    """``[n_edges]`` ``|score|``, zero outside the top-``n`` edges when ``n`` is given; errors when all zero."""
    mags = _edge_magnitudes(scores)
    if n is not None:
        top = top_edge_indices(scores, n)
        mags = torch.zeros_like(mags).index_copy(0, top, mags[top])
    if mags.sum() == 0:
        raise ValueError("all scores are zero: there is no attribution to distribute")
    return mags


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two score vectors ``[n]`` (real-valued scores: ties are not averaged)."""
    rank_a, rank_b = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([rank_a, rank_b]))[0, 1])
