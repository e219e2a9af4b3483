"""The computational graph of a transformer, in the EAP-IG reference's conventions.

Sources (nodes that write to the residual stream), in *forward index* order::

    input                       0                      token embedding (positions excluded)
    a{l}.h{h}                   1 + l*(H+1) + h        one attention head's output, without b_O
    m{l}                        1 + l*(H+1) + H        one MLP's output

Destinations (inputs that read the residual stream), in *backward index* order::

    a{l}.h{h}<q|k|v>            l*(3H+1) + {0,1,2}*H + h    the head's own pre-norm copy
    m{l}                        l*(3H+1) + 3H               the MLP's input
    logits                      L*(3H+1)                    the final residual, before the final norm

An edge ``src->dst`` exists when ``src`` is upstream of ``dst``: a head of layer ``l`` reads
``input`` and every head and MLP of layers ``< l``; MLP ``l`` also reads the heads of its own
layer; ``logits`` reads everything. The sources upstream of a destination are always the first
``prev_index(dst)`` forward indices, which is how causality is encoded in one dense
``[n_src, n_dst]`` score matrix.

With grouped-query attention every *query* head still gets its own ``<k>`` and ``<v>``
destinations (the key/value weights of its group applied to its private copy of the residual
stream), as TransformerLens' ``ungroup_grouped_query_attention`` does; so the graph only depends
on ``n_layers`` and ``n_heads``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import torch

from .config import ModelConfig

QKV = ("q", "k", "v")
_HEAD = re.compile(r"^a(\d+)\.h(\d+)$")
_HEAD_INPUT = re.compile(r"^a(\d+)\.h(\d+)<([qkv])>$")
_MLP = re.compile(r"^m(\d+)$")


@dataclass(frozen=True)
class Graph:
    """Nodes, edges and index arithmetic for a model with ``n_layers`` x ``n_heads``."""

    n_layers: int
    n_heads: int

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "Graph":
        return cls(cfg.n_layers, cfg.n_heads)

    # ----- sizes and names -------------------------------------------------------------------
    @property
    def n_src(self) -> int:
        return 1 + self.n_layers * (self.n_heads + 1)

    @property
    def n_dst(self) -> int:
        return self.n_layers * (3 * self.n_heads + 1) + 1

    @cached_property
    def src_names(self) -> list[str]:
        names = ["input"]
        for layer in range(self.n_layers):
            names += [f"a{layer}.h{h}" for h in range(self.n_heads)] + [f"m{layer}"]
        return names

    @cached_property
    def dst_names(self) -> list[str]:
        names = []
        for layer in range(self.n_layers):
            for qkv in QKV:
                names += [f"a{layer}.h{h}<{qkv}>" for h in range(self.n_heads)]
            names.append(f"m{layer}")
        return names + ["logits"]

    @cached_property
    def _src_lookup(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.src_names)}

    @cached_property
    def _dst_lookup(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.dst_names)}

    def src_index(self, name: str) -> int:
        """Forward index of a source node name (``input``, ``a1.h2``, ``m0``)."""
        try:
            return self._src_lookup[name]
        except KeyError:
            raise KeyError(self._unknown(name, "source node", "input, a0.h0, m0")) from None

    def dst_index(self, name: str) -> int:
        """Backward index of a destination name (``a1.h2<q>``, ``m0``, ``logits``)."""
        try:
            return self._dst_lookup[name]
        except KeyError:
            raise KeyError(self._unknown(name, "destination", "a0.h0<q>, m0, logits")) from None

    def _unknown(self, name: str, what: str, examples: str) -> str:
        return (
            f"unknown {what} {name!r} for a graph with {self.n_layers} layers x {self.n_heads} "
            f"heads; names look like {examples}"
        )

    # ----- causality ---------------------------------------------------------------------------
    def layer_of_dst(self, dst: int) -> int:
        """Layer of a destination index (``n_layers`` for ``logits``)."""
        return dst // (3 * self.n_heads + 1)

    def prev_index(self, dst: int) -> int:
        """How many sources (the first ones in forward order) feed destination index ``dst``."""
        layer, offset = divmod(dst, 3 * self.n_heads + 1)
        if layer == self.n_layers:
            return self.n_src
        first_of_layer = 1 + layer * (self.n_heads + 1)
        return first_of_layer + (self.n_heads if offset == 3 * self.n_heads else 0)

    @cached_property
    def edge_mask(self) -> torch.Tensor:
        """``[n_src, n_dst]`` bool: True where the edge ``src->dst`` exists."""
        prev = torch.tensor([self.prev_index(d) for d in range(self.n_dst)])
        return torch.arange(self.n_src)[:, None] < prev[None, :]

    @property
    def n_edges(self) -> int:
        return int(self.edge_mask.sum())

    @cached_property
    def edge_names(self) -> list[str]:
        """Every edge name ``src->dst``, in row-major ``[n_src, n_dst]`` order of the edge mask."""
        src, dst = self.edge_mask.nonzero(as_tuple=True)
        return [f"{self.src_names[s]}->{self.dst_names[d]}" for s, d in zip(src.tolist(), dst.tolist())]

    def edge_index(self, name: str) -> tuple[int, int]:
        """``"a0.h1->m1"`` -> ``(src_index, dst_index)``; errors on unknown or impossible edges."""
        if "->" not in name:
            raise KeyError(f"an edge name looks like 'a0.h1->m1', got {name!r}")
        src_name, dst_name = name.split("->", 1)
        src, dst = self.src_index(src_name), self.dst_index(dst_name)
        if not self.edge_mask[src, dst]:
            raise KeyError(f"{src_name} is not upstream of {dst_name}: {name!r} is not an edge")
        return src, dst

    # ----- index blocks of one layer (used by the attribution and patching hooks) --------------------
    def head_src(self, layer: int, head: int = 0) -> int:
        """Forward index of head ``a{layer}.h{head}``; the heads of a layer are contiguous."""
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_src(self, layer: int) -> int:
        """Forward index of MLP ``m{layer}``."""
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def attn_dsts(self, layer: int) -> slice:
        """The ``3H`` destination indices of layer ``layer``'s heads, in ``[q|k|v, head]`` order."""
        first = layer * (3 * self.n_heads + 1)
        return slice(first, first + 3 * self.n_heads)

    def mlp_dst(self, layer: int) -> int:
        """Destination index of MLP ``m{layer}``'s input."""
        return layer * (3 * self.n_heads + 1) + 3 * self.n_heads

    @property
    def logits_dst(self) -> int:
        return self.n_dst - 1

    # ----- what one hook call of the model covers: the one place (kind, layer) meets indices -------
    def sources_of(self, kind: str, layer: int | None) -> slice:
        """Forward indices of the outputs one ``Hooks.node_output(kind, layer, ...)`` call carries:
        ``input`` -> ``[0]``, a layer's heads (``"attn"``) -> its ``H`` heads, ``"mlp"`` -> one."""
        if kind == "input":
            return slice(0, 1)
        if kind == "attn":
            return slice(self.head_src(layer), self.head_src(layer) + self.n_heads)
        if kind == "mlp":
            return slice(self.mlp_src(layer), self.mlp_src(layer) + 1)
        raise ValueError(f"a source kind is 'input', 'attn' or 'mlp'; got {kind!r}")

    def destinations_of(self, kind: str, layer: int | None) -> tuple[int, slice]:
        """``(prev, columns)`` of one ``Hooks.dest_input(kind, layer, ...)`` call: its upstream
        sources are the first ``prev`` forward indices, and it covers the score columns ``columns``
        (the ``3H`` q/k/v copies of a layer's heads, one MLP input, or ``logits``)."""
        if kind == "attn":
            return self.head_src(layer), self.attn_dsts(layer)
        if kind == "mlp":
            return self.mlp_src(layer), slice(self.mlp_dst(layer), self.mlp_dst(layer) + 1)
        if kind == "logits":
            return self.n_src, slice(self.logits_dst, self.logits_dst + 1)
        raise ValueError(f"a destination kind is 'attn', 'mlp' or 'logits'; got {kind!r}")

    @cached_property
    def dst_owner(self) -> torch.Tensor:
        """``[n_dst]`` long: forward index of the node each destination feeds (``a1.h2<k>`` -> ``a1.h2``'s
        index, ``m0`` -> ``m0``'s index); ``-1`` for ``logits``, which is not a source."""
        owner = torch.full((self.n_dst,), -1, dtype=torch.long)
        for layer in range(self.n_layers):
            owner[self.attn_dsts(layer)] = torch.arange(self.n_heads).repeat(3) + self.head_src(layer)
            owner[self.mlp_dst(layer)] = self.mlp_src(layer)
        return owner

    def node_of_dst(self, dst: int) -> str:
        """Name of the node a destination index feeds: ``"a1.h2"``, ``"m0"`` or ``"logits"``."""
        owner = int(self.dst_owner[dst])
        return "logits" if owner < 0 else self.src_names[owner]

    # ----- node names to model coordinates ----------------------------------------------------------
    def src_layer(self, src: int) -> int:
        """Layer of a source index; ``input`` counts as layer -1."""
        return -1 if src == 0 else (src - 1) // (self.n_heads + 1)

    def check_layer_head(self, layer: int, head: int | None, name: str) -> None:
        if not 0 <= layer < self.n_layers or (head is not None and not 0 <= head < self.n_heads):
            raise KeyError(self._unknown(name, "node", "input, a0.h0, m0, a0.h0<q>, logits"))


