"""Masked diffusion: masking, the shifted losses, annealing, samplers, and the attribution state."""

import math

import pytest
import torch
import torch.nn.functional as F

from mechshift_lite import ModelConfig, Transformer, diffusion

MASK = 3
V, P = 12, 10


def tiny_model(attention: str = "bidirectional", seed: int = 0) -> Transformer:
    cfg = ModelConfig(d_vocab=V, n_ctx=P, d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32)
    return Transformer(cfg, attention=attention).init_weights(seed)


def random_ids(B: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(5, V, (B, P), generator=torch.Generator().manual_seed(seed))


class TableModel(torch.nn.Module):
    """A fake denoiser: fixed logits ``[P, V]`` (the same for every input and batch row)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor, **_) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, -1).clone()


# ----- forward masking ----------------------------------------------------------------------------
def test_forward_mask_never_touches_the_prompt_and_is_seeded():
    ids = random_ids(500)
    start = torch.randint(1, P, (500,), generator=torch.Generator().manual_seed(1))
    maskable = diffusion.answer_region(start, P)
    x_t, t = diffusion.forward_mask(ids, maskable, MASK, torch.Generator().manual_seed(7))
    assert torch.equal(x_t[~maskable], ids[~maskable])
    assert ((x_t == MASK) <= maskable).all()
    assert ((t >= diffusion.MASK_EPS) & (t <= 1)).all()
    again, t2 = diffusion.forward_mask(ids, maskable, MASK, torch.Generator().manual_seed(7))
    assert torch.equal(again, x_t) and torch.equal(t, t2)


def test_each_maskable_slot_is_masked_with_probability_t():
    ids = torch.full((4000, 64), 5)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    x_t, t = diffusion.forward_mask(ids, maskable, MASK, torch.Generator().manual_seed(0))
    frac = (x_t == MASK).float().mean(1)
    # per sequence the masked share scatters around its own t (binomial, n=64): the mean error is ~0
    assert abs(float((frac - t).mean())) < 0.01
    assert float(torch.corrcoef(torch.stack([frac, t]))[0, 1]) > 0.95


# ----- losses -------------------------------------------------------------------------------------
def one_hot_logits(target_ids: torch.Tensor, scale: float = 50.0) -> torch.Tensor:
    """Logits whose position i is certain of ``target_ids[:, i + 1]`` (a perfect shifted model)."""
    B, P_ = target_ids.shape
    logits = torch.zeros(B, P_, V)
    logits[:, :-1] = F.one_hot(target_ids[:, 1:], V).float() * scale
    return logits


def test_mdm_loss_is_zero_for_a_perfect_model_and_positive_for_a_wrong_one():
    ids = random_ids(8)
    start = torch.full((8,), 4)
    x_t, t = diffusion.forward_mask(ids, diffusion.answer_region(start, P), MASK, torch.Generator().manual_seed(0),
                                    eps=1e-3)
    t = torch.full_like(t, 1e-3)  # t -> 0: the 1/t weight is huge, yet a perfect model still scores 0
    x_t[:, 5] = MASK
    assert diffusion.mdm_loss(one_hot_logits(ids), ids, x_t, t, MASK) < 1e-6
    wrong = one_hot_logits((ids + 1) % V)
    assert diffusion.mdm_loss(wrong, ids, x_t, t, MASK) > 1.0


def test_mdm_loss_matches_the_formula_written_out_slot_by_slot():
    gen = torch.Generator().manual_seed(3)
    ids = random_ids(3)
    logits = torch.randn(3, P, V, generator=gen)
    x_t, t = diffusion.forward_mask(ids, diffusion.answer_region(torch.tensor([2, 4, 6]), P), MASK, gen)
    total, count = 0.0, 0
    for b in range(3):
        for i in range(P - 1):
            if x_t[b, i + 1] == MASK:
                log_p = logits[b, i].log_softmax(-1)[ids[b, i + 1]]
                total += -float(log_p) / float(t[b])
                count += 1
    assert count > 0
    assert diffusion.mdm_loss(logits, ids, x_t, t, MASK).item() == pytest.approx(total / count, rel=1e-5)


def test_shift_aligns_arm_and_mdm_readouts_of_the_first_answer_token():
    """Both losses read the first answer token at the last prompt position."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, P, V, generator=gen)
    ids = random_ids(1)
    start, end = torch.tensor([4]), torch.tensor([4])  # a one-token "answer": only slot 4 is scored
    expected = F.cross_entropy(logits[0, 3], ids[0, 4]).item()
    assert diffusion.arm_loss(logits, ids, start, end).item() == pytest.approx(expected, rel=1e-6)
    x_t = ids.clone()
    x_t[0, 4] = MASK
    mdm = diffusion.mdm_loss(logits, ids, x_t, torch.tensor([1.0]), MASK)
    assert mdm.item() == pytest.approx(expected, rel=1e-6)
    shifted = diffusion.shift_logits(logits)
    assert torch.equal(shifted[0, 4], logits[0, 3])


def test_arm_loss_ignores_prompt_and_padding():
    gen = torch.Generator().manual_seed(0)
    ids = random_ids(2)
    logits = torch.randn(2, P, V, generator=gen)
    start, end = torch.tensor([3, 5]), torch.tensor([6, 7])
    base = diffusion.arm_loss(logits, ids, start, end)
    noisy = logits.clone()
    noisy[0, :1] += 100 * torch.randn(1, V, generator=gen)   # predicts slot 1: prompt
    noisy[0, 6:] += 100 * torch.randn(P - 6, V, generator=gen)  # predicts slots 7..: after [EOS]
    assert diffusion.arm_loss(noisy, ids, start, end).item() == pytest.approx(base.item())


# ----- attention annealing ------------------------------------------------------------------------
def test_annealing_goes_from_causal_to_full():
    causal = torch.ones(P, P, dtype=torch.bool).tril()
    assert torch.equal(diffusion.annealed_attention(0.0, P, torch.Generator().manual_seed(0)), causal)
    assert diffusion.annealed_attention(1.0, P, torch.Generator().manual_seed(0)).all()
    assert diffusion.anneal_ratio(0, 100) == pytest.approx(0.01)
    assert diffusion.anneal_ratio(99, 100) == 1.0 and diffusion.anneal_ratio(5000, 100) == 1.0


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.8])
def test_annealed_mask_reveals_a_ratio_share_of_the_future_and_keeps_the_past(ratio):
    n = 200
    allowed = diffusion.annealed_attention(ratio, n, torch.Generator().manual_seed(1))
    assert allowed.tril().sum() == n * (n + 1) // 2  # the causal part is always visible
    upper = allowed[torch.ones(n, n, dtype=torch.bool).triu(1)]
    assert abs(upper.float().mean().item() - ratio) < 0.01


