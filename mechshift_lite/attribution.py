"""Edge attribution: how much each edge of the graph matters for a metric.

Every method estimates, for each edge ``u->v`` of :class:`~mechshift_lite.graph.Graph`::

    score[u->v]  ~  mean over examples of  metric(edge u->v corrupted) - metric(clean)

"Edge corrupted" means that destination ``v`` receives ``u``'s output from the corrupted run
instead of the clean one (see :mod:`mechshift_lite.patching`). The gradient methods take the
first-order estimate (Syed et al. 2023; Hanna et al. 2024, as in hannamw/EAP-IG)::

    score[u->v] = (1/N) sum_examples sum_pos sum_d  delta_u[pos, d] * mean_t grad_v^(t)[pos, d]

with ``delta_u = out_u(corrupted) - out_u(clean)`` from two plain forward passes, and
``grad_v^(t)`` the gradient of the example's metric with respect to destination ``v``'s input in
gradient run ``t``:

==========================  ===========================================================================
method                      gradient runs (on the clean tokens unless stated)
==========================  ===========================================================================
``"EAP"``                   one clean run
``"EAP-IG-inputs"``         ``k = 1..m``: the token embeddings are ``E_corr + (k/m)(E_clean - E_corr)``;
                            positions and everything downstream are recomputed (so ``m = 1`` is EAP)
``"EAP-IG-activations"``    for each group ``input, attention layer 0 (all heads), MLP 0, ...`` and
                            ``k = 1..m``: the group's output is the constant
                            ``(k/m) out(clean) + (1 - k/m) out(corrupted)``, which also cuts the gradient
                            paths through that group (as the reference); ``m (1 + 2L)`` runs
``"clean-corrupted"``       one clean run and one run on the corrupted tokens
``"exact"``                 no gradients: each edge is patched for real, one at a time (ground truth)
==========================  ===========================================================================

Two deliberate differences from hannamw/EAP-IG: scores are per-example means, so they do not
depend on how the examples are split into batches (the reference has an extra ``1/batch``), and
EAP-IG-inputs uses ``alpha = k/m`` for ``k = 1..m`` (the paper's grid) instead of ``k = 0..m-1``.

Completeness of EAP-IG-inputs: only the token embedding moves along the path, and it reaches the
metric only through the destinations it feeds (each additively), so the scores of the
``input->*`` edges sum to a right Riemann sum of the path integral of the gradient: they tend to
``mean(metric(corrupted) - metric(clean))`` with an error of order ``1/m`` (tested).

EAP-IG-activations follows the reference literally: because a replaced group passes no gradient,
a destination's gradient is zero in the runs that replace its own group, so even with tiny
deltas its scores do not reduce to EAP's (tested). EAP, EAP-IG-inputs and clean-corrupted all
agree with exact patching to first order.

Conventions:

* **Heads have three destinations.** ``a{l}.h{h}<q|k|v>`` is head ``h``'s own copy of the
  pre-norm residual stream feeding only its query (key, value) path. With grouped-query attention
  a query head's ``<k>``/``<v>`` copy goes through its group's key/value weights, so an edge into
  ``a1.h2<k>`` measures the effect through head 2 only (TransformerLens'
  ``ungroup_grouped_query_attention``).
* **Padding.** ``attention_mask`` (1 = real token) is used for the clean and the corrupted run, and
  ``delta`` is set to zero at padded positions, so padding never contributes to a score.
* **Memory.** ``delta`` (``[n_src, batch, pos, d_model]``) is the largest buffer; each
  destination's gradient is multiplied into the score matrix as soon as backpropagation reaches it,
  and never stored. Parameters are frozen during attribution (only activations need gradients)
  and restored afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .graph import Graph
from .inputs import ModelInputs, inputs_and_metric
from .model import AttentionMode, Hooks, Transformer
from .patching import PROGRESS_PASSES, MetricCaller, example_chunks, node_outputs, patched_metrics
from .scores import Scores
from .tasks.common import Metric

METHODS: tuple[str, ...] = ("EAP", "EAP-IG-inputs", "EAP-IG-activations", "clean-corrupted", "exact")


def attribute(
    model: Transformer,
    clean_ids: Tensor | ModelInputs,
    corrupted_ids: Tensor | Metric | None = None,
    metric: Metric | None = None,
    method: str = "EAP-IG-inputs",
    ig_steps: int = 5,
    attention_mask: Tensor | None = None,
    batch_size: int | None = None,
    attention: AttentionMode | Tensor | None = None,
    *,
    progress: bool | None = None,
) -> Scores:
    """Score every edge of ``model``'s graph (see the module docstring for the methods).

    Args:
        model: the transformer.
        clean_ids, corrupted_ids: ``[N, P]`` token ids of one shape; example ``i`` of each forms a pair.
            Or ``clean_ids`` is a :class:`~mechshift_lite.inputs.ModelInputs` (ids, mask and attention
            in one): then the next argument is the metric, ``attribute(model, inputs, metric, ...)``,
            and without one the inputs' own readout metric is used.
        metric: ``metric(logits [B, P, V]) -> [B]``, one value per example; if it has a keyword
            ``rows`` it also receives the chunk's example indices.
        method: one of :data:`METHODS`.
        ig_steps: interpolation steps ``m`` of the EAP-IG methods (ignored by the others).
        attention_mask: ``[N, P]``, 1 = real token, 0 = padding; used for both runs.
        batch_size: examples per chunk (None: all at once). The scores do not depend on it.
        attention: the model's ``attention=`` argument (mode name or bool mask), for both runs.
        progress: show a progress bar (None: when there are at least ``PROGRESS_PASSES`` passes).

    Returns:
        :class:`Scores`: per-example means of the estimated ``metric(edge corrupted) - metric(clean)``.
    """
    inputs, metric = inputs_and_metric(clean_ids, corrupted_ids, metric, attention_mask, attention)
    blocks = torch.zeros(inputs.n_examples, dtype=torch.long)
    scores = attribute_blocks(model, inputs, metric, blocks, method, ig_steps, batch_size, progress=progress)[0]
    return Scores(scores, model.graph, method, inputs.n_examples, ig_steps if "IG" in method else None)


def attribute_blocks(
    model: Transformer,
    inputs: ModelInputs,
    metric: Metric | None,
    blocks: Tensor,
    method: str = "EAP-IG-inputs",
    ig_steps: int = 5,
    batch_size: int | None = None,
    *,
    progress: bool | None = None,
) -> Tensor:
    """``[n_blocks, n_src, n_dst]`` float64: the scores of each block of examples, from one set of passes.

    Block ``b``'s scores equal :func:`attribute` on its examples alone (tested), but every pass
    runs all the examples at once: a bootstrap over blocks of examples costs one attribution, not
    one per block. ``blocks`` ``[N]`` (long) gives each example's block, ``0 .. n_blocks - 1``,
    every block non-empty; ``metric`` None uses the inputs' readout metric; the other arguments
    are :func:`attribute`'s.
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; known methods: {', '.join(METHODS)}")
    if isinstance(ig_steps, bool) or not isinstance(ig_steps, int) or ig_steps < 1:
        raise ValueError(f"ig_steps must be an integer >= 1 (the number of interpolation steps); got {ig_steps!r}")
    metric = inputs.metric() if metric is None else metric
    sizes = block_sizes(blocks, inputs.n_examples)
    if method == "exact":
        return _exact_block_scores(model, inputs, metric, blocks, sizes, batch_size, progress)
    chunks = example_chunks(inputs.n_examples, batch_size)
    runs = gradient_runs(method, ig_steps, model.cfg.n_layers)
    device = model.W_E.device
    scores = torch.zeros(len(sizes), model.graph.n_src, model.graph.n_dst, dtype=torch.float64, device=device)
    show = progress if progress is not None else len(chunks) * len(runs) >= PROGRESS_PASSES
    with frozen_parameters(model), torch.enable_grad(), tqdm(
        total=len(chunks) * len(runs), disable=not show, desc=method, leave=False
    ) as bar:
        caller = MetricCaller(metric)
        for rows in chunks:
            _accumulate_chunk(model, inputs.select(rows), rows, blocks[rows].to(device), caller, runs, scores, bar)
    scores /= sizes.to(scores)[:, None, None] * len(runs)
    return scores.cpu()


