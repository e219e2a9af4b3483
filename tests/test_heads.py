"""Head direct effects, attention scores and roles (mechshift_lite.heads) against ground truth built by hand."""

import pytest
import torch

from mechshift_lite import heads, lens
from mechshift_lite.config import ModelConfig
from mechshift_lite.inputs import ModelInputs
from mechshift_lite.model import Transformer

CONFIGS = {
    "gpt2": ModelConfig(d_vocab=30, n_ctx=10, d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64),
    "llama": ModelConfig(family="llama", d_vocab=30, n_ctx=10, d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=48),
}


def random_inputs(n=6, length=10, vocab=30, seed=0, attention="causal"):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(vocab, (n, length), generator=gen)
    readout = torch.randint(2, length, (n,), generator=gen)
    answer, distractor = torch.randint(vocab, (n,), generator=gen), torch.randint(vocab, (n,), generator=gen)
    return ModelInputs(ids, ids, None, attention, readout, answer, distractor)


@pytest.mark.parametrize("family", CONFIGS)
def test_direct_effects_are_complete_through_the_frozen_norm(family):
    model = Transformer(CONFIGS[family]).init_weights(1)
    with torch.no_grad():   # make the norms non-trivial so a wrong scale or centring shows
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = random_inputs()
    effects = heads.direct_effects(model, x, n_boot=50)
    logits = model(x.clean_ids, attention="causal")
    rows = torch.arange(len(x))
    truth = logits[rows, x.readout_pos, x.answer_ids] - logits[rows, x.readout_pos, x.distractor_ids]
    assert torch.allclose(effects.logit_diff, truth, atol=1e-4)
    assert torch.allclose(effects.per_prompt.sum((0, 1)) + effects.rest, truth, atol=1e-3)
    # independently: the non-head part is embeddings + positions + MLPs + b_O, through the same frozen norm
    run = model.run_with_nodes(x.clean_ids, attention="causal")
    resid = run.inputs["logits"][rows, x.readout_pos]
    rest = run.outputs["input"] + (0 if model.W_pos is None else model.W_pos[: x.clean_ids.shape[1]])
    for layer, block in enumerate(model.blocks):
        rest = rest + run.outputs[f"m{layer}"] + (0 if block.attn.b_O is None else block.attn.b_O)
    rest = rest[rows, x.readout_pos]
    norm = model.ln_final
    if norm.rms:
        normed = rest * torch.rsqrt(resid.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.w
    else:
        normed = (rest - rest.mean(-1, keepdim=True)) * torch.rsqrt(resid.var(-1, unbiased=False, keepdim=True) + norm.eps) * norm.w + norm.b
    direction = model.unembed[:, x.answer_ids].T - model.unembed[:, x.distractor_ids].T
    assert torch.allclose(effects.rest, (normed * direction).sum(-1), atol=1e-4)


def test_direct_effects_agree_with_direct_logit_attribution():
    model = Transformer(CONFIGS["gpt2"]).init_weights(2)
    x = random_inputs(seed=3)
    effects = heads.direct_effects(model, x, n_boot=50)
    dla = lens.direct_logit_attribution(model, x)
    diff = dla.logit_diff(x.answer_ids, x.distractor_ids)
    for i, name in enumerate(heads.head_names(2, 4)):
        assert torch.allclose(effects.per_prompt.flatten(0, 1)[i], diff[dla.names.index(name)], atol=1e-5), name
    assert torch.allclose(effects.mean, effects.per_prompt.mean(-1))
    assert (effects.low <= effects.mean + 1e-6).all() and (effects.mean <= effects.high + 1e-6).all()


def test_bootstrap_interval_matches_the_standard_error():
    values = torch.randn(2, 4000, generator=torch.Generator().manual_seed(0)) * torch.tensor([[1.0], [3.0]])
    low, high = heads.bootstrap_interval(values, n_boot=2000)
    expected = 2 * 1.96 * values.std(-1) / 4000 ** 0.5
    assert torch.allclose(high - low, expected, rtol=0.15)
    assert ((low < values.mean(-1)) & (values.mean(-1) < high)).all()


def hand_patterns():
    """Two heads, two prompts of 6 positions, with attention set by hand (rows sum to 1)."""
    P = 6
    patterns = torch.zeros(1, 2, 2, P, P)
    patterns[0, 0] = torch.eye(P)                                      # head 0 attends to itself...
    patterns[0, 0, :, 1:, :] = torch.diag_embed(torch.ones(P - 1), offset=-1)[1:, :]   # ...and from i >= 1 to i - 1
    patterns[0, 1] = torch.full((P, P), 1.0 / P)                       # head 1: uniform
    positions = heads.IOIPositions(io=torch.tensor([2, 1]), s1=torch.tensor([1, 2]), s2=torch.tensor([3, 4]),
                                   end=torch.tensor([4, 5]))
    patterns[0, 1, 0, 3] = torch.tensor([0.0, 0.7, 0.1, 0.2, 0.0, 0.0])   # prompt 0: S2 -> S1 is 0.7
    patterns[0, 1, 1, 5] = torch.tensor([0.0, 0.6, 0.1, 0.0, 0.3, 0.0])   # prompt 1: end -> IO 0.6, -> S 0.1 + 0.3
    return patterns, positions


def test_attention_scores_on_hand_set_patterns():
    patterns, positions = hand_patterns()
    scores = heads.head_scores(patterns, positions)
    for head in range(2):
        by_loop = []
        for n in range(2):
            end = int(positions.end[n])
            by_loop.append(sum(float(patterns[0, head, n, i, i - 1]) for i in range(1, end + 1)) / end)
        assert scores.previous[0, head] == pytest.approx(sum(by_loop) / 2, abs=1e-6)
    assert scores.previous[0, 0] == pytest.approx(1.0)
    assert scores.duplicate[0, 1] == pytest.approx((0.7 + 1 / 6) / 2)
    assert scores.io[0, 1] == pytest.approx((1 / 6 + 0.6) / 2)
    assert scores.s[0, 1] == pytest.approx((2 / 6 + 0.4) / 2)
    assert scores.name_mover[0, 1] == pytest.approx((1 / 6 + 0.6 - 2 / 6 - 0.4) / 2)
    assert scores.duplicate[0, 0] == pytest.approx(0.0) and scores.io[0, 0] == pytest.approx(0.0)


def test_attention_patterns_match_a_manual_einsum():
    model = Transformer(CONFIGS["gpt2"]).init_weights(4)
    x = random_inputs(seed=5)
    patterns = heads.attention_patterns(model, x)                      # [L, H, N, P, P]
    block = model.blocks[0]
    h = block.ln1(model.embed(x.clean_ids))
    q = torch.einsum("npd,hdk->nhpk", h, block.attn.W_Q) + block.attn.b_Q[None, :, None]
    k = torch.einsum("npd,hdk->nhpk", h, block.attn.W_K) + block.attn.b_K[None, :, None]
    scores = torch.einsum("nhqk,nhsk->nhqs", q, k) / 8 ** 0.5
    scores = scores.masked_fill(~torch.ones(10, 10, dtype=torch.bool).tril(), float("-inf"))
    assert torch.allclose(patterns[0], scores.softmax(-1).transpose(0, 1), atol=1e-5)


# ----- a model with planted heads ---------------------------------------------------------------------
# Tokens: 0 BOS, 1-4 names, 5 "to", 6-7 fillers. Prompts [BOS, S, IO, 6, S, 7, to]: S1 = 1, IO = 2, S2 = 4, end = 6.
V, N_CTX = 8, 8
D = V + N_CTX


def planted_model(name_mover_sign: float = 1.0, plant: bool = True) -> Transformer:
    """One layer, three heads: h0 previous-token, h1 duplicate-token, h2 name mover (end -> position 2, copies it)."""
    cfg = ModelConfig(d_vocab=V, n_ctx=N_CTX, d_model=D, n_layers=1, n_heads=3, d_head=D, d_mlp=4)
    model = Transformer(cfg).init_weights(0)
    c = 10.0
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:                                            # biases are 0 and norm scales 1 already
                p.zero_()
        model.W_E.copy_(torch.eye(V, D))                               # token t -> dimension t
        model.W_pos.copy_(torch.eye(D)[V:])             # position i -> dimension V + i
        model.W_U.copy_(torch.eye(D, V))                               # dimension t -> logit of token t
        attn = model.blocks[0].attn
        if plant:
            for i in range(N_CTX - 1):                                 # h0: query at i + 1 meets key at i
                attn.W_Q[0, V + i + 1, i] = c
                attn.W_K[0, V + i, i] = 1.0
            attn.W_Q[1] = c * torch.eye(D)                             # h1: same token, not the same position
            attn.W_K[1] = torch.diag(torch.cat([torch.ones(V), -torch.ones(N_CTX)]))
            attn.W_Q[2, V + 6, 0] = c                                  # h2: from the end to position 2
            attn.W_K[2, V + 2, 0] = 1.0
            attn.W_V[2, :V, :V] = torch.eye(V)                         # ... and copies that token's identity
            attn.W_O[2, :V, :V] = name_mover_sign * torch.eye(V)
    return model


def planted_inputs() -> ModelInputs:
    rows = [[0, s, io, 6, s, 7, 5] for s in range(1, 5) for io in range(1, 5) if s != io]
    ids = torch.tensor(rows)
    return ModelInputs(ids, ids, None, "causal", torch.full((len(rows),), 6), ids[:, 2].clone(), ids[:, 1].clone())


def roles_of(model):
    x = planted_inputs()
    scores = heads.head_scores(heads.attention_patterns(model, x), heads.ioi_positions(x))
    return heads.classify(scores, heads.direct_effects(model, x, n_boot=200)), scores


def test_planted_heads_are_classified():
    roles, scores = roles_of(planted_model())
    assert roles == {"name-mover": ["a0.h2"], "duplicate-token": ["a0.h1"], "previous-token": ["a0.h0"]}
    assert scores.previous[0, 0] > 0.95 and scores.duplicate[0, 1] > 0.95 and scores.io[0, 2] > 0.95


def test_a_head_that_writes_against_io_is_no_name_mover():
    roles, scores = roles_of(planted_model(name_mover_sign=-1.0))
    assert scores.io[0, 2] > 0.95 and roles["name-mover"] == []


def test_unplanted_heads_have_no_role():
    roles, _ = roles_of(planted_model(plant=False))
    assert roles == {role: [] for role in heads.ROLES}


def test_ioi_positions_find_the_names_and_refuse_bad_prompts():
    x = planted_inputs()
    positions = heads.ioi_positions(x)
    assert positions.io.tolist() == [2] * len(x) and positions.s1.tolist() == [1] * len(x)
    assert positions.s2.tolist() == [4] * len(x) and positions.end.tolist() == [6] * len(x)
    bad = ModelInputs(x.clean_ids, x.clean_ids, None, "causal", x.readout_pos, x.distractor_ids, x.answer_ids)
    with pytest.raises(ValueError, match="IO 2 times and S 1 times"):
        heads.ioi_positions(bad)


def test_compare_roles():
    before = {"name-mover": ["a1.h0", "a1.h1"], "duplicate-token": ["a1.h1"], "previous-token": []}
    after = {"name-mover": ["a1.h1", "a1.h2"], "duplicate-token": [], "previous-token": []}
    by_role = {row.role: row for row in heads.compare_roles(before, after)}
    assert by_role["name-mover"].kept == ("a1.h1",) and by_role["name-mover"].lost == ("a1.h0",)
    assert by_role["name-mover"].gained == ("a1.h2",) and by_role["name-mover"].exists_in_both
    assert by_role["duplicate-token"].lost == ("a1.h1",) and not by_role["duplicate-token"].exists_in_both
