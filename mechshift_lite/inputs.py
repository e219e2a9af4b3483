"""What a model reads: clean and corrupted token ids, their padding mask, the attention, the readout.

One :class:`ModelInputs` travels from the task pairs to every analysis: :func:`~mechshift_lite.attribute`,
:func:`~mechshift_lite.evaluate`, :func:`~mechshift_lite.faithfulness_curve`, the lens, the neurons
and the ablations all accept it in place of their ``clean_ids, corrupted_ids, attention_mask,
attention`` arguments.

:meth:`ModelInputs.from_pairs` builds the view of one model (the same readout positions for
every model, thanks to the shift):

* ARM (causal model): ``[BOS] prompt``, right-padded, with causal attention;
* MDM (any other model): ``[BOS] prompt [MASK] ... [MASK]`` (the canvas) with bidirectional
  attention. At diffusion step ``k > 0`` the clean canvas holds the first ``k`` tokens the MDM's
  own confidence decoding committed, and the corrupted canvas gets *the same tokens at the same
  positions*: clean and corrupted share the mask configuration and the diffusion state, and
  differ only in the prompt. The first answer slot, whose prediction the metric reads, is never
  committed (decoding goes on around it), so every step explains the same decision.

  Copying the clean run's tokens leaks the clean target into the corrupted input (issue 11).
  With ``corrupted_commits="own"`` the corrupted canvas keeps the clean canvas's masked positions
  but holds the tokens the model's own confidence decoding commits *for the corrupted prompt* at
  those positions (decoding restricted to the slots the clean run committed); ``"clean"`` (the
  default) is the former, leaking canvas.

  :meth:`ModelInputs.before_commit` puts each example at its own step: the canvas one step before
  the model's free decoding would commit the explained slot (issue 11: a step where the decision
  is about to be made, not one that commits padding), the corrupted canvas with its own commits.

A decision read after a teacher-forced answer prefix (``TaskPairs.answer_start`` set: Countdown's
intermediate result) gives the ARM the prefix and the MDM a canvas masked from the end of the
prompt: the MDM reads only what it commits itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from . import diffusion
from .model import AttentionMode, Hooks, Transformer
from .tasks.common import Metric, logit_diff

if TYPE_CHECKING:
    from .tasks.common import TaskPairs
    from .tokenizer import Tokenizer


CORRUPTED_COMMITS = ("clean", "own")
"""What the corrupted MDM canvas holds at a diffusion step > 0 (module docstring)."""


@dataclass(frozen=True)
class ModelInputs:
    """Clean and corrupted inputs of one set of examples, how the model attends over them, and
    (when built from task pairs) where the answer is read.

    Attributes:
        clean_ids, corrupted_ids: ``[N, P]`` token ids of one shape (example ``i`` of each forms a pair).
        attention_mask: ``[N, P]`` (1 = real token, 0 = padding) or None; used for both runs.
        attention: the model's ``attention=`` argument: None, ``"causal"``, ``"bidirectional"``,
            a bool ``[P, P]`` mask shared by all examples or a bool ``[N, P, P]`` mask per example.
        readout_pos, answer_ids, distractor_ids: ``[N]`` the readout position, the clean answer
            token and the token it is contrasted with (None for bare ids).
    """

    clean_ids: Tensor
    corrupted_ids: Tensor
    attention_mask: Tensor | None = None
    attention: AttentionMode | Tensor | None = None
    readout_pos: Tensor | None = None
    answer_ids: Tensor | None = None
    distractor_ids: Tensor | None = None

    def __post_init__(self) -> None:
        for name, ids in (("clean_ids", self.clean_ids), ("corrupted_ids", self.corrupted_ids)):
            if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
                got = f"shape {tuple(ids.shape)}, dtype {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
                raise ValueError(f"{name} must be a 2-D integer tensor [batch, pos]; got {got}")
        if self.clean_ids.shape != self.corrupted_ids.shape:
            raise ValueError(
                f"clean_ids {tuple(self.clean_ids.shape)} and corrupted_ids {tuple(self.corrupted_ids.shape)} must have "
                "the same shape [batch, pos]: pair every clean example with one corrupted example of the same length "
                "(pad both to one length and pass attention_mask)"
            )
        if self.clean_ids.shape[0] == 0:
            raise ValueError("no examples: clean_ids has batch size 0")
        if self.attention_mask is not None and tuple(self.attention_mask.shape) != tuple(self.clean_ids.shape):
            raise ValueError(
                f"attention_mask must have the shape of clean_ids {tuple(self.clean_ids.shape)} (1 = real token, "
                f"0 = padding; it is used for both runs); got {tuple(self.attention_mask.shape)}"
            )
        for name in ("readout_pos", "answer_ids", "distractor_ids"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (self.n_examples,):
                raise ValueError(f"{name} must have shape [batch] = ({self.n_examples},); got {tuple(value.shape)}")

    # ----- building ---------------------------------------------------------------------------
    @classmethod
    def from_pairs(cls, model: Transformer, pairs: "TaskPairs", tokenizer: "Tokenizer", step: int = 0,
                   corrupted_commits: str = "clean") -> "ModelInputs":
        """``model``'s view of the task pairs: the ARM view (prompt, causal) for a causal model, else
        the MDM view (canvas at diffusion ``step``, bidirectional); see the module docstring
        (``corrupted_commits``: ``"clean"`` or ``"own"``, what the corrupted canvas holds at ``step > 0``)."""
        if corrupted_commits not in CORRUPTED_COMMITS:
            raise ValueError(f"corrupted_commits must be one of {CORRUPTED_COMMITS}; got {corrupted_commits!r}")
        if model.attention == "causal":
            return cls(pairs.clean_ids, pairs.corrupted_ids, pairs.attention_mask, "causal", **_readout(pairs))
        return cls.diffusion_views(model, pairs, tokenizer, [step], (corrupted_commits,))[step, corrupted_commits]

    @classmethod
    def diffusion_views(cls, model: Transformer, pairs: "TaskPairs", tokenizer: "Tokenizer", steps: Sequence[int],
                        corrupted_commits: Sequence[str] = CORRUPTED_COMMITS) -> "dict[tuple[int, str], ModelInputs]":
        """An MDM's views of the pairs at several diffusion ``steps``: ``{(step, commits): inputs}``,
        each equal to :meth:`from_pairs` ``(model, pairs, tokenizer, step, commits)``.

        The clean canvas of every step comes from one decoding (:func:`~mechshift_lite.diffusion.masked_states`),
        shared by both kinds of corrupted canvas; the ``"own"`` corrupted canvas needs a decoding per
        step (the slots it may fill are the ones the clean run committed by then).
        """
        unknown = set(corrupted_commits) - set(CORRUPTED_COMMITS)
        if unknown:
            raise ValueError(f"corrupted_commits must be among {CORRUPTED_COMMITS}; got {sorted(unknown)}")
        if model.attention == "causal":
            raise ValueError("diffusion_views reads a masked diffusion model's canvas; this model is causal (an ARM)")
        canvas = pairs.to_mdm(tokenizer)
        answer_start = pairs.mdm_answer_start
        slots = torch.arange(canvas.clean_ids.shape[1])[None, :]
        explained = slots == pairs.readout_pos[:, None] + 1   # the token the metric reads stays masked
        in_answer = slots >= answer_start[:, None]
        cleans = diffusion.masked_states(model, canvas.clean_ids, answer_start, steps, tokenizer.mask_id, hold=explained)
        views = {}
        for step in steps:
            clean = cleans[step] if step > 0 else canvas.clean_ids
            for commits in corrupted_commits:
                corrupted = canvas.corrupted_ids
                if step > 0 and commits == "clean":
                    corrupted = torch.where(in_answer, clean, corrupted)
                elif step > 0:
                    corrupted = _own_commits(model, corrupted, answer_start, in_answer & (clean == tokenizer.mask_id), tokenizer.mask_id)
                views[step, commits] = cls(clean, corrupted, None, "bidirectional", **_readout(pairs))
        return views

    @classmethod
    def before_commit(cls, model: Transformer, pairs: "TaskPairs", tokenizer: "Tokenizer") -> "tuple[ModelInputs, Tensor]":
        """An MDM's view of each pair one step before its free confidence decoding commits the
        explained (first answer) slot, and that step ``[N]`` (0-based: the number of tokens committed).

        The clean canvas holds every token the free decoding of the clean prompt committed before
        the explained slot (what :meth:`from_pairs` at that step holds: holding the slot changes
        nothing until it would be chosen); the corrupted canvas keeps the same masked positions
        and holds the model's own commits for the corrupted prompt.
        """
        if model.attention == "causal":
            raise ValueError("before_commit reads a masked diffusion model's canvas; this model is causal (an ARM)")
        canvas = pairs.to_mdm(tokenizer)
        answer_start = pairs.mdm_answer_start
        explained = pairs.readout_pos + 1                                                        # [N] the slot read out
        free = diffusion.confidence_sample(model, canvas.clean_ids, answer_start, tokenizer.mask_id, until=explained)
        step = free.commit_step[torch.arange(len(answer_start)), explained]                      # [N]
        in_answer = torch.arange(canvas.clean_ids.shape[1])[None, :] >= answer_start[:, None]
        still_masked = in_answer & ~((free.commit_step >= 0) & (free.commit_step < step[:, None]))
        clean = free.ids.masked_fill(still_masked, tokenizer.mask_id)
        corrupted = _own_commits(model, canvas.corrupted_ids, answer_start, still_masked, tokenizer.mask_id)
        return cls(clean, corrupted, None, "bidirectional", **_readout(pairs)), step

    # ----- examples ---------------------------------------------------------------------------
    @property
    def n_examples(self) -> int:
        return self.clean_ids.shape[0]

    def __len__(self) -> int:
        return self.n_examples

    def _per_example_attention(self) -> bool:
        return isinstance(self.attention, Tensor) and self.attention.dim() == 3

    def select(self, rows: Tensor) -> "ModelInputs":
        """The examples ``rows`` (a ``LongTensor`` of indices)."""
        pick = lambda t: None if t is None else t[rows]
        attention = self.attention[rows] if self._per_example_attention() else self.attention
        return ModelInputs(self.clean_ids[rows], self.corrupted_ids[rows], pick(self.attention_mask), attention,
                           pick(self.readout_pos), pick(self.answer_ids), pick(self.distractor_ids))

    def repeat(self, times: int) -> "ModelInputs":
        """``times`` copies of the examples side by side along the batch (``[times * N, P]``)."""
        if times == 1:
            return self
        again = lambda t: None if t is None else t.repeat(times)
        mask = None if self.attention_mask is None else self.attention_mask.repeat(times, 1)
        attention = self.attention.repeat(times, 1, 1) if self._per_example_attention() else self.attention
        return ModelInputs(self.clean_ids.repeat(times, 1), self.corrupted_ids.repeat(times, 1), mask, attention,
                           again(self.readout_pos), again(self.answer_ids), again(self.distractor_ids))

    # ----- running ----------------------------------------------------------------------------
    def ids(self, which: str = "clean") -> Tensor:
        """``clean_ids`` or ``corrupted_ids``."""
        if which not in ("clean", "corrupted"):
            raise ValueError(f"which must be 'clean' or 'corrupted'; got {which!r}")
        return self.clean_ids if which == "clean" else self.corrupted_ids

    def run(self, model: Transformer, which: str = "clean", hooks: Hooks | None = None) -> Tensor:
        """Logits ``[N, P, V]`` of the ``"clean"`` or ``"corrupted"`` input."""
        return model(self.ids(which), self.attention_mask, attention=self.attention, hooks=hooks)

    def run_with_nodes(self, model: Transformer, which: str = "clean", **kwargs):
        """:meth:`Transformer.run_with_nodes` on the ``"clean"`` or ``"corrupted"`` input (``overrides=`` passes on)."""
        return model.run_with_nodes(self.ids(which), self.attention_mask, attention=self.attention, **kwargs)

    # ----- the readout ------------------------------------------------------------------------
    def _require_readout(self, purpose: str) -> None:
        if self.readout_pos is None or self.answer_ids is None:
            raise ValueError(f"{purpose} needs the readout (readout_pos, answer_ids): build the inputs with "
                             "ModelInputs.from_pairs, or pass them")

    def metric(self) -> Metric:
        """``logit[answer] - logit[distractor]`` at the readout (:func:`~mechshift_lite.tasks.logit_diff`)."""
        self._require_readout("metric()")
        if self.distractor_ids is None:
            raise ValueError("metric() needs distractor_ids")
        return logit_diff(self.readout_pos, self.answer_ids, self.distractor_ids)

    def answer_is_top(self, logits: Tensor) -> Tensor:
        """``[N]`` bool: the top token of ``logits [N, P, V]`` at the readout is the clean answer."""
        self._require_readout("answer_is_top")
        top = logits[torch.arange(self.n_examples), self.readout_pos].argmax(-1)
        return top == self.answer_ids


def inputs_and_metric(clean_ids, corrupted_ids, metric, attention_mask, attention) -> tuple[ModelInputs, Metric]:
    """The inputs and the metric of a call that takes either arrays or a :class:`ModelInputs`.

    Array form: ``(clean_ids, corrupted_ids, metric, attention_mask, attention)``. Object form:
    ``clean_ids`` is a :class:`ModelInputs`, and the metric is the next argument (``corrupted_ids``'s
    place) or ``metric=``; without one, the inputs' own :meth:`ModelInputs.metric`.
    """
    if not isinstance(clean_ids, ModelInputs):
        if metric is None:
            raise TypeError("pass clean_ids, corrupted_ids and metric, or a ModelInputs (and optionally a metric)")
        return ModelInputs(clean_ids, corrupted_ids, attention_mask, attention), metric
    if attention_mask is not None or attention is not None:
        raise ValueError("a ModelInputs carries its own attention_mask and attention: do not pass them as well")
    if corrupted_ids is not None and metric is not None:
        raise TypeError("with a ModelInputs, pass the metric once (right after the inputs, or metric=), "
                        "and the other arguments by keyword")
    metric = corrupted_ids if corrupted_ids is not None else metric
    if metric is not None and not callable(metric):
        raise TypeError(f"with a ModelInputs, the argument after it is the metric (a callable); got {type(metric).__name__}")
    return clean_ids, clean_ids.metric() if metric is None else metric


def clean_input(input_ids, attention_mask=None, attention=None) -> tuple[Tensor, Tensor | None, AttentionMode | Tensor | None]:
    """``(ids, attention_mask, attention)`` of a one-input call given arrays or a :class:`ModelInputs` (its clean ids)."""
    if not isinstance(input_ids, ModelInputs):
        return input_ids, attention_mask, attention
    if attention_mask is not None or attention is not None:
        raise ValueError("a ModelInputs carries its own attention_mask and attention: do not pass them as well")
    return input_ids.clean_ids, input_ids.attention_mask, input_ids.attention


def _own_commits(model: Transformer, ids: Tensor, answer_start: Tensor, still_masked: Tensor, mask_id: int) -> Tensor:
    """``ids`` ``[N, P]`` with the answer region filled by the model's own confidence decoding of
    its prompt, except the ``still_masked`` slots, which stay ``[MASK]``."""
    return diffusion.confidence_sample(model, ids, answer_start, mask_id, hold=still_masked).ids


def _readout(pairs: "TaskPairs") -> dict[str, Tensor]:
    return {"readout_pos": pairs.readout_pos, "answer_ids": pairs.answer_ids, "distractor_ids": pairs.distractor_ids}
