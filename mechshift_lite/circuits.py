"""Circuits: choosing edges from scores, pruning, evaluating, and faithfulness curves.

A :class:`Circuit` is a set of edges of a :class:`~mechshift_lite.graph.Graph` and the nodes they
connect. The selection rules follow hannamw/EAP-IG:

* :func:`top_n` keeps the ``n`` edges with the largest ``|score|``, **counted before pruning**
  (so the pruned circuit usually has fewer edges than ``n``);
* :func:`threshold` keeps the edges with ``|score| >= t``;
* :func:`greedy` grows a circuit backwards from ``logits``, always adding the best edge into a node
  already in the circuit;
* :func:`prune` (applied by all three) repeats until nothing changes: a node stays only if it has
  an edge in and an edge out (``input`` needs no edge in, ``logits`` always stays; a head's edges
  in are those into its ``<q>``, ``<k>`` and ``<v>``), and an edge stays only between staying nodes.

None of these functions changes its arguments; each returns a new circuit.

:func:`evaluate` runs the clean input with every edge outside the circuit patched to its corrupted
activation (see :mod:`mechshift_lite.patching`): the empty circuit reproduces the corrupted run,
the full circuit the clean run. Faithfulness is ``(circuit - empty) / (clean - empty)`` of the
mean metric (as in the MIB circuit track).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

from .graph import Graph
from .inputs import ModelInputs, inputs_and_metric
from .model import AttentionMode, Transformer
from .patching import patched_metrics
from .scores import Scores
from .tasks.common import Metric

FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""The edge fractions of the MIB circuit track's faithfulness curves."""


@dataclass(frozen=True, eq=False)
class Circuit:
    """A set of edges and the nodes they connect.

    Attributes:
        graph: the graph the names refer to.
        edges: edge names, e.g. ``{"input->a0.h1<v>", "a0.h1->logits"}``.
        nodes: node names (``input``, ``a0.h1``, ``m0``, ``logits``) with an edge in the circuit;
            ``logits`` is always one.
    """

    graph: Graph
    edges: set[str]
    nodes: set[str]

    @classmethod
    def from_edges(cls, graph: Graph, edges: Iterable[str]) -> "Circuit":
        """A circuit of the named edges (not pruned); unknown names raise a ``KeyError``."""
        return cls.from_mask(graph, _mask_of(graph, edges))

    @classmethod
    def from_mask(cls, graph: Graph, mask: Tensor) -> "Circuit":
        """A circuit of the edges where the ``[n_src, n_dst]`` bool ``mask`` is True (not pruned)."""
        mask = mask & graph.edge_mask
        src, dst = mask.nonzero(as_tuple=True)
        edges = {f"{graph.src_names[s]}->{graph.dst_names[d]}" for s, d in zip(src.tolist(), dst.tolist())}
        nodes = {graph.src_names[s] for s in set(src.tolist())} | {graph.node_of_dst(d) for d in set(dst.tolist())}
        return cls(graph, edges, nodes | {"logits"})

    @property
    def mask(self) -> Tensor:
        """``[n_src, n_dst]`` bool: True for the circuit's edges."""
        return _mask_of(self.graph, self.edges)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    def require_edges(self, purpose: str, hint: str = "") -> None:
        """Raise a clear error if the circuit has no edges (e.g. everything was pruned away)."""
        if not self.edges:
            raise ValueError(
                f"{purpose} needs a circuit with at least one edge, but this one is empty (top_n and threshold "
                "count edges before pruning, and pruning removes edges that do not connect input to logits: "
                f"ask for more edges){hint}"
            )


def _mask_of(graph: Graph, edges: Iterable[str]) -> Tensor:
    """``[n_src, n_dst]`` bool mask of named edges; unknown names raise a ``KeyError``."""
    mask = torch.zeros(graph.n_src, graph.n_dst, dtype=torch.bool)
    for name in edges:
        mask[graph.edge_index(name)] = True
    return mask


# ----- selection ---------------------------------------------------------------------------------
def _ranking_key(scores: Scores, absolute: bool) -> Tensor:
    return scores.tensor.abs() if absolute else scores.tensor


def _check_count(n: int, graph: Graph) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= graph.n_edges:
        raise ValueError(f"n must be an integer edge count in [0, {graph.n_edges}] for this graph; got {n!r}")


