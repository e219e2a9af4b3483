"""Countdown diagnostics, checked with fake models whose answers are known (built from the solver)."""

import math

import pytest
import torch

from mechshift_lite import diagnostics, diffusion, tasks
from mechshift_lite.tasks import countdown

TOK = tasks.build_tokenizer()
PROBLEMS = countdown.generate(16, seed=3, split="test")


def _bump_digits(number: str) -> str:
    """Every digit changed (+1 mod 10; a leading 9 becomes 1 so the number stays well formed)."""
    out = [str((int(d) + 1) % 10) for d in number]
    if out[0] == "0":
        out[0] = "1"
    return "".join(out)


def wrong_x(answer: str) -> str:
    """The canonical answer with X replaced, in both places, by a number differing in every digit:
    equation 1 becomes false, equation 2 (usually) too, and the chain still ends at the target."""
    eq1, eq2 = answer.split(",")
    left, x = eq1.split("=")
    bad = _bump_digits(x)
    lhs, target = eq2.split("=")
    op = next(c for c in "+-*/" if c in lhs)
    a, b = lhs.split(op)
    return f"{left}={bad},{bad if a == x else a}{op}{b if a == x else bad}={target}"


class Emitter(torch.nn.Module):
    """A fake model with the shift: from the prompt's ``[SEP]`` on, position ``i`` predicts slot ``i + 1``
    of ``answer_fn(numbers, target)`` then ``[EOS]`` and ``[PAD]``s, whatever else the canvas holds."""

    def __init__(self, answer_fn, attention: str):
        super().__init__()
        self.answer_fn, self.attention = answer_fn, attention

    def forward(self, x: torch.Tensor, attention_mask=None, **_) -> torch.Tensor:
        logits = torch.zeros(*x.shape, len(TOK))
        for b, row in enumerate(x.tolist()):
            if TOK.sep_id not in row:  # a greedy decoder's prefix that has not reached [SEP] yet
                continue
            sep = row.index(TOK.sep_id)
            *numbers, target = (int(n) for n in TOK.decode(row[1:sep], joiner="").split(","))
            full = [*TOK.encode(self.answer_fn(numbers, target), bos=False), TOK.eos_id] + [TOK.pad_id] * len(row)
            for i in range(sep, len(row)):
                logits[b, i, full[i - sep]] = 10.0
        return logits


def solver(numbers, target):
    return countdown.solve(numbers, target)


def corrupted(numbers, target):
    return wrong_x(countdown.solve(numbers, target))


MODES = [("arm", "causal", "confidence"), ("mdm", "bidirectional", "confidence"), ("mdm", "bidirectional", "remask")]


@pytest.mark.parametrize("mode,attention,decoder", MODES)
def test_an_oracle_scores_one_everywhere(mode, attention, decoder):
    scores = diagnostics.countdown_diagnostics(Emitter(solver, attention), TOK, PROBLEMS, decoder=decoder)
    expected = set(diagnostics.KEYS) | ({"x_digits_copy"} if mode == "mdm" else set())
    assert set(scores) == expected
    assert all(value == 1.0 for value in scores.values()), scores


@pytest.mark.parametrize("mode,attention,decoder", MODES)
def test_a_wrong_equation_one_is_seen_while_the_chain_still_ends_at_the_target(mode, attention, decoder):
    scores = diagnostics.countdown_diagnostics(Emitter(corrupted, attention), TOK, PROBLEMS, decoder=decoder)
    assert scores["eq1_true"] == 0.0 and scores["exact"] == 0.0
    assert scores["x_digits"] == 0.0 and scores["x_number"] == 0.0
    assert scores["ends_at_target"] == 1.0 and scores["well_formed"] == 1.0
    assert scores["first_token"] == 1.0  # X is not the first token: the first decision is still right


def test_x_probe_masks_both_copies_for_the_mdm_and_scores_equation_ones():
    """A model that copies X when equation 2's copy is visible, and writes "1" for X's digits when it is not."""
    one = TOK.token_id("1")

    class Copier(Emitter):
        def forward(self, x, attention_mask=None, **_):
            logits = super().forward(x)
            for b, row in enumerate(x.tolist()):
                if not 0 < row.count(TOK.mask_id) < 10:  # not an X probe (those hide X's digits only)
                    continue
                start = torch.tensor([row.index(TOK.sep_id) + 1])
                slots = diagnostics.x_slots([PROBLEMS[b]], start, len(row))
                if bool((x[b][slots.eq2[0]] == TOK.mask_id).all()):
                    for j in slots.eq1[0].nonzero()[:, 0].tolist():
                        logits[b, j - 1] = 0.0
                        logits[b, j - 1, one] = 10.0
            return logits

    truth = tasks.encode_examples(TOK, PROBLEMS)
    slots = diagnostics.x_slots(PROBLEMS, truth.answer_start, truth.ids.shape[1])
    scores = diagnostics.probe_scores(Copier(solver, "bidirectional"), TOK, PROBLEMS)
    # with both copies hidden the copier is right exactly where X's digit is a 1
    assert scores["x_digits"] == pytest.approx(float((truth.ids[slots.eq1] == one).float().mean()))
    assert scores["x_digits"] < 1.0
    all_ones = [bool((truth.ids[row][slots.eq1[row]] == one).all()) for row in range(len(PROBLEMS))]
    assert scores["x_number"] == pytest.approx(sum(all_ones) / len(all_ones))
    assert scores["x_digits_copy"] == 1.0 and scores["first_token"] == 1.0


