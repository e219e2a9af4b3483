"""The readable transformer: decomposition of the residual stream, hooks, masks, bad input."""

import pytest
import torch

from mechshift_lite import ModelConfig, Transformer

GPT2 = ModelConfig(d_vocab=40, n_ctx=12, d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64)
LLAMA_GQA = ModelConfig(family="llama", d_vocab=40, n_ctx=12, d_model=32, n_layers=2, n_heads=4, d_head=8,
                        d_mlp=48, n_kv_heads=2, act="silu", qkv_bias=True, out_bias=False, mlp_bias=False)
CONFIGS = {"gpt2": GPT2, "llama-gqa": LLAMA_GQA}


@pytest.fixture(params=list(CONFIGS))
def model(request) -> Transformer:
    torch.manual_seed(0)
    m = Transformer(CONFIGS[request.param]).init_weights(seed=1)
    with torch.no_grad():  # non-trivial biases and norm weights, so the decomposition test can fail
        for name, p in m.named_parameters():
            if not name.startswith("W"):
                p.add_(0.1 * torch.randn_like(p))
    return m


def ids(batch=3, pos=9, vocab=40, seed=0):
    return torch.randint(0, vocab, (batch, pos), generator=torch.Generator().manual_seed(seed))


def constant_terms(model: Transformer, n_layers: int, pos: int) -> torch.Tensor:
    """Everything in the residual stream that is not a node: positions and attention output biases."""
    total = torch.zeros(model.cfg.d_model)
    if model.W_pos is not None:
        total = total + model.W_pos[:pos]
    for block in model.blocks[:n_layers]:
        if block.attn.b_O is not None:
            total = total + block.attn.b_O
    return total


def test_residual_stream_is_sum_of_node_outputs(model):
    x = ids()
    run = model.run_with_nodes(x)
    total = sum(run.outputs.values()) + constant_terms(model, model.cfg.n_layers, x.shape[1])
    torch.testing.assert_close(run.inputs["logits"], total, atol=1e-5, rtol=0)
    # every MLP reads the embedding, all earlier nodes and its own layer's heads
    for layer in range(model.cfg.n_layers):
        upstream = [run.outputs["input"]] + [
            out for name, out in run.outputs.items()
            if (name.startswith("a") and int(name[1:name.index(".")]) <= layer)
            or (name.startswith("m") and int(name[1:]) < layer)
        ]
        expected = sum(upstream) + constant_terms(model, layer + 1, x.shape[1])
        torch.testing.assert_close(run.inputs[f"m{layer}"], expected, atol=1e-5, rtol=0)


def test_hooked_path_equals_fast_path(model):
    x = ids()
    torch.testing.assert_close(model.run_with_nodes(x).logits, model(x), atol=1e-5, rtol=0)


def test_causal_ignores_the_future_and_bidirectional_does_not(model):
    x = ids()
    y = x.clone()
    y[:, -1] = (y[:, -1] + 1) % 40
    early = slice(0, x.shape[1] - 1)
    torch.testing.assert_close(model(x)[:, early], model(y)[:, early])
    diff = (model(x, attention="bidirectional")[:, early] - model(y, attention="bidirectional")[:, early]).abs().max()
    assert diff > 1e-4


