"""Score statistics of one task: overlaps, depth, curves, diffusion steps and the post-training trajectory.

Each statistic is computed per seed (or per seed pair) from the block scores of :mod:`.pools`,
recombined for every bootstrap replicate, and reported as its mean over seeds with a 95%
interval (:func:`.bootstrap.hierarchical_bootstrap`). Every overlap is shown beside its baselines:

* ``ARM-MDM``: what diffusion post-training changed;
* ``ARM-ARMc``: what the same number of further *autoregressive* steps changed (training baseline);
* ``ARM-ARM'``: two ARMs of different seeds (seed baseline);
* ``chance``: two random edge sets of the same sizes.

Added for issue 11: N-free agreements (weighted Jaccard, Spearman) beside the top-N Jaccard
(:meth:`Analysis.agreement`), the split-half ceiling of every model (:meth:`Analysis.reliability`,
:mod:`.reliability`), paired differences (:meth:`Analysis.paired`, :func:`between_tasks`), the
depth profile by source and by destination with the mean edge depth (:meth:`Analysis.depth`) and
the component overlap over K (:meth:`Analysis.component_curve`).
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
from .bootstrap import Stat, distinct_resamples, hierarchical_bootstrap, over_units, stratified_bootstrap
from .pools import ExperimentConfig, TaskData, combine, model_key
from .reliability import split_half

N_SPLITS = 20
"""Random half-splits averaged in every split-half ceiling."""


def agreements(n: int) -> dict[str, Callable[[Scores, Scores], float]]:
    """The agreement measures of two score sets, by the name the report gives them: top-``n``
    Jaccard (``edge``), weighted Jaccard (``weighted``) and Spearman of all ``|score|`` (``spearman``)."""
    return {"edge": lambda a, b: compare.edge_overlap(a, b, n),
            "weighted": compare.weighted_jaccard,
            "spearman": compare.edge_spearman}


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
        signed = lambda a, b: compare.component_overlap(a, b, n, k, signed=True).shared_fraction
        out = {"n_edges": n, "k_components": k,
               "chance_edge": compare.chance_jaccard(self.graph.n_edges, n, n),
               "chance_component": k / (self.graph.n_src - 1)}
        for name, metric in (("edge", edge), ("component", comp), ("component_signed", signed)):
            out[f"{name}_arm_mdm"] = self.over_seeds(lambda g, s: metric(g(f"arm/{s}"), g(f"mdm/{s}")))
            out[f"{name}_arm_armc"] = self.over_seeds(lambda g, s: metric(g(f"arm/{s}"), g(f"arm-continued/{s}")))
            out[f"{name}_arm_arm"] = self.over_seed_pairs(lambda g, s, t: metric(g(f"arm/{s}"), g(f"arm/{t}")))
        return out

    def depth(self) -> dict:
        out = {}
        for kind in KINDS:
            out[f"depth_{kind}"] = self.over_seeds(lambda g, s: compare.mean_depth(g(f"{kind}/{s}")))
            shares = [compare.layer_distribution(self.scores(f"{kind}/{s}"), by="src")[1]
                      for s in self.seeds]
            out[f"layers_{kind}"] = torch.stack(shares).mean(0).tolist()
        out["early_mdm_minus_arm"] = self.over_seeds(
            lambda g, s: compare.early_share(g(f"mdm/{s}")) - compare.early_share(g(f"arm/{s}")))
        out["early_armc_minus_arm"] = self.over_seeds(
            lambda g, s: compare.early_share(g(f"arm-continued/{s}")) - compare.early_share(g(f"arm/{s}")))
        out["layer_labels"] = compare.layer_distribution(self.scores(f"arm/{self.seeds[0]}"), by="src")[0]
        out.update(self.depth_profile())
        return out

    def depth_profile(self) -> dict:
        """Issue 11's depth: the mass profile by source and by destination layer (``input`` and
        ``logits`` their own buckets), the mean depth of edges, sources and destinations, and the
        early share (:func:`~mechshift_lite.compare.early_share`) with its chance level."""
        out = {"layer_labels_dst": compare.layer_distribution(self.scores(f"arm/{self.seeds[0]}"), by="dst")[0],
               "early_cutoff": compare.early_cutoff(self.graph.n_layers),
               "early_share_chance": compare.early_share_chance(self.graph)}
        for kind in KINDS:
            out[f"layers_dst_{kind}"] = torch.stack([compare.layer_distribution(self.scores(f"{kind}/{s}"), by="dst")[1]
                                                     for s in self.seeds]).mean(0).tolist()
            for by in ("edge", "dst"):
                out[f"depth_{by}_{kind}"] = self.over_seeds(lambda g, s: compare.mean_depth(g(f"{kind}/{s}"), by=by))
            out[f"early_share_{kind}"] = self.over_seeds(lambda g, s: compare.early_share(g(f"{kind}/{s}")))
        return out

    # -- issue 11: N-free agreement, noise ceilings, paired differences, components over K
    def agreement(self) -> dict:
        """Weighted Jaccard and Spearman of ARM-MDM, ARM-ARMc and ARM-ARM' (N-free, beside the top-N Jaccard)."""
        out = {}
        for name, metric in agreements(self.n).items():
            if name == "edge":
                continue   # the top-N Jaccard is in overlaps()
            out[f"{name}_arm_mdm"] = self.over_seeds(lambda g, s: metric(g(f"arm/{s}"), g(f"mdm/{s}")))
            out[f"{name}_arm_armc"] = self.over_seeds(lambda g, s: metric(g(f"arm/{s}"), g(f"arm-continued/{s}")))
            out[f"{name}_arm_arm"] = self.over_seed_pairs(lambda g, s, t: metric(g(f"arm/{s}"), g(f"arm/{t}")))
        return out

    def reliability(self, n_splits: int = N_SPLITS) -> dict:
        """Split-half ceiling (:mod:`.reliability`) of every model kind for every agreement measure:
        mean over seeds (interval over seeds) of each seed's mean over ``n_splits`` random splits."""
        out = {"n_splits": n_splits, "n_blocks_per_half": self.cfg.n_chunks // 2}
        for name, metric in agreements(self.n).items():
            for kind in KINDS:
                per_seed = [split_half(self.data.scores[f"{kind}/{s}"], self.data.chunk_sizes, self.graph, metric,
                                       n_splits, seed=s, method=self.cfg.method) for s in self.seeds]
                out[f"ceiling_{name}_{kind}"] = over_units(per_seed, self.n_boot)
                out[f"ceiling_{name}_{kind}_per_seed"] = per_seed
        return out

    def paired(self) -> dict:
        """Paired differences per seed and block (:mod:`.bootstrap`): ARM-ARMc minus ARM-MDM agreement
        (what diffusion changed beyond further AR training), and MDM - ARM / ARMc - ARM depth and early share."""
        out = {"n_seed_resamples": distinct_resamples(len(self.seeds))}
        comp = lambda a, b: compare.component_overlap(a, b, self.n, self.k).shared_fraction
        for name, metric in {**agreements(self.n), "component": comp}.items():
            out[f"{name}_armc_minus_mdm"] = self.over_seeds(
                lambda g, s: metric(g(f"arm/{s}"), g(f"arm-continued/{s}")) - metric(g(f"arm/{s}"), g(f"mdm/{s}")))
        stats = {"depth": lambda sc: compare.mean_depth(sc, by="edge"), "early_share": compare.early_share}
        for name, stat in stats.items():
            for kind, label in (("mdm", "mdm"), ("arm-continued", "armc")):
                out[f"{name}_{label}_minus_arm"] = self.over_seeds(lambda g, s: stat(g(f"{kind}/{s}")) - stat(g(f"arm/{s}")))
        return out

    def component_curve(self, fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5)) -> dict:
        """Top-K component overlap (shared fraction ``|A ∩ B| / K``) over K as a fraction of the
        components, |score| and signed, with its chance level ``K / n_components``."""
        n_comp = self.graph.n_src - 1
        ks = sorted({max(1, round(f * n_comp)) for f in fractions})
        rows = {"k": ks, "fraction": [k / n_comp for k in ks], "chance": [k / n_comp for k in ks]}
        saved, self.n_boot = self.n_boot, max(50, self.n_boot // 5)   # curves: fewer replicates
        try:
            for signed in (False, True):
                for label, other in (("arm_mdm", "mdm"), ("arm_armc", "arm-continued")):
                    rows[("signed_" if signed else "") + label] = [self.over_seeds(
                        lambda g, s: compare.component_overlap(g(f"arm/{s}"), g(f"{other}/{s}"), self.n, k, signed).shared_fraction)
                        for k in ks]
        finally:
            self.n_boot = saved
        return rows

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
        """Top-K component overlap and top-N edge Jaccard of the MDM's circuit at each diffusion step
        with step 0's (the corrupted canvas holds the model's own commits), and under ``"before_commit"``
        the same two for each example's canvas just before it commits the explained slot."""
        def versus_step_0(view_key) -> dict:
            return {"component_overlap": self.over_seeds(
                        lambda g, s: compare.component_overlap(g(f"mdm/{s}"), g(view_key(s)), self.n, self.k).shared_fraction),
                    "edge_overlap": self.over_seeds(lambda g, s: compare.edge_overlap(g(f"mdm/{s}"), g(view_key(s)), self.n))}

        at_steps = [versus_step_0(lambda s, k=k: model_key("mdm", s, diffusion_step=k)) for k in steps]
        return {"steps": list(steps), **{name: [o[name] for o in at_steps] for name in ("component_overlap", "edge_overlap")},
                "before_commit": versus_step_0(lambda s: model_key("mdm", s, before_commit=True))}

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
            "early_share": [boot(lambda g: compare.early_share(g(key))) for key in keys],
        }


