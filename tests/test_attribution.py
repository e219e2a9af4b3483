"""Edge attribution against ground truth: real patching, brute-force autograd, completeness, a trained model."""

import dataclasses

import pytest
import torch

import mechshift_lite as ml
from mechshift_lite import ModelConfig, Transformer
from mechshift_lite.compare import spearman

VOCAB = 40
GPT2 = ModelConfig(d_vocab=VOCAB, n_ctx=12, d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64)
LLAMA_GQA = ModelConfig(family="llama", d_vocab=VOCAB, n_ctx=12, d_model=32, n_layers=2, n_heads=4, d_head=8,
                        d_mlp=48, n_kv_heads=2, act="silu", out_bias=False, mlp_bias=False)
CASES = {"gpt2-causal": (GPT2, "causal"), "gpt2-bidirectional": (GPT2, "bidirectional"),
         "llama-gqa-causal": (LLAMA_GQA, "causal"), "llama-gqa-bidirectional": (LLAMA_GQA, "bidirectional")}
GRADIENT_METHODS = ("EAP", "EAP-IG-inputs", "EAP-IG-activations", "clean-corrupted")


def random_model(cfg: ModelConfig, attention: str = "causal", seed: int = 1) -> Transformer:
    """A float64 model with weights 5x the init scale and non-trivial biases: clearly nonlinear."""
    model = Transformer(cfg, attention=attention).init_weights(seed).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("W"):
                p.mul_(5)
            else:
                p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


def token_pairs(batch=4, pos=7, seed=3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, pos), generator=gen), torch.randint(0, VOCAB, (batch, pos), generator=gen)


def log_prob_diff(logits: torch.Tensor) -> torch.Tensor:
    """A nonlinear metric: log p(token 3) - log p(token 5) at the last position (vocabulary 0..39)."""
    logp = logits[:, -1, :VOCAB].log_softmax(-1)
    return logp[:, 3] - logp[:, 5]


def logit_diff(logits: torch.Tensor) -> torch.Tensor:
    """A metric that is linear in the logits."""
    return logits[:, -1, 3] - logits[:, -1, 5]


