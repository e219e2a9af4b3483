"""How much two halves of one model's examples agree: the noise ceiling of every overlap.

**Split-half ceiling** (quoted by the book): for one model, split its ``n_chunks`` fixed blocks of
examples at random into two disjoint halves of ``n_chunks // 2`` blocks each (an odd block out is
left out), attribute each half (the size-weighted mean of its blocks' scores, :func:`.pools.combine`),
and measure the agreement of the two halves with the same measure as the overlap it bounds
(top-N Jaccard, weighted Jaccard, Spearman). The ceiling is the mean over ``n_splits`` random
splits drawn with ``random.Random(seed)``.

Two models cannot be expected to agree more than either agrees with itself on other examples: an
ARM-MDM overlap near the ceilings is no shift, one far below them may be. Each half holds half of
the pool, so the ceiling is that of a pool of half the size: it is conservative (a full pool
agrees a little better with itself).
"""

from __future__ import annotations

import random
from typing import Callable

import torch
from torch import Tensor

from ..graph import Graph
from ..scores import Scores
from .pools import combine

Agreement = Callable[[Scores, Scores], float]


def half_splits(n_blocks: int, n_splits: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """``n_splits`` random splits of ``range(n_blocks)`` into two disjoint halves of ``n_blocks // 2``
    blocks each (sorted LongTensors), drawn with ``random.Random(seed)``."""
    if n_blocks < 2:
        raise ValueError(f"a split-half needs at least 2 blocks of examples; got {n_blocks}")
    if n_splits < 1:
        raise ValueError(f"n_splits must be at least 1; got {n_splits}")
    rng, half = random.Random(seed), n_blocks // 2
    splits = []
    for _ in range(n_splits):
        order = rng.sample(range(n_blocks), n_blocks)
        splits.append((torch.tensor(sorted(order[:half])), torch.tensor(sorted(order[half: 2 * half]))))
    return splits


def split_half(blocks: Tensor, sizes: Tensor, graph: Graph, agreement: Agreement,
               n_splits: int = 20, seed: int = 0, method: str = "blocks") -> float:
    """Split-half ceiling of one model (module docstring).

    Args:
        blocks: ``[n_blocks, n_src, n_dst]`` the model's scores on each block of examples.
        sizes: ``[n_blocks]`` examples per block (the weights of :func:`.pools.combine`).
        agreement: ``f(scores_a, scores_b) -> float``, e.g. ``lambda a, b: compare.edge_overlap(a, b, n)``.
    """
    if blocks.dim() != 3 or blocks.shape[0] != len(sizes):
        raise ValueError(f"blocks must be [n_blocks, n_src, n_dst] with one size per block; got {tuple(blocks.shape)} "
                         f"and {len(sizes)} sizes")
    values = [agreement(combine(blocks[a], sizes[a], graph, method), combine(blocks[b], sizes[b], graph, method))
              for a, b in half_splits(blocks.shape[0], n_splits, seed)]
    return sum(values) / len(values)
