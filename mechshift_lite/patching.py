"""Running a model on paired clean / corrupted inputs: node outputs, metric calls, edge patching.

The pieces that attribution (:mod:`mechshift_lite.attribution`) and circuit evaluation
(:mod:`mechshift_lite.circuits`) share:

* :func:`example_chunks`: how the examples (a :class:`~mechshift_lite.inputs.ModelInputs`) are split;
* :class:`MetricCaller`: calls the user's metric on one chunk and checks what comes back;
* :func:`node_outputs`: every source's output, stacked as ``[n_src, B, P, D]`` (forward order);
* :func:`patched_metrics`: the metric when some edges carry corrupted activations (the reference's
  ``evaluate_graph`` semantics), for many edge sets at once.

Patching rule. The clean input runs, and at every destination ``v``::

    x_v  <-  x_v(this run) + sum over absent edges u->v of ( out_u(corrupted run) - out_u(this run) )

``out_u(corrupted run)`` comes from a separate, unpatched run on the corrupted input; ``out_u(this
run)`` is ``u``'s output in the patched run itself. So an edge in the circuit carries whatever its
sender computes in the patched run, and an absent edge carries the sender's corrupted activation.
With every edge absent this reproduces the corrupted run, with none absent the clean run.
"""

from __future__ import annotations

import inspect
from typing import Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .graph import Graph
from .inputs import ModelInputs
from .model import Hooks, Transformer
from .tasks.common import Metric

TOKENS_PER_PASS = 4096
"""Patched runs of several edge sets are stacked along the batch up to about this many tokens."""
PROGRESS_PASSES = 50
"""With ``progress=None``, a progress bar is shown when the work takes at least this many passes."""


# ----- chunks ---------------------------------------------------------------------------------
def example_chunks(n_examples: int, batch_size: int | None) -> list[Tensor]:
    """The example indices of each chunk, ``[LongTensor]``; one chunk when ``batch_size`` is None."""
    if batch_size is None:
        return [torch.arange(n_examples)]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None (one chunk); got {batch_size!r}")
    return list(torch.arange(n_examples).split(batch_size))


# ----- the metric ---------------------------------------------------------------------------------
class MetricCaller:
    """Calls ``metric(logits)`` or ``metric(logits, rows=rows)`` and checks the answer.

    A metric that has a keyword parameter ``rows`` receives the chunk's example indices (a
    ``LongTensor``) and must return one value per row; any other metric gets the logits alone.
    """

    def __init__(self, metric: Metric):
        if not callable(metric):
            raise TypeError(f"metric must be a callable logits -> Tensor[batch]; got {type(metric).__name__}")
        self.metric = metric
        try:
            params = inspect.signature(metric).parameters
        except (TypeError, ValueError):  # some builtins have no signature
            params = {}
        self.takes_rows = "rows" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())

    def __call__(self, logits: Tensor, rows: Tensor, *, needs_grad: bool = False) -> Tensor:
        """``logits [B, P, V]`` -> ``[B]``; errors name the problem and the examples concerned."""
        values = self.metric(logits, rows=rows) if self.takes_rows else self.metric(logits)
        if not isinstance(values, Tensor):
            raise TypeError(f"metric must return a Tensor with one value per example; got {type(values).__name__}")
        if tuple(values.shape) != (len(rows),):
            raise ValueError(
                f"metric returned shape {tuple(values.shape)} for a chunk of {len(rows)} examples; it must return "
                f"one value per example, shape ({len(rows)},) (no mean over the batch, no extra dimensions)"
            )
        bad = ~torch.isfinite(values.detach())
        if bad.any():
            raise ValueError(
                f"metric returned NaN or inf for examples {rows[bad.cpu()].tolist()}; check the logits positions "
                "and token ids it reads (a log of a zero probability?)"
            )
        if needs_grad and not values.requires_grad:
            raise ValueError(
                "metric output does not depend differentiably on the logits (did it call .detach(), .item(), "
                "argmax or torch.no_grad?); gradient methods need a differentiable metric"
            )
        return values


# ----- node outputs -------------------------------------------------------------------------------
class OutputRecorder(Hooks):
    """Collects every source's output (``[B, P, D]`` each) in forward order."""

    def __init__(self) -> None:
        self.outputs: list[Tensor] = []

    def node_output(self, kind: str, layer: int | None, out: Tensor) -> Tensor:
        self.outputs.extend(out.unbind(2) if kind == "attn" else [out])
        return out

    def stacked(self) -> Tensor:
        """``[n_src_so_far, B, P, D]``."""
        return torch.stack([out.to(self.outputs[0].device) for out in self.outputs])


