"""IOI and Countdown pairs for HuggingFace tokenizers, to attribute real checkpoints.

The toy tasks (:mod:`mechshift_lite.tasks`) speak the word-level toy tokenizer. Real models
(GPT-2, Qwen2.5 / Dream, LLaMA-2 / DiffuLLaMA) read subword tokens, so three things change:

* **Names must be one token.** IOI compares ``logit[" Mary"] - logit[" John"]`` at one position,
  so only names that the tokenizer writes as a single token after a word are used
  (:func:`single_token_names`; the EAP-IG reference filters its 100 names the same way).
* **Clean and corrupted prompts must align token by token.** Pairs whose two prompts have
  different token lengths are dropped and counted (:attr:`HFTaskPairs.dropped`).
* **Where the answer starts is decided by the tokenizer** (:func:`split_continuation`). The
  prompt is encoded together with its answer, and the answer's first token is the first one
  after the prompt's tokens. Tokens made only of white space (Qwen's and LLaMA's tokenizers write
  the space before a digit as a token of its own) are moved into the prompt: the readout is
  the position that predicts the first *visible* answer token. This also handles SentencePiece
  tokenizers (LLaMA-2), where ``encode(" Mary")`` is ``["▁", "▁Mary"]`` on its own but
  ``"to Mary"`` is ``["▁to", "▁Mary"]``.

The readout is the last prompt position, for the ARM and, with the shift (position ``i``
predicts token ``i + 1``), for the MDM; :func:`mdm_view` appends the MDM's mask tokens after the
prompt without moving it. The pairs are :class:`~mechshift_lite.tasks.common.TaskPairs`, so
``pairs.metric()`` and ``ml.attribute`` work as in the toy chapters.

Prompts are encoded with the tokenizer's own special tokens (LLaMA's tokenizer adds ``<s>``,
GPT-2's and Qwen's add nothing). The last section builds offline stand-ins (a byte-level BPE
tokenizer and tiny random GPT-2 / Qwen2 / LLaMA models) so the book and the tests run the same
code without downloading anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Sequence

import torch

from .tasks import countdown, ioi
from .tasks.common import Example, TaskPairs, mdm_canvas

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

COUNTDOWN_SHOTS = 8
"""In-context examples in the Countdown prompt (Dream's evaluation uses 8)."""

_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


@dataclass
class HFTaskPairs(TaskPairs):
    """:class:`TaskPairs` encoded with a HuggingFace tokenizer, plus what had to be dropped.

    Attributes:
        dropped: ``{reason: count}`` of the drawn problems that did not become pairs, e.g.
            ``{"prompts of different token lengths": 3}``; empty when every problem was kept.
    """

    dropped: dict[str, int] = field(default_factory=dict)


# ----- tokenization -------------------------------------------------------------------------------
def _check_tokenizer(tokenizer) -> None:
    from transformers import PreTrainedTokenizerBase

    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise TypeError(
            f"expected a HuggingFace tokenizer (PreTrainedTokenizerBase), got {type(tokenizer).__name__}; "
            "for the toy word-level Tokenizer use tasks.ioi.make_pairs / tasks.countdown.make_pairs"
        )


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=True))


def split_continuation(tokenizer: PreTrainedTokenizerBase, prompt: str, continuation: str) -> tuple[list[int], list[int]] | None:
    """Token ids of ``prompt`` and of the ``continuation`` written right after it.

    Both are read from one encoding of ``prompt + continuation``, so the continuation's tokens
    are those the model would see (or produce) there. Leading continuation tokens that decode to
    white space only are moved to the end of the prompt (see the module docstring).

    Returns:
        ``(prompt_ids, continuation_ids)``, or None when the tokenizer merges the end of the
        prompt with the start of the continuation (no clean boundary to read at).
    """
    prompt_ids = _encode(tokenizer, prompt)
    full = _encode(tokenizer, prompt + continuation)
    if full[: len(prompt_ids)] != prompt_ids:
        return None
    rest = full[len(prompt_ids):]
    while rest and not tokenizer.decode(rest[:1]).strip():
        prompt_ids.append(rest.pop(0))
    return prompt_ids, rest


def single_token_names(tokenizer: PreTrainedTokenizerBase, names: Sequence[str] = ioi.NAMES) -> dict[str, int]:
    """``{name: token id}`` of the ``names`` that are one token after a word, as in ``"... to Mary"``.

    For byte-level BPE tokenizers (GPT-2, Qwen) this is ``len(tokenizer.encode(" " + name)) == 1``;
    reading the name after a word also gets SentencePiece tokenizers (LLaMA) right. Names that
    map to the unknown token are excluded.
    """
    _check_tokenizer(tokenizer)
    found = {}
    for name in names:
        split = split_continuation(tokenizer, "to", " " + name)
        if split is not None and len(split[1]) == 1 and split[1][0] != tokenizer.unk_token_id:
            found[name] = split[1][0]
    return found


