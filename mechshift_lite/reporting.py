"""The report: every analysis of the paper (and the checks it did not run) on the zoo, with CIs.

``report()`` runs :func:`mechshift_lite.experiment.collect`, computes each statistic per seed,
and gives its mean over seeds with a 95% **hierarchical bootstrap** interval: resample the seeds
(or the seed pairs), then the blocks of examples within them. Results are cached as JSON under a
key made of the zoo's sha256 sums, the package version and the experiment config, so the book
never recomputes what it has.

Every overlap is shown beside its baselines:

* ``ARM-MDM``: what diffusion post-training changed;
* ``ARM-ARMc``: what the same number of further *autoregressive* steps changed (training baseline);
* ``ARM-ARM'``: two ARMs of different seeds (seed baseline);
* ``chance``: two random edge sets of the same sizes.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from itertools import combinations
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import __version__, ablation, compare, neurons, zoo
from .scores import Scores
from .experiment import KINDS, TASKS, ExperimentConfig, TaskData, collect, combine, correct, model_inputs, model_key, trajectory_steps, zoo_seeds
from .graph import Graph
from .lens import component_lens, winners
from .tasks import ioi

MARKER = ".mechshift-report"
DIFFUSION_STEPS = (0, 4, 8, 16, 24)   # committed answer tokens; the canvas has about 25 answer slots
N_ABLATE = 3
N_RANDOM_DRAWS = 20
Stat = dict  # {"mean": float, "lo": float, "hi": float}


# ----- bootstrap ---------------------------------------------------------------------------------
def hierarchical_bootstrap(
    units: Sequence, n_blocks: int, value: Callable[[object, Tensor], float], n_boot: int = 500, seed: int = 0
) -> Stat:
    """Mean over ``units`` of ``value(unit, blocks)`` and its 95% bootstrap interval.

    Each replicate resamples the units with replacement, then (independently per unit) the
    ``n_blocks`` example blocks with replacement. ``blocks`` is a LongTensor of block indices.

    The point estimate uses all examples; the interval is the percentile interval. For bounded,
    non-smooth statistics (overlaps of top-N sets near 0 or 1, shares of ``|score|``, which grow
    when resampled blocks average less noise away) the interval need not be centred on the
    point estimate, and may even exclude it: read it as the spread under resampling.
    """
    all_blocks = torch.arange(n_blocks)
    point = sum(value(u, all_blocks) for u in units) / len(units)
    rng = random.Random(seed)
    reps = []
    for _ in range(n_boot):
        picked = [units[rng.randrange(len(units))] for _ in units]
        reps.append(sum(value(u, torch.tensor([rng.randrange(n_blocks) for _ in range(n_blocks)])) for u in picked) / len(picked))
    lo, hi = torch.quantile(torch.tensor(reps, dtype=torch.float64), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"mean": float(point), "lo": lo, "hi": hi}


class Analysis:
    """Statistics of one task's :class:`TaskData` (scores are recombined per bootstrap replicate)."""

    def __init__(self, data: TaskData, graph: Graph, cfg: ExperimentConfig, seeds: list[int], n_boot: int):
        self.data, self.graph, self.cfg, self.seeds, self.n_boot = data, graph, cfg, seeds, n_boot
        self.n = max(1, round(cfg.edge_fraction * graph.n_edges))
        self.k = max(1, round(cfg.component_fraction * (graph.n_src - 1)))

    def scores(self, key: str, blocks: Tensor) -> Scores:
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
            shares = [compare.layer_distribution(self.scores(f"{kind}/{s}", torch.arange(self.cfg.n_chunks)), by="src")[1]
                      for s in self.seeds]
            out[f"layers_{kind}"] = torch.stack(shares).mean(0).tolist()
        out["early_mdm_minus_arm"] = self.over_seeds(
            lambda g, s: compare.early_fraction(g(f"mdm/{s}")) - compare.early_fraction(g(f"arm/{s}")))
        out["early_armc_minus_arm"] = self.over_seeds(
            lambda g, s: compare.early_fraction(g(f"arm-continued/{s}")) - compare.early_fraction(g(f"arm/{s}")))
        out["layer_labels"] = compare.layer_distribution(self.scores(f"arm/{self.seeds[0]}", torch.arange(self.cfg.n_chunks)), by="src")[0]
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


