"""Overlap metrics and layer distributions, on hand-built score matrices with known answers."""

import random

import pytest
import torch

from mechshift_lite import compare
from mechshift_lite.experiment.bootstrap import over_units
from mechshift_lite.graph import Graph
from mechshift_lite.scores import Scores

GRAPH = Graph(n_layers=3, n_heads=2)


def FakeScores(tensor: torch.Tensor, graph: Graph = GRAPH) -> Scores:
    """Hand-built scores (no model behind them)."""
    return Scores(tensor, graph, method="hand-built", n_examples=1)


def scores_with(edges: dict[str, float], graph: Graph = GRAPH) -> FakeScores:
    t = torch.zeros(graph.n_src, graph.n_dst)
    for name, value in edges.items():
        t[graph.edge_index(name)] = value
    return FakeScores(t, graph)


def random_scores(seed: int, graph: Graph = GRAPH) -> FakeScores:
    t = torch.randn(graph.n_src, graph.n_dst, generator=torch.Generator().manual_seed(seed))
    return FakeScores(t * graph.edge_mask, graph)


def test_top_edges_rank_by_absolute_score():
    s = scores_with({"input->m0": 0.5, "a0.h1->m1": -3.0, "m2->logits": 1.0})
    assert compare.top_edges(s, 2) == {"a0.h1->m1", "m2->logits"}


def test_jaccard_extremes_and_self_overlap():
    s = random_scores(0)
    assert compare.edge_overlap(s, s, 10) == 1.0
    neg = FakeScores(-s.tensor)
    assert compare.edge_overlap(s, neg, 10) == 1.0       # absolute values: sign does not matter
    assert compare.jaccard({1, 2}, {3}) == 0.0 and compare.jaccard({1, 2}, {2, 3}) == pytest.approx(1 / 3)


@pytest.mark.parametrize("n_total, a, b", [(50, 5, 5), (110, 10, 20), (30, 30, 12)])
def test_chance_jaccard_matches_simulation(n_total, a, b):
    rng = random.Random(0)
    items = range(n_total)
    sims = [compare.jaccard(set(rng.sample(items, a)), set(rng.sample(items, b))) for _ in range(20000)]
    assert compare.chance_jaccard(n_total, a, b) == pytest.approx(sum(sims) / len(sims), abs=3e-3)


def test_component_scores_follow_the_papers_definition():
    s = scores_with({"a0.h1->a1.h0<k>": 2.0, "a0.h1->m2": -1.0, "a1.h0->logits": 0.5, "input->a0.h1<q>": 0.1})
    totals = compare.component_scores(s, n=3)   # the smallest edge is not in the top 3
    assert totals["a0.h1"] == pytest.approx(3.0)
    assert totals["a1.h0"] == pytest.approx(2.5)
    assert totals["m2"] == pytest.approx(1.0)
    assert compare.top_components(s, 3, 2) == ["a0.h1", "a1.h0"]


def test_component_overlap_reports_fraction_and_jaccard():
    a = scores_with({"a0.h0->m0": 3.0, "a0.h1->m1": 2.0})
    b = scores_with({"a0.h0->m0": 3.0, "a2.h1->m2": 2.0})
    result = compare.component_overlap(a, b, n=2, k=2)
    # a's top-2: a0.h0 (3), m0 (3); b's top-2: a0.h0 (3), m0 (3) -> identical
    assert result.shared_fraction == 1.0 and result.jaccard == 1.0
    result = compare.component_overlap(a, b, n=2, k=4)
    assert result.shared_fraction == pytest.approx(2 / 4) and result.jaccard == pytest.approx(2 / 6)


def test_layer_distribution_puts_mass_where_it_is():
    s = scores_with({"input->m0": 1.0, "input->a1.h0<v>": 1.0, "m2->logits": 2.0})
    labels, shares = compare.layer_distribution(s, by="src")
    assert labels[0] == "input" and shares.tolist() == pytest.approx([0.5, 0.0, 0.0, 0.5])
    labels, shares = compare.layer_distribution(s, by="dst")
    assert labels[-1] == "logits" and shares.tolist() == pytest.approx([0.25, 0.25, 0.0, 0.5])
    _, counts = compare.layer_distribution(s, n=2, by="src", weight="count")
    assert counts.sum() == pytest.approx(1.0)
    assert compare.early_share(s) == pytest.approx(0.5)     # input and layer 0 are early for L=3
    assert compare.mean_depth(s) == pytest.approx(0.5 * 0 + 0.5 * 1.0)


def test_front_loaded_scores_have_lower_depth():
    early = scores_with({"input->m0": 1.0, "a0.h0->m0": 1.0, "m2->logits": 0.1})
    late = scores_with({"input->m0": 0.1, "a1.h0->m2": 1.0, "m2->logits": 1.0})
    assert compare.early_share(early) > compare.early_share(late)
    assert compare.mean_depth(early) < compare.mean_depth(late)


def test_bad_inputs_are_refused():
    s = random_scores(1)
    with pytest.raises(ValueError, match="between 1 and the number of edges"):
        compare.top_edges(s, GRAPH.n_edges + 1)
    with pytest.raises(ValueError, match="cannot compare scores"):
        compare.edge_overlap(s, random_scores(2, Graph(2, 2)), 5)
    with pytest.raises(ValueError, match="k must be between"):
        compare.top_components(s, 5, 100)
    with pytest.raises(ValueError, match="all scores are zero"):
        compare.layer_distribution(FakeScores(torch.zeros(GRAPH.n_src, GRAPH.n_dst)))
    with pytest.raises(ValueError, match="no NaN"):
        over_units([1.0, float("nan")])


