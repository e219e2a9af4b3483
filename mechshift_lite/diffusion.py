"""Masked diffusion, the DiffuLLaMA way: forward masking, the shifted losses, attention annealing, samplers.

A sequence is ``[BOS] prompt answer [EOS] [PAD] ...`` on a canvas of ``P`` positions. The prompt
always stays clean; every later slot (answer, ``[EOS]`` and padding) is *maskable*.

**The shift.** For the ARM and the MDM alike, the logits at position ``i`` predict the token at
``i + 1``. So the first answer token (at ``answer_start``) is read at ``answer_start - 1``, the last
prompt position, in both models, and their circuits can be compared node for node.

Shapes: ``B`` batch, ``P`` positions, ``V`` vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import Transformer

MASK_EPS = 1e-3  # t is drawn from U(MASK_EPS, 1): the 1/t loss weight stays finite


# ----- bookkeeping --------------------------------------------------------------------------------
def answer_region(answer_start: Tensor, n_pos: int) -> Tensor:
    """Maskable slots ``[B, P]`` bool: every position at or after ``answer_start [B]``."""
    positions = torch.arange(n_pos, device=answer_start.device)
    return positions[None, :] >= answer_start[:, None]


def answer_span(answer_start: Tensor, answer_end: Tensor, n_pos: int) -> Tensor:
    """Answer tokens and ``[EOS]`` ``[B, P]`` bool: ``answer_start <= position <= answer_end``."""
    positions = torch.arange(n_pos, device=answer_start.device)[None, :]
    return (positions >= answer_start[:, None]) & (positions <= answer_end[:, None])


def shift_logits(logits: Tensor) -> Tensor:
    """Align predictions with the slots they predict: ``out[:, j] = logits[:, j - 1]``.

    ``logits [B, P, V] -> [B, P, V]``. Slot 0 (``[BOS]``) is never predicted; it gets a copy of
    ``logits[:, 0]`` only to keep the shape.
    """
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


# ----- forward process and losses -----------------------------------------------------------------
def forward_mask(
    ids: Tensor, maskable: Tensor, mask_id: int, generator: torch.Generator, eps: float = MASK_EPS,
    *, t_power: float = 1.0, span_start: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Corrupt clean ids: draw one ``t`` per sequence, mask each maskable slot with prob ``t``.

    ``t = eps + (1 - eps) u ** t_power`` with ``u ~ U(0, 1)``: ``t_power = 1`` is the recipe's
    ``t ~ U(eps, 1)``; ``t_power > 1`` moves ``t`` away from 1 (fewer slots masked at once, so
    "one number hidden, its neighbours visible" is posed more often).

    Args:
        ids: clean sequences ``x_0 [B, P]``.
        maskable: ``[B, P]`` bool, the slots that may be masked (never the prompt).
        mask_id: id of ``[MASK]``.
        generator: the source of randomness (same state, same corruption).
        t_power: see above (1 = uniform, the default recipe).
        span_start: ``[B, P]`` long or None: slot ``j`` is masked iff slot ``span_start[b, j]``'s
            draw says so, so a span (e.g. the digits of one number, :func:`number_spans`) is
            masked or kept as a whole. None = every slot draws for itself (the default recipe).

    Returns:
        ``(x_t [B, P], t [B])``.
    """
    B, P = ids.shape
    u = torch.rand(B, generator=generator)
    t = eps + (1.0 - eps) * (u if t_power == 1.0 else u.pow(t_power))
    draws = torch.rand(B, P, generator=generator)
    if span_start is not None:
        draws = draws.gather(1, span_start)
    masked = maskable & (draws < t[:, None])
    return ids.masked_fill(masked, mask_id), t