# ----- analyses that run the models (lens, neurons, ablations) -------------------------------------
def _row_bootstrap(values: dict[int, Tensor], stat: Callable[[Tensor], float], n_boot: int, seed: int = 0,
                   resample_examples: bool = True) -> Stat:
    """Mean over seeds of ``stat(per-example values)``; bootstrap resamples seeds, then examples.

    Counts of *distinct* items (e.g. distinct winning components) shrink under resampling with
    replacement, so for those ``resample_examples=False`` resamples the seeds only.
    """
    units = list(values)
    point = sum(stat(values[u]) for u in units) / len(units)
    rng = random.Random(seed)

    def resampled(u) -> Tensor:
        if not resample_examples:
            return values[u]
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        return values[u][torch.randint(0, len(values[u]), (len(values[u]),), generator=g)]

    reps = []
    for _ in range(n_boot):
        picked = [units[rng.randrange(len(units))] for _ in units]
        reps.append(sum(stat(resampled(u)) for u in picked) / len(picked))
    lo, hi = torch.quantile(torch.tensor(reps, dtype=torch.float64), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"mean": float(point), "lo": lo, "hi": hi}


def _winner_stats(winner_ids: Tensor) -> tuple[float, float]:
    counts = torch.bincount(winner_ids)
    counts = counts[counts > 0].double()
    return float(len(counts)), float(counts.var(unbiased=False))


def lens_analysis(models: dict, pairs, tokenizer, seeds: list[int], analysis: Analysis, n_boot: int) -> dict:
    """Component logit lens at the readout on the pool's clean inputs, ARM vs MDM."""
    winner_ids, entropy_top, example = {}, {}, {}
    for kind in ("arm", "mdm"):
        winner_ids[kind], entropy_top[kind] = {}, {}
        for s in seeds:
            model = models[f"{kind}/{s}"]
            inputs = model_inputs(model, pairs, tokenizer)
            lens = component_lens(model, inputs.clean_ids, pairs.readout_pos, inputs.attention_mask, inputs.attention)
            diffs = lens.logit_diff(pairs.answer_ids, pairs.distractor_ids)[1:]          # components only
            winner_ids[kind][s] = diffs.argmax(0)
            top = compare.top_components(analysis.scores(f"{kind}/{s}", torch.arange(analysis.cfg.n_chunks)), analysis.n, analysis.k)
            idx = [lens.names.index(c) for c in top]
            entropy_top[kind][s] = lens.entropy()[idx].mean(0)                           # [n_examples]
            if s == seeds[0]:
                stats = winners(lens, pairs.answer_ids, pairs.distractor_ids)
                example[kind] = {"counts": stats.counts,
                                 "top_tokens": {c: [[tokenizer.tokens[t], round(v, 3)] for t, v in lens.top_tokens(c, 0, 5)] for c in top[:4]}}
    out = {"example_seed": seeds[0], "example": example, "prompt": pairs.examples[0].prompt}
    for kind in ("arm", "mdm"):
        # counts of distinct winners: CI over seeds only (see _row_bootstrap)
        out[f"winners_{kind}"] = _row_bootstrap(winner_ids[kind], lambda w: _winner_stats(w)[0], n_boot, resample_examples=False)
        out[f"winner_variance_{kind}"] = _row_bootstrap(winner_ids[kind], lambda w: _winner_stats(w)[1], n_boot, resample_examples=False)
        out[f"entropy_top_{kind}"] = _row_bootstrap(entropy_top[kind], lambda e: float(e.mean()), n_boot)
    return out


def _categorise(token: str) -> int | None:
    """Token categories of the neuron analysis: digit, operator/punctuation, name, other word."""
    if token.startswith("["):
        return None
    if token.isdigit():
        return 0
    if not token[0].isalpha():
        return 1
    return 2 if token in ioi.NAMES else 3


CATEGORIES = ("digit", "operator/punctuation", "name", "other word")


def pooled_neuron_activations(model, pools: Sequence, tokenizer, layer: int) -> tuple[Tensor, Tensor]:
    """MLP ``layer``'s activations on the clean inputs of several pair sets, as one sequence.

    Returns ``acts [1, N, d_mlp]`` and token ``categories [1, N]`` (index into :data:`CATEGORIES`,
    ``-1`` for special tokens), ``N`` = all positions of all pools (their lengths may differ).
    """
    acts_all, cats_all = [], []
    for pairs in pools:
        inputs = model_inputs(model, pairs, tokenizer)
        acts = neurons.activations(model, inputs.clean_ids, layer, inputs.attention_mask, inputs.attention)
        cats = neurons.token_categories(inputs.clean_ids, tokenizer.tokens, _categorise)
        acts_all.append(acts.reshape(-1, acts.shape[-1]))
        cats_all.append(cats.reshape(-1))
    return torch.cat(acts_all)[None], torch.cat(cats_all)[None]


