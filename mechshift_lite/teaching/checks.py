"""Checkers for the book's exercises (ARENA style).

Each checker takes the learner's function, runs it on fixed small inputs next to the package's
own solution, and prints one line: ``"<name>: all checks passed"``, or raises an
``AssertionError`` whose message shows what differed (shapes or values).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import TYPE_CHECKING, Callable

import torch
from torch import Tensor

from ..config import ModelConfig
from ..model import Hooks, NodeRun, Transformer
from ..tasks import build_tokenizer, countdown

if TYPE_CHECKING:
    from ..graph import Graph
    from ..inputs import ModelInputs


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


def head_pattern(fn: Callable[[Tensor, Tensor, bool], Tensor]) -> None:
    """Check ``fn(q [B, P, K], k [B, P, K], causal) -> [B, P_q, P_k]``: the softmax over keys of the
    scaled dot products, future keys hidden when ``causal``."""
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(2, 5, 4, generator=g) * 2, torch.randn(2, 5, 4, generator=g) * 2
    scores = torch.einsum("bqd,bsd->bqs", q, k) / 2.0                   # sqrt(d_head) = 2
    future = torch.ones(5, 5, dtype=torch.bool).triu(1)
    for causal in (True, False):
        expected = (scores.masked_fill(future, float("-inf")) if causal else scores).softmax(-1)
        got = fn(q.clone(), k.clone(), causal)
        compare(f"head_pattern (causal={causal})", got, expected)
    passed("head_pattern")


# ----- chapter 2 ------------------------------------------------------------------------------

# (numbers, target, answer, what the case tests); the expected verdict comes from countdown.check
_COUNTDOWN_CASES: tuple[tuple[list[int], int, str, str], ...] = (
    ([15, 44, 79], 50, "79+15=94,94-44=50", "the canonical answer"),
    ([15, 44, 79], 50, "44-15=29,79-29=50", "another correct chain"),
    ([15, 44, 79], 50, "15+79=94,94-44=50", "smaller operand first in a sum"),
    ([2, 3, 5], 25, "3+2=5,5*5=25", "a result equal to an operand, used with it"),
    ([6, 3, 48], 24, "6/3=2,48/2=24", "exact divisions"),
    ([5, 5, 2], 2, "5-5=0,2+0=2", "a zero result"),
    ([15, 44, 79], 50, "44+15=29,79-29=50", "wrong operation (44+15 is not 29)"),
    ([15, 44, 79], 50, "44-15=29,79-29=51", "wrong arithmetic in the last step"),
    ([7, 2, 3], 6, "7/2=3,3+3=6", "inexact division"),
    ([15, 44, 79], 50, "44-15=29,44+6=50", "44 reused and 6 invented"),
    ([2, 3, 5], 13, "5+5=10,10+3=13", "5 used twice, 2 never"),
    ([4, 6, 9], 20, "6+4=10,10+10=20", "an intermediate result used twice, 9 never"),
    ([20, 30, 1], 50, "50*1=50,30+20=50", "50 used before it is made"),
    ([15, 44, 79], 94, "79+15=94", "44 left unused"),
    ([15, 44, 79], 108, "79+44=123,123-15=108", "a correct chain to a target above 99"),
    ([15, 44, 79], 50, "79+44=123,123-15=108", "the chain ends at 108, not at the target"),
    ([15, 44, 79], 50, "44-15=29;79-29=50", "equations separated by ';' instead of ','"),
)


def check_countdown(fn: Callable[[list[int], int, str], bool]) -> None:
    """Check ``fn(numbers, target, answer) -> bool`` against ``countdown.check`` on right and wrong
    answers: wrong arithmetic, reused, invented or unused numbers, a wrong final result, bad format."""
    for numbers, target, answer, why in _COUNTDOWN_CASES:
        expected = countdown.check(numbers, target, answer)
        got = fn(list(numbers), target, answer)
        call = f"check_countdown({numbers}, {target}, {answer!r})"
        if not isinstance(got, bool):
            raise AssertionError(f"{call} returned {got!r}; expected a bool ({expected})")
        if got != expected:
            raise AssertionError(f"{call} returned {got}, expected {expected}: {why}")
    passed("check_countdown")


def readout_position(fn: Callable[[Tensor], Tensor]) -> None:
    """Check ``fn(attention_mask [batch, pos]) -> [batch]``: the last real (prompt) position of
    each right-padded row, where the logits predict the first answer token."""
    synthetic = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])
    tokenizer = build_tokenizer()
    prompts = [ex.prompt for ex in countdown.generate(6, seed=0, split="test")]
    _, real = tokenizer.batch_encode(prompts)  # operands of one or two digits: rows of several lengths
    for name, mask in (("synthetic mask", synthetic), ("Countdown prompts", real)):
        expected = torch.tensor([max(i for i, m in enumerate(row.tolist()) if m) for row in mask])
        got = fn(mask.clone())
        if isinstance(got, Tensor) and got.dtype.is_floating_point:
            raise AssertionError(f"readout_position ({name}): got dtype {got.dtype}; positions index tensors, "
                                 "return integers (torch.long)")
        compare(f"readout_position ({name})", got, expected, atol=0)
    passed("readout_position")


# ----- chapter 10 -----------------------------------------------------------------------------

def single_token_names(fn: Callable) -> None:
    """Check ``fn(tokenizer, names) -> {name: token id}``: the names a byte-level BPE tokenizer
    (GPT-2's scheme) writes as one token after a space (``" Mary"``), with that token's id."""
    from .. import real_tasks
    from . import standins
    from ..tasks import ioi

    tokenizer = standins.tiny_tokenizer()
    for names in (ioi.NAMES, ioi.NAMES[8:]):
        got, expected = fn(tokenizer, names), real_tasks.single_token_names(tokenizer, names)
        if not isinstance(got, dict):
            raise AssertionError(f"single_token_names: expected a dict {{name: token id}}, got {type(got).__name__}")
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        if missing or extra:
            raise AssertionError(
                f"single_token_names: missing single-token names {missing}, wrongly included {extra} "
                "(did you encode the name with its leading space?)"
            )
        wrong = {name: (got[name], expected[name]) for name in expected if got[name] != expected[name]}
        if wrong:
            raise AssertionError(f"single_token_names: wrong ids (got, expected): {wrong}")
    passed("single_token_names")


def top_edges_jaccard(fn: Callable[[Tensor, Tensor, int], float]) -> None:
    """Check ``fn(a [n_edges], b [n_edges], n) -> float``: the Jaccard index of the top-``n`` edges
    of two score vectors, ranked by ``|score|``."""
    from ..scores import Scores
    from ..compare import edge_overlap
    from ..graph import Graph

    graph = Graph(2, 3)
    g = torch.Generator().manual_seed(10)
    as_scores = lambda values: Scores(torch.zeros(graph.n_src, graph.n_dst, dtype=torch.float64).masked_scatter(
        graph.edge_mask, values.double()), graph, "EAP", 1)
    for n in (5, 12, 30):
        a = torch.randn(graph.n_edges, generator=g)
        b = a + 0.7 * torch.randn(graph.n_edges, generator=g)    # related rankings: a partial overlap
        got, expected = fn(a, b, n), edge_overlap(as_scores(a), as_scores(b), n)
        if not isinstance(got, (float, int)) and not (isinstance(got, Tensor) and got.numel() == 1):
            raise AssertionError(f"top_edges_jaccard: expected a number, got {type(got).__name__}")
        if abs(float(got) - expected) > 1e-9:
            raise AssertionError(
                f"top_edges_jaccard (n={n}): got {float(got):.4f}, expected {expected:.4f} "
                "(rank edges by |score|, then |A ∩ B| / |A ∪ B|)"
            )
    passed("top_edges_jaccard")


# ----- chapters 6 to 9 ------------------------------------------------------------------------

def chance_jaccard(fn: Callable[[int, int, int], float]) -> None:
    """Check ``fn(n_total, a, b)``: the expected Jaccard of two random subsets of sizes a and b."""
    from ..compare import chance_jaccard as reference

    for case in ((10, 3, 3), (50, 5, 20), (30, 30, 12), (479, 24, 24), (6, 0, 2)):
        got, expected = float(fn(*case)), reference(*case)
        if abs(got - expected) > 1e-9:
            raise AssertionError(f"chance_jaccard{case}: got {got:.6f}, expected {expected:.6f}")
    passed("chance_jaccard")


def component_scores(fn: Callable[[dict[str, float]], dict[str, float]]) -> None:
    """Check ``fn(edges) -> {component: summed |score|}`` on a hand-made set of top edges."""
    edges = {"input->a0.h1<q>": 0.5, "a0.h1->a1.h0<k>": -2.0, "a0.h1->m1": 1.0, "m1->logits": -0.25, "a1.h0->a1.h0": 0.0}
    edges.pop("a1.h0->a1.h0")
    expected = {"a0.h1": 3.5, "a1.h0": 2.0, "m1": 1.25}
    got = fn(edges)
    if set(got) != set(expected):
        raise AssertionError(f"component_scores: components {sorted(got)}, expected {sorted(expected)} (input and logits are not components)")
    for name, value in expected.items():
        if abs(got[name] - value) > 1e-9:
            raise AssertionError(f"component_scores: {name} = {got[name]}, expected {value} (absolute values, in and out)")
    passed("component_scores")


def lens_projection(fn: Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]) -> None:
    """Check ``fn(o, r, w, W_U, eps) -> [batch, vocab]``: the LayerNorm lens linearised at ``r``;
    the projections of the parts of ``r`` must add up to the model's own projection (minus the bias)."""
    g = torch.Generator().manual_seed(2)
    parts = torch.randn(3, 4, 8, generator=g)
    r, w, W_U, eps = parts.sum(0), torch.rand(8, generator=g) + 0.5, torch.randn(8, 11, generator=g), 1e-5
    expected = ((parts - parts.mean(-1, keepdim=True)) * torch.rsqrt(r.var(-1, unbiased=False, keepdim=True) + eps) * w) @ W_U
    for i in range(3):
        compare(f"lens_projection (part {i})", fn(parts[i], r, w, W_U, eps), expected[i])
    full = torch.nn.functional.layer_norm(r, (8,), weight=w, eps=eps) @ W_U
    compare("lens_projection (parts add up to the model's logits)", sum(fn(p, r, w, W_U, eps) for p in parts), full, atol=1e-4)
    passed("lens_projection")


def selectivity(fn: Callable[[Tensor], Tensor]) -> None:
    """Check ``fn(profile [categories, neurons]) -> [neurons]`` (NaN for never-positive neurons)."""
    from ..neurons import selectivity as reference

    profile = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.3], [0.0, 1.0, 0.0, -1.0, 0.9], [0.0, 1.0, 0.0, -2.0, -0.5]])
    got, expected = fn(profile), reference(profile)
    if not isinstance(got, Tensor) or got.shape != expected.shape:
        raise AssertionError(f"selectivity: expected a tensor of shape {tuple(expected.shape)}")
    if not torch.equal(got.isnan(), expected.isnan()):
        raise AssertionError(f"selectivity: NaN pattern {got.isnan().tolist()}, expected {expected.isnan().tolist()}")
    keep = ~expected.isnan()
    compare("selectivity", got[keep], expected[keep])
    passed("selectivity")