# ----- building pairs ------------------------------------------------------------------------------
_DROP_REASONS = ("tokens merge across the prompt/answer boundary", "answer and distractor start at different positions",
                 "prompts of different token lengths", "answer and distractor are the same token")


@dataclass
class _Row:
    """One pair before batching: prompt ids of both sides, the contrasted tokens, the examples."""

    clean: list[int]
    corrupted: list[int]
    answer: int
    distractor: int
    example: Example
    corrupted_example: Example


def _batch(tokenizer: PreTrainedTokenizerBase, rows: list[_Row], dropped: dict[str, int]) -> HFTaskPairs:
    """Right-pad the rows into :class:`HFTaskPairs` (readout = last prompt position)."""
    if not rows:
        raise ValueError(f"no pair survived for this tokenizer (dropped: {dropped}); draw more problems or change the tokenizer")
    pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    lengths = torch.tensor([len(row.clean) for row in rows])
    width = int(lengths.max())
    clean = torch.full((len(rows), width), pad, dtype=torch.long)
    corrupted = clean.clone()
    for i, row in enumerate(rows):
        clean[i, : len(row.clean)] = torch.tensor(row.clean)
        corrupted[i, : len(row.corrupted)] = torch.tensor(row.corrupted)
    mask = (torch.arange(width)[None] < lengths[:, None]).long()
    return HFTaskPairs(
        clean_ids=clean,
        corrupted_ids=corrupted,
        attention_mask=None if bool(mask.all()) else mask,
        readout_pos=lengths - 1,
        answer_ids=torch.tensor([row.answer for row in rows]),
        distractor_ids=torch.tensor([row.distractor for row in rows]),
        examples=[row.example for row in rows],
        corrupted_examples=[row.corrupted_example for row in rows],
        dropped={reason: count for reason, count in dropped.items() if count},
    )


def _make_row(tokenizer, example: Example, corrupted: Example, distractor: str, dropped: dict[str, int]) -> _Row | None:
    """Encode one pair, or return None and count why it cannot be one.

    The answer and the ``distractor`` (a text such as ``"John"``) are both read right after the
    clean prompt; the corrupted prompt is split before its own answer.
    """
    good = split_continuation(tokenizer, example.prompt, " " + example.answer)
    bad = split_continuation(tokenizer, example.prompt, " " + distractor)
    other = split_continuation(tokenizer, corrupted.prompt, " " + corrupted.answer)
    if any(split is None or not split[1] for split in (good, bad, other)):
        dropped["tokens merge across the prompt/answer boundary"] += 1
    elif good[0] != bad[0]:   # one of them starts with a white-space token, the other does not
        dropped["answer and distractor start at different positions"] += 1
    elif len(good[0]) != len(other[0]):
        dropped["prompts of different token lengths"] += 1
    elif good[1][0] == bad[1][0]:
        dropped["answer and distractor are the same token"] += 1
    else:
        return _Row(good[0], other[0], good[1][0], bad[1][0], example, corrupted)
    return None


def ioi_pairs(
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    seed: int = 0,
    split: str = "test",
    corruption: str = "ABC",
    names: Sequence[str] = ioi.NAMES,
) -> HFTaskPairs:
    """IOI clean/corrupted pairs for a HuggingFace tokenizer (same templates as :mod:`tasks.ioi`).

    Draws ``n`` problems using only the ``names`` that are single tokens (:func:`single_token_names`),
    corrupts them (``"ABC"``: S2 becomes a third name; ``"flipped"``: S2 becomes IO) and drops the
    pairs that do not align token by token. ``answer_ids`` = `` IO``, ``distractor_ids`` = `` S``,
    read at the last prompt position.
    """
    _check_tokenizer(tokenizer)
    usable = list(single_token_names(tokenizer, names))
    needed = 3 if corruption == "ABC" else 2
    if len(usable) < needed:
        raise ValueError(
            f"only {len(usable)} of the {len(names)} names are single tokens for this tokenizer ({usable}); "
            f"the {corruption!r} corruption needs {needed}. Pass names= with names the tokenizer reads as one "
            "token after a space (check with real_tasks.single_token_names)"
        )
    dropped = dict.fromkeys(_DROP_REASONS, 0)
    rows = []
    for example in ioi.generate(n, seed, split, names=usable):
        corrupted = ioi.corrupt(example, corruption, seed, names=usable)
        row = _make_row(tokenizer, example, corrupted, example.meta["s"], dropped)
        rows += [row] if row is not None else []
    return _batch(tokenizer, rows, dropped)