def top_k_agreement(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    top = lambda x: set(x.abs().argsort(descending=True)[:k].tolist())
    return len(top(a) & top(b)) / k


# ----- exact agreement where the first-order estimate is exact ---------------------------------------------
class ScaleOnly(torch.nn.Module):
    """A linear stand-in for the final norm: ``x * w``."""

    def __init__(self, d_model: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(0.5, 1.5, d_model, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


@pytest.mark.parametrize("case", ["gpt2-causal", "llama-gqa-bidirectional"])
def test_every_method_equals_exact_patching_on_logits_edges_when_the_readout_is_linear(case):
    # With the final norm removed and a metric linear in the logits, the metric is linear in the
    # final residual: patching u->logits changes it by exactly delta_u . grad, whatever the model.
    cfg, attention = CASES[case]
    model = random_model(cfg, attention)
    model.ln_final = ScaleOnly(cfg.d_model)
    clean, corrupted = token_pairs()
    exact = ml.attribute(model, clean, corrupted, logit_diff, method="exact")
    logits_column = model.graph.logits_dst
    assert exact.tensor[:, logits_column].abs().max() > 1e-2
    for method in GRADIENT_METHODS:
        scores = ml.attribute(model, clean, corrupted, logit_diff, method=method, ig_steps=3)
        torch.testing.assert_close(scores.tensor[:, logits_column], exact.tensor[:, logits_column], atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("case", ["gpt2-bidirectional", "llama-gqa-causal"])
def test_gradient_methods_converge_to_exact_patching_in_the_linear_limit(case):
    # Corrupted tokens whose embeddings are eps away from the clean ones: every delta is O(eps), so
    # exact - estimate is O(eps^2) on every edge while the scores are O(eps).
    cfg, attention = CASES[case]
    model = random_model(cfg, attention)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.W_E[1::2] = model.W_E[0::2] + 1e-3 * torch.randn(VOCAB // 2, cfg.d_model, generator=gen, dtype=torch.float64)
    clean = 2 * torch.randint(0, VOCAB // 2, (4, 7), generator=gen)
    corrupted = clean + 1
    exact = ml.attribute(model, clean, corrupted, log_prob_diff, method="exact").values
    for method in ("EAP", "EAP-IG-inputs", "clean-corrupted"):
        scores = ml.attribute(model, clean, corrupted, log_prob_diff, method=method).values
        assert (scores - exact).abs().max() < 0.02 * exact.abs().max(), method   # observed 0.003-0.008
    # EAP-IG-activations is not first-order exact by design (the reference's semantics): in the runs
    # that replace a destination's own group, that destination's gradient is cut to zero.
    scores = ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP-IG-activations").values
    assert (scores - exact).abs().max() > 0.1 * exact.abs().max()


def test_eap_ig_activations_cuts_gradients_through_the_replaced_group():
    # With one step every run sits at the clean point. Edges into logits never pass through a
    # group, so they equal EAP; the last MLP's input is cut only in the run that replaces it.
    model = random_model(GPT2)
    clean, corrupted = token_pairs()
    eap = ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP")
    activations = ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP-IG-activations", ig_steps=1)
    graph, n_runs = model.graph, 1 + 2 * GPT2.n_layers
    torch.testing.assert_close(activations.tensor[:, graph.logits_dst], eap.tensor[:, graph.logits_dst])
    last_mlp = graph.mlp_dst(GPT2.n_layers - 1)
    torch.testing.assert_close(activations.tensor[:, last_mlp], eap.tensor[:, last_mlp] * (n_runs - 1) / n_runs)


@pytest.mark.parametrize("case", ["gpt2-bidirectional", "llama-gqa-causal"])
def test_eap_ig_inputs_is_complete_on_the_input_edges(case):
    # Only the token embedding moves along the path, and it reaches the metric only through the
    # destinations it feeds (each additively), so sum_v score(input->v) = delta_E . mean_k dM/dE,
    # a right Riemann sum of the path integral: -> mean(M(corrupted) - M(clean)) with error c/m + O(1/m^2).
    cfg, attention = CASES[case]
    model = random_model(cfg, attention)
    clean, corrupted = token_pairs()
    with torch.no_grad():
        target = float((log_prob_diff(model(corrupted)) - log_prob_diff(model(clean))).mean())
    total = {steps: float(ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP-IG-inputs",
                                       ig_steps=steps).tensor[0].sum()) for steps in (32, 64)}
    assert abs(total[64] - target) < 0.05 * abs(target)                  # observed 0.0006 (gpt2), 0.03 (llama)
    richardson = 2 * total[64] - total[32]                               # cancels the c/m term
    assert abs(richardson - target) < 1e-3 * abs(target)                 # observed 1e-4


def test_eap_ig_inputs_with_one_step_is_eap():
    model = random_model(LLAMA_GQA)
    clean, corrupted = token_pairs()
    eap = ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP")
    ig1 = ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP-IG-inputs", ig_steps=1)
    torch.testing.assert_close(ig1.tensor, eap.tensor, atol=1e-12, rtol=0)


# ----- brute force through run_with_nodes --------------------------------------------------------------------
EDGES = ["input->a0.h1<q>", "input->a1.h2<k>", "a0.h3->a1.h0<v>", "a0.h1->m0", "m0->a1.h3<k>",
         "a1.h2->m1", "m1->logits", "input->logits"]


def brute_force_gradient_scores(model, grad_ids, delta, metric, edges):
    """(1/N) sum delta_u . dM/dx_v, with x_v made a leaf by a run_with_nodes override."""
    base = model.run_with_nodes(grad_ids)
    scores = {}
    for edge in edges:
        src, dst = edge.split("->")
        x = base.inputs[dst].detach().clone().requires_grad_()
        metric(model.run_with_nodes(grad_ids, overrides={dst: x}).logits).sum().backward()
        scores[edge] = float((delta[src].detach() * x.grad).sum()) / grad_ids.shape[0]
    return scores


def with_embeddings(model: Transformer, embeddings: torch.Tensor) -> tuple[Transformer, torch.Tensor]:
    """A copy of ``model`` with one extra token per (example, position) whose embedding is
    ``embeddings[b, p]``, and the ids that select them: a forward with arbitrary token embeddings."""
    B, P, D = embeddings.shape
    bigger = Transformer(dataclasses.replace(model.cfg, d_vocab=VOCAB + B * P), model.attention).double()
    state = model.state_dict()
    state["W_E"] = torch.cat([state["W_E"], embeddings.reshape(B * P, D)])
    state["W_U"] = torch.cat([state["W_U"], torch.zeros(D, B * P, dtype=torch.float64)], dim=1)
    bigger.load_state_dict(state)
    return bigger, VOCAB + torch.arange(B * P).reshape(B, P)


def test_scores_match_brute_force_autograd_and_patching():
    model = random_model(LLAMA_GQA)   # grouped-query: <k> edges of heads 2 and 3 share weights, not inputs
    clean, corrupted = token_pairs()
    clean_run, corrupted_run = model.run_with_nodes(clean), model.run_with_nodes(corrupted)
    delta = {name: corrupted_run.outputs[name] - clean_run.outputs[name] for name in clean_run.outputs}

    eap = ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP")
    expected = brute_force_gradient_scores(model, clean, delta, log_prob_diff, EDGES)
    for edge in EDGES:
        assert eap.edge(edge) == pytest.approx(expected[edge], rel=1e-5, abs=1e-9), edge

    # clean-corrupted: the mean of the gradients on the clean and on the corrupted input
    both = ml.attribute(model, clean, corrupted, log_prob_diff, method="clean-corrupted")
    at_corrupted = brute_force_gradient_scores(model, corrupted, delta, log_prob_diff, EDGES)
    for edge in EDGES:
        assert both.edge(edge) == pytest.approx((expected[edge] + at_corrupted[edge]) / 2, rel=1e-5, abs=1e-9), edge

    # EAP-IG-inputs with m = 2: gradients at the embeddings E_corr + alpha (E_clean - E_corr), alpha = 1/2, 1
    ig = ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP-IG-inputs", ig_steps=2)
    e_clean, e_corr = clean_run.outputs["input"], corrupted_run.outputs["input"]
    expected = {edge: 0.0 for edge in EDGES}
    for alpha in (0.5, 1.0):
        bigger, ids = with_embeddings(model, e_corr + alpha * (e_clean - e_corr))
        for edge, score in brute_force_gradient_scores(bigger, ids, delta, log_prob_diff, EDGES).items():
            expected[edge] += score / 2
    for edge in EDGES:
        assert ig.edge(edge) == pytest.approx(expected[edge], rel=1e-5, abs=1e-9), edge

    # exact: only v's input changes, by delta_u
    exact = ml.attribute(model, clean, corrupted, log_prob_diff, method="exact")
    with torch.no_grad():
        clean_metric = log_prob_diff(clean_run.logits)
        for edge in EDGES:
            src, dst = edge.split("->")
            patched = model.run_with_nodes(clean, overrides={dst: clean_run.inputs[dst] + delta[src]})
            assert exact.edge(edge) == pytest.approx(float((log_prob_diff(patched.logits) - clean_metric).mean()), rel=1e-5, abs=1e-9)


# ----- batching, padding, model state -------------------------------------------------------------------
def test_scores_do_not_depend_on_batch_size_with_or_without_rows():
    model = random_model(GPT2)
    clean, corrupted = token_pairs(batch=7)
    targets = torch.randint(0, VOCAB, (7,), generator=torch.Generator().manual_seed(0))

    def per_row_metric(logits, rows):
        return logits[torch.arange(len(rows)), -1, targets[rows]] - logits[:, -1, 5]

    for metric, method, batch_sizes in [(per_row_metric, "EAP-IG-inputs", (2, 3)), (per_row_metric, "exact", (3,)),
                                        (log_prob_diff, "EAP-IG-inputs", (2, 3))]:
        whole = ml.attribute(model, clean, corrupted, metric, method=method, ig_steps=3)
        for batch_size in batch_sizes:
            split = ml.attribute(model, clean, corrupted, metric, method=method, ig_steps=3, batch_size=batch_size)
            torch.testing.assert_close(split.tensor, whole.tensor, atol=1e-7, rtol=1e-5)
    parts = [ml.attribute(model, clean[rows], corrupted[rows], log_prob_diff, ig_steps=3) for rows in (slice(0, 3), slice(3, 7))]
    torch.testing.assert_close(ml.Scores.combine(parts).tensor, ml.attribute(model, clean, corrupted, log_prob_diff, ig_steps=3).tensor)


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_right_padding_does_not_change_scores(attention):
    # Pad every example with 3 junk tokens (different in clean and corrupted), masked out: the
    # scores must equal those of the unpadded examples, for gradients and for real patching.
    model = random_model(LLAMA_GQA, attention)
    clean, corrupted = token_pairs(batch=3, pos=6)
    junk_clean, junk_corrupted = token_pairs(batch=3, pos=3, seed=9)
    padded_clean, padded_corrupted = torch.cat([clean, junk_clean], 1), torch.cat([corrupted, junk_corrupted], 1)
    mask = torch.cat([torch.ones(3, 6), torch.zeros(3, 3)], 1).long()

    def at_position_5(logits):
        return logits[:, 5, 3] - logits[:, 5, 5]

    for method in ("EAP-IG-inputs", "exact"):
        plain = ml.attribute(model, clean, corrupted, at_position_5, method=method)
        padded = ml.attribute(model, padded_clean, padded_corrupted, at_position_5, method=method, attention_mask=mask)
        torch.testing.assert_close(padded.tensor, plain.tensor, atol=1e-7, rtol=1e-5)


def test_explicit_attention_mask_passes_through():
    model = random_model(GPT2, "bidirectional")
    clean, corrupted = token_pairs()
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    by_mask = ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP", attention=causal)
    by_name = ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP", attention="causal")
    bidirectional = ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP")
    torch.testing.assert_close(by_mask.tensor, by_name.tensor)
    assert not torch.allclose(by_name.tensor, bidirectional.tensor)


def test_attribution_freezes_parameters_and_restores_them_even_after_an_error():
    model = random_model(GPT2)
    model.blocks[0].ln1.w.requires_grad_(False)   # a non-default flag that must survive
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    clean, corrupted = token_pairs()
    ml.attribute(model, clean, corrupted, log_prob_diff, method="EAP-IG-inputs")
    assert all(p.grad is None for p in model.parameters())

    def interrupted(logits):
        assert not any(p.requires_grad for p in model.parameters())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ml.attribute(model, clean, corrupted, interrupted)
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags


# ----- bad input ------------------------------------------------------------------------------------------------
def _bad(call):
    model = random_model(GPT2)
    clean, corrupted = token_pairs()
    return lambda: call(model, clean, corrupted)


@pytest.mark.parametrize("call, message", [
    (lambda m, c, x: ml.attribute(m, c, x[:, :5], log_prob_diff), "same shape"),
    (lambda m, c, x: ml.attribute(m, c, x, lambda logits: logits[:, -1, :2]), r"returned shape \(4, 2\)"),
    (lambda m, c, x: ml.attribute(m, c, x, lambda logits: logits[:, -1, 3].mean()), "one value per example"),
    (lambda m, c, x: ml.attribute(m, c, x, lambda logits: logits[:, -1, 3] / (torch.arange(4) != 2)), r"NaN or inf for examples \[2\]"),
    (lambda m, c, x: ml.attribute(m, c, x, lambda logits: logits[:, -1, 3].detach()), "differentiabl"),
    (lambda m, c, x: ml.attribute(m, c, x, log_prob_diff, ig_steps=0), "ig_steps must be an integer >= 1"),
    (lambda m, c, x: ml.attribute(m, c, x, log_prob_diff, method="IG"), "known methods: EAP, EAP-IG-inputs"),
    (lambda m, c, x: ml.attribute(m, c, x, log_prob_diff, batch_size=0), "batch_size must be a positive integer"),
    (lambda m, c, x: ml.attribute(m, c, x, log_prob_diff, attention_mask=torch.ones(4, 5)), "attention_mask must have the shape"),
    (lambda m, c, x: ml.attribute(m, c.float(), x, log_prob_diff), "clean_ids must be a 2-D integer tensor"),
    (lambda m, c, x: ml.attribute(m, c, x, log_prob_diff, method="EAP").edge("a0.h9->m1"), "unknown source node"),
    (lambda m, c, x: ml.attribute(m, c, x, log_prob_diff, method="EAP").edge("m1->a0.h0<q>"), "not upstream"),
])
def test_bad_input_gives_clear_errors(call, message):
    with pytest.raises((ValueError, KeyError, TypeError), match=message):
        _bad(call)()


def test_scores_of_different_graphs_refuse_to_combine():
    clean, corrupted = token_pairs()
    small = ml.attribute(random_model(GPT2), clean, corrupted, log_prob_diff, method="EAP")
    deeper = ml.attribute(random_model(dataclasses.replace(GPT2, n_layers=3)), clean, corrupted, log_prob_diff, method="EAP")
    with pytest.raises(ValueError, match="different graphs|cannot compare"):
        ml.Scores.combine([small, deeper])
    assert set(small.as_dict()) == set(small.graph.edge_names) and len(small.as_dict()) == 110


# ----- agreement with exact patching on a trained model -----------------------------------------------------
N_NAMES, FIRST_NAME, FIRST_FILLER, N_FILLERS = 8, 2, 10, 10


def ioi_like(n: int, gen: torch.Generator):
    """``[BOS] A B f f S`` with S in {A, B}: the answer is the other name (IO). Corrupted: S -> a
    third name C, so that neither name is repeated."""
    names = torch.stack([torch.randperm(N_NAMES, generator=gen)[:3] for _ in range(n)]) + FIRST_NAME
    a, b, c = names.unbind(1)
    swap = torch.rand(n, generator=gen) < 0.5
    io, s = torch.where(swap, b, a), torch.where(swap, a, b)
    fillers = torch.randint(FIRST_FILLER, FIRST_FILLER + N_FILLERS, (n, 2), generator=gen)
    bos = torch.ones(n, dtype=torch.long)
    clean = torch.stack([bos, a, b, fillers[:, 0], fillers[:, 1], s], 1)
    corrupted = torch.stack([bos, a, b, fillers[:, 0], fillers[:, 1], c], 1)
    return clean, corrupted, io, s


@pytest.fixture(scope="module")
def trained_ioi_model() -> Transformer:
    cfg = ModelConfig(d_vocab=20, n_ctx=8, d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64)
    model = Transformer(cfg).init_weights(1)
    gen = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(150):
        clean, _, io, _ = ioi_like(32, gen)
        loss = torch.nn.functional.cross_entropy(model(clean)[:, -1], io)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def test_eap_ig_ranks_the_important_edges_like_exact_patching_better_than_eap(trained_ioi_model):
    """On the edges that matter (top 20 by exact |effect|), EAP-IG's ranking agrees with exact
    patching better than EAP's: Spearman 0.83-0.97 vs 0.65-0.88 over six training seeds, and
    IG won on every seed. Over all 110 edges the comparison is mixed (EAP won on 4 of 6 seeds,
    0.91-0.99 vs 0.83-0.97): that Spearman is dominated by about 90 near-zero edges, and patching
    one small edge is a local change around the clean run, which the clean-point gradient (EAP)
    describes well, while IG averages gradients along a path on which every input is corrupted."""
    clean, corrupted, io, s = ioi_like(16, torch.Generator().manual_seed(100))

    def io_minus_s(logits, rows):
        last = logits[:, -1]
        return last[torch.arange(len(rows)), io[rows]] - last[torch.arange(len(rows)), s[rows]]

    with torch.no_grad():
        assert io_minus_s(trained_ioi_model(clean), torch.arange(16)).mean() > 3   # it learned the task
    exact = ml.attribute(trained_ioi_model, clean, corrupted, io_minus_s, method="exact").values
    eap = ml.attribute(trained_ioi_model, clean, corrupted, io_minus_s, method="EAP").values
    eap_ig = ml.attribute(trained_ioi_model, clean, corrupted, io_minus_s, method="EAP-IG-inputs", ig_steps=5).values
    important = exact.abs().argsort(descending=True)[:20]
    rho_eap, rho_ig = spearman(eap[important], exact[important]), spearman(eap_ig[important], exact[important])
    print(f"\ntrained IOI-like model vs exact: Spearman on the top-20 edges EAP {rho_eap:.3f}, EAP-IG {rho_ig:.3f}; "
          f"on all 110 edges EAP {spearman(eap, exact):.3f}, EAP-IG {spearman(eap_ig, exact):.3f}; top-10 agreement "
          f"EAP {top_k_agreement(eap, exact, 10):.2f}, EAP-IG {top_k_agreement(eap_ig, exact, 10):.2f}")
    assert rho_ig >= rho_eap and rho_ig > 0.8                        # observed 0.832 vs 0.758
    assert spearman(eap, exact) > 0.85 and spearman(eap_ig, exact) > 0.85   # observed 0.907, 0.960
    assert top_k_agreement(eap_ig, exact, 10) >= 0.8                 # observed 0.9 (EAP 0.9)


@pytest.mark.parametrize("case", ["gpt2-causal", "llama-gqa-bidirectional"])
def test_gradient_methods_rank_edges_like_exact_patching_on_random_models(case):
    cfg, attention = CASES[case]
    model = random_model(cfg, attention)
    clean, corrupted = token_pairs()
    exact = ml.attribute(model, clean, corrupted, log_prob_diff, method="exact").values
    report = []
    for method in ("EAP", "EAP-IG-inputs"):
        scores = ml.attribute(model, clean, corrupted, log_prob_diff, method=method).values
        rho, top = spearman(scores, exact), top_k_agreement(scores, exact, 10)
        report.append(f"{method}: Spearman {rho:.3f}, top-10 {top:.2f}")
        assert rho > 0.6   # these 5x-scale random models are far from linear; observed 0.68-0.82
    print(f"\nrandom {case} model vs exact: " + "; ".join(report))


# ----- block scores ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", [*GRADIENT_METHODS, "exact"])
def test_each_blocks_scores_equal_attributing_the_block_alone(method):
    from mechshift_lite.attribution import attribute_blocks
    from mechshift_lite.inputs import ModelInputs

    model = random_model(GPT2, "bidirectional")
    clean, corrupted = token_pairs(batch=7)
    inputs = ModelInputs(clean, corrupted, None, "bidirectional")
    blocks = torch.tensor([2, 0, 0, 1, 2, 1, 0])                # not contiguous, unequal sizes
    rows_seen = []

    def metric(logits, rows):                                   # example-dependent: reads the pair's own index
        rows_seen.append(rows)
        return log_prob_diff(logits) * (1 + rows.to(logits))

    got = attribute_blocks(model, inputs, metric, blocks, method, ig_steps=3, batch_size=3)
    assert got.shape == (3, model.graph.n_src, model.graph.n_dst)
    for b in range(3):
        rows = (blocks == b).nonzero()[:, 0]
        alone = ml.attribute(model, inputs.select(rows), lambda logits, rows, at=rows: metric(logits, at[rows]),
                             method=method, ig_steps=3)
        torch.testing.assert_close(got[b], alone.tensor, rtol=1e-9, atol=1e-12)
    whole = ml.attribute(model, inputs, metric, method=method, ig_steps=3)
    sizes = torch.bincount(blocks).double()
    torch.testing.assert_close((got * sizes[:, None, None]).sum(0) / sizes.sum(), whole.tensor, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("blocks, message", [
    (torch.tensor([0, 1, 3, 0]), r"blocks \[2\] have no examples"),
    (torch.tensor([0, -1, 0, 0]), "must be >= 0"),
    (torch.tensor([0, 1, 0]), r"shape \[4\]"),
    (torch.tensor([0.0, 1.0, 0.0, 1.0]), "LongTensor"),
])
def test_bad_blocks_give_clear_errors(blocks, message):
    from mechshift_lite.attribution import attribute_blocks
    from mechshift_lite.inputs import ModelInputs

    clean, corrupted = token_pairs(batch=4)
    with pytest.raises(ValueError, match=message):
        attribute_blocks(random_model(GPT2), ModelInputs(clean, corrupted, None, "causal"), logit_diff, blocks)
