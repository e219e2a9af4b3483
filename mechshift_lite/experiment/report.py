"""The report: every analysis of the paper (and the checks it did not run) on the zoo, with CIs.

:func:`compute` goes down the experiment once: the pools and their attribution
(:func:`.pools.collect`), the score statistics per task (:class:`.statistics.Analysis`), the
analyses that run the models (:mod:`.analyses`), the verdict (:mod:`.verdicts`). Every number
is a mean over seeds with a 95% hierarchical bootstrap interval (:mod:`.bootstrap`).
:func:`report` caches the result as JSON under a key made of the zoo's sha256 sums, the package's
sources and the experiment config (:mod:`.cache`), so the book never recomputes what it has, and
writes the output folder (:mod:`.output`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import __version__, zoo
from ..zoo import KINDS
from . import output, shipped
from .analyses import ablation_analysis, commit_analysis, lens_analysis, neuron_analysis
from .cache import cache_key, default_cache_dir
from .pools import BOTH_DECISIONS, TASKS, X_DECISION, ExperimentConfig, TaskData, collect, model_key, trajectory_steps, zoo_seeds
from .statistics import Analysis, between_tasks
from .verdicts import PAIRED_RULE, paired_verdict, verdict
from .workers import call, check_workers, default_workers, run_jobs_with_bar

DIFFUSION_STEPS = (0, 4, 8, 16, 24)   # committed answer tokens; the canvas has about 25 answer slots
TASK_SECTIONS = ("overlap", "curve", "depth", "diffusion_steps", "trajectory", "lens", "ablation", "agreement",
                 "reliability", "paired", "component_curve", "diffusion_commits")
"""The sections of each task's part of the report, in the report's order; lens, ablation and
diffusion_commits run the models, the others are statistics of the attribution scores."""
X_DECISION_SECTIONS = {"overlap": "overlaps", "agreement": "agreement", "depth": "depth", "reliability": "reliability",
                       "paired": "paired"}
"""The sections of Countdown's second decision (``tasks.countdown.x_decision``, :data:`.pools.X_DECISION`),
by the :class:`~.statistics.Analysis` method that computes each: its final models only."""


def compute(cfg: ExperimentConfig, n_boot: int = 500, zoo_dir=zoo.ZOO_DIR, progress: bool = True,
            workers: int | None = None) -> dict:
    """Every number of the report, as a JSON-ready dict (no caching; see :func:`report`).

    Computed on one thread per process whatever the machine: a float sum split over threads is
    rounded differently, and rank statistics (Spearman, top-N sets) turn such rounding into visible
    differences, so the same zoo gives the same report with any thread count. ``workers``: the
    attributions are spread over this many one-thread processes (default
    :func:`~.workers.default_workers`); the numbers are the same for any count.
    """
    workers = default_workers() if workers is None else check_workers(workers)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _compute(cfg, n_boot, zoo_dir, progress, workers)
    finally:
        torch.set_num_threads(threads)


def _compute(cfg: ExperimentConfig, n_boot: int, zoo_dir, progress: bool, workers: int) -> dict:
    seeds = zoo_seeds(zoo_dir)
    if not seeds:
        raise ValueError("the zoo has no seed with all of arm, mdm and arm-continued: build it first (mechshift-lite zoo train)")
    post_steps = trajectory_steps(seeds[0], zoo_dir)   # read once: the zoo may grow while we work
    data = collect(cfg, seeds, DIFFUSION_STEPS, post_steps, zoo_dir, progress, workers)
    tokenizer = zoo.tokenizer(zoo_dir)
    models = {model_key(k, s): zoo.load(k, s, zoo_dir=zoo_dir) for s in seeds for k in KINDS}
    graph = next(iter(models.values())).graph
    result = {"version": __version__, "config": cfg.to_dict(), "seeds": seeds, "n_boot": n_boot,
              "graph": {"n_layers": graph.n_layers, "n_heads": graph.n_heads, "n_edges": graph.n_edges},
              "tasks": {}}
    steps = [k for k in DIFFUSION_STEPS if k > 0]
    analyses = {task: Analysis(data[task], graph, cfg, seeds, n_boot) for task in TASKS}
    x_analysis = Analysis(data[X_DECISION], graph, cfg, seeds, n_boot)
    jobs = {"neurons": (neuron_analysis, models, {t: data[t].pairs for t in TASKS}, tokenizer, seeds, n_boot)}
    per_task = {task: _section_jobs(a, models, tokenizer, seeds, steps, post_steps, n_boot) for task, a in analyses.items()}
    jobs.update({(task, name): per_task[task][name] for name in per_task[TASKS[0]] for task in TASKS})
    jobs.update({(X_DECISION, name): (getattr(x_analysis, method),) for name, method in X_DECISION_SECTIONS.items()})
    ran = run_jobs_with_bar(call, jobs, workers, "analysing", progress)
    for task in TASKS:
        out = result["tasks"][task] = {"pool": _pool(data[task], task in BOTH_DECISIONS)}
        out.update({name: ran[task, name] for name in TASK_SECTIONS})
    result["tasks"]["countdown"]["x_decision"] = {"pool": _pool(data[X_DECISION], True),
                                                  **{name: ran[X_DECISION, name] for name in X_DECISION_SECTIONS}}
    result["neurons"] = ran["neurons"]
    result["between_tasks"] = between_tasks(analyses)
    result["verdict"] = verdict(result)
    result["verdict_paired"] = paired_verdict(result)
    result["verdict_paired_rule"] = PAIRED_RULE
    return result


def _pool(d: TaskData, both_decisions: bool) -> dict:
    """The ``pool`` section of a decision: pairs drawn, common-correct and attributed, each model's accuracy."""
    return {"n_drawn": d.n_drawn, "n_common_correct": d.n_common_correct, "n_attributed": len(d.pairs),
            "accuracy": d.accuracy, "both_decisions": both_decisions, "target_blind": d.target_blind}


