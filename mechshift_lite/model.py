"""A transformer you can read: GPT-2 style and LLaMA/Qwen2 style blocks in one small module.

The residual stream is a plain sum of node outputs (pre-norm blocks)::

    resid_final = W_E[tokens] (+ W_pos)  +  sum over layers ( sum_h head_h + b_O  +  mlp )

Every node output and every destination input (see :mod:`mechshift_lite.graph` for the names)
passes through a :class:`Hooks` object when one is given, so attribution and patching need no
monkey-patching. Without hooks the forward takes the fast path and never forms per-head copies.

Shapes: ``B`` batch, ``P`` positions, ``D`` d_model, ``H`` query heads, ``G`` key/value heads,
``K`` d_head, ``M`` d_mlp, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .graph import Graph, parse_destination
from .norm_copies import CopiesNorm, is_expanded

AttentionMode = Literal["causal", "bidirectional"]
AttentionSpec = Union[AttentionMode, Tensor]   # a mode name or an explicit bool mask
ATTENTION_MODES: tuple[str, ...] = ("causal", "bidirectional")


class Hooks:
    """Callbacks of the forward pass. The base class changes nothing; subclasses override.

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


class Norm(nn.Module):
    """LayerNorm (gpt2 family) or RMSNorm (llama family) over the last dimension."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.rms = cfg.family == "llama"
        self.eps = cfg.norm_eps
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = None if self.rms else nn.Parameter(torch.zeros(cfg.d_model))

    def forward(self, x: Tensor) -> Tensor:
        """``[..., D] -> [..., D]``; statistics in (at least) float32, as HuggingFace does.

        Identical copies (the per-head q/k/v inputs) take :class:`CopiesNorm`: same values,
        statistics computed once.
        """
        if is_expanded(x):
            return CopiesNorm.apply(x, self.w, self.b, self.eps)
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))
        if self.rms:
            x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
            return self.w * x32.to(x.dtype)
        x32 = (x32 - x32.mean(-1, keepdim=True)) * torch.rsqrt(x32.var(-1, unbiased=False, keepdim=True) + self.eps)
        return (x32 * self.w.to(x32.dtype) + self.b.to(x32.dtype)).to(x.dtype)


def rotary_tables(n_pos: int, d_head: int, theta: float, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin tables ``[P, K]`` for rotary positions (LLaMA's rotate-half layout)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, d_head, 2, device=device, dtype=torch.float32) / d_head)
    angles = torch.arange(n_pos, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x [B, P, H, K]`` by position; ``cos, sin [P, K]``."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    cos, sin = cos[:, None, :].to(x.dtype), sin[:, None, :].to(x.dtype)
    return x * cos + rotated * sin


class Attention(nn.Module):
    """Multi-head (or grouped-query) attention with per-head weights.

    ``W_Q [H, D, K]``, ``W_K, W_V [G, D, K]``, ``W_O [H, K, D]``; biases ``b_Q [H, K]``,
    ``b_K, b_V [G, K]`` and ``b_O [D]`` when the config asks for them. Query head ``h`` uses
    key/value head ``h // (H // G)``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        H, G, D, K = cfg.n_heads, cfg.kv_heads, cfg.d_model, cfg.d_head
        self.cfg = cfg
        self.W_Q = nn.Parameter(torch.empty(H, D, K))
        self.W_K = nn.Parameter(torch.empty(G, D, K))
        self.W_V = nn.Parameter(torch.empty(G, D, K))
        self.W_O = nn.Parameter(torch.empty(H, K, D))
        qkv_bias = cfg.qkv_bias or cfg.family == "gpt2"
        self.b_Q = nn.Parameter(torch.zeros(H, K)) if qkv_bias else None
        self.b_K = nn.Parameter(torch.zeros(G, K)) if qkv_bias else None
        self.b_V = nn.Parameter(torch.zeros(G, K)) if qkv_bias else None
        self.b_O = nn.Parameter(torch.zeros(D)) if cfg.out_bias or cfg.family == "gpt2" else None

    @property
    def group_size(self) -> int:
        return self.cfg.n_heads // self.cfg.kv_heads

    def _project(self, x: Tensor, W: Tensor, b: Tensor | None, per_head: bool) -> Tensor:
        """``x [B, P, D]`` (shared) or ``[B, P, H, D]`` (one copy per head) -> ``[B, P, heads, K]``."""
        if per_head:
            if W.shape[0] != x.shape[2]:  # grouped-query: every query head uses its group's weights
                W = W.repeat_interleave(self.group_size, dim=0)
                b = None if b is None else b.repeat_interleave(self.group_size, dim=0)
            out = torch.einsum("bphd,hdk->bphk", x, W)
        else:
            out = torch.einsum("bpd,hdk->bphk", x, W)
        return out if b is None else out + b

    def forward(
        self, x: Tensor, attn_bias: Tensor, rotary: tuple[Tensor, Tensor] | None, hooks: Hooks | None = None, layer: int = 0
    ) -> Tensor:
        """Attention of one layer.

        Args:
            x: normalised input, ``[B, P, D]`` (fast path) or ``[B, P, 3, H, D]`` (q/k/v copies
                of every head, when hooks are given).
            attn_bias: additive mask ``[B, 1, P, P]`` (0 where a query may see a key).
            rotary: cos/sin tables for the llama family, else None.
            hooks: when given, ``x`` holds per-head copies, every head's output is returned
                and ``hooks.attention_pattern`` sees the pattern.

        Returns:
            ``[B, P, H, D]`` head outputs with hooks, else ``[B, P, D]``; without ``b_O``.
        """
        per_head = hooks is not None
        if per_head:
            xq, xk, xv = x.unbind(2)   # unbind: one backward op instead of three zero-filled slices
            q = self._project(xq, self.W_Q, self.b_Q, True)
            k = self._project(xk, self.W_K, self.b_K, True)
            v = self._project(xv, self.W_V, self.b_V, True)
        else:
            q = self._project(x, self.W_Q, self.b_Q, False)
            k = self._project(x, self.W_K, self.b_K, False).repeat_interleave(self.group_size, dim=2)
            v = self._project(x, self.W_V, self.b_V, False).repeat_interleave(self.group_size, dim=2)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        scores = torch.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(self.cfg.d_head) + attn_bias
        pattern = scores.to(torch.promote_types(scores.dtype, torch.float32)).softmax(dim=-1).to(q.dtype)  # [B, H, Pq, Pk]
        if per_head:
            pattern = hooks.attention_pattern(layer, pattern)
        z = torch.einsum("bhqs,bshk->bqhk", pattern, v)               # [B, P, H, K]
        if per_head:
            return torch.einsum("bqhk,hkd->bqhd", z, self.W_O)
        return torch.einsum("bqhk,hkd->bqd", z, self.W_O)


