"""The instrumented forward pass: every node output and every destination input through hooks.

:mod:`mechshift_lite.model` is the plain pass. This one computes the same function but gives
each attention head its own copy of the residual stream for its query, key and value inputs
(``[B, P, 3, H, D]``, an expanded view: no memory is copied), and calls a :class:`Hooks` object

* at every **node output** before it joins the residual stream (``input``, every head of a
  layer at once, an MLP), and
* at every **destination input** read from it (a layer's ``3H`` head copies at once, an MLP's
  input, the final residual stream that ``logits`` reads),

so attribution, patching, ablation and recording need no monkey-patching. Which graph indices
one hook call covers is :meth:`Graph.sources_of` / :meth:`Graph.destinations_of`.

Shapes as in :mod:`mechshift_lite.model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .graph import Graph

if TYPE_CHECKING:
    from .model import Block, Transformer


class Hooks:
    """Callbacks of the instrumented pass. The base class changes nothing; subclasses override.

    Each method receives a tensor and returns the tensor the forward pass continues with (the
    same one, a replacement, or the same one with a gradient hook registered on it).
    """

    def node_output(self, kind: str, layer: int | None, out: Tensor) -> Tensor:
        """A source's output before it is added to the residual stream.

        ``kind="input"``: ``[B, P, D]`` token embedding (``layer`` is None);
        ``kind="attn"``: ``[B, P, H, D]`` every head's output of ``layer`` (without ``b_O``);
        ``kind="mlp"``: ``[B, P, D]``.
        """
        return out

    def dest_input(self, kind: str, layer: int | None, x: Tensor) -> Tensor:
        """A destination's input, read from the residual stream.

        ``kind="attn"``: ``[B, P, 3, H, D]``, the q/k/v copies of every head of ``layer``;
        ``kind="mlp"``: ``[B, P, D]`` the MLP's input; ``kind="logits"``: ``[B, P, D]`` the
        final residual stream (``layer`` is None). Changing a copy changes only that destination.
        """
        return x

    def attention_pattern(self, layer: int, pattern: Tensor) -> Tensor:
        """The attention probabilities ``[B, H, P_query, P_key]`` of ``layer``."""
        return pattern


def forward(model: Transformer, input_ids: Tensor, attn_bias: Tensor, rotary, hooks: Hooks) -> Tensor:
    """Logits ``[B, P, V]``, calling ``hooks`` at every node (``model(ids, hooks=...)`` calls this)."""
    from .model import on_device_of

    embedding = hooks.node_output("input", None, model.W_E[input_ids])
    resid = model.embed(input_ids, token_embedding=embedding)
    for layer, block in enumerate(model.blocks):
        resid, attn_bias, rotary = on_device_of(block, resid, attn_bias, rotary)
        resid = block_forward(block, layer, resid, attn_bias, rotary, hooks)
    resid = hooks.dest_input("logits", None, resid.to(model.ln_final.w.device))
    return model.ln_final(resid) @ model.unembed


def block_forward(block: Block, layer: int, resid: Tensor, attn_bias: Tensor, rotary, hooks: Hooks) -> Tensor:
    """One block of the instrumented pass, ``[B, P, D] -> [B, P, D]``."""
    attn = block.attn
    copies = resid[:, :, None, None, :].expand(-1, -1, 3, attn.cfg.n_heads, -1)   # [B, P, 3, H, D]
    x = hooks.dest_input("attn", layer, copies)
    # Copies no hook replaced are still one tensor viewed 3H times: normalise them once.
    untouched = x.data_ptr() == copies.data_ptr() and x.stride() == copies.stride()
    xq, xk, xv = (block.ln1.of_copies(x) if untouched else block.ln1(x)).unbind(2)
    q = attn.project(xq, attn.W_Q, attn.b_Q)
    k = attn.project(xk, attn.W_K, attn.b_K)
    v = attn.project(xv, attn.W_V, attn.b_V)
    z = attn.attend(q, k, v, attn_bias, rotary, on_pattern=lambda p: hooks.attention_pattern(layer, p))
    heads = hooks.node_output("attn", layer, torch.einsum("bqhk,hkd->bqhd", z, attn.W_O))   # [B, P, H, D]
    attn_out = heads.sum(dim=2)
    resid = resid + (attn_out if attn.b_O is None else attn_out + attn.b_O)
    mlp_in = hooks.dest_input("mlp", layer, resid)
    return resid + hooks.node_output("mlp", layer, block.mlp(block.ln2(mlp_in)))


@dataclass
class NodeRun:
    """What :meth:`Transformer.run_with_nodes` returns."""

    logits: Tensor
    outputs: dict[str, Tensor] = field(default_factory=dict)
    inputs: dict[str, Tensor] = field(default_factory=dict)
    patterns: dict[int, Tensor] = field(default_factory=dict)


class NodeRecorder(Hooks):
    """Records node outputs and destination inputs by name, and applies named overrides.

    Args:
        graph: the model's graph (names <-> indices).
        overrides: destination name -> ``[B, P, D]`` replacement of that destination's input.
        shape: ``(B, P)`` of the run; d_model: ``D``.
    """

    def __init__(self, graph: Graph, overrides: dict[str, Tensor], shape: torch.Size, d_model: int):
        self.graph = graph
        self.outputs: dict[str, Tensor] = {}
        self.inputs: dict[str, Tensor] = {}
        self.patterns: dict[int, Tensor] = {}
        self.overrides: dict[int, Tensor] = {}     # destination index -> replacement
        for name, value in overrides.items():
            index = graph.dst_index(name)
            if tuple(value.shape) != (*shape, d_model):
                raise ValueError(f"override for {name!r} must have shape {(*shape, d_model)}; got {tuple(value.shape)}")
            self.overrides[index] = value

    def node_output(self, kind: str, layer: int | None, out: Tensor) -> Tensor:
        names = self.graph.src_names[self.graph.sources_of(kind, layer)]
        per_node = out.unbind(2) if kind == "attn" else (out,)
        self.outputs.update(zip(names, per_node))
        return out

    def attention_pattern(self, layer: int, pattern: Tensor) -> Tensor:
        self.patterns[layer] = pattern
        return pattern

    def dest_input(self, kind: str, layer: int | None, x: Tensor) -> Tensor:
        _, columns = self.graph.destinations_of(kind, layer)
        indices = range(columns.start, columns.stop)
        mine = [i for i in indices if i in self.overrides]
        if kind == "attn":
            H = x.shape[3]
            if mine:
                x = x.clone()
                for i in mine:
                    qkv, head = divmod(i - columns.start, H)
                    x[:, :, qkv, head] = self.overrides[i]
            per_destination = x.flatten(2, 3).unbind(2)          # [q heads..., k heads..., v heads...]
        else:
            x = self.overrides.get(columns.start, x)
            per_destination = (x,)
        self.inputs.update(zip(self.graph.dst_names[columns], per_destination))
        return x
