"""Edge scores: the ``[n_src, n_dst]`` tensor every attribution method returns, with its graph.

Its own module so that the producers (:mod:`~mechshift_lite.attribution`) and the consumers
(:mod:`~mechshift_lite.compare`, :mod:`~mechshift_lite.circuits`, the plots) import it without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import Tensor

from .graph import Graph


@dataclass(frozen=True, eq=False)
class Scores:
    """Edge scores of one model on one set of examples.

    Attributes:
        tensor: ``[n_src, n_dst]`` float64; ``tensor[src, dst]`` is the score of the edge
            ``src->dst`` (zero where :attr:`Graph.edge_mask` has no edge).
        graph: the graph the indices refer to.
        method: the attribution method that produced the scores.
        n_examples: how many examples the scores average over.
        ig_steps: the number of interpolation steps (IG methods), else None.
    """

    tensor: Tensor
    graph: Graph
    method: str
    n_examples: int
    ig_steps: int | None = None

    def __post_init__(self) -> None:
        expected = (self.graph.n_src, self.graph.n_dst)
        if tuple(self.tensor.shape) != expected:
            raise ValueError(f"scores of this graph must be a {expected} tensor; got {tuple(self.tensor.shape)}")

    @property
    def values(self) -> Tensor:
        """``[n_edges]`` scores in :attr:`Graph.edge_names` order."""
        return self.tensor[self.graph.edge_mask]

    def as_dict(self) -> dict[str, float]:
        """``{"a0.h1->m1": score, ...}`` for every edge of the graph."""
        return dict(zip(self.graph.edge_names, self.values.tolist()))

    def edge(self, name: str) -> float:
        """The score of one edge, e.g. ``scores.edge("a0.h1->m1")``."""
        src, dst = self.graph.edge_index(name)
        return float(self.tensor[src, dst])

    def check_same_graph(self, other: "Scores") -> None:
        """Refuse to compare or combine scores of differently shaped models."""
        if not isinstance(other, Scores):
            raise TypeError(f"expected Scores, got {type(other).__name__}")
        if (self.graph.n_layers, self.graph.n_heads) != (other.graph.n_layers, other.graph.n_heads):
            raise ValueError(
                f"cannot compare scores of a {self.graph.n_layers}x{self.graph.n_heads} graph with a "
                f"{other.graph.n_layers}x{other.graph.n_heads} graph; compare models of the same shape"
            )

    @classmethod
    def combine(cls, parts: Sequence["Scores"]) -> "Scores":
        """Scores over the union of the parts' examples (their example-weighted mean).

        Attributing a large set in pieces and combining gives the scores of the whole set, so long
        runs can be split, interrupted and resumed.
        """
        if not parts:
            raise ValueError("combine needs at least one Scores object")
        first = parts[0]
        for part in parts[1:]:
            first.check_same_graph(part)
            if (part.method, part.ig_steps) != (first.method, first.ig_steps):
                raise ValueError(
                    f"cannot combine {first.method} (ig_steps={first.ig_steps}) with "
                    f"{part.method} (ig_steps={part.ig_steps}) scores"
                )
        n = sum(part.n_examples for part in parts)
        total = sum(part.tensor * part.n_examples for part in parts)
        return cls(total / n, first.graph, first.method, n, first.ig_steps)