def neuron_analysis(models: dict, pools: dict, tokenizer, seeds: list[int], n_boot: int, layer: int = 0) -> dict:
    """Layer-``layer`` MLP neurons over both tasks' pool prompts: selectivity and breadth, ARM vs MDM."""
    sel, brd, heat = {}, {}, {}
    for kind in ("arm", "mdm"):
        sel[kind], brd[kind] = {}, {}
        for s in seeds:
            acts, cats = pooled_neuron_activations(models[f"{kind}/{s}"], list(pools.values()), tokenizer, layer)
            real = (cats >= 0).long()
            profile = neurons.category_profile(acts, cats, len(CATEGORIES))
            s_vals = neurons.selectivity(profile)
            sel[kind][s] = s_vals[~s_vals.isnan()]
            brd[kind][s] = neurons.breadth(acts, real)
            if s == seeds[0]:
                top = neurons.top_neurons(acts, 16, real)
                heat[kind] = {"neurons": top.tolist(), "profile": profile[:, top].tolist()}
    out = {"layer": layer, "categories": list(CATEGORIES), "heatmap": heat}
    for kind in ("arm", "mdm"):
        out[f"selectivity_{kind}"] = _row_bootstrap(sel[kind], lambda v: float(v.median()), n_boot)
        out[f"breadth_{kind}"] = _row_bootstrap(brd[kind], lambda v: float(v.median()), n_boot)
    return out


@torch.no_grad()
def _accuracy_with(model, inputs, pairs, nodes, means) -> float:
    logits = ablation.ablated_logits(model, inputs.clean_ids, nodes, "mean", inputs.attention_mask, inputs.attention, means)
    top = logits[torch.arange(len(pairs)), pairs.readout_pos].argmax(-1)
    return float((top == pairs.answer_ids).double().mean())


def ablation_analysis(models: dict, pairs, tokenizer, seeds: list[int], analysis: Analysis) -> dict:
    """Mean-ablate each model's top early-layer components vs as many random ones (accuracy on the pool)."""
    early = compare.early_layers(analysis.graph.n_layers)
    out = {"n_ablated": N_ABLATE, "early_layers": early}
    for kind in ("arm", "mdm"):
        targeted, random_drop = [], []
        for s in seeds:
            model = models[f"{kind}/{s}"]
            inputs = model_inputs(model, pairs, tokenizer)
            means = ablation.mean_outputs(model, inputs.clean_ids, analysis.graph.src_names[1:], inputs.attention_mask, inputs.attention)
            totals = compare.component_scores(analysis.scores(f"{kind}/{s}", torch.arange(analysis.cfg.n_chunks)), analysis.n)
            ranked = sorted((c for c in totals if ablation.layer_of(c) < early), key=lambda c: -totals[c])[:N_ABLATE]
            targeted.append(1.0 - _accuracy_with(model, inputs, pairs, ranked, means))
            draws = [ablation.random_components(analysis.graph, N_ABLATE, seed=1000 * s + d) for d in range(N_RANDOM_DRAWS)]
            random_drop.append(sum(1.0 - _accuracy_with(model, inputs, pairs, nodes, means) for nodes in draws) / N_RANDOM_DRAWS)
            if s == seeds[0]:
                out[f"components_{kind}"] = ranked
        out[f"drop_targeted_{kind}"] = _mean_ci(targeted)
        out[f"drop_random_{kind}"] = _mean_ci(random_drop)
    return out


def _mean_ci(values: Sequence[float]) -> Stat:
    mean, lo, hi = compare.bootstrap_ci(values)
    return {"mean": mean, "lo": lo, "hi": hi}


