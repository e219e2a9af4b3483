"""One frozen configuration object for every model this package builds.

Two block families share one config:

* ``"gpt2"``: LayerNorm, learned absolute positions, GELU MLP, biases everywhere.
* ``"llama"``: RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention (``n_kv_heads``),
  optional q/k/v biases (Qwen2) and optional output / MLP biases (some LLaMA variants).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Family = Literal["gpt2", "llama"]
FAMILIES: tuple[str, ...] = ("gpt2", "llama")
ACTIVATIONS: tuple[str, ...] = ("gelu_new", "gelu", "silu", "relu")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and architectural switches of a transformer.

    Attributes:
        family: ``"gpt2"`` or ``"llama"`` (the block family, see the module docstring).
        d_vocab: vocabulary size.
        n_ctx: longest sequence the model accepts (learned positions for gpt2; a limit for llama).
        d_model: width of the residual stream.
        n_layers: number of transformer blocks.
        n_heads: number of query heads per layer.
        d_head: width of one head.
        d_mlp: hidden width of the MLP.
        n_kv_heads: key/value heads (grouped-query attention); ``None`` means ``n_heads``.
        act: MLP nonlinearity (``gelu_new`` is GPT-2's tanh approximation; llama uses ``silu``).
        norm_eps: epsilon of LayerNorm / RMSNorm.
        rope_theta: rotary base (llama family only).
        qkv_bias: biases on q/k/v projections (always on for gpt2; Qwen2 sets it for llama).
        out_bias: bias on the attention output projection (always on for gpt2).
        mlp_bias: biases in the MLP (always on for gpt2).
        tied_embeddings: the unembedding is the transposed token embedding.
    """

    family: Family = "gpt2"
    d_vocab: int = 64
    n_ctx: int = 64
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_head: int = 16
    d_mlp: int = 256
    n_kv_heads: int | None = None
    act: str = "gelu_new"
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    qkv_bias: bool = True
    out_bias: bool = True
    mlp_bias: bool = True
    tied_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {ACTIVATIONS}, got {self.act!r}")
        for name in ("d_vocab", "n_ctx", "d_model", "n_layers", "n_heads", "d_head", "d_mlp"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_heads % self.kv_heads != 0:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.kv_heads})"
            )
        if self.family == "gpt2" and self.kv_heads != self.n_heads:
            raise ValueError("grouped-query attention (n_kv_heads < n_heads) needs family='llama'")
        if self.family == "llama" and self.d_head % 2:
            raise ValueError(f"rotary positions need an even d_head, got {self.d_head}")

    @property
    def kv_heads(self) -> int:
        """Number of key/value heads (``n_heads`` unless grouped-query attention is used)."""
        return self.n_kv_heads or self.n_heads

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (used in checkpoint manifests)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)
