"""Split-half ceilings and paired statistics against simulations with a known answer (issue 11)."""

import math
import random
from itertools import combinations_with_replacement

import pytest
import torch

from mechshift_lite import compare
from mechshift_lite.experiment.bootstrap import distinct_resamples, hierarchical_bootstrap, stratified_bootstrap
from mechshift_lite.experiment.reliability import half_splits, split_half
from mechshift_lite.experiment.verdicts import shift_holds
from mechshift_lite.graph import Graph

GRAPH = Graph(n_layers=4, n_heads=4)
N_BLOCKS = 8


def simulated_blocks(noise: float, seed: int = 0) -> torch.Tensor:
    """``[N_BLOCKS, n_src, n_dst]``: a fixed signal ``N(0, 1)`` per edge plus block noise ``N(0, noise^2)``."""
    g = torch.Generator().manual_seed(seed)
    signal = torch.randn(GRAPH.n_src, GRAPH.n_dst, generator=g)
    blocks = signal + noise * torch.randn(N_BLOCKS, GRAPH.n_src, GRAPH.n_dst, generator=g)
    return blocks * GRAPH.edge_mask


SIZES = torch.full((N_BLOCKS,), 10)
SIGNED_SPEARMAN = lambda a, b: compare.spearman(a.tensor[GRAPH.edge_mask], b.tensor[GRAPH.edge_mask])


def test_half_splits_are_disjoint_halves_and_follow_the_seed():
    splits = half_splits(7, 30, seed=3)
    for a, b in splits:
        assert len(a) == len(b) == 3 and not set(a.tolist()) & set(b.tolist())
    assert [(a.tolist(), b.tolist()) for a, b in splits] == [(a.tolist(), b.tolist()) for a, b in half_splits(7, 30, seed=3)]
    assert len({tuple(a.tolist()) for a, _ in splits}) > 1       # random, not one fixed split
    with pytest.raises(ValueError, match="at least 2 blocks"):
        half_splits(1, 5)


def test_split_half_ceiling_is_one_without_noise_and_falls_as_noise_grows():
    n = round(0.05 * GRAPH.n_edges)
    measures = {"edge": lambda a, b: compare.edge_overlap(a, b, n), "weighted": compare.weighted_jaccard,
                "spearman": compare.edge_spearman}
    for name, measure in measures.items():
        ceilings = [split_half(simulated_blocks(noise), SIZES, GRAPH, measure, n_splits=10, seed=1) for noise in (0, 0.5, 1, 2, 4)]
        assert ceilings[0] == pytest.approx(1.0), name
        assert all(x > y for x, y in zip(ceilings, ceilings[1:])), (name, ceilings)
        assert ceilings[-1] < 0.6, (name, ceilings)


@pytest.mark.parametrize("noise", [0.5, 1.0, 2.0])
def test_split_half_spearman_matches_the_gaussian_formula(noise):
    """Each half averages 4 blocks: its noise variance is noise^2 / 4, so the two halves' Pearson
    correlation is r = 1 / (1 + noise^2 / 4) and their Spearman (6 / pi) asin(r / 2)."""
    r = 1 / (1 + noise ** 2 / (N_BLOCKS // 2))
    expected = 6 / math.pi * math.asin(r / 2)
    got = split_half(simulated_blocks(noise, seed=2), SIZES, GRAPH, SIGNED_SPEARMAN, n_splits=10, seed=0)
    assert got == pytest.approx(expected, abs=0.04)


def test_distinct_resamples_counts_multisets():
    for n in range(1, 6):
        assert distinct_resamples(n) == len(list(combinations_with_replacement(range(n), n)))
    assert distinct_resamples(3) == 10 and distinct_resamples(5) == 126


def _shared_noise_world(rng: random.Random, n_units=6, n_blocks=8, diff=0.3, shared=1.0, own=0.1):
    """Two statistics per unit and block that share the unit's and the block's noise; their true mean difference is ``diff``."""
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    unit = shared * torch.randn(n_units, 1, generator=g)
    block = shared * torch.randn(n_units, n_blocks, generator=g)
    a = diff + unit + block + own * torch.randn(n_units, n_blocks, generator=g)
    b = unit + block + own * torch.randn(n_units, n_blocks, generator=g)
    return a, b


def test_paired_bootstrap_covers_the_known_difference_and_pairing_narrows_it():
    rng, diff, covered, widths = random.Random(0), 0.3, 0, []
    n_sims, n_units, n_blocks, own = 60, 6, 8, 0.1
    for sim in range(n_sims):
        a, b = _shared_noise_world(rng, n_units, n_blocks, diff, own=own)
        units = list(range(n_units))
        paired = hierarchical_bootstrap(units, n_blocks, lambda u, r: float(a[u, r].mean() - b[u, r].mean()), 200, seed=sim)
        covered += paired["lo"] <= diff <= paired["hi"]
        widths.append(paired["hi"] - paired["lo"])
        if sim < 5:   # the same data, the two terms' blocks resampled independently: far wider
            unpaired = stratified_bootstrap(units, {"a": n_blocks, "b": n_blocks},
                                            lambda u, r: float(a[u, r["a"]].mean() - b[u, r["b"]].mean()), 200, seed=sim)
            assert unpaired["hi"] - unpaired["lo"] > 4 * (paired["hi"] - paired["lo"])
    assert covered / n_sims >= 0.85
    # the interval's width is that of the noise the two do not share: 2 * 1.96 * sd(diff) / sqrt(units * blocks)
    expected = 2 * 1.96 * own * math.sqrt(2) / math.sqrt(n_units * n_blocks)
    assert 0.5 * expected < sum(widths) / len(widths) < 1.5 * expected


def test_stratified_bootstrap_with_one_stratum_is_the_hierarchical_one_in_distribution():
    a, _ = _shared_noise_world(random.Random(1))
    units = list(range(6))
    h = hierarchical_bootstrap(units, 8, lambda u, r: float(a[u, r].mean()), 400, seed=0)
    s = stratified_bootstrap(units, {"x": 8}, lambda u, r: float(a[u, r["x"]].mean()), 400, seed=1)
    assert h["mean"] == pytest.approx(s["mean"])
    assert abs((h["hi"] - h["lo"]) - (s["hi"] - s["lo"])) < 0.3 * (h["hi"] - h["lo"])


def test_shift_holds_needs_the_interval_to_exclude_zero_and_the_control_not_to():
    up, flat, down = {"mean": 0.2, "lo": 0.1, "hi": 0.3}, {"mean": 0.0, "lo": -0.1, "hi": 0.1}, {"mean": -0.2, "lo": -0.3, "hi": -0.1}
    assert shift_holds(up, flat, +1) and shift_holds(down, flat, -1) and shift_holds(up, None)
    assert not shift_holds(flat, flat, +1)            # the difference's interval holds zero
    assert not shift_holds(up, up, +1)                # the control shows the same change
    assert shift_holds(up, down, +1)                  # the control changes the other way
    assert not shift_holds(up, flat, -1)              # the claimed side matters
    with pytest.raises(ValueError, match="sign"):
        shift_holds(up, flat, 0)