def top_n(scores: Scores, n: int, absolute: bool = True) -> Circuit:
    """The ``n`` edges with the largest ``|score|`` (signed score if not ``absolute``), then :func:`prune`.

    ``n`` counts edges **before** pruning, as the reference does; ties go to the earlier edge in
    :attr:`Graph.edge_names` order.
    """
    graph = scores.graph
    _check_count(n, graph)
    src, dst = graph.edge_mask.nonzero(as_tuple=True)
    order = torch.argsort(_ranking_key(scores, absolute)[src, dst], descending=True, stable=True)[:n]
    mask = torch.zeros(graph.n_src, graph.n_dst, dtype=torch.bool)
    mask[src[order], dst[order]] = True
    return prune(Circuit.from_mask(graph, mask))


def threshold(scores: Scores, t: float, absolute: bool = True) -> Circuit:
    """The edges with ``|score| >= t`` (signed score if not ``absolute``), then :func:`prune`."""
    if not math.isfinite(t):
        raise ValueError(f"threshold must be a finite number; got {t!r}")
    return prune(Circuit.from_mask(scores.graph, _ranking_key(scores, absolute) >= t))


def greedy(scores: Scores, n: int, absolute: bool = True) -> Circuit:
    """Grow ``n`` edges from ``logits`` backwards, then :func:`prune`.

    The candidates start as the edges into ``logits``. Each step adds the candidate with the
    largest ``|score|``; when its source node is new, that node's own incoming edges (for a head:
    into its q, k and v) become candidates too.
    """
    graph = scores.graph
    _check_count(n, graph)
    key = _ranking_key(scores, absolute).tolist()
    owned = {node: [d for d in range(graph.n_dst) if int(graph.dst_owner[d]) == node] for node in range(graph.n_src)}

    def candidates_into(dsts: list[int]) -> list[tuple[float, int, int]]:
        return [(-key[s][d], s, d) for d in dsts for s in range(graph.prev_index(d))]

    heap = candidates_into([graph.logits_dst])
    heapq.heapify(heap)
    mask = torch.zeros(graph.n_src, graph.n_dst, dtype=torch.bool)
    reached: set[int] = set()
    for _ in range(n):
        _, s, d = heapq.heappop(heap)
        mask[s, d] = True
        if s not in reached:
            reached.add(s)
            for candidate in candidates_into(owned[s]):
                heapq.heappush(heap, candidate)
    return prune(Circuit.from_mask(graph, mask))


def prune(circuit: Circuit) -> Circuit:
    """Remove dangling nodes and edges until nothing changes (see the module docstring)."""
    graph = circuit.graph
    mask = circuit.mask
    owner = graph.dst_owner
    feeds_node = owner >= 0                                                   # every destination but logits
    while True:
        has_out = mask.any(dim=1)                                             # [n_src]
        has_in = torch.zeros(graph.n_src, dtype=torch.long)
        has_in.index_add_(0, owner[feeds_node], mask.any(dim=0)[feeds_node].long())
        alive = has_out & (has_in > 0)
        alive[0] = has_out[0]                                                 # input needs no edge in
        dst_alive = ~feeds_node | alive[owner.clamp(min=0)]                   # logits always stays
        pruned = mask & alive[:, None] & dst_alive[None, :]
        if torch.equal(pruned, mask):
            return Circuit.from_mask(graph, mask)
        mask = pruned


# ----- evaluation ------------------------------------------------------------------------------------
def _absent(circuit: Circuit, model: Transformer) -> Tensor:
    """``[n_src, n_dst]`` bool: the real edges *not* in the circuit."""
    if circuit.graph != model.graph:
        raise ValueError(
            f"the circuit is for a graph with {circuit.graph.n_layers} layers x {circuit.graph.n_heads} heads, the "
            f"model has {model.graph.n_layers} x {model.graph.n_heads}"
        )
    return model.graph.edge_mask & ~circuit.mask