def _section_jobs(a: Analysis, models: dict, tokenizer, seeds: list[int], steps: list[int], post_steps: list[int],
                  n_boot: int) -> dict[str, tuple]:
    """The jobs (for :func:`~.workers.call`) that compute each of :data:`TASK_SECTIONS` for the task of
    ``a``, the longest first, so that the workers finish together."""
    pairs, views = a.data.pairs, a.data.views
    return {
        "ablation": (ablation_analysis, models, pairs, tokenizer, seeds, a, n_boot),
        "diffusion_commits": (commit_analysis, models, pairs, tokenizer, seeds, steps, views),
        "overlap": (a.overlaps,),
        "lens": (lens_analysis, models, pairs, tokenizer, seeds, a, n_boot),
        "paired": (a.paired,),                     # paired differences
        "diffusion_steps": (a.diffusion_steps, steps),
        "agreement": (a.agreement,),               # N-free overlaps
        "depth": (a.depth,),
        "curve": (a.curve,),
        "component_curve": (a.component_curve,),   # top-K overlap over K
        "trajectory": (a.trajectory, post_steps),
        "reliability": (a.reliability,),           # split-half ceilings
    }


def report(out_dir: str | Path | None = None, cfg: ExperimentConfig = ExperimentConfig(), n_boot: int = 500,
           cache_dir: str | Path | None = None, zoo_dir=zoo.ZOO_DIR, progress: bool = True, recompute: bool = False,
           workers: int | None = None) -> dict:
    """Compute (or load) the report; optionally write JSON, table and figures to ``out_dir``.

    In order: the cache file ``<cache_dir>/report-<key>.json`` with ``key`` from :func:`cache_key`
    (a file whose stored key differs is stale); the report shipped with the package when it was
    computed for this zoo, config and bootstrap size (:mod:`.shipped`); else :func:`compute`, whose
    result is cached, and checked against the shipped one when ``$MECHSHIFT_VERIFY_SHIPPED`` is set.
    ``workers``: processes :func:`compute` spreads the attributions over (the numbers do not change).
    """
    key = cache_key(cfg, zoo_dir)
    ship_key = shipped.shipped_key(cfg, n_boot, zoo_dir)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"report-{key}-boot{n_boot}.json"
    result = None
    if path.exists() and not recompute:
        stored = json.loads(path.read_text())
        result = stored if stored.get("cache_key") == key else None   # stale or foreign file
    if result is None and not recompute and not shipped.verifying():
        result = shipped.load(ship_key)
    if result is None:
        result = compute(cfg, n_boot, zoo_dir, progress, workers)
        result["cache_key"] = key
        cache.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1))
    if shipped.verifying() and shipped.is_shipped_setting(cfg, n_boot, zoo_dir):
        shipped.check(result, ship_key)
    if out_dir is not None:
        output.write(result, out_dir)
    return result