def test_x_slots_find_both_copies_of_the_intermediate_result():
    enc = tasks.encode_examples(TOK, PROBLEMS)
    slots = diagnostics.x_slots(PROBLEMS, enc.answer_start, enc.ids.shape[1])
    for row, ex in enumerate(PROBLEMS):
        x = ex.answer.split(",")[0].split("=")[1]
        assert TOK.decode(enc.ids[row][slots.eq1[row]].tolist(), joiner="") == x
        assert TOK.decode(enc.ids[row][slots.eq2[row]].tolist(), joiner="") == x
        assert int(slots.eq1[row].nonzero()[-1]) < int(slots.eq2[row].nonzero()[0])


def test_answer_scores_follow_the_rules():
    assert diagnostics.answer_scores([15, 44, 79], 50, "44-15=29,79-29=50") == {
        "exact": True, "well_formed": True, "eq1_true": True, "ends_at_target": True}
    assert diagnostics.answer_scores([15, 44, 79], 50, "44-15=30,79-30=50") == {
        "exact": False, "well_formed": True, "eq1_true": False, "ends_at_target": True}
    assert diagnostics.answer_scores([15, 44, 79], 50, "44-15=29") == {
        "exact": False, "well_formed": False, "eq1_true": True, "ends_at_target": False}
    assert not diagnostics.equation_true("4-15=29") and not diagnostics.equation_true("")


def test_remask_sampler_drops_a_committed_token_and_predicts_it_again_in_context():
    """Slot 2 looks sure of 7 on a blank canvas (p = 0.6) but is 6 once slots 3 and 4 are known;
    those two are very sure of 5 once slot 2 holds anything. 3 steps for 3 slots keep 1, 2, 3 slots:
    step 0 commits slot 2 = 7; step 1 prefers slots 3 and 4 (p ~ 1) and drops slot 2; step 2
    predicts slot 2 again, now with 3 and 4 visible: 6."""
    V, M = 10, 9

    def probs_to_logits(p: float, token: int) -> torch.Tensor:
        row = torch.full((V,), math.log((1 - p) / (V - 2)))  # V - 1 real tokens ([MASK] is excluded)
        row[token] = math.log(p)
        return row

    class Reviser(torch.nn.Module):
        def forward(self, x, **_):
            logits = torch.zeros(*x.shape, V)
            for b, row in enumerate(x.tolist()):
                context = row[3] != M and row[4] != M
                logits[b, 1] = probs_to_logits(0.95, 6) if context else probs_to_logits(0.6, 7)  # slot 2
                for slot in (3, 4):
                    sure = row[2] != M
                    logits[b, slot - 1] = probs_to_logits(0.99 if sure else 0.3, 5)
            return logits

    ids = torch.tensor([[1, 4, 0, 0, 0]])
    out = diffusion.remask_sample(Reviser(), ids, torch.tensor([2]), mask_id=M, steps=3)
    assert out.ids.tolist() == [[1, 4, 6, 5, 5]]
    assert out.commit_step.tolist() == [[-1, -1, 2, 1, 1]]
    once = diffusion.remask_sample(Reviser(), ids, torch.tensor([2]), mask_id=M, steps=1)
    assert once.ids.tolist() == [[1, 4, 7, 5, 5]]  # one step: no chance to revise


def test_clear_errors():
    with pytest.raises(ValueError, match="decoder"):
        diagnostics.countdown_diagnostics(Emitter(solver, "bidirectional"), TOK, PROBLEMS[:2], decoder="beam")
    with pytest.raises(ValueError, match="not 'countdown'"):
        diagnostics.countdown_diagnostics(Emitter(solver, "causal"), TOK, tasks.ioi.generate(2, seed=0))
    four = countdown.generate(2, seed=0, split="test", n_operands=4)
    with pytest.raises(ValueError, match="Countdown-3 chain"):
        diagnostics.probe_scores(Emitter(solver, "causal"), TOK, four)
    with pytest.raises(ValueError, match="steps"):
        diffusion.remask_sample(Emitter(solver, "bidirectional"), torch.ones(1, 4, dtype=torch.long), torch.tensor([2]), 3, steps=0)