class MLP(nn.Module):
    """GELU MLP (gpt2: ``W_in [D, M]``, ``W_out [M, D]``) or SwiGLU (llama: plus ``W_gate [D, M]``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, M = cfg.d_model, cfg.d_mlp
        self.cfg = cfg
        self.W_gate = nn.Parameter(torch.empty(D, M)) if cfg.family == "llama" else None
        self.W_in = nn.Parameter(torch.empty(D, M))
        self.W_out = nn.Parameter(torch.empty(M, D))
        bias = cfg.mlp_bias or cfg.family == "gpt2"
        self.b_gate = nn.Parameter(torch.zeros(M)) if bias and self.W_gate is not None else None
        self.b_in = nn.Parameter(torch.zeros(M)) if bias else None
        self.b_out = nn.Parameter(torch.zeros(D)) if bias else None

    def act(self, x: Tensor) -> Tensor:
        name = self.cfg.act
        if name == "gelu_new":
            return F.gelu(x, approximate="tanh")
        return {"gelu": F.gelu, "silu": F.silu, "relu": F.relu}[name](x)

    def hidden(self, x: Tensor) -> Tensor:
        """The neuron activations ``[..., M]`` of a normalised input ``[..., D]``."""
        pre = _linear(x, self.W_in, self.b_in)
        if self.W_gate is None:
            return self.act(pre)
        return self.act(_linear(x, self.W_gate, self.b_gate)) * pre

    def forward(self, x: Tensor) -> Tensor:
        """``[..., D] -> [..., D]``."""
        return _linear(self.hidden(x), self.W_out, self.b_out)


def _linear(x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
    out = x @ W
    return out if b is None else out + b


class Block(nn.Module):
    """One pre-norm block: ``resid += attn(norm1(resid)); resid += mlp(norm2(resid))``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.attn = Norm(cfg), Attention(cfg)
        self.ln2, self.mlp = Norm(cfg), MLP(cfg)

    def forward(self, resid: Tensor, layer: int, attn_bias: Tensor, rotary, hooks: Hooks | None) -> Tensor:
        """``[B, P, D] -> [B, P, D]``, calling ``hooks`` at this layer's nodes if given."""
        if hooks is None:
            attn_out = self.attn(self.ln1(resid), attn_bias, rotary)
        else:
            H = self.attn.cfg.n_heads
            copies = resid[:, :, None, None, :].expand(-1, -1, 3, H, -1)   # [B, P, 3, H, D]
            copies = hooks.dest_input("attn", layer, copies)
            heads = self.attn(self.ln1(copies), attn_bias, rotary, hooks, layer)
            attn_out = hooks.node_output("attn", layer, heads).sum(dim=2)
        if self.attn.b_O is not None:
            attn_out = attn_out + self.attn.b_O
        resid = resid + attn_out
        mlp_in = resid if hooks is None else hooks.dest_input("mlp", layer, resid)
        mlp_out = self.mlp(self.ln2(mlp_in))
        if hooks is not None:
            mlp_out = hooks.node_output("mlp", layer, mlp_out)
        return resid + mlp_out