# ----- samplers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["confidence", "confidence-blocks", "ancestral"])
def test_samplers_fill_every_slot_keep_the_prompt_and_never_change_a_committed_token(sampler):
    model = tiny_model()
    ids = random_ids(4)
    start = torch.tensor([2, 3, 5, 8])
    if sampler == "ancestral":
        out = diffusion.ancestral_sample(model, ids, start, MASK, steps=4, seed=0, output_history=True)
    else:
        block = 3 if sampler == "confidence-blocks" else None
        out = diffusion.confidence_sample(model, ids, start, MASK, block_length=block, output_history=True)
    region = diffusion.answer_region(start, P)
    assert not (out.ids == MASK).any()
    assert torch.equal(out.ids[~region], ids[~region])
    assert torch.equal(out.history[0], ids.masked_fill(region, MASK))
    for before, after in zip(out.history, out.history[1:]):
        kept = before != MASK
        assert torch.equal(after[kept], before[kept])
    assert ((out.commit_step >= 0) == region).all()


def test_confidence_sampler_commits_the_most_confident_slot_first():
    # the prediction for slot j is read at logits[j - 1]; make slot 7 surest, then 5, then 6, then 4
    sureness = {4: 1.0, 5: 3.0, 6: 2.0, 7: 4.0, 8: 0.5, 9: 0.2}
    logits = torch.zeros(P, V)
    for slot, s in sureness.items():
        logits[slot - 1, 6] = s
    model = TableModel(logits)
    ids = random_ids(1)
    out = diffusion.confidence_sample(model, ids, torch.tensor([4]), MASK)
    order = sorted(sureness, key=lambda slot: int(out.commit_step[0, slot]))
    assert order == sorted(sureness, key=lambda slot: -sureness[slot])
    assert (out.ids[0, 4:] == 6).all()


def test_semi_autoregressive_blocks_are_decoded_left_to_right():
    logits = torch.zeros(P, V)
    logits[:, 6] = torch.arange(P, dtype=torch.float)  # later slots are surer
    out = diffusion.confidence_sample(TableModel(logits), random_ids(1), torch.tensor([2]), MASK, block_length=4)
    steps = out.commit_step[0]
    assert steps[2:6].max() < steps[6:].min()
    assert steps[2:6].tolist() == [3, 2, 1, 0]  # inside a block: by confidence