def layer_matched_control(fn: Callable[[Graph, list[str], int], list[str]]) -> None:
    """Check ``fn(graph, targeted, seed) -> list[str]``: per layer, as many distinct heads/MLPs of that
    layer as ``targeted`` has there, seeded, uniform over the layer (targeted ones may be drawn)."""
    from ..ablation import layer_of
    from ..graph import Graph

    graph = Graph(4, 4)
    targeted = ["a0.h1", "m0", "a2.h3"]
    wanted = Counter(layer_of(name) for name in targeted)
    draws = [fn(graph, targeted, seed) for seed in range(200)]
    for d in draws:
        if len(set(d)) != len(d) or not set(d) <= set(graph.src_names[1:]):
            raise AssertionError(f"layer_matched_control: {d} is not a list of distinct heads and MLPs")
        if Counter(layer_of(name) for name in d) != wanted:
            raise AssertionError(f"layer_matched_control: {d} does not draw, per layer, as many components as "
                                 f"{targeted} has there ({dict(wanted)} by layer)")
    if fn(graph, targeted, 7) != fn(graph, targeted, 7):
        raise AssertionError("layer_matched_control: the same seed must give the same draw")
    layers = [n for n in graph.src_names[1:] if layer_of(n) in wanted]
    seen = {c for d in draws for c in d}
    if seen != set(layers):
        missing = sorted(set(layers) - seen)
        raise AssertionError(f"layer_matched_control: {missing} never drawn in 200 seeds: draw uniformly from the whole "
                             "layer, the targeted components included")
    passed("layer_matched_control")