@torch.no_grad()
def node_outputs(model: Transformer, inputs: ModelInputs, which: str) -> Tensor:
    """Every source's output in the ``"clean"`` or ``"corrupted"`` run, ``[n_src, B, P, D]`` in forward
    order (``input``, ``a0.h0``, ..., ``m{L-1}``)."""
    recorder = OutputRecorder()
    inputs.run(model, which, recorder)
    return recorder.stacked()


# ----- patched runs ---------------------------------------------------------------------------------
class EdgePatcher(OutputRecorder):
    """Applies the patching rule of the module docstring.

    Args:
        graph: the model's graph.
        corrupted: ``[n_src, B, P, D]`` outputs of the unpatched corrupted run.
        absent: ``[B, n_src, n_dst]`` float, 1 where the edge is *not* in the circuit (one edge
            set per example, so several edge sets can share a forward pass).
    """

    def __init__(self, graph: Graph, corrupted: Tensor, absent: Tensor):
        super().__init__()
        self.graph, self.corrupted, self.absent = graph, corrupted, absent

    def dest_input(self, kind: str, layer: int | None, x: Tensor) -> Tensor:
        prev, columns = self.graph.destinations_of(kind, layer)
        absent = self.absent[:, :prev, columns]                                 # [B, prev, c]
        # Only the examples and sources with an absent edge here need work (few, in exact patching).
        rows = absent.any(dim=2).any(dim=1).nonzero()[:, 0]
        if len(rows) == 0:
            return x
        sources = absent[rows].any(dim=2).any(dim=0).nonzero()[:, 0]
        current = torch.stack([self.outputs[s][rows.to(self.outputs[s].device)].to(x.device) for s in sources.tolist()])
        diff = self.corrupted[sources][:, rows].to(x.device) - current           # [s, b, P, D]
        weights = absent[rows][:, sources].to(x.device)                          # [b, s, c]
        patch = torch.einsum("sbpd,bsc->bpcd", diff, weights)                     # [b, P, c, D]
        patched = x.clone(memory_format=torch.contiguous_format)
        patched[rows.to(x.device)] += patch.reshape(len(rows), *x.shape[1:])
        return patched


class EdgeSets(Protocol):
    """Edge sets to patch: ``len()`` of them, and ``[k, n_src, n_dst]`` bool "absent" masks by slice.

    A bool tensor ``[C, n_src, n_dst]`` is one; :class:`~mechshift_lite.attribution.SingleEdgeMasks`
    builds its masks slice by slice.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, items: slice) -> Tensor: ...


def patched_metrics(
    model: Transformer,
    absent: EdgeSets,
    inputs: ModelInputs,
    metric: Metric,
    batch_size: int | None = None,
    progress: bool | None = None,
) -> Tensor:
    """The metric of every example with each edge set patched.

    Args:
        absent: ``C`` edge sets as ``[C, n_src, n_dst]`` bool masks, True where an edge is *not*
            in the set.
        inputs: the clean and corrupted inputs.
        batch_size: examples per chunk (None: all at once). Several edge sets share one forward
            pass (stacked along the batch) up to about ``TOKENS_PER_PASS`` tokens.
        progress: show a progress bar (None: when there are at least ``PROGRESS_PASSES`` passes).

    Returns:
        ``[C, N]`` float64 metric values (no gradients).
    """
    graph, caller = model.graph, MetricCaller(metric)
    n_sets = len(absent)
    if tuple(absent[0:1].shape[1:]) != (graph.n_src, graph.n_dst):
        raise ValueError(f"edge masks must be [C, {graph.n_src}, {graph.n_dst}]; got {tuple(absent[0:1].shape)}")
    chunks = example_chunks(inputs.n_examples, batch_size)
    sets_per_pass = [max(1, TOKENS_PER_PASS // (len(rows) * inputs.clean_ids.shape[1])) for rows in chunks]
    n_passes = sum(-(-n_sets // k) for k in sets_per_pass)
    show = progress if progress is not None else n_passes >= PROGRESS_PASSES
    values = torch.empty(n_sets, inputs.n_examples, dtype=torch.float64)
    with torch.no_grad(), tqdm(total=n_passes, disable=not show, desc="patching", leave=False) as bar:
        for rows, per_pass in zip(chunks, sets_per_pass):
            chunk = inputs.select(rows)
            corrupted = node_outputs(model, chunk, "corrupted")
            for first in range(0, n_sets, per_pass):
                group = absent[first:first + per_pass].to(corrupted.device, corrupted.dtype)   # [k, n_src, n_dst]
                k = group.shape[0]
                patcher = EdgePatcher(graph, corrupted.repeat(1, k, 1, 1), group.repeat_interleave(len(rows), dim=0))
                logits = chunk.repeat(k).run(model, "clean", patcher)
                for i, chunk_logits in enumerate(logits.split(len(rows))):
                    values[first + i, rows] = caller(chunk_logits, rows).detach().double().cpu()
                bar.update(1)
    return values