def test_confidence_sampler_never_predicts_mask_even_when_the_model_prefers_it():
    logits = torch.zeros(P, V)
    logits[:, MASK] = 100.0
    out = diffusion.confidence_sample(TableModel(logits), random_ids(2), torch.tensor([3, 4]), MASK)
    assert not (out.ids == MASK).any()


def test_ancestral_sampler_is_seeded():
    model = tiny_model()
    ids, start = random_ids(3), torch.tensor([2, 4, 6])
    a = diffusion.ancestral_sample(model, ids, start, MASK, steps=3, seed=5).ids
    b = diffusion.ancestral_sample(model, ids, start, MASK, steps=3, seed=5).ids
    c = diffusion.ancestral_sample(model, ids, start, MASK, steps=3, seed=6).ids
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_masked_state_commits_one_token_per_step_from_the_models_own_decoding():
    model = tiny_model()
    ids, start = random_ids(3), torch.tensor([3, 4, 5])
    full = diffusion.confidence_sample(model, ids, start, MASK, output_history=True)
    region = diffusion.answer_region(start, P)
    state0 = diffusion.masked_state(model, ids, start, 0, MASK)
    assert torch.equal(state0, ids.masked_fill(region, MASK))
    for step in (1, 3):
        state = diffusion.masked_state(model, ids, start, step, MASK)
        assert torch.equal(state, full.history[step])
        assert ((state != MASK) & region).sum(1).tolist() == [step] * 3


def test_held_slots_stay_masked_while_decoding_goes_on_around_them():
    model = tiny_model()
    ids, start = random_ids(3), torch.tensor([3, 4, 5])
    region = diffusion.answer_region(start, P)
    hold = torch.zeros_like(region)
    hold[torch.arange(3), start] = True
    done = diffusion.confidence_sample(model, ids, start, MASK, hold=hold).ids
    assert (done[hold] == MASK).all()
    assert (done[region & ~hold] != MASK).all()
    state = diffusion.masked_state(model, ids, start, 2, MASK, hold=hold)
    assert (state[hold] == MASK).all() and ((state != MASK) & region).sum(1).tolist() == [2] * 3


def test_masked_states_from_one_decoding_equal_decodings_stopped_at_each_step():
    """Ground truth: an independent decoding that stops after k steps, for every k (also past the end, with a hold)."""
    model = tiny_model()
    ids, start = random_ids(3), torch.tensor([3, 4, 5])
    hold = torch.zeros(3, P, dtype=torch.bool)
    hold[torch.arange(3), start] = True
    for held in (None, hold):
        states = diffusion.masked_states(model, ids, start, [3, 0, 1, 3, 100], MASK, hold=held)
        assert sorted(states) == [0, 1, 3, 100]
        for k, state in states.items():
            stopped = diffusion.confidence_sample(model, ids, start, MASK, max_steps=k, hold=held).ids
            assert torch.equal(state, stopped), k
    with pytest.raises(ValueError, match="steps"):
        diffusion.masked_states(model, ids, start, [], MASK)
    with pytest.raises(ValueError, match="steps"):
        diffusion.masked_state(model, ids, start, -1, MASK)


def test_until_stops_each_row_right_after_its_slot_is_committed():
    """Ground truth: each row decoded alone, stopped after the step at which its full decoding fills
    its ``until`` slot. A row whose slot is in the prompt (never committed) decodes to the end."""
    model = tiny_model()
    ids, start = random_ids(4), torch.tensor([3, 4, 5, 3])
    until = torch.tensor([6, 4, 9, 1])
    batched = diffusion.confidence_sample(model, ids, start, MASK, until=until)
    for r in range(4):
        alone = diffusion.confidence_sample(model, ids[r:r + 1], start[r:r + 1], MASK)
        k = int(alone.commit_step[0, until[r]]) + 1 if until[r] >= start[r] else None
        stopped = diffusion.confidence_sample(model, ids[r:r + 1], start[r:r + 1], MASK, max_steps=k)
        assert torch.equal(batched.ids[r], stopped.ids[0]) and torch.equal(batched.commit_step[r], stopped.commit_step[0]), r
    assert (batched.ids[3, 3:] != MASK).all() and (batched.ids[1, 5:] == MASK).any()
    with pytest.raises(ValueError, match="one slot per row"):
        diffusion.confidence_sample(model, ids, start, MASK, until=until[:2])

