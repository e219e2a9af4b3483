"""Accuracy measurement, checked with oracle models that know the answers (and anti-oracles that never do)."""

import pytest
import torch

from mechshift_lite import accuracy, tasks
from mechshift_lite.tasks import countdown

TOK = tasks.build_tokenizer()
NAMES = {TOK.token_id(n) for n in tasks.ioi.NAMES}


class Oracle(torch.nn.Module):
    """A fake model with the shift: at every position after the prompt's end it predicts the next token
    of a chosen answer (Countdown: the canonical solution, or one for a wrong target); for IOI it
    puts a high logit on the name mentioned once (or, ``anti``, the repeated one) at the last prompt slot."""

    def __init__(self, anti: bool = False):
        super().__init__()
        self.anti = anti
        self.attention = "causal"

    def forward(self, x: torch.Tensor, attention_mask=None, **_) -> torch.Tensor:
        logits = torch.zeros(*x.shape, len(TOK))
        for b, row in enumerate(x.tolist()):
            if TOK.sep_id in row:
                self._countdown(logits[b], row)
            else:
                self._ioi(logits[b], row)
        return logits

    def _countdown(self, out: torch.Tensor, row: list[int]) -> None:
        sep = row.index(TOK.sep_id)
        numbers = [int(n) for n in TOK.decode(row[1:sep], joiner="").split(",")]
        *operands, target = numbers
        answer = countdown.solve(operands, target)
        if self.anti:  # a correct solution of another problem: every equation is true, the target is wrong
            other = sorted(countdown.solutions(operands))
            answer = countdown.solutions(operands)[next(t for t in other if t != target)]
        full = [*TOK.encode(answer, bos=False), TOK.eos_id] + [TOK.pad_id] * len(row)
        for i in range(sep, len(row)):
            out[i, full[i - sep]] = 10.0

    def _ioi(self, out: torch.Tensor, row: list[int]) -> None:
        real = [t for t in row if t not in (TOK.pad_id, TOK.mask_id)]
        names = [t for t in real if t in NAMES]
        once = [n for n in names if names.count(n) == 1]
        twice = [n for n in names if names.count(n) > 1]
        if not names:  # a Countdown prefix that has not reached [SEP] yet
            return
        out[len(real) - 1, (twice if self.anti else once)[0]] = 10.0


@pytest.mark.parametrize("mode", ["arm", "mdm"])
def test_countdown_accuracy_is_one_for_an_oracle_and_zero_for_a_wrong_target(mode):
    problems = countdown.generate(12, seed=0, split="test")
    assert accuracy.countdown_accuracy(Oracle(), TOK, problems, mode=mode) == 1.0
    assert accuracy.countdown_accuracy(Oracle(anti=True), TOK, problems, mode=mode) == 0.0


@pytest.mark.parametrize("mode", ["arm", "mdm"])
def test_ioi_accuracy_reads_the_last_prompt_position(mode):
    problems = tasks.ioi.generate(20, seed=0, split="test")
    assert accuracy.ioi_accuracy(Oracle(), TOK, problems, mode=mode) == 1.0
    assert accuracy.ioi_accuracy(Oracle(anti=True), TOK, problems, mode=mode) == 0.0


def test_decoded_answer_stops_at_eos():
    ids = torch.tensor([[1, 5, 6, 7, 2, 8, 9], [1, 5, 6, 7, 8, 9, 9]])
    answers = accuracy.decode_answers(TOK, ids, torch.tensor([2, 3]))
    assert answers == [TOK.decode([6, 7], joiner=""), TOK.decode([7, 8, 9, 9], joiner="")]


def test_clear_errors():
    with pytest.raises(ValueError, match="not 'countdown'"):
        accuracy.countdown_accuracy(Oracle(), TOK, tasks.ioi.generate(2, seed=0))
    with pytest.raises(ValueError, match="mode"):
        accuracy.ioi_accuracy(Oracle(), TOK, tasks.ioi.generate(2, seed=0), mode="diffusion")