def test_bootstrap_interval_contains_mean_and_shrinks_with_more_data():
    g = torch.Generator().manual_seed(0)
    small, large = torch.randn(10, generator=g), torch.randn(1000, generator=g)
    mean, lo, hi = over_units(small).values()
    assert lo <= mean <= hi
    _, lo2, hi2 = over_units(large).values()
    assert hi2 - lo2 < hi - lo
    assert over_units(small, seed=3) == over_units(small, seed=3)


def test_spearman_is_the_correlation_of_ranks():
    a = torch.tensor([0.3, -1.0, 2.0, 0.1, 5.0], dtype=torch.float64)
    assert compare.spearman(a, a.exp()) == pytest.approx(1.0)            # any increasing map
    assert compare.spearman(a, -a) == pytest.approx(-1.0)
    b = torch.tensor([1.0, 2.0, 3.0, 5.0, 4.0], dtype=torch.float64)   # ranks 2,0,3,1,4 vs 0,1,2,4,3
    assert compare.spearman(a, b) == pytest.approx(1 - 6 * (4 + 1 + 1 + 9 + 1) / (5 * 24))


# ----- issue 11: N-free overlaps, signed components, depth and "early" ---------------------------------
def test_weighted_jaccard_on_hand_built_scores():
    a = scores_with({"input->m0": 1.0, "a0.h1->m1": -1.0})
    b = scores_with({"input->m0": 2.0, "m2->logits": 2.0})
    # normalised: a = (.5, .5, 0), b = (.5, 0, .5): sum of minima .5, of maxima 1.5
    assert compare.weighted_jaccard(a, b) == pytest.approx(1 / 3)
    s = random_scores(3)
    assert compare.weighted_jaccard(s, FakeScores(-7 * s.tensor)) == pytest.approx(1.0)   # scale and sign free
    assert compare.weighted_jaccard(scores_with({"input->m0": 1.0}), scores_with({"m2->logits": 1.0})) == 0.0
    with pytest.raises(ValueError, match="nonzero"):
        compare.weighted_jaccard(s, FakeScores(torch.zeros(GRAPH.n_src, GRAPH.n_dst)))


def test_edge_spearman_ranks_every_edge_by_magnitude():
    s = random_scores(4)
    assert compare.edge_spearman(s, FakeScores(-s.tensor ** 3)) == pytest.approx(1.0)
    mags = s.tensor[GRAPH.edge_mask].abs()
    inverted = torch.zeros_like(s.tensor)
    inverted[GRAPH.edge_mask] = 1 / mags
    assert compare.edge_spearman(s, FakeScores(inverted)) == pytest.approx(-1.0)


def test_signed_component_score_lets_opposite_edges_cancel():
    s = scores_with({"a0.h0->m1": 2.0, "a0.h0->m2": -2.0, "a1.h1->logits": 1.5, "input->m0": 0.2})
    signed = compare.signed_component_scores(s, n=3)
    assert signed["a0.h0"] == pytest.approx(0.0) and signed["a1.h1"] == pytest.approx(1.5)
    assert signed["m1"] == pytest.approx(2.0) and signed["m2"] == pytest.approx(-2.0)
    assert compare.component_scores(s, n=3)["a0.h0"] == pytest.approx(4.0)
    assert compare.top_components(s, 3, 1) == ["a0.h0"]
    assert "a0.h0" not in compare.top_components(s, 3, 3, signed=True)
    assert compare.component_overlap(s, s, 3, 3, signed=True).shared_fraction == 1.0


def test_early_cutoff_is_the_first_quarter_and_at_least_layer_0():
    assert [compare.early_cutoff(L) for L in (1, 3, 4, 7, 8, 12)] == [1, 1, 1, 1, 2, 3]
    with pytest.raises(ValueError, match="at least 1"):
        compare.early_cutoff(0)


def test_early_share_counts_sources_input_and_layer_0_and_its_chance_is_the_edge_share():
    g = Graph(n_layers=4, n_heads=2)
    s = scores_with({"input->m3": 1.0, "a0.h1->a2.h0<q>": 1.0, "m0->logits": 1.0, "a1.h0->m1": 3.0}, g)
    assert compare.early_share(s) == pytest.approx(3 / 6)
    assert compare.early_share(s, n=1) == 0.0            # the top edge alone is from layer 1
    early = sum(name.split("->")[0] in ("input", "a0.h0", "a0.h1", "m0") for name in g.edge_names)
    assert compare.early_share_chance(g) == pytest.approx(early / g.n_edges)
    equal = FakeScores(g.edge_mask.double(), g)
    assert compare.early_share(equal) == pytest.approx(compare.early_share_chance(g))


def test_mean_depth_of_sources_destinations_and_edges():
    L = GRAPH.n_layers
    one = lambda name: scores_with({name: 1.0})
    assert compare.mean_depth(one("input->logits"), by="edge") == pytest.approx(0.5)
    assert compare.mean_depth(one("a0.h0->m0"), by="src") == pytest.approx(1 / L)
    assert compare.mean_depth(one("a0.h0->m0"), by="dst") == pytest.approx(0.0)
    assert compare.mean_depth(one("a0.h0->m0"), by="edge") == pytest.approx(0.5 / L)
    assert compare.mean_depth(one("m2->logits"), by="dst") == pytest.approx(1.0)
    s = random_scores(5)
    _, shares = compare.layer_distribution(s, by="src")     # the older definition, unchanged
    assert compare.mean_depth(s) == pytest.approx(float((shares * torch.arange(L + 1) / L).sum()))
    assert compare.mean_depth(s, by="edge") == pytest.approx((compare.mean_depth(s, by="src") + compare.mean_depth(s, by="dst")) / 2)
    with pytest.raises(ValueError, match="by must be"):
        compare.mean_depth(s, by="middle")