# ----- chapters 4 and 5 -----------------------------------------------------------------------

def _as_number(name: str, got) -> float:
    """A learner's scalar answer as a float (a Python number or a one-element tensor)."""
    if isinstance(got, Tensor) and got.numel() == 1:
        return float(got)
    if isinstance(got, (int, float)) and not isinstance(got, bool):
        return float(got)
    raise AssertionError(f"{name}: expected a number, got {type(got).__name__}")


def _patching_inputs():
    """A tiny model, ``ModelInputs`` of four clean/corrupted pairs and a per-example metric."""
    from ..inputs import ModelInputs

    model = _small_models()[0]
    g = torch.Generator().manual_seed(4)
    clean = torch.randint(0, 30, (4, 6), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2:4] = torch.randint(0, 30, (4, 2), generator=g)

    def metric(logits: Tensor) -> Tensor:        # read at every position and scaled: effects well above rounding
        return 100 * (logits[..., 0] - logits[..., 1]).sum(-1)

    return model, ModelInputs(clean, corrupted), metric


def patch_edge(fn: Callable[[Transformer, ModelInputs, Callable[[Tensor], Tensor], str], float]) -> None:
    """Check ``fn(model, inputs, metric, edge) -> float``: the mean over examples of
    ``metric(edge corrupted) - metric(clean)``, where only destination ``v`` of ``edge = "u->v"``
    receives ``u``'s corrupted output; compared with ``ml.attribute(..., method="exact")``."""
    from ..attribution import attribute

    model, inputs, metric = _patching_inputs()
    exact = attribute(model, inputs, metric, method="exact")
    tolerance = 1e-3 * float(exact.tensor.abs().max())
    for edge in ("input->a0.h0<v>", "a0.h1->logits", "input->m0", "m0->logits", "input->a1.h1<v>"):
        got = _as_number("patch_edge", fn(model, inputs, metric, edge))
        expected = exact.edge(edge)
        if abs(got - expected) > tolerance:
            raise AssertionError(
                f"patch_edge({edge!r}): got {got:.6g}, exact patching gives {expected:.6g}. Add "
                "out_u(corrupted) - out_u(clean) to the clean input of v only (not v's whole corrupted "
                "input), and return the mean of patched minus clean metric"
            )
    passed("patch_edge")