class Transformer(nn.Module):
    """A decoder-only transformer whose attention can be causal (ARM) or bidirectional (MDM).

    Args:
        cfg: sizes and family.
        attention: default attention mode, ``"causal"`` or ``"bidirectional"``.
    """

    def __init__(self, cfg: ModelConfig, attention: AttentionMode = "causal"):
        super().__init__()
        self.cfg = cfg
        self.graph = Graph.from_config(cfg)
        self.attention: AttentionMode = _check_mode(attention)
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model)) if cfg.family == "gpt2" else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = Norm(cfg)
        self.W_U = None if cfg.tied_embeddings else nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))

    def init_weights(self, seed: int) -> "Transformer":
        """GPT-2 initialisation (normal, std 0.02; output projections scaled by 1/sqrt(2L)), seeded."""
        gen = torch.Generator().manual_seed(seed)
        out_std = 0.02 / math.sqrt(2 * self.cfg.n_layers)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith((".w",)):
                    p.fill_(1.0)
                elif name.split(".")[-1].startswith("b") or name.endswith(".b"):
                    p.zero_()
                else:
                    std = out_std if name.endswith(("W_O", "W_out")) else 0.02
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
        return self

    @property
    def unembed(self) -> Tensor:
        """The unembedding ``[D, V]`` (the transposed embedding when tied)."""
        return self.W_E.T if self.W_U is None else self.W_U

    # ----- inputs -----------------------------------------------------------------------------
    def _check_inputs(self, input_ids: Tensor, attention_mask: Tensor | None) -> None:
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.dtype.is_floating_point or input_ids.dtype == torch.bool:
            got = f"shape {tuple(input_ids.shape)}, dtype {input_ids.dtype}" if isinstance(input_ids, Tensor) else type(input_ids).__name__
            raise ValueError(f"input_ids must be a 2-D integer tensor [batch, pos]; got {got}")
        if input_ids.shape[1] > self.cfg.n_ctx:
            raise ValueError(
                f"sequence of {input_ids.shape[1]} tokens is longer than the context n_ctx={self.cfg.n_ctx}; "
                "shorten it or use a model with a longer context"
            )
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.cfg.d_vocab):
            raise ValueError(f"token ids must lie in [0, {self.cfg.d_vocab}); got {int(input_ids.min())}..{int(input_ids.max())}")
        if attention_mask is not None and attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)} "
                f"(1 = real token, 0 = padding); got {tuple(attention_mask.shape)}"
            )

    def attention_bias(self, input_ids: Tensor, attention_mask: Tensor | None, attention: AttentionSpec | None) -> Tensor:
        """Additive attention mask ``[B, 1, P, P]``: 0 where a query may see a key, else a large negative.

        ``attention`` is ``"causal"``, ``"bidirectional"`` or a bool tensor ``[P, P]`` /
        ``[B, P, P]`` (True = may attend, rows are queries); padding keys are always hidden.
        """
        B, P = input_ids.shape
        device = input_ids.device
        attention = self.attention if attention is None else attention
        if isinstance(attention, Tensor):
            if attention.dtype != torch.bool or attention.shape not in ((P, P), (B, P, P)):
                raise ValueError(
                    f"an explicit attention mask must be a bool tensor [pos, pos] or [batch, pos, pos] "
                    f"= {(P, P)} or {(B, P, P)}; got dtype {attention.dtype}, shape {tuple(attention.shape)}"
                )
            allowed = attention.to(device).expand(B, P, P)
        elif _check_mode(attention) == "causal":
            allowed = torch.ones(P, P, dtype=torch.bool, device=device).tril().expand(B, P, P)
        else:
            allowed = torch.ones(B, P, P, dtype=torch.bool, device=device)
        if attention_mask is not None:
            allowed = allowed & attention_mask.to(device).bool()[:, None, :]
        dtype = self.W_E.dtype
        bias = torch.zeros(B, P, P, dtype=dtype, device=device)
        return bias.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]

    # ----- forward ----------------------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        attention: AttentionSpec | None = None,
        hooks: Hooks | None = None,
    ) -> Tensor:
        """Logits ``[B, P, V]`` of ``input_ids [B, P]``.

        Args:
            attention_mask: ``[B, P]``, 1 = real token, 0 = padding (right padding).
            attention: override the model's attention mode for this call (see :meth:`attention_bias`).
            hooks: a :class:`Hooks` object called at every node output and destination input.
        """
        self._check_inputs(input_ids, attention_mask)
        P = input_ids.shape[1]
        attn_bias = self.attention_bias(input_ids, attention_mask, attention)
        rotary = None
        if self.cfg.family == "llama":
            rotary = rotary_tables(P, self.cfg.d_head, self.cfg.rope_theta, input_ids.device)
        embed = self.W_E[input_ids]
        if hooks is not None:
            embed = hooks.node_output("input", None, embed)
        resid = embed if self.W_pos is None else embed + self.W_pos[:P]
        for layer, block in enumerate(self.blocks):
            if resid.device != block.ln1.w.device:  # layers spread over several GPUs
                resid, attn_bias, rotary = _move(block.ln1.w.device, resid, attn_bias, rotary)
            resid = block(resid, layer, attn_bias, rotary, hooks)
        resid = resid.to(self.ln_final.w.device)
        if hooks is not None:
            resid = hooks.dest_input("logits", None, resid)
        return self.ln_final(resid) @ self.unembed

    def run_with_nodes(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        attention: AttentionSpec | None = None,
        overrides: dict[str, Tensor] | None = None,
    ) -> "NodeRun":
        """Forward that records every node's output and destination input, by name.

        Args:
            overrides: destination name -> ``[B, P, D]`` tensor that replaces that destination's
                input, e.g. ``{"a1.h0<q>": x, "m0": y, "logits": z}``. Only that destination sees it.

        Returns:
            a :class:`NodeRun` with ``logits``, ``outputs`` (source name -> ``[B, P, D]``),
            ``inputs`` (destination name -> ``[B, P, D]``, after overrides) and ``patterns``
            (layer -> attention probabilities ``[B, H, P, P]``).
        """
        recorder = NodeRecorder(self.graph, overrides or {}, input_ids.shape, self.cfg.d_model)
        logits = self(input_ids, attention_mask, attention=attention, hooks=recorder)
        return NodeRun(logits, recorder.outputs, recorder.inputs, recorder.patterns)


