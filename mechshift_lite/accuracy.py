"""How well a model does the two tasks, on held-out (test split) problems.

* **IOI accuracy**: the share of prompts where ``logit[IO] > logit[S]`` at the readout position
  (the last prompt position, by the shift). The ARM reads ``[BOS] prompt``; the MDM reads the
  prompt followed by ``[MASK]`` up to the canvas, with bidirectional attention.
* **Countdown exact accuracy**: the share of problems whose decoded answer is a correct solution
  under ``countdown.check`` (any correct solution counts, not only the canonical one). The ARM
  decodes greedily; the MDM with the confidence sampler, one token per step.

Which way a model is read is its ``attention`` mode: ``"causal"`` = ARM, ``"bidirectional"`` = MDM
(what :func:`mechshift_lite.zoo.load` sets), unless ``mode`` says otherwise.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from . import diffusion
from .model import Transformer
from .tasks import CANVAS, Example, countdown, encode_examples, ioi, mdm_canvas
from .tokenizer import Tokenizer

MODES: tuple[str, ...] = ("arm", "mdm")
TEST_SEED = 1234  # seed of the held-out problems used for the zoo's accuracies


def decoding_mode(model: Transformer, mode: str | None) -> str:
    """``mode`` checked, or read from the model: ``"mdm"`` for bidirectional attention, else ``"arm"``."""
    if mode is None:
        return "mdm" if model.attention == "bidirectional" else "arm"
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} or None (read it from model.attention); got {mode!r}")
    return mode


def check_task(examples: Sequence[Example], task: str) -> None:
    """Raise a ValueError unless ``examples`` is non-empty and every example is of ``task``."""
    if not examples:
        raise ValueError(f"no {task} examples given")
    wrong = [i for i, ex in enumerate(examples) if ex.task != task]
    if wrong:
        raise ValueError(f"examples {wrong[:5]} are not {task!r} examples")


@torch.no_grad()
def greedy_generate(model: Transformer, ids: Tensor, answer_start: Tensor, eos_id: int) -> Tensor:
    """ARM greedy decoding on a fixed canvas: fill every slot from ``answer_start [B]`` on, left to right.

    ``ids [B, P]``: only the prompt part is read. Slot ``j`` gets the argmax of the causal logits at
    ``j - 1``; decoding stops once every row has written ``[EOS]`` (later slots keep what ``ids`` had).
    """
    x = ids.clone()
    done = torch.zeros(len(x), dtype=torch.bool)
    for j in range(int(answer_start.min()), x.shape[1]):
        active = (answer_start <= j) & ~done
        if not active.any():
            if done.all():
                break
            continue
        next_token = model(x[:, :j], attention="causal")[:, -1].argmax(-1)
        x[active, j] = next_token[active]
        done |= active & (next_token == eos_id)
    return x


def decode_answers(tokenizer: Tokenizer, ids: Tensor, answer_start: Tensor) -> list[str]:
    """The answer text of each row: the tokens from ``answer_start`` up to the first ``[EOS]``, joined with ``""``."""
    answers = []
    for row, start in zip(ids.tolist(), answer_start.tolist()):
        tail = row[start:]
        if tokenizer.eos_id in tail:
            tail = tail[: tail.index(tokenizer.eos_id)]
        answers.append(tokenizer.decode(tail, joiner=""))
    return answers


@torch.no_grad()
def countdown_answers(model: Transformer, tokenizer: Tokenizer, examples: Sequence[Example],
                      mode: str | None = None, batch_size: int = 512) -> list[str]:
    """Each problem's decoded answer: greedy (ARM) or confidence sampler, one token per step (MDM)."""
    check_task(examples, "countdown")
    mode = decoding_mode(model, mode)
    answers: list[str] = []
    for lo in range(0, len(examples), batch_size):
        enc = encode_examples(tokenizer, examples[lo : lo + batch_size], CANVAS)
        if mode == "arm":
            out = greedy_generate(model, enc.ids, enc.answer_start, tokenizer.eos_id)
        else:
            out = diffusion.confidence_sample(model, enc.ids, enc.answer_start, tokenizer.mask_id).ids
        answers += decode_answers(tokenizer, out, enc.answer_start)
    return answers


def countdown_accuracy(model: Transformer, tokenizer: Tokenizer, examples: Sequence[Example],
                       mode: str | None = None) -> float:
    """Share of Countdown problems solved exactly (``countdown.check`` on the decoded answer)."""
    answers = countdown_answers(model, tokenizer, examples, mode)
    solved = [countdown.check(ex.meta["numbers"], ex.meta["target"], a) for ex, a in zip(examples, answers)]
    return sum(solved) / len(solved)


@torch.no_grad()
def ioi_logit_diffs(model: Transformer, tokenizer: Tokenizer, examples: Sequence[Example],
                    mode: str | None = None) -> Tensor:
    """``logit[IO] - logit[S]`` ``[n]`` at the readout position of each IOI prompt."""
    check_task(examples, "ioi")
    ids, mask = tokenizer.batch_encode([ex.prompt for ex in examples])
    if decoding_mode(model, mode) == "arm":
        logits = model(ids, attention_mask=mask, attention="causal")
    else:
        logits = model(mdm_canvas(ids, mask, tokenizer), attention="bidirectional")
    readout = logits[torch.arange(len(ids)), mask.sum(1) - 1]               # [n, V]
    io = torch.tensor([tokenizer.token_id(ex.meta["io"]) for ex in examples])
    s = torch.tensor([tokenizer.token_id(ex.meta["s"]) for ex in examples])
    return readout.gather(1, io[:, None])[:, 0] - readout.gather(1, s[:, None])[:, 0]


def ioi_accuracy(model: Transformer, tokenizer: Tokenizer, examples: Sequence[Example],
                 mode: str | None = None) -> float:
    """Share of IOI prompts with ``logit[IO] > logit[S]`` at the readout position."""
    return float((ioi_logit_diffs(model, tokenizer, examples, mode) > 0).float().mean())


def test_sets(n_ioi: int, n_countdown: int, seed: int = TEST_SEED) -> tuple[list[Example], list[Example]]:
    """Held-out IOI and Countdown-3 problems (test splits)."""
    return ioi.generate(n_ioi, seed, "test"), countdown.generate(n_countdown, seed, "test", n_operands=3)


def measure(model: Transformer, tokenizer: Tokenizer, n_ioi: int = 1000, n_countdown: int = 500,
            seed: int = TEST_SEED, mode: str | None = None) -> dict[str, float]:
    """Both accuracies on fresh held-out sets: ``{"ioi_accuracy": ..., "countdown3_accuracy": ...}``."""
    ioi_set, cd_set = test_sets(n_ioi, n_countdown, seed)
    return {
        "ioi_accuracy": ioi_accuracy(model, tokenizer, ioi_set, mode),
        "countdown3_accuracy": countdown_accuracy(model, tokenizer, cd_set, mode),
    }
