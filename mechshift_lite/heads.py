"""What the IOI heads do: direct effects on the logit difference, and attention scores by head type.

Three readings of every attention head ``a{l}.h{h}`` on IOI prompts (Wang et al. 2022), computed
on the clean prompts of a :class:`~mechshift_lite.inputs.ModelInputs` (ARM view or MDM canvas):

* **direct effect** (:func:`direct_effects`): the head's output at the readout position, passed
  through the final norm with its scale *frozen* at the real residual stream (direct logit
  attribution, as in :mod:`mechshift_lite.lens`), dotted with ``W_U[:, IO] - W_U[:, S]``. The
  direct effects of all heads plus :attr:`DirectEffects.rest` (embeddings, MLPs, biases, the
  norm's bias) add up to the model's logit difference exactly.
* **attention scores** (:func:`head_scores`), read from the positions of the names
  (:func:`ioi_positions`):

  - *duplicate-token*: attention from S2 (the second mention of S) to S1;
  - *previous-token*: attention from each prompt position ``i >= 1`` to ``i - 1``, averaged over the prompt;
  - *name-mover*: attention from the readout (the last prompt token) to IO, minus that to S1 and S2 together.

* **roles** (:func:`classify`), by the thresholds below, and :func:`compare_roles` across models.

Thresholds (our choice, documented here; a 15-token prompt gives uniform attention ~0.07 per key):

* ``duplicate-token``: duplicate score >= :data:`MIN_ATTENTION` (0.3);
* ``previous-token``: previous-token score >= :data:`MIN_ATTENTION`;
* ``name-mover``: name-mover score >= :data:`MIN_NAME_MOVER` (0.2) *and* a direct effect whose
  interval lies above 0 (the head attends to IO and writes IO over S).

Shapes: ``N`` prompts, ``L`` layers, ``H`` heads per layer, ``P`` positions, ``D`` d_model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .inputs import ModelInputs
from .lens import frozen_norm
from .model import Transformer

MIN_ATTENTION = 0.3
"""Duplicate- and previous-token heads: at least this mean attention to the expected key."""
MIN_NAME_MOVER = 0.2
"""Name movers: attention to IO exceeds attention to S1 + S2 by at least this much (and direct effect > 0)."""
ROLES = ("name-mover", "duplicate-token", "previous-token")


def head_names(n_layers: int, n_heads: int) -> list[str]:
    """``["a0.h0", "a0.h1", ...]`` in layer-major order (the order of the flattened ``[L, H]`` arrays)."""
    return [f"a{layer}.h{head}" for layer in range(n_layers) for head in range(n_heads)]


# ----- positions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IOIPositions:
    """Token positions of the names in each prompt, each ``[N]`` long: ``io``, ``s1``, ``s2``, ``end`` (the readout)."""

    io: Tensor
    s1: Tensor
    s2: Tensor
    end: Tensor


def ioi_positions(inputs: ModelInputs) -> IOIPositions:
    """Find IO (``answer_ids``), S1 and S2 (the two occurrences of ``distractor_ids``) in each clean
    prompt up to the readout; raises unless IO occurs once and S twice there."""
    if inputs.readout_pos is None or inputs.answer_ids is None or inputs.distractor_ids is None:
        raise ValueError("ioi_positions needs readout_pos, answer_ids and distractor_ids (ModelInputs.from_pairs)")
    io, s1, s2 = [], [], []
    for i, row in enumerate(inputs.clean_ids):
        prompt = row[: int(inputs.readout_pos[i]) + 1]
        found_io = (prompt == inputs.answer_ids[i]).nonzero().flatten()
        found_s = (prompt == inputs.distractor_ids[i]).nonzero().flatten()
        if len(found_io) != 1 or len(found_s) != 2:
            raise ValueError(f"prompt {i} has IO {len(found_io)} times and S {len(found_s)} times; need 1 and 2")
        io.append(found_io[0])
        s1.append(found_s[0])
        s2.append(found_s[1])
    return IOIPositions(torch.stack(io), torch.stack(s1), torch.stack(s2), inputs.readout_pos.clone())


# ----- direct effects -------------------------------------------------------------------------------
def bootstrap_interval(values: Tensor, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Percentile bootstrap over prompts of the mean: ``values [..., N]`` -> ``(low, high)``, each ``[...]``."""
    n = values.shape[-1]
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(n, (n_boot, n), generator=gen)                 # [n_boot, N] resampled prompts
    means = values[..., draws].mean(-1)                                  # [..., n_boot]
    tail = (1 - level) / 2
    return means.quantile(tail, dim=-1), means.quantile(1 - tail, dim=-1)


@dataclass
class DirectEffects:
    """Per-head direct effects on ``logit[IO] - logit[S]`` at the readout.

    Attributes:
        per_prompt: ``[L, H, N]`` each head's direct effect on each prompt.
        rest: ``[N]`` everything that is no head (embeddings, MLPs, output biases, the norm's bias).
        logit_diff: ``[N]`` the model's own logit difference (``per_prompt.sum((0, 1)) + rest`` equals it).
        mean, low, high: ``[L, H]`` mean over prompts and its bootstrap interval.
    """

    per_prompt: Tensor
    rest: Tensor
    logit_diff: Tensor
    mean: Tensor
    low: Tensor
    high: Tensor


