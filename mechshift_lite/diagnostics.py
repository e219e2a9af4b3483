"""Why a model fails Countdown-3: the exact accuracy taken apart, cheap enough to run during training.

Exact accuracy moves in coarse steps and hides the cause. :func:`countdown_diagnostics` scores a
model on held-out Countdown-3 problems (answers ``a?b=X,X?c=T``: two equations, X the intermediate
result, used again in equation 2) by:

==================  ===============================================================================
key                 what it measures
==================  ===============================================================================
``exact``           share of decoded answers that solve the problem (``countdown.check``)
``well_formed``     share of decoded answers that are a chain of two equations ``a?b=c,d?e=f``
``eq1_true``        share of decoded answers whose first equation is well formed and true
``ends_at_target``  share of decoded answers whose last equation is well formed and ends in the target
``first_token``     share of problems whose first answer token is right when nothing of the answer
                    is given (read at the last prompt position; the decision attribution explains)
``x_digits``        share of the digits of X in equation 1 predicted right, **everything else of the
                    canonical answer given**: the MDM sees X masked in both of its places (so it must
                    compute X, not copy it); the ARM is teacher-forced (it cannot see ahead anyway)
``x_number``        share of problems with every digit of that X right (the same probe, per problem)
``x_digits_copy``   MDM only: the same with only equation 1's copy of X masked (X can be copied from
                    equation 2): the gap to ``x_digits`` is the share of "arithmetic" that is copying
==================  ===============================================================================

Decoding: the ARM greedily; the MDM with the confidence sampler, one token per step (as
:mod:`mechshift_lite.accuracy`), or ``decoder="remask"``: top-k remasking
(:func:`mechshift_lite.diffusion.remask_sample`), where committed tokens can be revised. The
probes (``first_token``, ``x_digits``) run one forward pass each on the whole set, so 200 problems
cost about as much as decoding them: fine every 250 training steps.

Shapes: ``B`` problems, ``P`` canvas positions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from . import accuracy, diffusion
from .accuracy import check_task, decoding_mode
from .model import Transformer
from .tasks import CANVAS, Example, countdown, encode_examples
from .tasks.countdown import TWO_EQUATIONS  # a?b=c,d?e=f, the groups slot_roles uses
from .tasks.countdown import EQUATION, is_true
from .tokenizer import Tokenizer

DECODERS: tuple[str, ...] = ("confidence", "remask")
KEYS: tuple[str, ...] = ("exact", "well_formed", "eq1_true", "ends_at_target", "first_token", "x_digits", "x_number")
"""The keys every :func:`countdown_diagnostics` result has (the MDM adds ``x_digits_copy``)."""

# ----- scoring decoded answers (pure functions of the text) ---------------------------------------
def equation_true(equation: str) -> bool:
    """Is ``equation`` one well-formed, arithmetically true ``a op b = c`` (``countdown.check``'s rules)?"""
    match = EQUATION.fullmatch(equation)
    return match is not None and is_true(int(match[1]), match[2], int(match[3]), int(match[4]))


def answer_scores(numbers: Sequence[int], target: int, answer: str) -> dict[str, bool]:
    """The text-only diagnostics of one decoded ``answer``: exact, well_formed, eq1_true, ends_at_target."""
    parts = answer.split(",")
    last = EQUATION.fullmatch(parts[-1])
    return {
        "exact": countdown.check(numbers, target, answer),
        "well_formed": TWO_EQUATIONS.fullmatch(answer) is not None,
        "eq1_true": equation_true(parts[0]),
        "ends_at_target": last is not None and int(last[4]) == target,
    }


# ----- where X sits in the canonical answer ---------------------------------------------------------
@dataclass
class XSlots:
    """Canvas slots of the intermediate result X in each canonical training sequence.

    Attributes:
        eq1: ``[B, P]`` bool, the digits of X as equation 1's result.
        eq2: ``[B, P]`` bool, the digits of X as an operand of equation 2.
    """

    eq1: Tensor
    eq2: Tensor


def x_slots(examples: Sequence[Example], answer_start: Tensor, n_pos: int) -> XSlots:
    """Locate X (both copies) in the encoded canonical answers (one token per answer character).

    Raises a clear error for an answer that is not two equations ``a?b=X,X?c=T`` / ``a?b=X,c?X=T``.
    """
    eq1 = torch.zeros(len(examples), n_pos, dtype=torch.bool)
    eq2 = torch.zeros_like(eq1)
    for row, (ex, start) in enumerate(zip(examples, answer_start.tolist())):
        match = _chain(row, ex)
        copy = 5 if match[5] == match[4] else 7
        eq1[row, start + match.start(4) : start + match.end(4)] = True
        eq2[row, start + match.start(copy) : start + match.end(copy)] = True
    return XSlots(eq1, eq2)


def _chain(row: int, example: Example) -> re.Match:
    match = TWO_EQUATIONS.fullmatch(example.answer)
    if match is None or match[4] not in (match[5], match[7]):
        raise ValueError(
            f"example {row}: answer {example.answer!r} is not a Countdown-3 chain a?b=X,X?c=T; "
            "the diagnostics need 3-operand problems with their canonical answers"
        )
    return match


# ----- the model probes ---------------------------------------------------------------------------
def _predictions(model: Transformer, x: Tensor, mode: str, mask_id: int) -> Tensor:
    """Shifted argmax ``[B, P]``: the model's token for every slot of ``x`` (``[MASK]`` never predicted)."""
    if mode == "arm":
        logits = diffusion.shift_logits(model(x, attention="causal")).float()
        logits[..., mask_id] = float("-inf")
        return logits.argmax(-1)
    return diffusion.denoiser_logprobs(model, x, mask_id).argmax(-1)


def _share(hit: Tensor, where: Tensor) -> float:
    return float(hit[where].float().mean()) if bool(where.any()) else 0.0


def _whole(hit: Tensor, where: Tensor) -> float:
    """Share of rows whose every ``where`` slot is a hit (rows without such slots do not count)."""
    rows = where.any(1)
    return float((hit | ~where).all(1)[rows].float().mean()) if bool(rows.any()) else 0.0


@torch.no_grad()
def probe_scores(model: Transformer, tokenizer: Tokenizer, examples: Sequence[Example],
                 mode: str | None = None) -> dict[str, float]:
    """``first_token``, ``x_digits``, ``x_number`` (and, for the MDM, ``x_digits_copy``) on the canonical answers."""
    check_task(examples, "countdown")
    for row, ex in enumerate(examples):
        _chain(row, ex)
    mode = decoding_mode(model, mode)
    enc = encode_examples(tokenizer, examples, CANVAS)
    slots = x_slots(examples, enc.answer_start, enc.ids.shape[1])
    rows = torch.arange(len(examples))
    first = torch.zeros_like(slots.eq1)
    first[rows, enc.answer_start] = True
    if mode == "arm":  # one teacher-forced pass: the first token and X's digits only see what precedes them
        hit = _predictions(model, enc.ids, mode, tokenizer.mask_id) == enc.ids
        return {"first_token": _share(hit, first), "x_digits": _share(hit, slots.eq1), "x_number": _whole(hit, slots.eq1)}
    blank = diffusion.answer_region(enc.answer_start, enc.ids.shape[1])
    out = {}
    for key, hidden, scored in (("first_token", blank, first), ("x_digits", slots.eq1 | slots.eq2, slots.eq1),
                                ("x_digits_copy", slots.eq1, slots.eq1)):
        canvas = enc.ids.masked_fill(hidden, tokenizer.mask_id)
        hit = _predictions(model, canvas, mode, tokenizer.mask_id) == enc.ids
        out[key] = _share(hit, scored)
        if key == "x_digits":
            out["x_number"] = _whole(hit, scored)
    return out


@torch.no_grad()
def decode_countdown(model: Transformer, tokenizer: Tokenizer, examples: Sequence[Example],
                     mode: str | None = None, decoder: str = "confidence", remask_steps: int = 20,
                     batch_size: int = 512) -> list[str]:
    """Each problem's decoded answer; ``decoder`` picks the MDM's sampler (see the module docstring)."""
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; use one of {DECODERS}")
    mode = decoding_mode(model, mode)
    if mode == "arm" or decoder == "confidence":
        return accuracy.countdown_answers(model, tokenizer, examples, mode, batch_size)
    answers: list[str] = []
    for lo in range(0, len(examples), batch_size):
        enc = encode_examples(tokenizer, examples[lo : lo + batch_size], CANVAS)
        out = diffusion.remask_sample(model, enc.ids, enc.answer_start, tokenizer.mask_id, steps=remask_steps).ids
        answers += accuracy.decode_answers(tokenizer, out, enc.answer_start)
    return answers


def countdown_diagnostics(model: Transformer, tokenizer: Tokenizer, examples: Sequence[Example],
                          mode: str | None = None, decoder: str = "confidence",
                          remask_steps: int = 20) -> dict[str, float]:
    """All diagnostics of the module docstring, as shares in ``[0, 1]``.

    Args:
        examples: held-out Countdown-3 problems with their canonical answers (``countdown.generate``).
        mode: ``"arm"`` or ``"mdm"``; None reads it from ``model.attention``.
        decoder: the MDM's decoder for the text scores, ``"confidence"`` or ``"remask"``.
        remask_steps: steps of the remasking decoder.
    """
    check_task(examples, "countdown")
    for row, ex in enumerate(examples):
        _chain(row, ex)
    answers = decode_countdown(model, tokenizer, examples, mode, decoder, remask_steps)
    scores = [answer_scores(ex.meta["numbers"], ex.meta["target"], a) for ex, a in zip(examples, answers)]
    out = {key: sum(s[key] for s in scores) / len(scores) for key in scores[0]}
    return {**out, **probe_scores(model, tokenizer, examples, mode)}


def test_problems(n: int = 200, seed: int = accuracy.TEST_SEED + 2) -> list[Example]:
    """Held-out Countdown-3 problems for the diagnostics (another seed than the zoo's accuracy sets)."""
    return countdown.generate(n, seed, "test", n_operands=3)


test_problems.__test__ = False  # not a pytest test, despite the name

__all__ = ["DECODERS", "KEYS", "XSlots", "answer_scores", "countdown_diagnostics", "decode_countdown",
           "equation_true", "probe_scores", "test_problems", "x_slots"]