# ----- the report ------------------------------------------------------------------------------------
def code_version() -> str:
    """sha256 of the package's Python sources: any code change invalidates cached reports."""
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(cfg: ExperimentConfig, zoo_dir=zoo.ZOO_DIR) -> str:
    """sha256 of the zoo's checkpoint sums, the code version and the config."""
    sums = sorted(e["sha256"] for e in zoo.manifest(zoo_dir)["checkpoints"].values())
    blob = json.dumps({"zoo": sums, "code": code_version(), "config": cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    import os

    return Path(os.environ.get("MECHSHIFT_CACHE", Path.home() / ".cache" / "mechshift-lite"))


def compute(cfg: ExperimentConfig, n_boot: int = 500, zoo_dir=zoo.ZOO_DIR, progress: bool = True) -> dict:
    """Every number of the report, as a JSON-ready dict (no caching; see :func:`report`)."""
    seeds = zoo_seeds(zoo_dir)
    if not seeds:
        raise ValueError("the zoo has no seed with all of arm, mdm and arm-continued: build it first (mechshift-lite zoo train)")
    post_steps = trajectory_steps(seeds[0], zoo_dir)   # read once: the zoo may grow while we work
    data = collect(cfg, seeds, DIFFUSION_STEPS, post_steps, zoo_dir, progress)
    tokenizer = zoo.tokenizer(zoo_dir)
    models = {model_key(k, s): zoo.load(k, s, zoo_dir=zoo_dir) for s in seeds for k in KINDS}
    graph = next(iter(models.values())).graph
    result = {"version": __version__, "config": cfg.to_dict(), "seeds": seeds, "n_boot": n_boot,
              "graph": {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "n_edges": graph.n_edges},
              "tasks": {}}
    bar = tqdm(total=len(TASKS) * 7 + 1, desc="analysing", disable=not progress)
    for task in TASKS:
        d = data[task]
        a = Analysis(d, graph, cfg, seeds, n_boot)
        stages = {
            "overlap": a.overlaps,
            "curve": a.curve,
            "depth": a.depth,
            "diffusion_steps": lambda: a.diffusion_steps([k for k in DIFFUSION_STEPS if k > 0]),
            "trajectory": lambda: a.trajectory(post_steps),
            "lens": lambda: lens_analysis(models, d.pairs, tokenizer, seeds, a, n_boot),
            "ablation": lambda: ablation_analysis(models, d.pairs, tokenizer, seeds, a),
        }
        out = result["tasks"][task] = {"pool": {"n_drawn": d.n_drawn, "n_common_correct": len(d.pairs), "accuracy": d.accuracy}}
        for name, stage in stages.items():
            bar.set_postfix_str(f"{task}: {name}")
            out[name] = stage()
            bar.update()
    bar.set_postfix_str("neurons")
    result["neurons"] = neuron_analysis(models, {t: data[t].pairs for t in TASKS}, tokenizer, seeds, n_boot)
    bar.update()
    bar.close()
    result["verdict"] = verdict(result)
    return result


def verdict(result: dict) -> list[dict]:
    """The paper's three directions, each with the numbers that decide it."""
    t = result["tasks"]
    ioi_j, cd_j = t["ioi"]["overlap"]["edge_arm_mdm"], t["countdown"]["overlap"]["edge_arm_mdm"]
    front = t["countdown"]["depth"]["early_mdm_minus_arm"]
    front_ioi = t["ioi"]["depth"]["early_mdm_minus_arm"]
    w = {task: (t[task]["lens"]["winners_arm"]["mean"], t[task]["lens"]["winners_mdm"]["mean"]) for task in TASKS}
    ent = {task: (t[task]["lens"]["entropy_top_arm"]["mean"], t[task]["lens"]["entropy_top_mdm"]["mean"]) for task in TASKS}
    return [
        {"claim": "ARM-MDM edge overlap is higher on IOI (local) than on Countdown (global)",
         "holds": ioi_j["mean"] > cd_j["mean"],
         "evidence": f"IOI {_fmt(ioi_j)} vs Countdown {_fmt(cd_j)}"},
        {"claim": "the MDM front-loads attribution on Countdown (early-layer fraction MDM - ARM > 0, CI above 0)",
         "holds": front["lo"] > 0,
         "evidence": f"Countdown {_fmt(front)}; IOI {_fmt(front_ioi)}"},
        {"claim": "the MDM is more distributed (more distinct winning components and flatter lens on both tasks)",
         "holds": all(w[k][1] > w[k][0] and ent[k][1] > ent[k][0] for k in TASKS),
         "evidence": "; ".join(f"{k}: winners ARM {w[k][0]:.1f} / MDM {w[k][1]:.1f}, lens entropy ARM {ent[k][0]:.2f} / MDM {ent[k][1]:.2f}" for k in TASKS)},
    ]


def versus(a: Stat, b: Stat) -> str:
    """``"above"`` / ``"below"`` when the two 95% intervals do not overlap, else ``"not separable from"``."""
    if a["lo"] > b["hi"]:
        return "above"
    if a["hi"] < b["lo"]:
        return "below"
    return "not separable from"


def summary(result: dict) -> str:
    """What the miniature found, in sentences (Markdown), every comparison decided by the intervals.

    Two statistics are "above" or "below" each other only when their 95% intervals do not overlap;
    otherwise they are "not separable" with these seeds and examples.
    """
    lines = []
    for task, title in (("ioi", "IOI (local)"), ("countdown", "Countdown (global)")):
        o, d = result["tasks"][task]["overlap"], result["tasks"][task]["depth"]
        mdm, armc, seeds = o["edge_arm_mdm"], o["edge_arm_armc"], o["edge_arm_arm"]
        text = (f"**{title}.** The ARM-MDM edge Jaccard is {_fmt(mdm)}: {versus(mdm, armc)} the ARM-ARM-continued "
                f"overlap {_fmt(armc)}")
        if seeds is not None:
            text += f", {versus(mdm, seeds)} the overlap of two ARM seeds {_fmt(seeds)}"
        text += (f", and far above chance ({o['chance_edge']:.3f}). The MDM's early-layer fraction minus the ARM's is "
                 f"{_fmt(d['early_mdm_minus_arm'])}; the ARM-continued control's is {_fmt(d['early_armc_minus_arm'])}.")
        lines.append(text)
    held = sum(v["holds"] for v in result["verdict"])
    lines.append(f"Of the paper's three directions, {held} hold in this miniature (see the verdict table).")
    return "\n\n".join(lines)


def _fmt(stat: Stat | None) -> str:
    if stat is None:
        return "n/a"
    return f"{stat['mean']:.3f} [{stat['lo']:.3f}, {stat['hi']:.3f}]"


def table(result: dict) -> str:
    """The Table-1 analogue as text: task x metric, ARM-MDM beside its baselines (mean [95% CI])."""
    lines = [f"{'task':10s} {'metric':22s} {'ARM-MDM':>24s} {'ARM-ARMc':>24s} {'ARM-ARM (seeds)':>24s} {'chance':>7s}"]
    for task in TASKS:
        o = result["tasks"][task]["overlap"]
        for name, label, chance in (("edge", f"edge Jaccard (N={o['n_edges']})", o["chance_edge"]),
                                    ("component", f"top-K share (K={o['k_components']})", o["chance_component"])):
            lines.append(f"{task:10s} {label:22s} {_fmt(o[f'{name}_arm_mdm']):>24s} {_fmt(o[f'{name}_arm_armc']):>24s} "
                         f"{_fmt(o[f'{name}_arm_arm']):>24s} {chance:7.3f}")
        d = result["tasks"][task]["depth"]
        lines.append(f"{task:10s} {'early-layer fraction':22s} {'MDM ' + _fmt(d['early_mdm']):>24s} {'ARMc ' + _fmt(d['early_arm-continued']):>24s} {'ARM ' + _fmt(d['early_arm']):>24s}")
    return "\n".join(lines)


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir``, or reuse it if it is one of ours; never write into a user's folder."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(
            f"{out} exists and is not a mechshift-lite report folder (no {MARKER} file); "
            "choose a new or empty folder so none of your files is overwritten"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by mechshift_lite.report\n")
    return out


def report(out_dir: str | Path | None = None, cfg: ExperimentConfig = ExperimentConfig(), n_boot: int = 500,
           cache_dir: str | Path | None = None, zoo_dir=zoo.ZOO_DIR, progress: bool = True, recompute: bool = False) -> dict:
    """Compute (or load from the cache) the report; optionally write JSON, table and figures to ``out_dir``.

    The cache file is ``<cache_dir>/report-<key>.json`` with ``key`` from :func:`cache_key`;
    a cached file whose stored key differs is stale and is recomputed.
    """
    key = cache_key(cfg, zoo_dir)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"report-{key}-boot{n_boot}.json"
    result = None
    if path.exists() and not recompute:
        stored = json.loads(path.read_text())
        result = stored if stored.get("cache_key") == key else None   # stale or foreign file
    if result is None:
        result = compute(cfg, n_boot, zoo_dir, progress)
        result["cache_key"] = key
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
    if out_dir is not None:
        from . import plots

        out = prepare_out_dir(out_dir)
        (out / "report.json").write_text(json.dumps(result, indent=1))
        (out / "table.txt").write_text(table(result) + "\n")
        plots.save_report_figures(result, out)
    return result