def _move(device: torch.device, resid: Tensor, attn_bias: Tensor, rotary):
    """Move the residual stream, the mask and the rotary tables to ``device``."""
    rotary = None if rotary is None else tuple(t.to(device) for t in rotary)
    return resid.to(device), attn_bias.to(device), rotary


def _check_mode(mode: str) -> AttentionMode:
    if mode not in ATTENTION_MODES:
        raise ValueError(
            f"attention must be one of {ATTENTION_MODES} or a bool mask tensor; got {mode!r}"
        )
    return mode  # type: ignore[return-value]


@dataclass
class NodeRun:
    """What :meth:`Transformer.run_with_nodes` returns."""

    logits: Tensor
    outputs: dict[str, Tensor] = field(default_factory=dict)
    inputs: dict[str, Tensor] = field(default_factory=dict)
    patterns: dict[int, Tensor] = field(default_factory=dict)


class NodeRecorder(Hooks):
    """Records node outputs and destination inputs by name, and applies named overrides."""

    def __init__(self, graph: Graph, overrides: dict[str, Tensor], shape: torch.Size, d_model: int):
        self.graph = graph
        self.outputs: dict[str, Tensor] = {}
        self.inputs: dict[str, Tensor] = {}
        self.patterns: dict[int, Tensor] = {}
        self.overrides: dict[tuple, Tensor] = {}
        for name, value in overrides.items():
            kind, layer, head, qkv = parse_destination(name, graph)
            if tuple(value.shape) != (*shape, d_model):
                raise ValueError(f"override for {name!r} must have shape {(*shape, d_model)}; got {tuple(value.shape)}")
            self.overrides[(kind, layer, head, qkv)] = value

    def node_output(self, kind: str, layer: int | None, out: Tensor) -> Tensor:
        if kind == "attn":
            for h in range(out.shape[2]):
                self.outputs[f"a{layer}.h{h}"] = out[:, :, h]
        else:
            self.outputs["input" if kind == "input" else f"m{layer}"] = out
        return out

    def attention_pattern(self, layer: int, pattern: Tensor) -> Tensor:
        self.patterns[layer] = pattern
        return pattern

    def dest_input(self, kind: str, layer: int | None, x: Tensor) -> Tensor:
        if kind == "attn":
            mine = {key: v for key, v in self.overrides.items() if key[0] == "attn" and key[1] == layer}
            if mine:
                x = x.clone()
                for (_, _, head, qkv), value in mine.items():
                    x[:, :, qkv, head] = value
            for qkv, letter in enumerate("qkv"):
                for h in range(x.shape[3]):
                    self.inputs[f"a{layer}.h{h}<{letter}>"] = x[:, :, qkv, h]
            return x
        x = self.overrides.get((kind, layer, None, None), x)
        self.inputs["logits" if kind == "logits" else f"m{layer}"] = x
        return x