def countdown_prompt(numbers: Sequence[int], target: int, shots: Sequence[Example]) -> str:
    """The Countdown prompt in the format Dream evaluated pretrained models with (Ye et al.'s data)::

        Given 4 numbers, use +-*/ to operate over the first three numbers to achieve the last number.

        Input: 15,44,79,50
        Output: 44-15=29,79-29=50

        Input: 12,7,3,61
        Output:

    ``shots`` are solved Countdown examples (:func:`tasks.countdown.generate`) shown first; the answer
    continues the prompt after a space (Dream's template ends with ``"Output: "``; here the space
    belongs to the answer so that tokenizers merging it into the number, like GPT-2's, read it there).
    """
    n = len(numbers)
    head = (f"Given {n + 1} numbers, use +-*/ to operate over the first {_NUMBER_WORDS.get(n, n)} numbers "
            "to achieve the last number.\n\n")
    blocks = [f"Input: {_countdown_input(ex.meta['numbers'], ex.meta['target'])}\nOutput: {ex.answer}" for ex in shots]
    return head + "".join(block + "\n\n" for block in blocks) + f"Input: {_countdown_input(numbers, target)}\nOutput:"


def _countdown_input(numbers: Sequence[int], target: int) -> str:
    return ",".join(str(x) for x in (*numbers, target))


def countdown_pairs(
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    seed: int = 0,
    split: str = "test",
    n_operands: int = 3,
    n_shots: int = COUNTDOWN_SHOTS,
) -> HFTaskPairs:
    """Countdown clean/corrupted pairs for a HuggingFace tokenizer, in Dream's few-shot format.

    Draws ``n`` problems of ``split`` (:func:`tasks.countdown.generate`) and ``n_shots`` solved
    problems of the *train* split as in-context examples (the same shots in every prompt). The
    corrupted prompt changes only the query's target (:func:`tasks.countdown.corrupted_target`), so
    the canonical answer starts differently. ``answer_ids`` / ``distractor_ids`` are the first
    visible tokens of the clean / corrupted answers, read at the last prompt position. Problems
    without a corrupted target, or whose pairs do not align token by token, are dropped and counted.
    """
    _check_tokenizer(tokenizer)
    if isinstance(n_shots, bool) or not isinstance(n_shots, int) or n_shots < 0:
        raise ValueError(f"n_shots must be an integer >= 0; got {n_shots!r}")
    shots = countdown.generate(n_shots, seed, "train", n_operands) if n_shots else []
    dropped = dict.fromkeys(("no corrupted target", *_DROP_REASONS), 0)
    rows = []
    for problem in countdown.generate(n, seed, split, n_operands):
        if not countdown.pairable(problem):
            dropped["no corrupted target"] += 1
            continue
        clean, corrupted = (_few_shot(ex, shots) for ex in (problem, countdown.corrupt(problem, seed)))
        row = _make_row(tokenizer, clean, corrupted, corrupted.answer, dropped)
        rows += [row] if row is not None else []
    return _batch(tokenizer, rows, dropped)


def _few_shot(problem: Example, shots: Sequence[Example]) -> Example:
    """A toy Countdown example rewritten with the few-shot prompt."""
    numbers, target = problem.meta["numbers"], problem.meta["target"]
    prompt = countdown_prompt(numbers, target, shots)
    return Example(prompt=prompt, answer=problem.answer, task="countdown", meta={**problem.meta, "n_shots": len(shots)})


@dataclass(frozen=True)
class _MaskToken:
    """What :func:`tasks.common.mdm_canvas` reads from a tokenizer: the mask id."""

    mask_id: int


def mdm_view(pairs: TaskPairs, mask_token_id: int, n_mask: int) -> TaskPairs:
    """The pairs as MDM inputs: each prompt followed by mask tokens (at least ``n_mask``).

    Args:
        pairs: ARM pairs (right-padded prompts).
        mask_token_id: the MDM's mask token, e.g. ``HUB_MODELS["Dream-org/Dream-v0-Base-7B"].mask_token_id``.
        n_mask: mask slots after the longest prompt (the answer's length is a good choice: 1 for
            IOI, about 20 for Countdown-3 with digit tokens). Shorter prompts get more, so no row is padded.

    Returns:
        ``[batch, longest prompt + n_mask]`` inputs with no attention mask; the readout position is
        unchanged (the shift: the last prompt position predicts the first mask slot).
    """
    if isinstance(n_mask, bool) or not isinstance(n_mask, int) or n_mask < 1:
        raise ValueError(f"n_mask must be an integer >= 1 (mask slots after the prompt); got {n_mask!r}")
    canvas = pairs.clean_ids.shape[1] + n_mask
    token = _MaskToken(int(mask_token_id))
    return replace(
        pairs,
        clean_ids=mdm_canvas(pairs.clean_ids, pairs.attention_mask, token, canvas),
        corrupted_ids=mdm_canvas(pairs.corrupted_ids, pairs.attention_mask, token, canvas),
        attention_mask=None,
    )


def to_device(pairs: TaskPairs, device: torch.device | str) -> TaskPairs:
    """The pairs with the model inputs (``clean_ids``, ``corrupted_ids``, ``attention_mask``) on ``device``,
    e.g. the GPU the model is on; the readout and token ids the metric indexes with stay where they are."""
    move = lambda t: None if t is None else t.to(device)
    return replace(pairs, clean_ids=move(pairs.clean_ids), corrupted_ids=move(pairs.corrupted_ids),
                   attention_mask=move(pairs.attention_mask))