def between_tasks(analyses: dict[str, Analysis], first: str = "ioi", second: str = "countdown") -> dict:
    """Paired differences between two tasks: the seeds pair them (the same models), each task's
    blocks are resampled independently (:func:`.bootstrap.stratified_bootstrap`).

    Keys: ``{m}_arm_mdm_{first}_minus_{second}`` (ARM-MDM agreement), its control
    ``{m}_arm_armc_{first}_minus_{second}``, and ``{m}_shift_{second}_minus_{first}``, where a
    task's shift is its ARM-ARMc agreement minus its ARM-MDM agreement, for ``m`` in the top-N
    Jaccard (``edge``), weighted Jaccard and Spearman.
    """
    a, b = analyses[first], analyses[second]
    if a.seeds != b.seeds:
        raise ValueError(f"the tasks must share their seeds; got {a.seeds} and {b.seeds}")
    strata = {first: a.cfg.n_chunks, second: b.cfg.n_chunks}
    out = {"n_seed_resamples": distinct_resamples(len(a.seeds))}

    def boot(fn: Callable[[Analysis, Tensor, int], float], sign_first: float, sign_second: float) -> Stat:
        return stratified_bootstrap(a.seeds, strata, lambda s, rows: sign_first * fn(a, rows[first], s)
                                    + sign_second * fn(b, rows[second], s), a.n_boot)

    for name in agreements(a.n):
        def pair(kind: str, name=name):
            return lambda an, blocks, s: agreements(an.n)[name](an.scores(f"arm/{s}", blocks), an.scores(f"{kind}/{s}", blocks))
        shift = lambda an, blocks, s, name=name: pair("arm-continued", name)(an, blocks, s) - pair("mdm", name)(an, blocks, s)
        out[f"{name}_arm_mdm_{first}_minus_{second}"] = boot(pair("mdm"), 1.0, -1.0)
        out[f"{name}_arm_armc_{first}_minus_{second}"] = boot(pair("arm-continued"), 1.0, -1.0)
        out[f"{name}_shift_{second}_minus_{first}"] = boot(shift, -1.0, 1.0)
    return out