def parse_destination(name: str, graph: Graph) -> tuple[str, int | None, int | None, int | None]:
    """``"a1.h2<k>"`` -> ``("attn", 1, 2, 1)``; ``"m0"`` -> ``("mlp", 0, None, None)``;
    ``"logits"`` -> ``("logits", None, None, None)``. Returns ``(kind, layer, head, qkv)``."""
    if name == "logits":
        return "logits", None, None, None
    if match := _HEAD_INPUT.match(name):
        layer, head = int(match[1]), int(match[2])
        graph.check_layer_head(layer, head, name)
        return "attn", layer, head, QKV.index(match[3])
    if match := _MLP.match(name):
        graph.check_layer_head(int(match[1]), None, name)
        return "mlp", int(match[1]), None, None
    raise KeyError(graph._unknown(name, "destination", "a0.h0<q>, m0, logits"))


def parse_source(name: str, graph: Graph) -> tuple[str, int | None, int | None]:
    """``"a1.h2"`` -> ``("attn", 1, 2)``; ``"m0"`` -> ``("mlp", 0, None)``; ``"input"``."""
    if name == "input":
        return "input", None, None
    if match := _HEAD.match(name):
        graph.check_layer_head(int(match[1]), int(match[2]), name)
        return "attn", int(match[1]), int(match[2])
    if match := _MLP.match(name):
        graph.check_layer_head(int(match[1]), None, name)
        return "mlp", int(match[1]), None
    raise KeyError(graph._unknown(name, "source node", "input, a0.h0, m0"))