def evaluate(
    model: Transformer,
    circuit: Circuit,
    clean_ids: Tensor | ModelInputs,
    corrupted_ids: Tensor | Metric | None = None,
    metric: Metric | None = None,
    attention_mask: Tensor | None = None,
    *,
    attention: AttentionMode | Tensor | None = None,
    batch_size: int | None = None,
    allow_empty: bool = False,
) -> Tensor:
    """The metric of every example when only the circuit's edges carry clean-run information.

    Edges outside the circuit carry their sender's output from the (unpatched) corrupted run. The
    empty circuit gives the corrupted run's metric, the full circuit the clean run's. The circuit
    need not be pruned: pruning never changes the result (a node without edges in already computes
    its corrupted output, and the output of a node without edges out is replaced everywhere).

    Args:
        clean_ids, corrupted_ids, metric, attention_mask, attention: as for
            :func:`~mechshift_lite.attribute`; ``clean_ids`` may be a
            :class:`~mechshift_lite.inputs.ModelInputs`, followed by the metric (or none: its readout metric).
        allow_empty: accept a circuit without edges (it reproduces the corrupted run). By default
            that is an error, since it usually means that pruning removed everything.

    Returns:
        ``[N]`` float64 metric values.
    """
    absent = _absent(circuit, model)
    if not allow_empty:
        circuit.require_edges("evaluate", "; the empty circuit reproduces the corrupted run: pass allow_empty=True "
                                          "to evaluate it on purpose")
    inputs, metric = inputs_and_metric(clean_ids, corrupted_ids, metric, attention_mask, attention)
    return patched_metrics(model, absent[None], inputs, metric, batch_size)[0]


@dataclass(frozen=True)
class FaithfulnessCurve:
    """Faithfulness of circuits of growing size.

    Attributes:
        edge_counts: the ``n`` given to the selection rule (before pruning).
        fractions: ``edge_counts / n_edges``.
        circuit_edges: how many edges each circuit kept after pruning.
        faithfulness: ``(mean circuit - mean empty) / (mean clean - mean empty)`` per circuit.
        area: area under faithfulness over ``fractions`` (trapezoid rule; NaN for one point).
        clean, empty: mean metric of the clean run and of the empty circuit (= corrupted run).
    """

    edge_counts: list[int]
    fractions: list[float]
    circuit_edges: list[int]
    faithfulness: list[float]
    area: float
    clean: float
    empty: float


def faithfulness_curve(
    model: Transformer,
    scores: Scores,
    clean_ids: Tensor | ModelInputs,
    corrupted_ids: Tensor | Metric | None = None,
    metric: Metric | None = None,
    edge_counts: Sequence[int] | None = None,
    fractions: Sequence[float] | None = None,
    *,
    select: Callable[[Scores, int], Circuit] = top_n,
    attention_mask: Tensor | None = None,
    attention: AttentionMode | Tensor | None = None,
    batch_size: int | None = None,
) -> FaithfulnessCurve:
    """Evaluate ``select(scores, n)`` for each edge count (or fraction of all edges).

    Give ``edge_counts`` or ``fractions`` (default: :data:`FRACTIONS`), not both. The circuits, the
    empty circuit and the full circuit share each chunk's corrupted run. The inputs are given as for
    :func:`evaluate` (arrays, or a :class:`~mechshift_lite.inputs.ModelInputs`; then pass the
    other arguments by keyword).
    """
    graph = scores.graph
    inputs, metric = inputs_and_metric(clean_ids, corrupted_ids, metric, attention_mask, attention)
    if edge_counts is not None and fractions is not None:
        raise ValueError("give edge_counts or fractions, not both")
    if edge_counts is None:
        fractions = FRACTIONS if fractions is None else fractions
        if not fractions or any(not 0 <= f <= 1 for f in fractions):
            raise ValueError(f"fractions must be a non-empty list of numbers in [0, 1]; got {list(fractions)}")
        edge_counts = [round(f * graph.n_edges) for f in fractions]
    if not edge_counts:
        raise ValueError("edge_counts must not be empty")
    circuits = [select(scores, n) for n in edge_counts]
    masks = torch.stack([_absent(c, model) for c in circuits] + [graph.edge_mask, torch.zeros_like(graph.edge_mask)])
    means = patched_metrics(model, masks, inputs, metric, batch_size).mean(dim=1)   # [C + 2]: circuits, empty, clean
    empty, clean = float(means[-2]), float(means[-1])
    if abs(clean - empty) <= 1e-6 * max(1.0, abs(clean)):
        raise ValueError(
            f"the clean and corrupted runs give the same mean metric ({clean:.6g}); faithfulness is undefined: "
            "use corrupted inputs that change the metric"
        )
    faithfulness = ((means[:-2] - empty) / (clean - empty)).tolist()
    x = [n / graph.n_edges for n in edge_counts]
    order = sorted(range(len(x)), key=x.__getitem__)
    area = float(torch.trapezoid(torch.tensor([faithfulness[i] for i in order]), torch.tensor([x[i] for i in order])))
    return FaithfulnessCurve(
        edge_counts=list(edge_counts),
        fractions=x,
        circuit_edges=[c.n_edges for c in circuits],
        faithfulness=faithfulness,
        area=area if len(x) > 1 else float("nan"),
        clean=clean,
        empty=empty,
    )