class _DestinationInputs(Hooks):
    """Hooks that keep every destination input of a forward pass, with its score columns."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.inputs: list[tuple[slice, Tensor]] = []

    def dest_input(self, kind: str, layer: int | None, x: Tensor) -> Tensor:
        x = x.view_as(x)          # a private view: the residual stream itself also flows on downstream
        self.inputs.append((self.graph.destinations_of(kind, layer)[1], x))
        return x

    def gradients(self, total: Tensor) -> Tensor:
        """``[n_dst, B, P, D]``: the gradient of ``total`` with respect to each destination's input."""
        grads = torch.autograd.grad(total, [x for _, x in self.inputs])
        B, P, D = grads[-1].shape
        out = torch.zeros(self.graph.n_dst, B, P, D)
        for (columns, _), g in zip(self.inputs, grads):
            out[columns] = (g.flatten(2, 3) if g.dim() == 5 else g[:, :, None]).permute(2, 0, 1, 3)
        return out


def eap_scores(fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
    """Check ``fn(clean_out [n_src, B, P, D], corrupted_out [n_src, B, P, D], grads [n_dst, B, P, D])
    -> [n_src, n_dst]``: EAP scores of every edge, ``delta_u . grad_v`` summed over positions and
    ``d_model`` and averaged over examples; compared with ``ml.attribute(..., method="EAP")``
    on the edges of the graph (entries that are no edge are not checked)."""
    from ..attribution import attribute

    model, inputs, metric = _patching_inputs()
    graph = model.graph
    with torch.no_grad():
        clean, corrupted = model.run_with_nodes(inputs.clean_ids), model.run_with_nodes(inputs.corrupted_ids)
    hooks = _DestinationInputs(graph)
    grads = hooks.gradients(metric(model(inputs.clean_ids, hooks=hooks)).sum())
    clean_out = torch.stack([clean.outputs[name] for name in graph.src_names])
    corrupted_out = torch.stack([corrupted.outputs[name] for name in graph.src_names])
    got = fn(clean_out.clone(), corrupted_out.clone(), grads.clone())
    expected = attribute(model, inputs, metric, method="EAP").tensor
    if not isinstance(got, Tensor) or got.shape != expected.shape:
        raise AssertionError(f"eap_scores: expected a [n_src, n_dst] = {tuple(expected.shape)} tensor, got "
                             f"{tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__}")
    err = (got.double() - expected).abs().masked_fill(~graph.edge_mask, 0)
    if err.max() > 1e-3 * float(expected.abs().max()):
        src, dst = (int(i) for i in torch.nonzero(err == err.max())[0])
        raise AssertionError(
            f"eap_scores: edge {graph.src_names[src]}->{graph.dst_names[dst]} scored {float(got[src, dst]):.6g}, "
            f"ml.attribute's EAP gives {float(expected[src, dst]):.6g}. Use delta = corrupted - clean "
            "(not the clean output), sum over positions and d_model, and take the mean over examples"
        )
    passed("eap_scores")


def _ig_reference(grad_fn: Callable[[Tensor], Tensor], clean: Tensor, corrupted: Tensor, m: int) -> Tensor:
    grads = torch.stack([grad_fn(corrupted + k / m * (clean - corrupted)) for k in range(1, m + 1)])
    return (corrupted - clean) * grads.mean(dim=0)


def integrated_gradients(fn: Callable[[Callable[[Tensor], Tensor], Tensor, Tensor, int], Tensor]) -> None:
    """Check ``fn(grad_fn, clean [D], corrupted [D], m) -> [D]``: the per-coordinate IG attribution
    with the grid ``alpha = k/m, k = 1..m`` from ``corrupted`` towards ``clean`` (as EAP-IG-inputs)."""
    def f(x: Tensor) -> Tensor:                                  # a scalar function with a non-linear gradient
        return (torch.sin(2 * x) + x**3 / 3).sum()

    def grad_fn(x: Tensor) -> Tensor:
        return 2 * torch.cos(2 * x) + x**2

    g = torch.Generator().manual_seed(5)
    clean, corrupted = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    for m in (1, 3, 10):
        got = fn(grad_fn, clean.clone(), corrupted.clone(), m)
        compare(f"integrated_gradients (m={m})", got, _ig_reference(grad_fn, clean, corrupted, m), atol=1e-8)
    total = float(f(corrupted) - f(clean))
    fine = float(fn(grad_fn, clean, corrupted, 2000).sum())
    if abs(fine - total) > 1e-2 * max(1.0, abs(total)):
        raise AssertionError(f"integrated_gradients: with m=2000 the attributions sum to {fine:.5g}, "
                             f"but f(corrupted) - f(clean) = {total:.5g} (completeness)")
    passed("integrated_gradients")


def _prune_cases() -> list[tuple[set[str], str]]:
    """Edge sets of ``Graph(3, 2)`` (before pruning) and what each tests."""
    return [
        ({"input->a0.h0<v>", "a0.h0->a1.h1<q>", "a1.h1->logits"}, "a connected chain stays"),
        ({"input->logits"}, "input needs no edge in, and logits always stays"),
        ({"a0.h1->logits", "input->a1.h0<q>", "a1.h0->logits"}, "a node without an edge in goes"),
        ({"input->a0.h0<k>", "a0.h0->logits", "input->m2"}, "a node without an edge out goes"),
        ({"input->a0.h1<k>", "a0.h1->m0", "m0->m1", "input->a2.h0<v>", "a2.h0->logits"},
         "dead ends disappear step by step (m1, then m0, then a0.h1)"),
        ({"input->a0.h0<q>", "a0.h0->a1.h0<k>", "a1.h0->a2.h1<v>", "a2.h1->m2", "m2->logits", "a1.h0->m1"},
         "a head is fed through its q, k or v input"),
        (set(), "the empty circuit"),
    ]


def prune_edges(fn: Callable[[set[str]], set[str]]) -> None:
    """Check ``fn(edges) -> edges``: pruning a set of edge names to its fixed point (a node stays
    iff it has an edge in and an edge out; ``input`` needs no edge in; ``logits`` stays)."""
    from ..circuits import Circuit, prune
    from ..graph import Graph

    graph = Graph(3, 2)
    for edges, why in _prune_cases():
        expected = prune(Circuit.from_edges(graph, edges)).edges
        got = fn(set(edges))
        if not isinstance(got, (set, frozenset)):
            raise AssertionError(f"prune_edges: expected a set of edge names, got {type(got).__name__}")
        if set(got) != expected:
            raise AssertionError(
                f"prune_edges({sorted(edges)}): wrongly kept {sorted(set(got) - expected)}, wrongly removed "
                f"{sorted(expected - set(got))} ({why})"
            )
    passed("prune_edges")


def evaluate_circuit(fn: Callable[[Transformer, ModelInputs, Callable[[Tensor], Tensor], set[str]], Tensor]) -> None:
    """Check ``fn(model, inputs, metric, circuit_edges) -> [N]``: the metric of every example when each
    edge outside the circuit carries its sender's corrupted output; compared with ``ml.evaluate``
    on the empty and the full circuit and on circuits with absent edges at every depth."""
    import random

    from ..circuits import Circuit, evaluate

    model, inputs, metric = _patching_inputs()
    with torch.no_grad():   # larger weights: a head's output must visibly move the MLP of its own layer
        model = copy.deepcopy(model)
        for name, p in model.named_parameters():
            if name.split(".")[-1].startswith("W_"):
                p.mul_(6.0)
    graph, rng = model.graph, random.Random(0)
    circuits = {"the empty circuit": set(), "the full circuit": set(graph.edge_names)}
    for share in (0.3, 0.6, 0.9):
        circuits[f"a random circuit of {share:.0%} of the edges"] = set(rng.sample(graph.edge_names, round(share * graph.n_edges)))
    for name, edges in circuits.items():
        expected = evaluate(model, Circuit.from_edges(graph, sorted(edges)), inputs, metric, allow_empty=True)
        with torch.no_grad():
            got = fn(model, inputs, metric, set(edges))
        compare(f"evaluate_circuit ({name})", got, expected, atol=1e-4 * float(expected.abs().max()))
    passed("evaluate_circuit")


def faithfulness(fn: Callable[[Tensor, Tensor, Tensor], float]) -> None:
    """Check ``fn(circuit [N], empty [N], clean [N]) -> float``: ``(mean circuit - mean empty) /
    (mean clean - mean empty)`` of per-example metric values."""
    cases = [
        (torch.tensor([2.0, 4.0, 6.0]), torch.tensor([0.0, 0.0, 0.0]), torch.tensor([4.0, 8.0, 8.0])),
        (torch.tensor([1.0, 3.0, 0.5, 2.0]), torch.tensor([-1.0, -2.0, 0.4, -0.5]), torch.tensor([3.0, 5.0, 0.6, 4.0])),
        (torch.tensor([-0.5, 0.2]), torch.tensor([-1.0, -0.2]), torch.tensor([1.0, 3.0])),
    ]
    for circuit, empty, clean in cases:
        expected = float((circuit.mean() - empty.mean()) / (clean.mean() - empty.mean()))
        got = _as_number("faithfulness", fn(circuit.clone(), empty.clone(), clean.clone()))
        if abs(got - expected) > 1e-6:
            raise AssertionError(
                f"faithfulness(circuit={circuit.tolist()}, empty={empty.tolist()}, clean={clean.tolist()}): got "
                f"{got:.5g}, expected {expected:.5g} (take the means first, then the ratio of the differences)"
            )
    passed("faithfulness")


def duplicate_score(fn: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
    """Check ``fn(patterns [L, H, N, P, P], s1 [N], s2 [N]) -> [L, H]``: the attention from each
    prompt's S2 (query) to its S1 (key), averaged over the prompts (chapter 5a)."""
    g = torch.Generator().manual_seed(5)
    patterns = torch.rand(2, 3, 4, 7, 7, generator=g).softmax(-1)      # bidirectional-like: S1 -> S2 is not 0
    s1, s2 = torch.tensor([1, 0, 2, 1]), torch.tensor([4, 5, 6, 3])
    expected = torch.stack([patterns[:, :, n, s2[n], s1[n]] for n in range(4)], -1).mean(-1)
    got = fn(patterns.clone(), s1.clone(), s2.clone())
    if isinstance(got, Tensor) and got.shape == expected.shape and torch.allclose(got, patterns[:, :, torch.arange(4), s1, s2].mean(-1)):
        raise AssertionError("duplicate_score: that is the attention from S1 to S2; the query is S2 (the second mention), the key S1")
    compare("duplicate_score", got, expected)
    passed("duplicate_score")


# ----- chapter 3 ------------------------------------------------------------------------------

def shift_logits(fn: Callable[[Tensor], Tensor]) -> None:
    """Check ``fn(logits [B, P, V]) -> [B, P, V]``: slot ``j`` gets the logits of position ``j - 1``
    (the logits at ``i`` predict token ``i + 1``); slot 0 is never predicted, so it is not checked."""
    g = torch.Generator().manual_seed(20)
    for shape in ((2, 6, 5), (1, 3, 4)):
        logits = torch.randn(*shape, generator=g)
        got = fn(logits.clone())
        if not isinstance(got, Tensor) or got.shape != logits.shape:
            raise AssertionError(f"shift_logits: expected a tensor of shape {tuple(shape)} (the input's), "
                                 f"got {tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__}")
        compare(f"shift_logits (out[:, j] must be logits[:, j - 1], shape {shape})", got[:, 1:], logits[:, :-1])
    passed("shift_logits")


def _mdm_loss_cases() -> list[tuple[str, Tensor, Tensor, Tensor, Tensor, int]]:
    """``(what, logits, x0, x_t, t, mask_id)``: rows with different prompt lengths, mask rates and masked counts."""
    from ..diffusion import answer_region

    g = torch.Generator().manual_seed(21)
    cases = []
    for what, B, P, V, mask_id in (("a batch of 4", 4, 9, 7, 3), ("a batch of 3, mask id 5", 3, 12, 8, 5)):
        x0 = torch.randint(0, V, (B, P), generator=g)
        x0[x0 == mask_id] = (mask_id + 1) % V                                 # clean ids never hold [MASK]
        start = torch.randint(2, P // 2, (B,), generator=g)
        t = torch.tensor([0.9, 0.15, 0.5, 0.3][:B])
        x_t = x0.masked_fill(answer_region(start, P) & (torch.rand(B, P, generator=g) < t[:, None]), mask_id)
        x_t[0, start[0]:] = mask_id                                           # one row fully masked, many slots
        x_t[1, start[1]:] = x0[1, start[1]:]
        x_t[1, P - 1] = mask_id                                               # one row with a single masked slot
        cases.append((what, torch.randn(B, P, V, generator=g) * 2, x0, x_t, t, mask_id))
    what, logits, x0, _, t, mask_id = cases[0]
    cases.append(("nothing masked (the loss is 0)", logits, x0, x0.clone(), t, mask_id))
    return cases


def mdm_loss(fn: Callable[[Tensor, Tensor, Tensor, Tensor, int], Tensor]) -> None:
    """Check ``fn(logits [B, P, V], x0 [B, P], x_t [B, P], t [B], mask_id) -> scalar``: DiffuLLaMA's
    loss, ``sum 1[x_t[b, i+1] masked] CE(logits[b, i], x0[b, i+1]) / t[b]`` over the number of masked slots."""
    from ..diffusion import mdm_loss as reference

    for what, logits, x0, x_t, t, mask_id in _mdm_loss_cases():
        expected = float(reference(logits, x0, x_t, t, mask_id))
        got = _as_number("mdm_loss", fn(logits.clone(), x0.clone(), x_t.clone(), t.clone(), mask_id))
        if abs(got - expected) > 1e-5 * max(1.0, abs(expected)):
            raise AssertionError(
                f"mdm_loss ({what}): got {got:.6g}, expected {expected:.6g}. Check the shift (logits at i "
                "score token i+1, counted iff x_t[i+1] is [MASK]), the 1/t weight per sequence, and the "
                "normaliser (the number of masked slots in the whole batch)"
            )
    passed("mdm_loss")


def decode_step(fn: Callable[[Tensor, Tensor, int, int], Tensor]) -> None:
    """Check ``fn(logits [B, P, V], x [B, P], mask_id, k) -> [B, P]``: one step of confidence
    decoding. ``logits`` are the model's on ``x`` (not shifted yet); each row commits its ``k``
    most confident ``[MASK]`` slots to their argmax token (``[MASK]`` itself excluded), scored by
    the probability of that token; every other slot keeps its id. Compared with
    ``confidence_sample`` run one step further."""
    from ..diffusion import confidence_sample

    model = _small_models()[0]
    g = torch.Generator().manual_seed(22)
    ids = torch.randint(0, 30, (3, 10), generator=g)
    answer_start = torch.tensor([3, 4, 6])
    with torch.no_grad():
        favourite = int(model(ids).argmax(-1).flatten().mode().values)    # [MASK] would often win the argmax
    for mask_id in (favourite, 29):
        prompts = ids.masked_fill(ids == mask_id, (mask_id + 1) % 30)       # the prompt never holds [MASK]
        for k in (1, 2):
            for step in (0, 1):
                def decode(steps: int) -> Tensor:
                    return confidence_sample(model, prompts, answer_start, mask_id, tokens_per_step=k, max_steps=steps).ids

                x, expected = decode(step), decode(step + 1)
                with torch.no_grad():
                    logits = model(x)
                got = fn(logits.clone(), x.clone(), mask_id, k)
                case = f"decode_step (mask_id {mask_id}, k={k}, canvas after {step} step(s))"
                if not isinstance(got, Tensor) or got.shape != x.shape:
                    raise AssertionError(f"{case}: expected a [B, P] = {tuple(x.shape)} tensor of ids")
                changed = got != x
                if bool((changed & (x != mask_id)).any()):
                    raise AssertionError(f"{case}: a slot that was not [MASK] changed; commit masked slots only")
                if bool((got == mask_id).sum(1).ne((x == mask_id).sum(1) - k).any()):
                    raise AssertionError(f"{case}: each row must commit exactly k={k} masked slots "
                                         f"(committed {changed.sum(1).tolist()}; take the top k per row, and exclude [MASK] "
                                         "from the argmax: committing [MASK] commits nothing)")
                if not torch.equal(got, expected):
                    b, i = (int(j) for j in torch.nonzero(got != expected)[0])
                    raise AssertionError(
                        f"{case}: row {b}, slot {i}: got id {int(got[b, i])}, expected {int(expected[b, i])}. Shift "
                        "first (slot j is predicted by the logits at j - 1), exclude [MASK] from the argmax, and "
                        "rank the masked slots by the probability (softmax) of their predicted token"
                    )
    passed("decode_step")


def anneal_mask(fn: Callable[[float, int, torch.Generator], Tensor]) -> None:
    """Check ``fn(ratio, n_pos, generator) -> bool [n_pos, n_pos]``: key <= query always allowed; each
    future key allowed with probability ``ratio``, independently (not a band, not per row); seeded."""
    def draw(ratio: float, n_pos: int, seed: int) -> Tensor:
        got = fn(ratio, n_pos, torch.Generator().manual_seed(seed))
        if not isinstance(got, Tensor) or got.dtype != torch.bool or got.shape != (n_pos, n_pos):
            raise AssertionError(f"anneal_mask({ratio}, {n_pos}, generator): expected a bool tensor of shape "
                                 f"{(n_pos, n_pos)}, got {got.dtype if isinstance(got, Tensor) else type(got).__name__} "
                                 f"{tuple(got.shape) if isinstance(got, Tensor) else ''}")
        return got

    for n_pos in (1, 5, 9):
        causal = torch.ones(n_pos, n_pos, dtype=torch.bool).tril()
        if not torch.equal(draw(0.0, n_pos, 0), causal):
            raise AssertionError(f"anneal_mask(0.0, {n_pos}): ratio 0 must give the causal mask (key <= query)")
        for ratio in (1.0, 1.5):
            if not bool(draw(ratio, n_pos, 0).all()):
                raise AssertionError(f"anneal_mask({ratio}, {n_pos}): ratio >= 1 must allow every key (full attention)")
    n_pos, n_draws = 10, 400
    upper = torch.ones(n_pos, n_pos, dtype=torch.bool).triu(1)
    distance = torch.arange(n_pos)[None, :] - torch.arange(n_pos)[:, None]
    for ratio in (0.2, 0.5, 0.8):
        masks = torch.stack([draw(ratio, n_pos, seed) for seed in range(n_draws)]).float()   # [draws, P, P]
        if not bool(masks[:, ~upper].eq(1).all()):
            raise AssertionError(f"anneal_mask({ratio}): the causal part (key <= query) must always be allowed")
        if not torch.equal(draw(ratio, n_pos, 3), draw(ratio, n_pos, 3)):
            raise AssertionError(f"anneal_mask({ratio}): the same generator state must give the same mask (draw with `generator`)")
        share = float(masks[:, upper].mean())
        if abs(share - ratio) > 0.03:
            raise AssertionError(f"anneal_mask({ratio}): {share:.3f} of the future keys are allowed on average, expected {ratio}")
        near, far = float(masks[:, distance == 1].mean()), float(masks[:, distance >= n_pos // 2].mean())
        if abs(near - ratio) > 0.06 or abs(far - ratio) > 0.06:
            raise AssertionError(f"anneal_mask({ratio}): keys just after the query are allowed {near:.2f} of the time, "
                                 f"keys far ahead {far:.2f}; each must be allowed with probability {ratio} (not a band)")
        per_draw = masks[:, upper].mean(1)                                  # visible share of each mask
        independent = ratio * (1 - ratio) / int(upper.sum())
        if not 0.6 * independent < float(per_draw.var()) < 1.6 * independent:
            raise AssertionError(f"anneal_mask({ratio}): the visible share varies from mask to mask with variance "
                                 f"{float(per_draw.var()):.4f}, but {independent:.4f} if every future key is drawn "
                                 "independently (one draw per row, per column or per mask is not enough)")
    passed("anneal_mask")


# ----- chapter 11 -----------------------------------------------------------------------------

def wilson_interval(fn: Callable[[int, int], tuple[float, float]]) -> None:
    """Check ``fn(k, n) -> (low, high)`` against the package's 95% Wilson interval, at the edges too."""
    from ..countdown_eval import wilson_interval as reference

    for k, n in ((0, 50), (50, 50), (7, 50), (1, 3), (120, 500), (0, 0)):
        got, expected = tuple(fn(k, n)), reference(k, n)
        if len(got) != 2 or any(abs(g - e) > 1e-6 for g, e in zip(got, expected)):
            raise AssertionError(f"wilson_interval: for k={k}, n={n} expected {expected}, got {got}")
    passed("wilson_interval")