def test_samplers_reject_an_answer_start_at_bos():
    with pytest.raises(ValueError, match="answer_start"):
        diffusion.confidence_sample(tiny_model(), random_ids(1), torch.tensor([0]), MASK)
    with pytest.raises(ValueError, match="steps"):
        diffusion.ancestral_sample(tiny_model(), random_ids(1), torch.tensor([2]), MASK, steps=0)
    assert math.isfinite(diffusion.anneal_ratio(0, 0))


def test_mean_commit_order_scales_each_row_and_averages_by_role():
    commit = torch.tensor([[-1, 0, 2, 4], [-1, -1, 1, 0], [-1, 3, 1, 2]])
    start = torch.tensor([1, 2, 1])
    roles = [["a", "b", "a"], ["a", "b"], None]                           # the third row is skipped
    means = diffusion.mean_commit_order(commit, start, roles)
    assert means == pytest.approx({"a": (0.0 + 1.0 + 1.0) / 3, "b": (0.5 + 0.0) / 2})


# ----- the recipe-study options (defaults = the recipe) ---------------------------------------------
def test_forward_mask_defaults_are_the_recipes_uniform_t_and_independent_slots():
    ids = random_ids(64)
    maskable = diffusion.answer_region(torch.full((64,), 2), P)
    gen = torch.Generator().manual_seed(5)
    t_ref = diffusion.MASK_EPS + (1 - diffusion.MASK_EPS) * torch.rand(64, generator=gen)
    ref = ids.masked_fill(maskable & (torch.rand(64, P, generator=gen) < t_ref[:, None]), MASK)
    x_t, t = diffusion.forward_mask(ids, maskable, MASK, torch.Generator().manual_seed(5), t_power=1.0, span_start=None)
    assert torch.equal(x_t, ref) and torch.equal(t, t_ref)


def test_t_power_moves_mask_rates_towards_zero():
    ids = torch.full((20000, 4), 5)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    _, t = diffusion.forward_mask(ids, maskable, MASK, torch.Generator().manual_seed(0), eps=0.0, t_power=2.0)
    assert float(t.mean()) == pytest.approx(1 / 3, abs=0.01)        # E[u^2] = 1/3
    assert float((t < 0.25).float().mean()) == pytest.approx(0.5, abs=0.02)  # P(u^2 < 1/4) = P(u < 1/2)


def test_number_spans_point_every_digit_at_the_first_digit_of_its_number():
    digits = [5, 6, 7]
    ids = torch.tensor([[1, 5, 6, 9, 7, 9, 5, 5, 5, 8]])
    assert diffusion.number_spans(ids, digits).tolist() == [[0, 1, 1, 3, 4, 5, 6, 6, 6, 9]]


def test_span_masking_hides_a_number_whole_or_not_at_all():
    digits = list(range(5, 10))
    ids = torch.tensor([[1, 4, 5, 6, 7, 4, 8, 9, 4, 5]]).repeat(500, 1)
    maskable = diffusion.answer_region(torch.full((500,), 1), P)
    spans = diffusion.number_spans(ids, digits)
    x_t, t = diffusion.forward_mask(ids, maskable, MASK, torch.Generator().manual_seed(0), span_start=spans)
    hidden = x_t == MASK
    for number in ([2, 3, 4], [6, 7], [9]):
        block = hidden[:, number]
        assert bool((block.all(1) | ~block.any(1)).all())  # all or nothing
    share = hidden[:, [2, 6, 9, 1]].float().mean(0)           # each unit (a number or a symbol) masked w.p. t
    assert torch.allclose(share, t.mean().expand(4), atol=0.06)


def test_focal_loss_matches_its_formula_and_is_the_plain_loss_at_alpha_1_gamma_0():
    gen = torch.Generator().manual_seed(4)
    ids = random_ids(3)
    logits = torch.randn(3, P, V, generator=gen)
    x_t, t = diffusion.forward_mask(ids, diffusion.answer_region(torch.tensor([2, 4, 6]), P), MASK, gen)
    total, count = 0.0, 0
    for b in range(3):
        for i in range(P - 1):
            if x_t[b, i + 1] == MASK:
                p = float(logits[b, i].softmax(-1)[ids[b, i + 1]])
                total += 0.25 * (1 - p) ** 2 * -math.log(p) / float(t[b])
                count += 1
    focal = diffusion.mdm_loss(logits, ids, x_t, t, MASK, focal_alpha=0.25, focal_gamma=2.0)
    assert focal.item() == pytest.approx(total / count, rel=1e-5)
    plain = diffusion.mdm_loss(logits, ids, x_t, t, MASK)
    assert torch.equal(diffusion.mdm_loss(logits, ids, x_t, t, MASK, focal_alpha=1.0, focal_gamma=0.0), plain)