def test_explicit_masks_match_named_modes(model):
    x = ids()
    P = x.shape[1]
    causal = torch.ones(P, P, dtype=torch.bool).tril()
    torch.testing.assert_close(model(x, attention=causal), model(x, attention="causal"))
    full = torch.ones(x.shape[0], P, P, dtype=torch.bool)
    torch.testing.assert_close(model(x, attention=full), model(x, attention="bidirectional"))


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_right_padding_does_not_change_real_positions(model, attention):
    x = ids(pos=6)
    padded = torch.cat([x, torch.zeros(3, 3, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(3, 6), torch.zeros(3, 3)], dim=1).long()
    torch.testing.assert_close(model(padded, mask, attention=attention)[:, :6], model(x, attention=attention), atol=1e-5, rtol=0)


def test_override_of_one_query_copy_changes_only_that_head(model):
    x = ids()
    base = model.run_with_nodes(x)
    run = model.run_with_nodes(x, overrides={"a1.h2<q>": torch.zeros(3, 9, model.cfg.d_model)})
    for h in range(model.cfg.n_heads):
        same = torch.allclose(run.outputs[f"a1.h{h}"], base.outputs[f"a1.h{h}"], atol=1e-6)
        assert same == (h != 2)
    torch.testing.assert_close(run.outputs["a0.h0"], base.outputs["a0.h0"])


def test_override_of_mlp_input_does_not_touch_the_residual_stream(model):
    x = ids()
    base = model.run_with_nodes(x)
    run = model.run_with_nodes(x, overrides={"m0": base.inputs["m0"] * 0})
    expected_m0 = model.blocks[0].mlp(model.blocks[0].ln2(torch.zeros_like(base.inputs["m0"])))
    torch.testing.assert_close(run.outputs["m0"], expected_m0)
    # layer 1 reads the unchanged residual plus the *new* MLP output
    torch.testing.assert_close(run.inputs["a1.h0<k>"] - run.outputs["m0"], base.inputs["a1.h0<k>"] - base.outputs["m0"], atol=1e-5, rtol=0)


def test_logits_override_replaces_final_residual(model):
    x = ids()
    z = torch.randn(3, 9, model.cfg.d_model)
    logits = model.run_with_nodes(x, overrides={"logits": z}).logits
    torch.testing.assert_close(logits, model.ln_final(z) @ model.unembed)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m(torch.randn(2, 5)), "2-D integer tensor"),
        (lambda m: m(torch.zeros(5, dtype=torch.long)), "2-D integer tensor"),
        (lambda m: m(torch.zeros(1, 13, dtype=torch.long)), "longer than the context"),
        (lambda m: m(torch.full((1, 3), 40)), r"token ids must lie in \[0, 40\)"),
        (lambda m: m(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4)), "attention_mask must have the shape"),
        (lambda m: m(torch.zeros(2, 5, dtype=torch.long), attention="full"), "attention must be one of"),
        (lambda m: m(torch.zeros(2, 5, dtype=torch.long), attention=torch.ones(4, 4, dtype=torch.bool)), "explicit attention mask"),
        (lambda m: m.run_with_nodes(torch.zeros(2, 5, dtype=torch.long), overrides={"a7.h0<q>": torch.zeros(2, 5, 32)}), "unknown"),
        (lambda m: m.run_with_nodes(torch.zeros(2, 5, dtype=torch.long), overrides={"mlp0": torch.zeros(2, 5, 32)}), "unknown destination"),
        (lambda m: m.run_with_nodes(torch.zeros(2, 5, dtype=torch.long), overrides={"m0": torch.zeros(2, 5)}), "must have shape"),
    ],
)
def test_bad_input_gives_clear_errors(call, message):
    m = Transformer(GPT2).init_weights(0)
    with pytest.raises((ValueError, KeyError), match=message):
        call(m)


def test_config_rejects_impossible_shapes():
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        ModelConfig(family="llama", n_heads=4, n_kv_heads=3, act="silu")
    with pytest.raises(ValueError, match="family"):
        ModelConfig(family="bert")
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({**GPT2.to_dict(), "n_layer": 3})
    assert ModelConfig.from_dict(GPT2.to_dict()) == GPT2


def test_same_seed_same_weights():
    a, b = Transformer(GPT2).init_weights(3), Transformer(GPT2).init_weights(3)
    c = Transformer(GPT2).init_weights(4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.W_E, c.W_E)


def test_recorded_patterns_are_probabilities_and_respect_causality(model):
    run = model.run_with_nodes(ids())
    pattern = run.patterns[1]
    assert pattern.shape == (3, model.cfg.n_heads, 9, 9)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(3, model.cfg.n_heads, 9))
    assert pattern.triu(diagonal=1).abs().max() == 0


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_norm_of_expanded_copies_matches_materialised_copies(family):
    from mechshift_lite.model import Norm

    cfg = CONFIGS["gpt2" if family == "gpt2" else "llama-gqa"]
    norm = Norm(cfg)
    with torch.no_grad():
        norm.w.normal_(1.0, 0.3)
        if norm.b is not None:
            norm.b.normal_(0.0, 0.3)
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 5, cfg.d_model, generator=g, dtype=torch.float64).float()
    upstream = torch.randn(2, 5, 3, 4, cfg.d_model, generator=g)     # a different gradient for every copy
    grads = []
    for materialise in (False, True):
        x = base.clone().requires_grad_(True)
        copies = x[:, :, None, None, :].expand(-1, -1, 3, 4, -1)
        assert copies.stride()[2:4] == (0, 0), "the copies must share memory for the fast path"
        copies = copies.contiguous() if materialise else copies
        copies.retain_grad()
        out = norm(copies) if materialise else norm.of_copies(copies)
        (out * upstream).sum().backward()
        grads.append((out.detach(), copies.grad.clone(), norm.w.grad.clone()))
        norm.zero_grad()
    for fast, slow in zip(grads[0], grads[1]):
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
