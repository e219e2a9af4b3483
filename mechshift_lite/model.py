"""A transformer you can read: GPT-2 style and LLaMA/Qwen2 style blocks in one small module.

The residual stream is a plain sum of node outputs (pre-norm blocks)::

    resid_final = W_E[tokens] (+ W_pos)  +  sum over layers ( sum_h head_h + b_O  +  mlp )

This module is the plain forward pass, nothing else: a block is two lines. The instrumented
pass that attribution and patching use (every node output and every destination input through a
:class:`~mechshift_lite.hooked.Hooks` object, one private residual copy per head input) lives in
:mod:`mechshift_lite.hooked`; ``model(ids, hooks=...)`` and :meth:`Transformer.run_with_nodes`
hand over to it. Both passes use the same :class:`Attention` methods, so they compute the same
function.

Shapes: ``B`` batch, ``P`` positions, ``D`` d_model, ``H`` query heads, ``G`` key/value heads,
``K`` d_head, ``M`` d_mlp, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import hooked
from .config import ModelConfig
from .graph import Graph
from .hooked import Hooks, NodeRun
from .norm_copies import CopiesNorm

AttentionMode = Literal["causal", "bidirectional"]
AttentionSpec = Union[AttentionMode, Tensor]   # a mode name or an explicit bool mask
ATTENTION_MODES: tuple[str, ...] = ("causal", "bidirectional")


class Norm(nn.Module):
    """LayerNorm (gpt2 family) or RMSNorm (llama family) over the last dimension."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.rms = cfg.family == "llama"
        self.eps = cfg.norm_eps
        self.w = nn.Parameter(torch.ones(cfg.d_model))
        self.b = None if self.rms else nn.Parameter(torch.zeros(cfg.d_model))

    def forward(self, x: Tensor) -> Tensor:
        """``[..., D] -> [..., D]``; statistics in (at least) float32, as HuggingFace does."""
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))
        if self.rms:
            x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
            return self.w * x32.to(x.dtype)
        # torch's fused kernel: the same function as HF's nn.LayerNorm, and about 1.3x faster MDM training steps
        return F.layer_norm(x32, x32.shape[-1:], self.w.to(x32.dtype), self.b.to(x32.dtype), self.eps).to(x.dtype)

    def of_copies(self, copies: Tensor) -> Tensor:
        """The same function of identical copies of one tensor (an ``expand``-ed view, e.g. the
        per-head q/k/v inputs ``[B, P, 3, H, D]``): statistics computed once, a gradient per copy
        (:class:`~mechshift_lite.norm_copies.CopiesNorm`)."""
        return CopiesNorm.apply(copies, self.w, self.b, self.eps)


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

    def project(self, x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
        """``x [B, P, D]`` (shared by all heads) or ``[B, P, H, D]`` (one copy per query head)
        -> ``[B, P, H, K]``; key/value heads are repeated over their query group."""
        if x.dim() == 4:
            if W.shape[0] != x.shape[2]:  # grouped-query: every query head uses its group's weights
                W = W.repeat_interleave(self.group_size, dim=0)
                b = None if b is None else b.repeat_interleave(self.group_size, dim=0)
            out = torch.einsum("bphd,hdk->bphk", x, W)
            return out if b is None else out + b
        out = torch.einsum("bpd,hdk->bphk", x, W)
        out = out if b is None else out + b
        return out if W.shape[0] == self.cfg.n_heads else out.repeat_interleave(self.group_size, dim=2)

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, attn_bias: Tensor, rotary: tuple[Tensor, Tensor] | None,
        on_pattern: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        """Each head's mix of values ``z [B, P, H, K]`` from ``q, k, v [B, P, H, K]``.

        ``attn_bias [B, 1, P, P]`` is added to the scores (0 where a query may see a key);
        ``on_pattern`` sees (and may replace) the probabilities ``[B, H, P_query, P_key]``.
        """
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        scores = torch.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(self.cfg.d_head) + attn_bias
        pattern = scores.to(torch.promote_types(scores.dtype, torch.float32)).softmax(dim=-1).to(q.dtype)
        if on_pattern is not None:
            pattern = on_pattern(pattern)
        return torch.einsum("bhqs,bshk->bqhk", pattern, v)

    def forward(self, x: Tensor, attn_bias: Tensor, rotary: tuple[Tensor, Tensor] | None) -> Tensor:
        """``[B, P, D]`` normalised input -> ``[B, P, D]``, the sum of the heads plus ``b_O``."""
        q = self.project(x, self.W_Q, self.b_Q)
        k = self.project(x, self.W_K, self.b_K)
        v = self.project(x, self.W_V, self.b_V)
        out = torch.einsum("bqhk,hkd->bqd", self.attend(q, k, v, attn_bias, rotary), self.W_O)
        return out if self.b_O is None else out + self.b_O


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

    def forward(self, resid: Tensor, attn_bias: Tensor, rotary: tuple[Tensor, Tensor] | None) -> Tensor:
        """``[B, P, D] -> [B, P, D]``."""
        resid = resid + self.attn(self.ln1(resid), attn_bias, rotary)
        return resid + self.mlp(self.ln2(resid))


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

    def rotary(self, n_pos: int, device: torch.device) -> tuple[Tensor, Tensor] | None:
        """The cos/sin tables of rotary positions (llama family), else None."""
        if self.cfg.family != "llama":
            return None
        return rotary_tables(n_pos, self.cfg.d_head, self.cfg.rope_theta, device)

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
            hooks: a :class:`~mechshift_lite.hooked.Hooks` object called at every node output and
                destination input (the instrumented pass of :mod:`mechshift_lite.hooked`).
        """
        self._check_inputs(input_ids, attention_mask)
        attn_bias = self.attention_bias(input_ids, attention_mask, attention)
        rotary = self.rotary(input_ids.shape[1], input_ids.device)
        if hooks is not None:
            return hooked.forward(self, input_ids, attn_bias, rotary, hooks)
        for resid in self.residual_streams(input_ids, attn_bias, rotary):
            pass   # keep only the last stream (the final norm's input), not all n_layers + 1 of them
        return self.ln_final(resid.to(self.ln_final.w.device)) @ self.unembed

    def residual_streams(self, input_ids: Tensor, attn_bias: Tensor, rotary: tuple[Tensor, Tensor] | None):
        """Yield the residual stream ``[B, P, D]`` after the embedding, then after each block.

        The plain forward's loop (blocks possibly spread over several devices): ``n_layers + 1``
        tensors, the last one the input of the final norm. ``attn_bias`` and ``rotary`` come from
        :meth:`attention_bias` and :meth:`rotary`.
        """
        resid = self.embed(input_ids)
        yield resid
        for block in self.blocks:
            resid, attn_bias, rotary = on_device_of(block, resid, attn_bias, rotary)
            resid = block(resid, attn_bias, rotary)
            yield resid

    def embed(self, input_ids: Tensor, token_embedding: Tensor | None = None) -> Tensor:
        """The residual stream before the first block: ``W_E[ids]`` (or the given
        ``token_embedding [B, P, D]``) plus learned positions for the gpt2 family."""
        embed = self.W_E[input_ids] if token_embedding is None else token_embedding
        return embed if self.W_pos is None else embed + self.W_pos[: input_ids.shape[1]]

    def run_with_nodes(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        *,
        attention: AttentionSpec | None = None,
        overrides: dict[str, Tensor] | None = None,
    ) -> NodeRun:
        """Forward that records every node's output and destination input, by name.

        Args:
            overrides: destination name -> ``[B, P, D]`` tensor that replaces that destination's
                input, e.g. ``{"a1.h0<q>": x, "m0": y, "logits": z}``. Only that destination sees it.

        Returns:
            a :class:`~mechshift_lite.hooked.NodeRun` with ``logits``, ``outputs`` (source name ->
            ``[B, P, D]``), ``inputs`` (destination name -> ``[B, P, D]``, after overrides) and
            ``patterns`` (layer -> attention probabilities ``[B, H, P, P]``).
        """
        recorder = hooked.NodeRecorder(self.graph, overrides or {}, input_ids.shape, self.cfg.d_model)
        logits = self(input_ids, attention_mask, attention=attention, hooks=recorder)
        return NodeRun(logits, recorder.outputs, recorder.inputs, recorder.patterns)


def on_device_of(block: nn.Module, resid: Tensor, attn_bias: Tensor, rotary):
    """The residual stream, the mask and the rotary tables on ``block``'s device (layers can be
    spread over several GPUs); unchanged when they are there already."""
    device = block.ln1.w.device
    if resid.device == device:
        return resid, attn_bias, rotary
    rotary = None if rotary is None else tuple(t.to(device) for t in rotary)
    return resid.to(device), attn_bias.to(device), rotary


def _check_mode(mode: str) -> AttentionMode:
    if mode not in ATTENTION_MODES:
        raise ValueError(
            f"attention must be one of {ATTENTION_MODES} or a bool mask tensor; got {mode!r}"
        )
    return mode  # type: ignore[return-value]