def number_spans(ids: Tensor, unit_ids: Sequence[int]) -> Tensor:
    """``[B, P]`` long: for each slot, the first slot of its run of ``unit_ids`` tokens (itself otherwise).

    With the digit ids as ``unit_ids`` a run is one number, so :func:`forward_mask` with
    ``span_start=number_spans(...)`` masks whole numbers. Example: digits ``4 4 - 1 5`` ->
    ``[0, 0, 2, 3, 3]``.
    """
    B, P = ids.shape
    unit = torch.isin(ids, torch.as_tensor(list(unit_ids), dtype=ids.dtype, device=ids.device))
    starts = ~unit | torch.cat([torch.ones(B, 1, dtype=torch.bool, device=ids.device), ~unit[:, :-1]], dim=1)
    positions = torch.arange(P, device=ids.device).expand(B, P)
    return torch.where(starts, positions, torch.zeros_like(positions)).cummax(dim=1).values


def mdm_loss(logits: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, mask_id: int,
             focal_alpha: float = 1.0, focal_gamma: float = 0.0) -> Tensor:
    """The shifted, 1/t-weighted masked cross-entropy of DiffuLLaMA, optionally focal-reweighted.

    ``L = sum_{b,i} 1[x_t[b,i+1] = MASK] w(CE) CE(logits[b,i], x0[b,i+1]) / t[b]  /  sum_{b,i} 1[x_t[b,i+1] = MASK]``

    with ``w(CE) = 1`` (the recipe) or, Ye et al. 2024's difficulty weighting (focal loss),
    ``w(CE) = focal_alpha (1 - exp(-CE)) ** focal_gamma``: tokens the model already gets right
    (``exp(-CE)`` near 1) count less, hard ones (e.g. the digits of an intermediate result) more.
    The weight is not detached (as in the focal loss). Ye et al. use alpha 0.25, gamma 2.

    Args:
        logits: model output on ``x_t``, ``[B, P, V]``.
        x0: clean ids ``[B, P]``; x_t: corrupted ids ``[B, P]``; t: mask rates ``[B]``.

    Returns:
        a scalar (0 when nothing is masked).
    """
    B, P, V = logits.shape
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, V), x0[:, 1:].reshape(-1), reduction="none").view(B, P - 1)
    if focal_gamma != 0.0 or focal_alpha != 1.0:
        ce = focal_alpha * (1.0 - torch.exp(-ce)).pow(focal_gamma) * ce
    is_masked = (x_t[:, 1:] == mask_id).to(ce.dtype)
    return (ce * is_masked / t[:, None]).sum() / is_masked.sum().clamp(min=1.0)


def arm_loss(logits: Tensor, ids: Tensor, answer_start: Tensor, answer_end: Tensor) -> Tensor:
    """Next-token cross-entropy on the answer tokens and ``[EOS]`` only (the prompt is not scored).

    ``logits [B, P, V]`` on ``ids [B, P]``; slot ``j`` of the span is predicted at ``j - 1``.
    """
    B, P, V = logits.shape
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1), reduction="none").view(B, P - 1)
    scored = answer_span(answer_start, answer_end, P)[:, 1:].to(ce.dtype)
    return (ce * scored).sum() / scored.sum().clamp(min=1.0)


# ----- attention annealing ------------------------------------------------------------------------
def anneal_ratio(step: int, anneal_steps: int) -> float:
    """Share of the upper triangle revealed at optimizer step ``step`` (0-based): ``min(1, (step+1)/anneal_steps)``."""
    if anneal_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / anneal_steps)


def annealed_attention(ratio: float, n_pos: int, generator: torch.Generator) -> Tensor:
    """DiffuLLaMA's annealed mask ``[P, P]`` bool (rows are queries): ``(key <= query) OR Bernoulli(ratio)``.

    One draw per optimizer step, shared by the batch; ratio 0 gives the causal mask, ratio 1 the full one.
    """
    causal = torch.ones(n_pos, n_pos, dtype=torch.bool).tril()
    return causal | (torch.rand(n_pos, n_pos, generator=generator) < ratio)


# ----- samplers -----------------------------------------------------------------------------------
@dataclass
class Sample:
    """What a sampler returns.

    Attributes:
        ids: the canvas ``[B, P]`` after decoding (``[MASK]`` left only where ``max_steps`` stopped it).
        commit_step: ``[B, P]`` long, the decoding step (0-based) at which each slot was filled;
            ``-1`` for the prompt and for slots still masked.
        history: when asked for, the canvas before the first step and after every step, each ``[B, P]``.
    """

    ids: Tensor
    commit_step: Tensor
    history: list[Tensor] | None = None