@torch.no_grad()
def direct_effects(model: Transformer, inputs: ModelInputs, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0) -> DirectEffects:
    """Direct effect of every head on the IOI logit difference (module docstring), with a
    ``level`` bootstrap interval over the ``N`` prompts of ``inputs`` (``n_boot`` resamples, ``seed``)."""
    run = inputs.run_with_nodes(model)
    rows, pos = torch.arange(inputs.n_examples), inputs.readout_pos
    resid = run.inputs["logits"][rows, pos]                                           # [N, D]
    L, H = model.cfg.n_layers, model.cfg.n_heads
    heads = torch.stack([run.outputs[name][rows, pos] for name in head_names(L, H)])  # [L*H, N, D]
    norm = model.ln_final
    linear = frozen_norm(norm, resid)                                                   # scale frozen at resid
    direction = (model.unembed[:, inputs.answer_ids] - model.unembed[:, inputs.distractor_ids]).T  # [N, D]
    project = lambda x: (linear(x) * direction).sum(-1)                                 # [..., N, D] -> [..., N]
    per_head = project(heads)                                                           # [L*H, N]
    bias = 0.0 if norm.b is None else (norm.b * direction).sum(-1)
    rest = project(resid - heads.sum(0)) + bias
    logits = run.logits[rows, pos]
    logit_diff = logits[rows, inputs.answer_ids] - logits[rows, inputs.distractor_ids]
    low, high = bootstrap_interval(per_head, n_boot, level, seed)
    return DirectEffects(per_head.view(L, H, -1), rest, logit_diff, per_head.mean(-1).view(L, H),
                         low.view(L, H), high.view(L, H))


# ----- attention scores -----------------------------------------------------------------------------
@torch.no_grad()
def attention_patterns(model: Transformer, inputs: ModelInputs) -> Tensor:
    """``[L, H, N, P, P]`` attention probabilities (query, key) of every head on the clean inputs."""
    patterns = inputs.run_with_nodes(model).patterns
    return torch.stack([patterns[layer].transpose(0, 1) for layer in range(model.cfg.n_layers)])


def duplicate_token_scores(patterns: Tensor, positions: IOIPositions) -> Tensor:
    """``[L, H]`` mean attention from S2 to S1; ``patterns [L, H, N, P, P]``."""
    rows = torch.arange(patterns.shape[2])
    return patterns[:, :, rows, positions.s2, positions.s1].mean(-1)


def previous_token_scores(patterns: Tensor, positions: IOIPositions) -> Tensor:
    """``[L, H]`` mean attention from position ``i`` to ``i - 1`` over ``1 <= i <= end`` of each
    prompt, then over prompts; ``patterns [L, H, N, P, P]``."""
    previous = patterns.diagonal(offset=-1, dim1=-2, dim2=-1)              # [L, H, N, P-1]: query i+1 -> key i
    queries = torch.arange(1, patterns.shape[-1])                          # query position of each entry
    inside = (queries[None, :] <= positions.end[:, None]).to(patterns.dtype)  # [N, P-1]
    return ((previous * inside).sum(-1) / inside.sum(-1)).mean(-1)


@dataclass
class HeadScores:
    """Attention scores of every head, each ``[L, H]`` (means over prompts).

    Attributes:
        duplicate: S2 -> S1. previous: i -> i - 1. io, s: readout -> IO, and readout -> S1 + S2.
    """

    duplicate: Tensor
    previous: Tensor
    io: Tensor
    s: Tensor

    @property
    def name_mover(self) -> Tensor:
        """``[L, H]`` attention from the readout to IO minus that to S1 and S2."""
        return self.io - self.s


def head_scores(patterns: Tensor, positions: IOIPositions) -> HeadScores:
    """The :class:`HeadScores` of ``patterns [L, H, N, P, P]`` at the names' ``positions``."""
    rows = torch.arange(patterns.shape[2])
    at_end = patterns[:, :, rows, positions.end]                           # [L, H, N, P]
    io = at_end[:, :, rows, positions.io].mean(-1)
    s = (at_end[:, :, rows, positions.s1] + at_end[:, :, rows, positions.s2]).mean(-1)
    return HeadScores(duplicate_token_scores(patterns, positions), previous_token_scores(patterns, positions), io, s)


# ----- roles ----------------------------------------------------------------------------------------
def classify(scores: HeadScores, effects: DirectEffects, min_attention: float = MIN_ATTENTION,
             min_name_mover: float = MIN_NAME_MOVER) -> dict[str, list[str]]:
    """Heads of each role in :data:`ROLES` (names ``a{l}.h{h}``, strongest first), by the module's thresholds.

    A head may hold several roles (e.g. previous-token and duplicate-token).
    """
    L, H = scores.duplicate.shape
    names = head_names(L, H)
    criteria = {
        "name-mover": (scores.name_mover >= min_name_mover) & (effects.low > 0),
        "duplicate-token": scores.duplicate >= min_attention,
        "previous-token": scores.previous >= min_attention,
    }
    strength = {"name-mover": scores.name_mover, "duplicate-token": scores.duplicate, "previous-token": scores.previous}
    roles = {}
    for role in ROLES:
        chosen = criteria[role].flatten().nonzero().flatten().tolist()
        roles[role] = sorted((names[i] for i in chosen), key=lambda n: -float(strength[role].flatten()[names.index(n)]))
    return roles


@dataclass(frozen=True)
class RoleComparison:
    """One role in two models: the heads of each, those that keep it (same index), lost and gained."""

    role: str
    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def kept(self) -> tuple[str, ...]:
        return tuple(h for h in self.before if h in self.after)

    @property
    def lost(self) -> tuple[str, ...]:
        return tuple(h for h in self.before if h not in self.after)

    @property
    def gained(self) -> tuple[str, ...]:
        return tuple(h for h in self.after if h not in self.before)

    @property
    def exists_in_both(self) -> bool:
        return bool(self.before) and bool(self.after)


def compare_roles(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[RoleComparison]:
    """For every role, which heads of ``before`` (e.g. the ARM) keep it in ``after`` (e.g. the MDM)."""
    return [RoleComparison(role, tuple(before.get(role, [])), tuple(after.get(role, []))) for role in ROLES]
