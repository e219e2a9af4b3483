"""Score statistics of one task: overlaps, depth, curves, diffusion steps and the post-training trajectory.

Each statistic is computed per seed (or per seed pair) from the block scores of :mod:`.pools`,
recombined for every bootstrap replicate, and reported as its mean over seeds with a 95%
interval (:func:`.bootstrap.hierarchical_bootstrap`). Every overlap is shown beside its baselines:

* ``ARM-MDM``: what diffusion post-training changed;
* ``ARM-ARMc``: what the same number of further *autoregressive* steps changed (training baseline);
* ``ARM-ARM'``: two ARMs of different seeds (seed baseline);
* ``chance``: two random edge sets of the same sizes.
"""

from __future__ import annotations

from itertools import combinations
from typing import Callable, Sequence

import torch
from torch import Tensor

from .. import compare
from ..graph import Graph
from ..scores import Scores
from ..zoo import KINDS
from .bootstrap import Stat, hierarchical_bootstrap
from .pools import ExperimentConfig, TaskData, combine, model_key


class Analysis:
    """Statistics of one task's :class:`TaskData` (scores are recombined per bootstrap replicate)."""

    def __init__(self, data: TaskData, graph: Graph, cfg: ExperimentConfig, seeds: list[int], n_boot: int):
        self.data, self.graph, self.cfg, self.seeds, self.n_boot = data, graph, cfg, seeds, n_boot
        self.n = max(1, round(cfg.edge_fraction * graph.n_edges))
        self.k = max(1, round(cfg.component_fraction * (graph.n_src - 1)))

    def scores(self, key: str, blocks: Tensor | None = None) -> Scores:
        """Scores of model ``key`` on the examples of ``blocks`` (None: the whole pool)."""
        blocks = torch.arange(self.cfg.n_chunks) if blocks is None else blocks
        return combine(self.data.scores[key][blocks], self.data.chunk_sizes[blocks], self.graph, self.cfg.method)

    def over_seeds(self, fn: Callable[[Callable[[str], Scores], int], float]) -> Stat:
        """``fn(get, seed)`` averaged over seeds, ``get(key)`` giving scores of resampled blocks."""
        return hierarchical_bootstrap(self.seeds, self.cfg.n_chunks, lambda s, b: fn(lambda key: self.scores(key, b), s), self.n_boot)

    def over_seed_pairs(self, fn: Callable[[Callable[[str], Scores], int, int], float]) -> Stat | None:
        pairs = list(combinations(self.seeds, 2))
        if not pairs:
            return None
        return hierarchical_bootstrap(pairs, self.cfg.n_chunks, lambda p, b: fn(lambda key: self.scores(key, b), *p), self.n_boot)

    # -- the Table-1 analogue
    def overlaps(self, n: int | None = None, k: int | None = None) -> dict:
        n, k = n or self.n, k or self.k
        edge = lambda a, b: compare.edge_overlap(a, b, n)
        comp = lambda a, b: compare.component_overlap(a, b, n, k).shared_fraction
        out = {"n_edges": n, "k_components": k,
               "chance_edge": compare.chance_jaccard(self.graph.n_edges, n, n),
               "chance_component": k / (self.graph.n_src - 1)}
        for name, metric in (("edge", edge), ("component", comp)):
            out[f"{name}_arm_mdm"] = self.over_seeds(lambda g, s: metric(g(f"arm/{s}"), g(f"mdm/{s}")))
            out[f"{name}_arm_armc"] = self.over_seeds(lambda g, s: metric(g(f"arm/{s}"), g(f"arm-continued/{s}")))
            out[f"{name}_arm_arm"] = self.over_seed_pairs(lambda g, s, t: metric(g(f"arm/{s}"), g(f"arm/{t}")))
        return out

    def depth(self) -> dict:
        out = {}
        for kind in KINDS:
            out[f"early_{kind}"] = self.over_seeds(lambda g, s: compare.early_fraction(g(f"{kind}/{s}")))
            out[f"depth_{kind}"] = self.over_seeds(lambda g, s: compare.mean_depth(g(f"{kind}/{s}")))
            shares = [compare.layer_distribution(self.scores(f"{kind}/{s}"), by="src")[1]
                      for s in self.seeds]
            out[f"layers_{kind}"] = torch.stack(shares).mean(0).tolist()
        out["early_mdm_minus_arm"] = self.over_seeds(
            lambda g, s: compare.early_fraction(g(f"mdm/{s}")) - compare.early_fraction(g(f"arm/{s}")))
        out["early_armc_minus_arm"] = self.over_seeds(
            lambda g, s: compare.early_fraction(g(f"arm-continued/{s}")) - compare.early_fraction(g(f"arm/{s}")))
        out["layer_labels"] = compare.layer_distribution(self.scores(f"arm/{self.seeds[0]}"), by="src")[0]
        return out

    def curve(self, fractions: Sequence[float] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)) -> dict:
        ns = sorted({max(1, round(f * self.graph.n_edges)) for f in fractions})
        rows = {"n": ns, "chance": [compare.chance_jaccard(self.graph.n_edges, n, n) for n in ns]}
        saved, self.n_boot = self.n_boot, max(50, self.n_boot // 5)   # curves: fewer replicates
        try:
            for label, pair in (("arm_mdm", ("arm", "mdm")), ("arm_armc", ("arm", "arm-continued"))):
                rows[label] = [self.over_seeds(lambda g, s: compare.edge_overlap(g(f"{pair[0]}/{s}"), g(f"{pair[1]}/{s}"), n)) for n in ns]
            rows["arm_arm"] = [self.over_seed_pairs(lambda g, s, t: compare.edge_overlap(g(f"arm/{s}"), g(f"arm/{t}"), n)) for n in ns]
        finally:
            self.n_boot = saved
        return rows

    def diffusion_steps(self, steps: Sequence[int]) -> dict:
        """Top-K component overlap of the MDM's circuit at each diffusion step with step 0's."""
        out = {"steps": list(steps)}
        out["component_overlap"] = [
            self.over_seeds(lambda g, s: compare.component_overlap(g(f"mdm/{s}"), g(model_key("mdm", s, diffusion_step=k)), self.n, self.k).shared_fraction)
            for k in steps]
        out["edge_overlap"] = [
            self.over_seeds(lambda g, s: compare.edge_overlap(g(f"mdm/{s}"), g(model_key("mdm", s, diffusion_step=k)), self.n))
            for k in steps]
        return out

    def trajectory(self, steps: Sequence[int]) -> dict:
        """ARM-MDM overlap along seed 0's post-training checkpoints (bootstrap over blocks only)."""
        s = self.seeds[0]
        keys = [model_key("mdm", s, step) for step in steps] + [f"mdm/{s}"]
        boot = lambda fn: hierarchical_bootstrap([s], self.cfg.n_chunks, lambda _, b: fn(lambda key: self.scores(key, b)), self.n_boot)
        return {
            "steps": list(steps) + ["final"],
            "edge_arm_mdm": [boot(lambda g: compare.edge_overlap(g(f"arm/{s}"), g(key), self.n)) for key in keys],
            "component_arm_mdm": [boot(lambda g: compare.component_overlap(g(f"arm/{s}"), g(key), self.n, self.k).shared_fraction) for key in keys],
            "edge_arm_armc": boot(lambda g: compare.edge_overlap(g(f"arm/{s}"), g(f"arm-continued/{s}"), self.n)),
            "early_fraction": [boot(lambda g: compare.early_fraction(g(key))) for key in keys],
        }
