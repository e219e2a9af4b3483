"""The one bootstrap of the report: resample the units (seeds, seed pairs), then the examples within them.

Every interval of the report is a 95% percentile interval of :func:`hierarchical_bootstrap`. What
is resampled within a unit depends on the statistic:

* ``within = n`` (an int): the ``n`` fixed blocks of examples every unit has (the attribution
  scores, kept per block, :mod:`.pools`);
* ``within = size`` (a callable): the rows of the unit's own per-example values, ``size(unit)``
  of them (lens entropies, neuron statistics: their count varies from unit to unit);
* ``within = None``: nothing, the units only (a value per seed, or a statistic that a resample
  with replacement would bias, such as a count of *distinct* winners, which shrinks).
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
    q = torch.tensor([0.025, 0.975], dtype=torch.float64)
    lo, hi = torch.quantile(torch.tensor(reps, dtype=torch.float64), q).tolist()
    return {"mean": float(point), "lo": lo, "hi": hi}


def per_example(values: dict, stat: Callable[[Tensor], float], n_boot: int = 500, seed: int = 0) -> Stat:
    """Mean over units (the keys) of ``stat(per-example values)``: units, then their examples, resampled."""
    return hierarchical_bootstrap(list(values), lambda u: len(values[u]), lambda u, rows: stat(values[u][rows]), n_boot, seed)


def over_units(values: Sequence[float], n_boot: int = 2000, seed: int = 0) -> Stat:
    """Mean of one value per unit (e.g. per seed) and its interval, the units resampled."""
    return hierarchical_bootstrap(list(values), None, lambda v, _: float(v), n_boot, seed)
