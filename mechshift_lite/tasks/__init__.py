"""The two toy tasks, IOI (local) and Countdown (global planning), and what they share.

>>> from mechshift_lite import tasks
>>> tok = tasks.build_tokenizer()
>>> train = tasks.training_mixture(1000, seed=0)            # 50/50 IOI / Countdown-3
>>> batch = tasks.encode_examples(tok, train)              # [BOS] prompt answer [EOS] [PAD]...
>>> pairs = tasks.ioi.make_pairs(tok, tasks.ioi.generate(8, seed=0, split="test"))
>>> metric = pairs.metric()                                # logit[IO] - logit[S] at the readout
"""

from __future__ import annotations

import random

from ..tokenizer import Tokenizer
from . import countdown, ioi
from .common import (
    CANVAS,
    EncodedExamples,
    Example,
    TaskPairs,
    encode_examples,
    logit_diff,
    mdm_canvas,
    split_of,
)


def build_tokenizer() -> Tokenizer:
    """The one vocabulary of both tasks: special tokens, Countdown's digits and symbols, IOI's words.

    The order is fixed by the task modules, so the ids are the same on every machine.
    """
    return Tokenizer.from_words([*countdown.words(), *ioi.words()])


def training_mixture(n: int, seed: int) -> list[Example]:
    """``n`` training examples, half IOI and half Countdown-3 (train splits), shuffled with ``seed``."""
    n_ioi = n // 2
    mixture = ioi.generate(n_ioi, seed, "train") + countdown.generate(n - n_ioi, seed, "train", n_operands=3)
    random.Random(seed).shuffle(mixture)
    return mixture


__all__ = [
    "CANVAS", "EncodedExamples", "Example", "TaskPairs", "build_tokenizer", "countdown", "encode_examples",
    "ioi", "logit_diff", "mdm_canvas", "split_of", "training_mixture",
]