def block_sizes(blocks: Tensor, n_examples: int) -> Tensor:
    """``[n_blocks]`` examples per block; a clear error unless ``blocks`` gives every example a block and no block is empty."""
    if not isinstance(blocks, Tensor) or blocks.dtype != torch.long or blocks.shape != (n_examples,):
        raise ValueError(f"blocks must be a LongTensor of shape [{n_examples}] (one block per example); got "
                         f"{getattr(blocks, 'dtype', type(blocks))} {tuple(getattr(blocks, 'shape', ()))}")
    if n_examples == 0:
        raise ValueError("no examples to attribute")
    if int(blocks.min()) < 0:
        raise ValueError(f"block numbers must be >= 0; got {int(blocks.min())}")
    sizes = torch.bincount(blocks)
    if (sizes == 0).any():
        raise ValueError(f"blocks {sizes.eq(0).nonzero()[:, 0].tolist()} have no examples: number the blocks 0 .. n_blocks - 1")
    return sizes


# ----- gradient methods ---------------------------------------------------------------------------
Group = tuple[str, "int | None"]
"""A node group whose output a gradient run replaces: ``("input", None)``, ``("attn", l)``, ``("mlp", l)``."""


@dataclass(frozen=True)
class GradientRun:
    """One forward/backward pass of a gradient method.

    Attributes:
        tokens: ``"clean"`` or ``"corrupted"``: which input the run reads.
        group: the node group whose output is replaced, or None.
        alpha: the replacement is ``out(corrupted) + alpha * (out(clean) - out(corrupted))``.
    """

    tokens: str = "clean"
    group: Group | None = None
    alpha: float = 1.0


