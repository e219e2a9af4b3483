import pytest
import torch

from mechshift_lite import ModelConfig, Transformer, ablation

CFG = ModelConfig(d_vocab=20, n_ctx=8, d_model=16, n_layers=3, n_heads=2, d_head=8, d_mlp=32)


@pytest.fixture
def model():
    return Transformer(CFG).init_weights(0)


def ids():
    return torch.randint(0, 20, (4, 6), generator=torch.Generator().manual_seed(0))


def test_zero_ablating_everything_leaves_positions_and_biases_only(model):
    x = ids()
    logits = ablation.ablated_logits(model, x, model.graph.src_names, method="zero")
    resid = model.W_pos[:6] + sum(b.attn.b_O for b in model.blocks)
    torch.testing.assert_close(logits, (model.ln_final(resid) @ model.unembed).expand(4, 6, -1), atol=1e-5, rtol=0)


def test_ablating_one_head_equals_removing_its_output(model):
    x = ids()
    logits = ablation.ablated_logits(model, x, ["a2.h1"], method="zero")
    run = model.run_with_nodes(x)
    head = run.outputs["a2.h1"]   # a last-layer head feeds its own layer's MLP and the logits
    mlp = model.blocks[2].mlp(model.blocks[2].ln2(run.inputs["m2"] - head))
    resid = run.inputs["logits"] - head - run.outputs["m2"] + mlp
    torch.testing.assert_close(logits, model.ln_final(resid) @ model.unembed, atol=1e-5, rtol=0)


def test_mean_ablation_of_a_constant_node_changes_nothing(model):
    x = ids()
    with torch.no_grad():
        model.blocks[0].mlp.W_out.zero_()    # m0 now outputs its bias everywhere: equal to its mean
    torch.testing.assert_close(ablation.ablated_logits(model, x, ["m0"], "mean"), model(x), atol=1e-5, rtol=0)
    assert not torch.allclose(ablation.ablated_logits(model, x, ["m1"], "mean"), model(x), atol=1e-4)


def test_precomputed_means_of_every_node_give_the_same_ablation(model):
    x = ids()
    means = ablation.mean_outputs(model, x, model.graph.src_names[1:])
    for nodes in (["a1.h0"], ["m0", "a2.h1"]):
        torch.testing.assert_close(ablation.ablated_logits(model, x, nodes, "mean", means=means),
                                   ablation.ablated_logits(model, x, nodes, "mean"), atol=1e-6, rtol=0)
    other = ablation.mean_outputs(model, ids().flip(0)[:, :3], ["a1.h0"])   # means of other inputs differ
    assert not torch.allclose(ablation.ablated_logits(model, x, ["a1.h0"], "mean", means=other),
                              ablation.ablated_logits(model, x, ["a1.h0"], "mean"), atol=1e-4)


def test_layer_of_reads_the_layer_from_a_component_name():
    assert [ablation.layer_of(n) for n in ("a2.h1", "m0", "input")] == [2, 0, -1]


def test_bad_names_and_methods(model):
    with pytest.raises(KeyError, match="unknown"):
        ablation.ablated_logits(model, ids(), ["a9.h0"])
    with pytest.raises(ValueError, match="method must be one of"):
        ablation.ablated_logits(model, ids(), ["m0"], method="resample")


# ----- issue 11: position-mean ablation and layer-matched random controls -------------------------------
def test_position_mean_of_identical_examples_changes_nothing_and_the_global_mean_does(model):
    x = ids()[:1].repeat(4, 1)                  # four copies of one example: each position's mean is itself
    clean = model(x)
    nodes = ["a0.h1", "m1"]
    torch.testing.assert_close(ablation.ablated_logits(model, x, nodes, "position-mean"), clean, atol=1e-5, rtol=0)
    assert (ablation.ablated_logits(model, x, nodes, "mean") - clean).abs().max() > 1e-3


def test_position_means_average_only_the_examples_where_the_position_is_real(model):
    x, mask = ids(), torch.ones(4, 6, dtype=torch.long)
    mask[0, 4:] = 0
    mask[1, 3:] = 0
    means = ablation.mean_outputs(model, x, ["m0"], mask, per_position=True)["m0"]
    out = model.run_with_nodes(x, mask).outputs["m0"]
    assert means.shape == (6, CFG.d_model)
    torch.testing.assert_close(means[5], out[2:, 5].mean(0))
    torch.testing.assert_close(means[3], out[[0, 2, 3], 3].mean(0))
    with pytest.raises(ValueError, match="needs means of shape"):
        ablation.ablated_logits(model, x, ["m0"], "position-mean", means=ablation.mean_outputs(model, x, ["m0"]))


def test_layer_matched_random_draws_as_many_per_layer_and_follows_the_seed(model):
    g = model.graph
    targeted = ["a0.h1", "m0", "a2.h0"]
    draws = [ablation.layer_matched_random(g, targeted, seed) for seed in range(30)]
    for drawn in draws:
        assert sorted(map(ablation.layer_of, drawn)) == [0, 0, 2] and len(set(drawn)) == 3
    assert len({tuple(d) for d in draws}) > 3 and draws[7] == ablation.layer_matched_random(g, targeted, 7)
    with pytest.raises(ValueError, match="not a component"):
        ablation.layer_matched_random(g, ["input"], 0)
