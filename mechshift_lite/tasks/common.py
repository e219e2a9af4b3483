"""What every task shares: examples, the train/test hold-out, encoding, clean/corrupted pairs, metrics.

Two views of one example, both fitting a fixed canvas of ``CANVAS`` tokens:

* **training sequence** (:func:`encode_examples`): ``[BOS] prompt answer [EOS] [PAD] ...``;
* **attribution inputs** (:class:`TaskPairs`): the prompt alone for the ARM (``[BOS] prompt``,
  right-padded), or the prompt followed by ``[MASK]`` up to the canvas for the MDM
  (:func:`mdm_canvas`).

Readout convention (the shift, as in Dream and DiffuLLaMA): the logits at position ``i`` predict
token ``i + 1``, for the ARM and the MDM alike. So the first answer token is read at the last
prompt position, ``answer_start - 1``, and both models are read at the same place.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..tokenizer import Tokenizer

CANVAS = 40
"""Length in tokens of every training sequence and of every MDM input (both tasks)."""

TEST_PERCENT = 10
"""Share of all possible problems (in percent, chosen by hash) that belongs to the test split."""

SPLITS = ("train", "test")

Metric = Callable[..., Tensor]


@dataclass(frozen=True)
class Example:
    """One problem. The training text is ``prompt`` then ``answer``.

    Attributes:
        prompt: e.g. ``"Then, Mary and John went to the store. John gave a drink to"`` or
            ``"15,44,79,50 [SEP]"``.
        answer: e.g. ``"Mary"`` or ``"44-15=29,79-29=50"``.
        task: ``"ioi"`` or ``"countdown"``.
        meta: the problem's parameters (names, template, numbers, target...).
    """

    prompt: str
    answer: str
    task: str
    meta: dict = field(default_factory=dict)


def split_of(key: str) -> str:
    """The split (``"train"`` or ``"test"``) of the problem identified by ``key``.

    A stable hash (CRC-32, the same on every machine and Python version) decides, so a problem
    is in the same split whatever seed or sample size generated it: no seed can leak test
    problems into training.
    """
    return "test" if zlib.crc32(key.encode("utf-8")) % 100 < TEST_PERCENT else "train"


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")


def sample_unique(draw: Callable[[random.Random, str], Example], key: Callable[[Example], str],
                  n: int, seed: int, split: str) -> list[Example]:
    """``n`` distinct examples of ``split``, drawn with ``draw(rng, split)`` from ``random.Random(seed)``.

    ``key(example)`` is the problem's identity: its hash decides the split (:func:`split_of`)
    and two examples with the same key are the same problem (kept once). ``draw`` may already
    aim at ``split`` (to skip work on problems of the other split); those that miss are dropped.
    """
    check_split(split)
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    rng = random.Random(seed)
    chosen: dict[str, Example] = {}
    misses, max_misses = 0, 1000 + 100 * n
    progress = tqdm(total=n, desc=f"{split} problems", disable=n < 5000)
    while len(chosen) < n:
        example = draw(rng, split)
        k = key(example)
        if split_of(k) != split or k in chosen:
            misses += 1
            if misses > max_misses:
                raise ValueError(
                    f"found only {len(chosen)} distinct {split} problems after {misses} draws, "
                    f"fewer than the {n} asked for; ask for fewer examples"
                )
            continue
        chosen[k] = example
        progress.update()
    progress.close()
    return list(chosen.values())


# ----- training sequences -------------------------------------------------------------------------
@dataclass
class EncodedExamples:
    """Training sequences ``[BOS] prompt answer [EOS] [PAD] ...``.

    Attributes:
        ids: ``[batch, length]`` long.
        answer_start: ``[batch]`` index of the first answer token (right after the prompt).
        answer_end: ``[batch]`` index of the ``[EOS]`` token.
    """

    ids: Tensor
    answer_start: Tensor
    answer_end: Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]


def encode_examples(tokenizer: Tokenizer, examples: Sequence[Example], length: int = CANVAS) -> EncodedExamples:
    """Encode ``examples`` as training sequences of exactly ``length`` tokens (see :class:`EncodedExamples`)."""
    ids = torch.full((len(examples), length), tokenizer.pad_id, dtype=torch.long)
    starts, ends = [], []
    for i, ex in enumerate(examples):
        prompt = tokenizer.encode(ex.prompt, bos=True)
        answer = tokenizer.encode(ex.answer, bos=False)
        if not answer:
            raise ValueError(f"example {i} has an empty answer: {ex!r}")
        row = [*prompt, *answer, tokenizer.eos_id]
        if len(row) > length:
            raise ValueError(
                f"example {i} needs {len(row)} tokens ([BOS] prompt answer [EOS]) but the canvas has "
                f"{length}: {ex.prompt!r} -> {ex.answer!r}. Pass a larger length."
            )
        ids[i, : len(row)] = torch.tensor(row)
        starts.append(len(prompt))
        ends.append(len(row) - 1)
    return EncodedExamples(ids, torch.tensor(starts, dtype=torch.long), torch.tensor(ends, dtype=torch.long))


# ----- metrics ------------------------------------------------------------------------------------
def logit_diff(pos: Sequence[int] | Tensor, good: Sequence[int] | Tensor, bad: Sequence[int] | Tensor) -> Metric:
    """A metric ``metric(logits, rows=None) -> [batch]``: ``logits[b, pos[b], good[b]] - logits[b, pos[b], bad[b]]``.

    Args:
        pos, good, bad: ``[n_examples]`` readout position, token to push up, token to push down.

    The returned metric takes ``logits [batch, pos, vocab]``. When the caller splits the examples
    into chunks it passes ``rows``, the chunk's example indices (``LongTensor [batch]``), and the
    metric reads ``pos``, ``good`` and ``bad`` at those rows. (At one position a logit difference
    equals the log-probability difference: the normaliser cancels.)
    """
    pos, good, bad = (torch.as_tensor(t, dtype=torch.long) for t in (pos, good, bad))
    if not (pos.dim() == good.dim() == bad.dim() == 1 and len(pos) == len(good) == len(bad)):
        raise ValueError(
            f"pos, good and bad must be 1-D with one entry per example; got shapes "
            f"{tuple(pos.shape)}, {tuple(good.shape)}, {tuple(bad.shape)}"
        )

    def metric(logits: Tensor, rows: Tensor | None = None) -> Tensor:
        idx = torch.arange(len(pos)) if rows is None else torch.as_tensor(rows, dtype=torch.long).cpu()
        if logits.dim() != 3:
            raise ValueError(f"logits must be [batch, pos, vocab]; got shape {tuple(logits.shape)}")
        if logits.shape[0] != len(idx):
            what = "rows" if rows is not None else "examples this metric was built for"
            raise ValueError(
                f"logits have batch size {logits.shape[0]} but there are {len(idx)} {what}; "
                "pass rows= (the example indices of this chunk) when the batch is a chunk"
            )
        p, g, b = pos[idx], good[idx], bad[idx]
        if len(p) and int(p.max()) >= logits.shape[1]:
            raise ValueError(f"readout position {int(p.max())} is outside logits with {logits.shape[1]} positions")
        at = logits[torch.arange(len(idx), device=logits.device), p.to(logits.device)]  # [batch, vocab]
        return at.gather(1, g.to(logits.device)[:, None])[:, 0] - at.gather(1, b.to(logits.device)[:, None])[:, 0]

    return metric


# ----- attribution inputs -------------------------------------------------------------------------
def mdm_canvas(ids: Tensor, attention_mask: Tensor | None, tokenizer: Tokenizer, canvas: int = CANVAS) -> Tensor:
    """MDM inputs: each row's real tokens (``[BOS] prompt``) then ``[MASK]`` up to ``canvas``.

    Args:
        ids: ``[batch, pos]`` right-padded prompts; ``attention_mask`` ``[batch, pos]`` (1 = real)
            or None when every row is real to the end.

    Returns:
        ``[batch, canvas]``; every position is a real token (no padding), so no attention mask is
        needed. Positions are unchanged, so the readout position is the ARM's.
    """
    mask = torch.ones_like(ids) if attention_mask is None else attention_mask.to(torch.long)
    if mask.shape != ids.shape:
        raise ValueError(f"attention_mask shape {tuple(mask.shape)} differs from ids shape {tuple(ids.shape)}")
    lengths = mask.sum(1)
    if not torch.equal(mask, (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()):
        raise ValueError("attention_mask must be right padding: ones, then zeros, in every row")
    if len(lengths) and int(lengths.max()) >= canvas:
        raise ValueError(
            f"a prompt of {int(lengths.max())} tokens leaves no [MASK] slot in a canvas of {canvas}; use a larger canvas"
        )
    out = torch.full((ids.shape[0], canvas), tokenizer.mask_id, dtype=torch.long)
    width = min(ids.shape[1], canvas)
    real = mask[:, :width].bool()
    out[:, :width][real] = ids[:, :width][real]
    return out


@dataclass
class TaskPairs:
    """Clean/corrupted prompt pairs for attribution, with the readout of the metric.

    Attributes:
        clean_ids, corrupted_ids: ``[batch, pos]`` ``[BOS] prompt``, right-padded to the longest
            prompt of the batch; the two prompts of a pair have the same length, so one mask serves both.
        attention_mask: ``[batch, pos]`` (1 = real token) or None when no row is padded.
        readout_pos: ``[batch]`` the last prompt position, where the first answer token is read.
        answer_ids: ``[batch]`` the token the clean prompt should produce there.
        distractor_ids: ``[batch]`` the token it is contrasted with.
        examples: the clean examples; corrupted_examples: the corrupted prompts with their own answers.
        answer_start: ``[batch]`` the first slot an MDM's canvas masks, or None for the slot after
            the readout. A decision read after a teacher-forced answer prefix (Countdown's
            intermediate result, :func:`~mechshift_lite.tasks.countdown.make_x_pairs`) sets it to the
            end of the prompt: the ARM reads the prefix, the MDM's canvas masks it (and commits its own).
    """

    clean_ids: Tensor
    corrupted_ids: Tensor
    attention_mask: Tensor | None
    readout_pos: Tensor
    answer_ids: Tensor
    distractor_ids: Tensor
    examples: list[Example]
    corrupted_examples: list[Example]
    answer_start: Tensor | None = None

    def __len__(self) -> int:
        return self.clean_ids.shape[0]

    @property
    def mdm_answer_start(self) -> Tensor:
        """``[batch]`` the first slot an MDM's canvas masks (see ``answer_start``)."""
        return self.readout_pos + 1 if self.answer_start is None else self.answer_start

    def metric(self) -> Metric:
        """``logit[answer] - logit[distractor]`` at the readout position (see :func:`logit_diff`)."""
        return logit_diff(self.readout_pos, self.answer_ids, self.distractor_ids)

    def to_mdm(self, tokenizer: Tokenizer, canvas: int = CANVAS) -> "TaskPairs":
        """The same pairs as MDM inputs: prompt then ``[MASK]`` up to ``canvas`` (:func:`mdm_canvas`)."""
        return replace(
            self,
            clean_ids=mdm_canvas(self.clean_ids, self.attention_mask, tokenizer, canvas),
            corrupted_ids=mdm_canvas(self.corrupted_ids, self.attention_mask, tokenizer, canvas),
            attention_mask=None,
        )

    def select(self, rows: Sequence[int] | Tensor) -> "TaskPairs":
        """The pairs at ``rows`` (e.g. the examples every model gets right), padding trimmed."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        mask = None if self.attention_mask is None else self.attention_mask[rows]
        width = self.clean_ids.shape[1] if mask is None or len(rows) == 0 else int(mask.sum(1).max())
        return TaskPairs(
            clean_ids=self.clean_ids[rows, :width],
            corrupted_ids=self.corrupted_ids[rows, :width],
            attention_mask=None if mask is None or bool(mask[:, :width].all()) else mask[:, :width],
            readout_pos=self.readout_pos[rows],
            answer_ids=self.answer_ids[rows],
            distractor_ids=self.distractor_ids[rows],
            examples=[self.examples[i] for i in rows.tolist()],
            corrupted_examples=[self.corrupted_examples[i] for i in rows.tolist()],
            answer_start=None if self.answer_start is None else self.answer_start[rows],
        )


def build_pairs(tokenizer: Tokenizer, examples: Sequence[Example], corrupted: Sequence[Example],
                answers: Sequence[str], distractors: Sequence[str]) -> TaskPairs:
    """Encode clean and corrupted prompts into a :class:`TaskPairs` (shared by the task modules).

    ``answers[i]`` and ``distractors[i]`` are token strings; each must be one token.
    """
    if not examples:
        raise ValueError("no examples to build pairs from")
    clean_ids, mask = tokenizer.batch_encode([ex.prompt for ex in examples])
    corrupted_ids, corrupted_mask = tokenizer.batch_encode([ex.prompt for ex in corrupted])
    if not torch.equal(mask, corrupted_mask):
        bad = int((mask != corrupted_mask).any(1).nonzero()[0])
        raise ValueError(
            f"pair {bad} has prompts of different token lengths: {examples[bad].prompt!r} vs "
            f"{corrupted[bad].prompt!r}; clean and corrupted prompts must align token by token"
        )
    return TaskPairs(
        clean_ids=clean_ids,
        corrupted_ids=corrupted_ids,
        attention_mask=None if bool(mask.all()) else mask,
        readout_pos=mask.sum(1) - 1,
        answer_ids=torch.tensor([tokenizer.token_id(t) for t in answers], dtype=torch.long),
        distractor_ids=torch.tensor([tokenizer.token_id(t) for t in distractors], dtype=torch.long),
        examples=list(examples),
        corrupted_examples=list(corrupted),
    )