def gradient_runs(method: str, ig_steps: int, n_layers: int) -> list[GradientRun]:
    """The gradient runs of a method; their gradients are averaged with equal weights."""
    steps = [k / ig_steps for k in range(1, ig_steps + 1)]
    if method == "EAP":
        return [GradientRun()]
    if method == "clean-corrupted":
        return [GradientRun("clean"), GradientRun("corrupted")]
    if method == "EAP-IG-inputs":
        return [GradientRun("clean", ("input", None), alpha) for alpha in steps]
    groups: list[Group] = [("input", None)]
    for layer in range(n_layers):
        groups += [("attn", layer), ("mlp", layer)]
    return [GradientRun("clean", group, alpha) for group in groups for alpha in steps]


class GradientHooks(Hooks):
    """Adds ``delta . grad`` into the score matrix at every destination as backpropagation reaches it.

    Args:
        graph: the model's graph.
        delta: ``[n_src, B, P * D]``: corrupted minus clean output of every source (flattened per example).
        scores: ``[n_blocks, n_src, n_dst]`` accumulator, updated in place.
        blocks: ``[B]`` the block of each example of the batch.
        group, replacement: the node group whose output becomes ``replacement`` (a leaf that
            requires grad, shaped like the group's output), or None.
    """

    def __init__(self, graph: Graph, delta: Tensor, scores: Tensor, blocks: Tensor, group: Group | None,
                 replacement: Tensor | None):
        self.graph, self.delta, self.scores = graph, delta, scores
        self.block_rows = block_slices(blocks)
        self.group, self.replacement = group, replacement

    def node_output(self, kind: str, layer: int | None, out: Tensor) -> Tensor:
        if (kind, layer) == self.group:
            return self.replacement
        if kind == "input":  # parameters are frozen: the token embedding is the leaf gradients flow to
            return out.detach().requires_grad_()
        return out

    def dest_input(self, kind: str, layer: int | None, x: Tensor) -> Tensor:
        prev, columns = self.graph.destinations_of(kind, layer)
        if not x.requires_grad:
            return x
        # A private view: the model also adds the MLP's output to the residual tensor it passes
        # here, and only the gradient that flows through this destination's input must be read.
        x = x.view_as(x)
        x.register_hook(lambda grad: self._accumulate(prev, columns, grad))
        return x

    def _accumulate(self, prev: int, columns: slice, grad: Tensor) -> None:
        """``grad``: ``[B, P, D]`` or ``[B, P, 3, H, D]`` -> ``scores[block, :prev, columns] += delta[:prev] . grad`` per example."""
        B, P, D = grad.shape[0], grad.shape[1], grad.shape[-1]
        per_column = grad.reshape(B, P, -1, D).transpose(2, 3).reshape(B, P * D, -1).to(self.delta.device)   # [B, (P D), c]
        for block, rows in self.block_rows:   # one matrix product per block sums over its examples
            total = self.delta[:prev, rows].reshape(prev, -1) @ per_column[rows].reshape(-1, per_column.shape[-1])
            self.scores[block, :prev, columns] += total.to(self.scores)


