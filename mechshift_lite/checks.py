"""Checkers for the book's exercises (ARENA style).

Each checker takes the learner's function, runs it on fixed small inputs next to the package's
own solution, and prints one line: ``"<name>: all checks passed"``, or raises an
``AssertionError`` whose message shows what differed (shapes or values).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .config import ModelConfig
from .model import NodeRun, Transformer


def compare(name: str, got: Tensor, expected: Tensor, atol: float = 1e-5) -> None:
    """Raise a readable ``AssertionError`` unless ``got`` matches ``expected``."""
    if not isinstance(got, Tensor):
        raise AssertionError(f"{name}: expected a torch.Tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
    err = (got.double() - expected.double()).abs()
    if not err.max() <= atol:
        where = tuple(int(i) for i in torch.nonzero(err == err.max())[0])
        raise AssertionError(
            f"{name}: max |difference| {err.max():.3g} at index {where} "
            f"(got {got[where].item():.5g}, expected {expected[where].item():.5g}; tolerance {atol})"
        )


def passed(name: str) -> None:
    print(f"{name}: all checks passed")


# ----- chapter 1 ------------------------------------------------------------------------------

def _small_models() -> list[Transformer]:
    gpt2 = ModelConfig(d_vocab=30, n_ctx=10, d_model=24, n_layers=2, n_heads=3, d_head=8, d_mlp=48)
    llama = ModelConfig(family="llama", d_vocab=30, n_ctx=10, d_model=24, n_layers=2, n_heads=4, d_head=6,
                        d_mlp=40, n_kv_heads=2, act="silu", qkv_bias=True, out_bias=False, mlp_bias=False)
    models = [Transformer(gpt2).init_weights(11), Transformer(llama).init_weights(12)]
    with torch.no_grad():  # give biases non-zero values, so forgetting them is caught
        for m in models:
            for name, p in m.named_parameters():
                if name.split(".")[-1].startswith("b_"):
                    p.normal_(0, 0.3, generator=torch.Generator().manual_seed(len(name)))
    return models


def residual_from_nodes(fn: Callable[[Transformer, NodeRun], Tensor]) -> None:
    """Check ``fn(model, run) -> [batch, pos, d_model]``: the final residual stream rebuilt from
    ``run.outputs`` and the model's constant terms (positions, attention output biases)."""
    ids = torch.randint(0, 30, (2, 7), generator=torch.Generator().manual_seed(0))
    for model in _small_models():
        with torch.no_grad():
            run = model.run_with_nodes(ids)
            compare(f"residual_from_nodes ({model.cfg.family})", fn(model, run), run.inputs["logits"])
    passed("residual_from_nodes")


def head_output(fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
    """Check ``fn(pattern [B, P_q, P_k], v [B, P_k, K], W_O [K, D]) -> [B, P_q, D]``: one head's
    output is its attention-weighted values, projected by its own slice of the output matrix."""
    g = torch.Generator().manual_seed(1)
    pattern = torch.randn(2, 5, 5, generator=g).softmax(-1)
    v, W_O = torch.randn(2, 5, 4, generator=g), torch.randn(4, 6, generator=g)
    compare("head_output", fn(pattern, v, W_O), torch.einsum("bqs,bsk,kd->bqd", pattern, v, W_O))
    passed("head_output")
