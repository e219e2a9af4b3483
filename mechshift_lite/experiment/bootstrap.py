"""The one bootstrap of the report: resample the units (seeds, seed pairs), then the examples within them.

Every interval of the report is a 95% percentile interval of :func:`hierarchical_bootstrap`. What
is resampled within a unit depends on the statistic:

* ``within = n`` (an int): the ``n`` fixed blocks of examples every unit has (the attribution
  scores, kept per block, :mod:`.pools`);
* ``within = size`` (a callable): the rows of the unit's own per-example values, ``size(unit)``
  of them (lens entropies, neuron statistics: their count varies from unit to unit);
* ``within = None``: nothing, the units only (a value per seed, or a statistic that a resample
  with replacement would bias, such as a count of *distinct* winners, which shrinks).

**Paired differences.** A difference of two statistics of the same models and examples (ARM-ARMc
overlap minus ARM-MDM overlap; MDM depth minus ARM depth) is bootstrapped *paired*: the value of a
unit is the difference itself, computed on the same resampled blocks, so what the two terms share
(the ARM, the examples) cancels in every replicate. Differences between tasks pair the seeds and
resample each task's blocks independently (:func:`stratified_bootstrap`). With few seeds there
are few distinct resamples of them (:func:`distinct_resamples`): 10 for 3 seeds.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Sequence

import torch
from torch import Tensor

Stat = dict
"""``{"mean": float, "lo": float, "hi": float}``."""


def hierarchical_bootstrap(
    units: Sequence,
    within: int | Callable[[object], int] | None,
    value: Callable[[object, Tensor | None], float],
    n_boot: int = 500,
    seed: int = 0,
) -> Stat:
    """Mean over ``units`` of ``value(unit, rows)`` and its 95% percentile bootstrap interval.

    ``rows`` is a LongTensor of the unit's block or row indices (all of them, in order, for the
    point estimate; a resample with replacement in each replicate), or None when ``within`` is
    None (see the module docstring). Each replicate resamples the units with replacement, then,
    independently for each unit drawn, its rows.

    The point estimate uses all examples; the interval is the percentile interval. For bounded,
    non-smooth statistics (overlaps of top-N sets near 0 or 1, shares of ``|score|``, which grow
    when resampled blocks average less noise away) the interval need not be centred on the
    point estimate, and may even exclude it: read it as the spread under resampling.

    Draws: one ``random.Random(seed)`` picks the units and the fixed blocks; the rows of a unit
    (often hundreds) are drawn by a torch generator seeded from it.
    """
    if not len(units):
        raise ValueError("bootstrap needs at least one unit (value)")
    size = (lambda unit: within) if isinstance(within, int) else within
    everything = (lambda unit: None) if size is None else (lambda unit: torch.arange(size(unit)))
    point = sum(value(u, everything(u)) for u in units) / len(units)
    if math.isnan(point):
        raise ValueError(f"bootstrap needs at least one value and no NaN; got the mean {point}")
    rng = random.Random(seed)

    def resample(unit) -> Tensor | None:
        if size is None:
            return None
        n = size(unit)
        if isinstance(within, int):
            return torch.tensor([rng.randrange(n) for _ in range(n)])
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        return torch.randint(0, n, (n,), generator=g)

    reps = []
    for _ in range(n_boot):
        picked = [units[rng.randrange(len(units))] for _ in units]
        reps.append(sum(value(u, resample(u)) for u in picked) / len(picked))
    return _percentile(point, reps)


def _percentile(point: float, reps: Sequence[float]) -> Stat:
    """The point estimate and the 95% percentile interval of the replicates."""
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    lo, hi = torch.quantile(torch.tensor(reps, dtype=torch.float64), q).tolist()
    return {"mean": float(point), "lo": lo, "hi": hi}


def distinct_resamples(n_units: int) -> int:
    """How many different resamples (multisets) of ``n_units`` units with replacement exist:
    ``C(2n - 1, n)``; 3 seeds give 10, 5 give 126. A bootstrap over units has at most this many
    distinct replicates, so its interval is coarse when it is small."""
    if n_units < 1:
        raise ValueError(f"n_units must be at least 1; got {n_units}")
    return math.comb(2 * n_units - 1, n_units)


def stratified_bootstrap(
    units: Sequence,
    strata: dict[str, int],
    value: Callable[[object, dict[str, Tensor]], float],
    n_boot: int = 500,
    seed: int = 0,
) -> Stat:
    """Mean over ``units`` of ``value(unit, rows)`` and its 95% percentile interval, where ``rows``
    maps each stratum (e.g. a task) to a LongTensor of its block indices.

    Like :func:`hierarchical_bootstrap` with ``within`` an int, but each unit has several strata
    of fixed blocks (``strata[name]`` blocks each), resampled *independently* of one another:
    the units (seeds) pair what they share (the models), while the strata's examples are
    independent data (two tasks). With one stratum it is the paired bootstrap of
    :func:`hierarchical_bootstrap`; a difference whose two terms read *different* strata of the
    same blocks is the unpaired one.
    """
    if not len(units):
        raise ValueError("bootstrap needs at least one unit (value)")
    if not strata or any(n < 1 for n in strata.values()):
        raise ValueError(f"every stratum needs at least one block; got {strata}")
    point = sum(value(u, {k: torch.arange(n) for k, n in strata.items()}) for u in units) / len(units)
    if math.isnan(point):
        raise ValueError(f"bootstrap needs at least one value and no NaN; got the mean {point}")
    rng = random.Random(seed)
    reps = []
    for _ in range(n_boot):
        picked = [units[rng.randrange(len(units))] for _ in units]
        reps.append(sum(value(u, {k: torch.tensor([rng.randrange(n) for _ in range(n)]) for k, n in strata.items()})
                        for u in picked) / len(picked))
    return _percentile(point, reps)


def per_example(values: dict, stat: Callable[[Tensor], float], n_boot: int = 500, seed: int = 0) -> Stat:
    """Mean over units (the keys) of ``stat(per-example values)``: units, then their examples, resampled."""
    return hierarchical_bootstrap(list(values), lambda u: len(values[u]), lambda u, rows: stat(values[u][rows]), n_boot, seed)


def over_units(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> Stat:
    """Mean of one value per unit (e.g. per seed) and its interval, the units resampled."""
    return hierarchical_bootstrap(list(values), None, lambda v, _: float(v), n_boot, seed)