def block_slices(blocks: Tensor) -> list[tuple[int, slice]]:
    """``[(block, rows), ...]`` for a batch's ``blocks`` ``[B]``: a slice for each run of equal
    blocks (no copy: blocks are usually contiguous), so every product sums one block's examples."""
    starts = [0, *((blocks[1:] != blocks[:-1]).nonzero()[:, 0] + 1).tolist(), len(blocks)]
    return [(int(blocks[a]), slice(a, b)) for a, b in zip(starts[:-1], starts[1:])]


def _accumulate_chunk(
    model: Transformer, chunk: ModelInputs, rows: Tensor, blocks: Tensor, caller: MetricCaller, runs: list[GradientRun],
    scores: Tensor, bar
) -> None:
    """Add one chunk's ``sum over examples and runs`` of ``delta . grad`` into ``scores[block]`` (``blocks`` ``[B]``)."""
    graph = model.graph
    clean, corrupted = node_outputs(model, chunk, "clean"), node_outputs(model, chunk, "corrupted")
    ends = {run.group: (clean[graph.sources_of(*run.group)], corrupted[graph.sources_of(*run.group)].clone())
            for run in runs if run.group is not None}                     # the interpolation's end points
    delta = corrupted.sub_(clean)                                         # [n_src, B, P, D]
    del clean
    if chunk.attention_mask is not None:
        delta *= chunk.attention_mask.to(delta)[None, :, :, None]
    delta = delta.reshape(graph.n_src, delta.shape[1], -1)                 # [n_src, B, P D]
    for run in runs:
        replacement = None
        if run.group is not None:
            at_clean, at_corrupted = ends[run.group]
            block = at_corrupted + run.alpha * (at_clean - at_corrupted)   # [n, B, P, D]
            replacement = (block.permute(1, 2, 0, 3) if run.group[0] == "attn" else block[0]).requires_grad_()
        hooks = GradientHooks(graph, delta, scores, blocks, run.group, replacement)
        logits = chunk.run(model, run.tokens, hooks)
        caller(logits, rows, needs_grad=True).sum().backward()
        bar.update(1)


@contextmanager
def frozen_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Turn parameter gradients off for the duration (even on an exception), then restore them."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


# ----- exact patching ----------------------------------------------------------------------------------
class SingleEdgeMasks:
    """The edge sets "every edge but one" for exact patching, built slice by slice.

    Item ``0`` is the full circuit (the clean run through the same machinery); item ``i >= 1``
    removes edge ``i - 1`` of :attr:`Graph.edge_names`. Indexing with a slice gives
    ``[k, n_src, n_dst]`` bool "absent" masks, so the ``n_edges`` masks are never all in memory.
    """

    def __init__(self, graph: Graph):
        self.graph = graph
        self.src, self.dst = graph.edge_mask.nonzero(as_tuple=True)

    def __len__(self) -> int:
        return len(self.src) + 1

    def __getitem__(self, items: slice) -> Tensor:
        index = torch.arange(len(self))[items]
        masks = torch.zeros(len(index), self.graph.n_src, self.graph.n_dst, dtype=torch.bool)
        edges = index - 1
        real = edges >= 0
        masks[real.nonzero()[:, 0], self.src[edges[real]], self.dst[edges[real]]] = True
        return masks


def _exact_block_scores(model: Transformer, inputs: ModelInputs, metric: Metric, blocks: Tensor, sizes: Tensor,
                        batch_size: int | None, progress: bool | None) -> Tensor:
    """Patch each edge alone: ``score = mean over a block's examples of metric(edge corrupted) - metric(clean)``."""
    graph = model.graph
    masks = SingleEdgeMasks(graph)
    values = patched_metrics(model, masks, inputs, metric, batch_size, progress)   # [1 + n_edges, N]
    sums = torch.zeros(len(sizes), len(masks) - 1, dtype=torch.float64)
    sums.index_add_(0, blocks, (values[1:] - values[0]).double().T)
    scores = torch.zeros(len(sizes), graph.n_src, graph.n_dst, dtype=torch.float64)
    scores[:, masks.src, masks.dst] = sums / sizes[:, None]
    return scores