def denoiser_logprobs(model: Transformer, x: Tensor, mask_id: int) -> Tensor:
    """Shifted log-probabilities ``[B, P, V]`` for every slot of ``x [B, P]``, ``[MASK]`` excluded.

    Uses the model's own attention mode (an MDM from the zoo is bidirectional). Computed in at least
    float32 (a float64 model keeps float64).
    """
    logits = shift_logits(model(x))
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    logits[..., mask_id] = float("-inf")
    return logits.log_softmax(dim=-1)


def _blocks(answer_start: Tensor, n_pos: int, block_length: int | None) -> list[Tensor]:
    """The answer region cut into consecutive blocks of ``block_length`` slots, as ``[B, P]`` masks."""
    region = answer_region(answer_start, n_pos)
    if block_length is None:
        return [region]
    if block_length < 1:
        raise ValueError(f"block_length must be a positive number of slots or None; got {block_length}")
    offset = torch.arange(n_pos)[None, :] - answer_start[:, None]
    n_blocks = -(-(n_pos - int(answer_start.min())) // block_length)
    return [region & (offset // block_length == b) for b in range(n_blocks)]


def _choose(logp: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    """Token per slot ``[B, P]``: argmax at temperature 0, else a sample from ``softmax(logp / T)``."""
    if temperature == 0:
        return logp.argmax(dim=-1)
    probs = (logp / temperature).softmax(dim=-1)
    return torch.multinomial(probs.view(-1, probs.shape[-1]), 1, generator=generator).view(probs.shape[:2])


def _start_canvas(ids: Tensor, answer_start: Tensor, mask_id: int) -> Tensor:
    if ids.dim() != 2 or answer_start.shape != ids.shape[:1]:
        raise ValueError(f"ids must be [batch, pos] and answer_start [batch]; got {tuple(ids.shape)}, {tuple(answer_start.shape)}")
    if int(answer_start.min()) < 1:
        raise ValueError("answer_start must be >= 1: slot 0 holds [BOS] and is never predicted (the shift)")
    return ids.masked_fill(answer_region(answer_start, ids.shape[1]), mask_id)


@torch.no_grad()
def confidence_sample(
    model: Transformer,
    ids: Tensor,
    answer_start: Tensor,
    mask_id: int,
    *,
    tokens_per_step: int = 1,
    block_length: int | None = None,
    max_steps: int | None = None,
    temperature: float = 0.0,
    seed: int = 0,
    output_history: bool = False,
    hold: Tensor | None = None,
    until: Tensor | None = None,
) -> Sample:
    """Low-confidence remasking (LLaDA): each step, commit the ``tokens_per_step`` most confident masked slots.

    Every slot from ``answer_start`` on starts as ``[MASK]`` (whatever ``ids`` holds there). Each
    step predicts every masked slot (with the shift), scores it by the probability of its
    prediction, and commits the best ones; committed tokens never change. Each step runs the model
    only on the rows that still have a slot to fill.

    Args:
        ids: ``[B, P]``; only the prompt part (before ``answer_start``) is read.
        answer_start: ``[B]`` index of the first answer slot.
        block_length: decode the answer region in blocks of this many slots, left to right
            (semi-autoregressive); None = one block.
        max_steps: stop after this many steps (what :func:`masked_state` uses).
        temperature: 0 = argmax; > 0 samples the value (seeded by ``seed``).
        hold: ``[B, P]`` bool, slots that stay ``[MASK]`` (never committed); None = none.
        until: ``[B]`` one slot per row: a row stops once that slot is committed (the slots it has
            not filled by then stay ``[MASK]``, as if ``max_steps`` had stopped it); None = fill every slot.
    """
    gen = torch.Generator().manual_seed(seed)
    x = _start_canvas(ids, answer_start, mask_id)
    commit = torch.full_like(x, -1)
    history = [x.clone()] if output_history else None
    free = torch.ones_like(x, dtype=torch.bool) if hold is None else ~hold
    if until is not None and until.shape != x.shape[:1]:
        raise ValueError(f"until must hold one slot per row, shape [{x.shape[0]}]; got {tuple(until.shape)}")
    row = torch.arange(x.shape[0])
    step = 0
    for block in _blocks(answer_start, x.shape[1], block_length):
        while (todo := block & (x == mask_id) & free).any():
            if max_steps is not None and step >= max_steps:
                return Sample(x, commit, history)
            active = todo.any(dim=1).nonzero()[:, 0]                                   # rows with a slot to fill
            logp = denoiser_logprobs(model, x[active], mask_id)
            values = _choose(logp, temperature, gen)
            confidence = logp.gather(-1, values[..., None]).squeeze(-1).masked_fill(~todo[active], float("-inf"))
            top = confidence.topk(min(tokens_per_step, x.shape[1]), dim=-1)
            chosen = torch.zeros_like(todo)
            chosen[active] = torch.zeros_like(todo[active]).scatter(1, top.indices, top.values > float("-inf"))
            x[active] = torch.where(chosen[active], values, x[active])
            commit[chosen] = step
            step += 1
            if until is not None:
                free &= (commit[row, until] < 0)[:, None]                              # rows past `until` stop
            if history is not None:
                history.append(x.clone())
    return Sample(x, commit, history)


@torch.no_grad()
def remask_sample(model: Transformer, ids: Tensor, answer_start: Tensor, mask_id: int, *, steps: int = 20) -> Sample:
    """Top-k remasking (Ye et al. 2024, after RDM, Zheng et al. 2023): committed tokens can be revised.

    The answer region (``n`` slots per row) starts as ``[MASK]``. At step ``k`` of ``steps`` the
    masked slots are predicted (argmax, with the shift) and scored by the probability of their
    prediction; each committed slot keeps the score it had when it was committed. Of all answer
    slots, the ``ceil(n (k+1) / steps)`` best scored keep (or take) their token and every other
    one goes back to ``[MASK]``: a committed token whose score falls behind newer, more confident
    predictions is dropped and predicted again later, in a fuller context (so it can change).
    After the last step every slot is filled. Deterministic (argmax; ties by position). Only
    predictions of masked slots are used, the only ones the MDM loss trains.

    Args:
        ids: ``[B, P]``; only the prompt part (before ``answer_start [B]``) is read.
        steps: decoding steps (forward passes).

    Returns:
        a :class:`Sample`; ``commit_step`` is the step from which a slot kept its final token.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    x = _start_canvas(ids, answer_start, mask_id)
    region = answer_region(answer_start, x.shape[1])
    n_slots = region.sum(1)                                         # [B]
    score = torch.full(x.shape, float("-inf"))                      # committed slots: score at commit
    commit = torch.full_like(x, -1)
    for k in range(steps):
        best = denoiser_logprobs(model, x, mask_id).max(dim=-1)     # values, indices: [B, P]
        masked = region & (x == mask_id)
        score = torch.where(masked, best.values, score).masked_fill(~region, float("-inf"))
        rank = score.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
        keep = region & (rank < torch.ceil(n_slots * (k + 1) / steps)[:, None])
        x = torch.where(keep, torch.where(masked, best.indices, x), torch.where(region, mask_id, x))
        commit = torch.where(keep, torch.where(masked, k, commit), -1)
        score = score.masked_fill(~keep, float("-inf"))
    return Sample(x, commit)


def mean_commit_order(commit_step: Tensor, answer_start: Tensor, roles: Sequence[Sequence[str] | None]) -> dict[str, float]:
    """Mean scaled commit step of each slot role over the rows of a decoded batch.

    Args:
        commit_step: ``[B, P]`` from a :class:`Sample` (every answer slot committed).
        answer_start: ``[B]`` first answer slot of each row.
        roles: per row, the role of each answer slot (``P - answer_start`` of them), or None to skip the row.

    Returns:
        role -> mean over its slots of the commit step scaled per row to ``[0, 1]`` (0 = the row's
        first committed slot, 1 = its last), for the roles that occur.
    """
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row, row_roles in enumerate(roles):
        if row_roles is None:
            continue
        steps = commit_step[row, int(answer_start[row]):].float()
        for role, value in zip(row_roles, (steps / steps.max()).tolist()):
            totals[role] = totals.get(role, 0.0) + value
            counts[role] = counts.get(role, 0) + 1
    return {role: totals[role] / counts[role] for role in totals}


@torch.no_grad()
def ancestral_sample(
    model: Transformer,
    ids: Tensor,
    answer_start: Tensor,
    mask_id: int,
    *,
    steps: int,
    block_length: int | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    output_history: bool = False,
) -> Sample:
    """Random-order ancestral sampling (MDLM / D3PM) on a uniform grid of ``steps`` steps per block.

    Going from ``t = (steps-k)/steps`` to ``s = (steps-k-1)/steps``, each masked slot of the block
    is revealed with probability ``(t - s) / t = 1 / (steps - k)`` (so all are revealed at the last
    step), its value drawn from the model at ``temperature``. Revealed tokens never change.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    gen = torch.Generator().manual_seed(seed)
    x = _start_canvas(ids, answer_start, mask_id)
    commit = torch.full_like(x, -1)
    history = [x.clone()] if output_history else None
    step = 0
    for block in _blocks(answer_start, x.shape[1], block_length):
        for k in range(steps):
            todo = block & (x == mask_id)
            if not todo.any():
                break
            logp = denoiser_logprobs(model, x, mask_id)
            values = _choose(logp, temperature, gen)
            chosen = todo & (torch.rand(x.shape, generator=gen) < 1.0 / (steps - k))
            x = torch.where(chosen, values, x)
            commit[chosen] = step
            step += 1
            if history is not None:
                history.append(x.clone())
    return Sample(x, commit, history)


def masked_state(
    model: Transformer,
    ids: Tensor,
    answer_start: Tensor,
    step: int,
    mask_id: int,
    *,
    tokens_per_step: int = 1,
    block_length: int | None = None,
    hold: Tensor | None = None,
) -> Tensor:
    """The MDM's input at diffusion step ``step``, for attribution: ``[B, P]`` ids.

    The prompt is clean; every slot from ``answer_start`` on is ``[MASK]`` except the tokens that
    the model's own confidence decoding (:func:`confidence_sample`, argmax, ``tokens_per_step``
    per step) has committed in its first ``step`` steps. ``step=0`` is the fully masked answer,
    the input on which the MDM predicts its first token. The committed tokens are the model's
    predictions, not the reference answer in ``ids``. ``hold`` (``[B, P]`` bool) marks slots that
    stay masked, e.g. the answer token the attribution explains.
    """
    return masked_states(model, ids, answer_start, [step], mask_id, tokens_per_step=tokens_per_step,
                         block_length=block_length, hold=hold)[step]


def masked_states(
    model: Transformer,
    ids: Tensor,
    answer_start: Tensor,
    steps: Sequence[int],
    mask_id: int,
    *,
    tokens_per_step: int = 1,
    block_length: int | None = None,
    hold: Tensor | None = None,
) -> dict[int, Tensor]:
    """:func:`masked_state` at several ``steps`` from one decoding: ``{step: [B, P] ids}``.

    The argmax decoding is deterministic, so its state after ``k`` steps is the same whether it
    stops there or goes on: one run to ``max(steps)`` that keeps the states it passes gives every
    step for the price of the longest (a decoding that finishes early keeps its final state).
    """
    steps = sorted(set(steps))
    if not steps or steps[0] < 0:
        raise ValueError(f"steps must be a non-empty list of integers >= 0; got {steps}")
    history = confidence_sample(
        model, ids, answer_start, mask_id, tokens_per_step=tokens_per_step, block_length=block_length,
        max_steps=steps[-1], hold=hold, output_history=True,
    ).history
    return {k: history[min(k, len(history) - 1)] for k in steps}
