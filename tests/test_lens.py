"""Component logit lens: the components add up to the model's logits (ground truth)."""

import pytest
import torch

from mechshift_lite import ModelConfig, Transformer
from mechshift_lite.lens import answer_vocabulary, component_lens, direct_logit_attribution, residual_lens, winners

CONFIGS = {
    "gpt2": ModelConfig(d_vocab=30, n_ctx=10, d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64),
    "llama": ModelConfig(family="llama", d_vocab=30, n_ctx=10, d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=48,
                         n_kv_heads=2, act="silu", qkv_bias=True, out_bias=False, mlp_bias=False),
}


@pytest.fixture(params=list(CONFIGS))
def model(request):
    m = Transformer(CONFIGS[request.param]).init_weights(0)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if not name.startswith("W"):
                p.add_(0.2 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_component_logits_sum_to_model_logits(model, attention):
    ids = torch.randint(0, 30, (4, 8), generator=torch.Generator().manual_seed(0))
    pos = torch.tensor([7, 3, 5, 0])
    lens = component_lens(model, ids, pos, attention=attention)
    torch.testing.assert_close(lens.logits.sum(0) + lens.constant, lens.model_logits, atol=1e-4, rtol=0)
    assert lens.logits.shape == (model.graph.n_src, 4, 30)


def test_rank_entropy_and_winners_on_a_hand_built_lens(model):
    ids = torch.randint(0, 30, (3, 6), generator=torch.Generator().manual_seed(1))
    lens = component_lens(model, ids, torch.tensor([5, 5, 5]))
    lens.logits = torch.full_like(lens.logits, -5.0)
    lens.logits[3, :, 7] = 10.0        # component 3 points sharply at token 7 on every example
    lens.logits[4, 0, 7] = 20.0        # component 4 wins example 0
    lens.logits[4, 1, 2] = 1.0         # ... and prefers token 2 on example 1
    ranks = lens.rank_of(torch.tensor([7, 7, 7]))
    assert ranks[3].tolist() == [0, 0, 0] and ranks[4].tolist() == [0, 1, 0]
    entropy = lens.entropy()
    assert entropy[3, 1] < 0.01 and entropy[0, 0] == pytest.approx(torch.log(torch.tensor(30.0)).item(), abs=1e-4)
    stats = winners(lens, good=torch.tensor([7, 7, 7]), bad=torch.tensor([1, 1, 1]))
    assert stats.counts == {lens.names[4]: 1, lens.names[3]: 2}
    assert stats.n_unique == 2 and stats.variance == pytest.approx(0.25)


def test_readout_positions_must_match_batch(model):
    with pytest.raises(ValueError, match="readout_pos must have shape"):
        component_lens(model, torch.zeros(2, 4, dtype=torch.long), torch.tensor([1]))


@pytest.mark.parametrize("only", ["a0.h1", "a1.h3", "m0", "m1"])
def test_each_reading_is_credited_to_the_component_that_wrote_it(model, only):
    """Silence every head and MLP but one (their output weights and biases set to zero): the lens
    must give that component, and ``input``, all of the logits, and every other component none."""
    with torch.no_grad():
        for layer, block in enumerate(model.blocks):
            for head in range(model.cfg.n_heads):
                if f"a{layer}.h{head}" != only:
                    block.attn.W_O[head] = 0
            if block.attn.b_O is not None:
                block.attn.b_O.zero_()
            if f"m{layer}" != only:
                block.mlp.W_out.zero_()
                if block.mlp.b_out is not None:
                    block.mlp.b_out.zero_()
    ids = torch.randint(0, 30, (3, 7), generator=torch.Generator().manual_seed(2))
    lens = component_lens(model, ids, torch.tensor([6, 2, 4]), attention="bidirectional")
    silent = [i for i, name in enumerate(lens.names) if name not in (only, "input")]
    assert lens.logits[silent].abs().max() < 1e-6
    assert lens.logits[lens.names.index(only)].abs().max() > 1e-2
    torch.testing.assert_close(lens.logits[lens.names.index(only)] + lens.logits[lens.names.index("input")] + lens.constant,
                               lens.model_logits, atol=1e-4, rtol=0)


# ----- issue 11: the residual-stream logit lens, and flatness at matched scale --------------------------
@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_residual_lens_after_the_last_layer_is_the_models_logits(model, attention):
    ids = torch.randint(0, 30, (4, 8), generator=torch.Generator().manual_seed(3))
    pos = torch.tensor([7, 3, 5, 0])
    readings = residual_lens(model, ids, pos, attention=attention)
    assert readings.shape == (model.cfg.n_layers + 1, 4, 30)
    rows = torch.arange(4)
    with torch.no_grad():
        logits = model(ids, attention=attention)[rows, pos]
        first = model.ln_final(model.embed(ids)[rows, pos]) @ model.unembed
    torch.testing.assert_close(readings[-1], logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(readings[0], first, atol=1e-5, rtol=0)      # stopped before any layer
    assert (readings[1] - readings[0]).abs().max() > 1e-3                    # layer 0 changes the reading


def test_matched_entropy_does_not_depend_on_a_components_output_scale(model):
    ids = torch.randint(0, 30, (3, 7), generator=torch.Generator().manual_seed(4))
    pos = torch.tensor([6, 2, 4])
    vocab = torch.tensor([2, 5, 11, 17])
    with torch.no_grad():
        model.ln_final.w *= 50                       # sharp readings (random weights read nearly flat)
    loud = direct_logit_attribution(model, ids, pos)
    with torch.no_grad():
        model.blocks[0].attn.W_O[1] /= 20            # a0.h1 writes the same direction, 20x smaller
    quiet = direct_logit_attribution(model, ids, pos)
    i = quiet.names.index("a0.h1")
    assert quiet.entropy()[i].mean() > loud.entropy()[i].mean() + 0.05    # raw: smaller reads flatter
    # matched scale: the output is rescaled to the norm of the residual stream the norm divides by,
    # so the reading depends on the output's direction only
    torch.testing.assert_close(quiet.matched_logits()[i], loud.matched_logits()[i], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(quiet.entropy(vocab, matched=True)[i], loud.entropy(vocab, matched=True)[i], atol=1e-4, rtol=0)
    assert quiet.entropy(vocab)[i].shape == (3,)
    assert quiet.entropy(vocab, matched=True)[i].max() <= torch.log(torch.tensor(4.0)) + 1e-6


def test_entropy_over_the_answer_vocabulary_only(model):
    lens = direct_logit_attribution(model, torch.zeros(2, 5, dtype=torch.long), torch.tensor([4, 4]))
    lens.logits = torch.full_like(lens.logits, -5.0)
    lens.logits[..., [3, 8]] = 2.0                    # flat over two tokens, sharp against the rest
    vocab = answer_vocabulary(torch.tensor([3, 3]), torch.tensor([8, 3]))
    assert vocab.tolist() == [3, 8]
    assert lens.entropy(vocab)[0, 0] == pytest.approx(float(torch.log(torch.tensor(2.0))), abs=1e-5)
    assert lens.entropy(torch.tensor([3, 8, 9]))[0, 0] < lens.entropy()[0, 0]
    with pytest.raises(ValueError, match="at least 2 token ids"):
        lens.entropy(torch.tensor([3]))
    assert component_lens is direct_logit_attribution     # the former name is an alias
