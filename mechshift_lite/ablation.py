"""Ablating components: replace node outputs and see what the model loses.

Used for the paper's "next check": ablate the MDM's top early-layer components on Countdown and
on IOI, and compare with ablating as many *random* components.

* ``"zero"``: the node's output is replaced by zeros.
* ``"mean"``: by its mean over the batch's real positions (a ``[d_model]`` vector per node), which
  removes what the node says about *this* input while keeping its average contribution.
* ``"position-mean"`` (issue 11): each position's output by its mean *at that position* over the
  batch's examples where it is real (a ``[pos, d_model]`` tensor per node). An ARM and an MDM then
  get the same kind of replacement: a prompt position by the prompt-position mean, a ``[MASK]``
  slot by the ``[MASK]``-slot mean (the all-positions mean of an MDM is mostly ``[MASK]`` slots).

**Layer-matched random control** (:func:`layer_matched_random`): as many random components from
each layer as the targeted set has in that layer, so a targeted drop is compared with random
components at the same depth.
"""

from __future__ import annotations

import random
from typing import Iterable, Sequence

import torch
from torch import Tensor

from .graph import Graph, parse_source
from .inputs import ModelInputs, clean_input
from .model import Hooks, Transformer

METHODS = ("zero", "mean", "position-mean")


class NodeAblation(Hooks):
    """Replaces the outputs of the given source nodes (``a{l}.h{h}``, ``m{l}``, ``input``)."""

    def __init__(self, graph: Graph, nodes: Iterable[str], replacements: dict[str, Tensor] | None = None):
        self.targets = {name: parse_source(name, graph) for name in nodes}
        self.replacements = replacements or {}

    def _value(self, name: str, like: Tensor) -> Tensor:
        return self.replacements.get(name, torch.zeros(like.shape[-1], dtype=like.dtype, device=like.device))

    def node_output(self, kind: str, layer: int | None, out: Tensor) -> Tensor:
        mine = [(n, head) for n, (k, l, head) in self.targets.items() if k == kind and l == layer]
        if not mine:
            return out
        out = out.clone()
        for name, head in mine:
            if head is None:
                out[...] = self._value(name, out)
            else:
                out[:, :, head] = self._value(name, out[:, :, head])
        return out


@torch.no_grad()
def mean_outputs(model: Transformer, input_ids: Tensor | ModelInputs, nodes: Iterable[str], attention_mask: Tensor | None = None,
                 attention=None, per_position: bool = False) -> dict[str, Tensor]:
    """Each node's output averaged over the batch's real positions, ``{name: [d_model]}``, or with
    ``per_position`` at each position over the examples where it is real, ``{name: [pos, d_model]}``
    (zeros at a position no example has). ``input_ids`` may be a
    :class:`~mechshift_lite.inputs.ModelInputs`: its clean ids."""
    input_ids, attention_mask, attention = clean_input(input_ids, attention_mask, attention)
    run = model.run_with_nodes(input_ids, attention_mask, attention=attention)
    real = torch.ones(input_ids.shape, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if not per_position:
        return {name: run.outputs[name][real].mean(0) for name in nodes}
    weights = real.to(run.logits.dtype)                                               # [B, P]
    counts = weights.sum(0).clamp_min(1)[:, None]                                     # [P, 1]
    return {name: (run.outputs[name] * weights[..., None]).sum(0) / counts for name in nodes}


@torch.no_grad()
def ablated_logits(
    model: Transformer,
    input_ids: Tensor | ModelInputs,
    nodes: Iterable[str],
    method: str = "mean",
    attention_mask: Tensor | None = None,
    attention=None,
    means: dict[str, Tensor] | None = None,
) -> Tensor:
    """``[batch, pos, vocab]`` logits with ``nodes`` ablated (``method`` "zero", "mean" or "position-mean").

    ``means``: mean outputs from :func:`mean_outputs` on the same inputs, to reuse across calls
    (None: computed here for ``nodes``). ``input_ids`` may be a
    :class:`~mechshift_lite.inputs.ModelInputs` (its clean ids, mask and attention).
    """
    input_ids, attention_mask, attention = clean_input(input_ids, attention_mask, attention)
    nodes = list(nodes)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    hooks = NodeAblation(model.graph, nodes)   # validates the names first
    if method in ("mean", "position-mean"):
        if means is None:
            means = mean_outputs(model, input_ids, nodes, attention_mask, attention, per_position=method == "position-mean")
        expected = (input_ids.shape[1], model.cfg.d_model) if method == "position-mean" else (model.cfg.d_model,)
        for name in nodes:
            if tuple(means[name].shape) != expected:
                raise ValueError(f"method {method!r} needs means of shape {expected} per node; {name} has "
                                 f"{tuple(means[name].shape)} (mean_outputs(..., per_position={method == 'position-mean'}))")
        hooks.replacements = {name: means[name] for name in nodes}
    return model(input_ids, attention_mask, attention=attention, hooks=hooks)


def layer_matched_random(graph: Graph, targeted: Sequence[str], seed: int) -> list[str]:
    """For each layer, as many components drawn at random (without replacement, seeded) from that
    layer's heads and MLP as ``targeted`` has in it; the draw may include targeted components."""
    rng = random.Random(seed)
    per_layer: dict[int, int] = {}
    for name in targeted:
        graph.src_index(name)                                    # validates the name
        if name == "input":
            raise ValueError("input is not a component: target heads and MLPs")
        per_layer[layer_of(name)] = per_layer.get(layer_of(name), 0) + 1
    drawn = []
    for layer, count in sorted(per_layer.items()):
        candidates = [n for n in graph.src_names[1:] if layer_of(n) == layer]
        drawn += rng.sample(candidates, count)
    return drawn


def layer_of(name: str) -> int:
    """Layer of a head or MLP name (``a2.h1`` -> 2, ``m0`` -> 0; ``input`` -> -1)."""
    if name == "input":
        return -1
    return int(name[1:].split(".")[0])

