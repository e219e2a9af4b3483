"""Recipe study (issue 12): short MDM post-training runs, each scored by the Countdown diagnostics.

Every run is a variant of the 0.1.0 zoo's MDM recipe (:data:`BASE_POST`, cut to ``--steps``
post-training steps, cosine schedule over those steps), started from seed 0's 0.1.0 ARM as the
zoo loader returns it (``zoo.FIRST_ZOO_DIR``), on the same batches (seed 0). The study chose the 0.2.0 recipe
(its ``arm-long+cd-8k`` run), then the 0.3.0 recipe of :mod:`mechshift_lite.zoo.build` (its ``arm-15k+cd-16k``
run). The width and ARM-length arms first
pre-train (or load) their own ARM. Every ``--eval-every`` steps the model is scored on held-out
problems by :func:`mechshift_lite.diagnostics.countdown_diagnostics` (confidence decoder), by IOI
accuracy, and by the top-k remasking decoder's exact accuracy and equation-1 truth; each finished
(run, step) appends one JSON line to ``--results``.

Resumable: a rerun skips the finished runs and resumes a killed one from its last checkpoint (every
250 steps, or where ``kill -INT PID`` / ``kill PID`` stopped it: both checkpoint first). Runs are ordered by expected value, the most promising first::

    mkdir -p .cache && nohup env OMP_NUM_THREADS=1 .venv/bin/python scripts/recipe_study.py \\
        > .cache/recipe_study.log 2>&1 &
    .venv/bin/python scripts/recipe_study.py --table          # the results so far, as a Markdown table
    .venv/bin/python scripts/recipe_study.py --list           # the runs and what each changes
    .venv/bin/python scripts/recipe_study.py --only focal     # just some runs
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import signal
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from mechshift_lite import accuracy, diagnostics, tasks, zoo
from mechshift_lite.config import ModelConfig
from mechshift_lite.model import Transformer
from mechshift_lite.training import TrainConfig, run_status, train, training_data
from mechshift_lite.zoo import build, study
from mechshift_lite.zoo.study import read_results

RESULTS = study.RESULTS
WORK_DIR = Path(".cache/recipe-study")
SEED = 0
BASE_POST = TrainConfig(objective="mdm", stage="post", seed=SEED, steps=4000, n_train=build.N_TRAIN)
"""The 0.1.0 zoo's MDM post-training recipe, which every run varies."""
BASE_ARM = build.stages("arm", SEED)[0].config
"""The 0.1.0 zoo's ARM pre-training (3000 steps): the first stage of the 0.2.0 ARM."""
TOKENIZER = tasks.build_tokenizer()
DIGITS = tuple(TOKENIZER.token_id(d) for d in "0123456789")


@dataclass(frozen=True)
class Run:
    """One arm of the study.

    Attributes:
        name: short id (the run directory and the ``run`` field of the results).
        description: what it changes, in words.
        post: :class:`TrainConfig` fields that differ from the 0.1.0 MDM recipe (:data:`BASE_POST`).
        start: a key of :data:`STARTS` (a shipped checkpoint of seed 0) or ``"pretrain"`` (a fresh
            ARM, see ``arm``/``width``).
        arm: pre-training fields that differ from the 0.1.0 ARM recipe (``start="pretrain"``).
        width: d_model of a fresh ARM (heads of 32 wide, MLP 4x); None = the zoo's shape.
        arm_run: with ``start="pretrain"``, reuse the ARM another run pre-trained (its name).
        steps: post-training steps of this run; None = ``--steps``.
    """

    name: str
    description: str
    post: dict[str, Any] = field(default_factory=dict)
    start: str = "arm"
    arm: dict[str, Any] = field(default_factory=dict)
    width: int | None = None
    arm_run: str | None = None
    steps: int | None = None


STARTS: dict[str, tuple[Path, str]] = {
    "arm": (zoo.FIRST_ZOO_DIR, "arm"),
    "arm-continued": (zoo.FIRST_ZOO_DIR, "arm-continued"),
    "arm-15k": (zoo.ZOO_DIR, "arm"),
}
"""The shipped starting points, ``{start: (zoo directory, kind)}``: the 0.1.0 ARM (3000 AR steps), its
control (3000 + 4000 AR steps: the 0.2.0 ARM) and the 0.3.0 ARM (3000 + 4000 + 8000 AR steps, the
last 8000 with 90% Countdown rows: the 0.2.0 control, whose held-out accuracy stops rising near 73%)."""

RUNS: tuple[Run, ...] = (
    Run("focal", "focal token weights alpha 0.25, gamma 2 (Ye et al. 2024)", {"focal_alpha": 0.25, "focal_gamma": 2.0}),
    Run("low-t", "t = u^2: low mask rates (few slots hidden at once) more often", {"t_power": 2.0}),
    Run("base", "the shipped recipe (the control)"),
    Run("fast", "the fast step: [PAD] tail trimmed + bfloat16 autocast (same result as base?)",
        {"pad_tail": "trim", "precision": "bfloat16"}),
    Run("cd-share", "90% Countdown rows from step 250 on (IOI has recovered by then)",
        {"countdown_share": 0.9, "countdown_share_from": 250}),
    Run("spans", "whole numbers masked at once (digit runs share one draw)", {"span_token_ids": DIGITS}),
    Run("bf16", "bfloat16 autocast only (the full canvas as shipped): is the 1.5x faster step the same result?",
        {"precision": "bfloat16"}),
    Run("arm-long", "start from a longer-trained ARM: the shipped ARM-continued (3000 + 4000 AR steps)",
        start="arm-continued"),
    Run("arm-6k", "own ARM pre-trained 6000 steps (the zoo's: 3000), then the recipe", start="pretrain",
        arm={"steps": 6000}),
    Run("arm-long+cd", "the longer-trained ARM (as arm-long) and 90% Countdown from step 250",
        {"countdown_share": 0.9, "countdown_share_from": 250}, start="arm-continued"),
    Run("lr-3e-4", "peak learning rate 3e-4, warm-up 300 steps", {"lr": 3e-4, "warmup": 300}),
    Run("arm-6k+cd", "the own 6000-step ARM of arm-6k and 90% Countdown from step 250 (is arm-long+cd's gain the ARM's length?)",
        {"countdown_share": 0.9, "countdown_share_from": 250}, start="pretrain", arm={"steps": 6000}, arm_run="arm-6k"),
    Run("trim", "[PAD] tail trimmed after the batch's longest sequence (faster)", {"pad_tail": "trim"}),
    Run("arm-long+cd-4k", "arm-long+cd for 4000 steps (the zoo's post-training length)",
        {"countdown_share": 0.9, "countdown_share_from": 250}, start="arm-continued", steps=4000),
    Run("arm-long+cd-8k", "arm-long+cd for 8000 steps (twice the zoo's post-training length: 44% at 4000, still rising)",
        {"countdown_share": 0.9, "countdown_share_from": 250}, start="arm-continued", steps=8000),
    Run("d128", "width d_model 128 (4 heads of 32, MLP 512): own ARM, 3000 steps, then the recipe",
        start="pretrain", width=128),
    Run("combo", "low-t + 90% Countdown from step 250 (the two best of the first runs)",
        {"t_power": 2.0, "countdown_share": 0.9, "countdown_share_from": 250}),
    Run("warm-500", "peak learning rate 1e-3 as shipped, warm-up 500 steps", {"warmup": 500}),
    Run("arm-15k+cd-8k", "the 0.2.0 recipe's post-training from a 15000-step ARM (the 0.2.0 ARM-continued, 73%)",
        {"countdown_share": 0.9, "countdown_share_from": 250}, start="arm-15k", steps=8000),
    Run("arm-long+cd-16k", "arm-long+cd for 16000 steps (twice the 0.2.0 recipe's post-training: does the MDM keep rising?)",
        {"countdown_share": 0.9, "countdown_share_from": 250}, start="arm-continued", steps=16000),
    Run("arm-15k+cd-16k", "arm-15k+cd for 16000 steps (the two longer budgets together: a candidate 0.3.0 recipe)",
        {"countdown_share": 0.9, "countdown_share_from": 250}, start="arm-15k", steps=16000),
)


def post_config(run: Run, steps: int) -> TrainConfig:
    base = BASE_POST
    return dataclasses.replace(base, steps=steps, snapshots=(), **run.post)


def arm_config(run: Run) -> TrainConfig:
    return dataclasses.replace(BASE_ARM, **run.arm)


def model_config(run: Run) -> ModelConfig:
    cfg = build.model_config(TOKENIZER)
    if run.width is None:
        return cfg
    return dataclasses.replace(cfg, d_model=run.width, d_head=run.width // cfg.n_heads, d_mlp=4 * run.width)


# ----- results file ------------------------------------------------------------------------------
def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` unless its (run, step) is already there (a resumed run may evaluate a step twice)."""
    if any(r["run"] == row["run"] and r["step"] == row["step"] for r in read_results(path)):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as out:
        out.write(json.dumps(row, sort_keys=True) + "\n")


# ----- scoring ------------------------------------------------------------------------------------
def make_scorer(n_countdown: int, n_ioi: int):
    """The evaluation of every (run, step): diagnostics, IOI accuracy, and the remasking decoder."""
    cd_set = diagnostics.test_problems(n_countdown)
    ioi_set = tasks.ioi.generate(n_ioi, accuracy.TEST_SEED + 2, "test")

    def score(model: Transformer) -> dict[str, float]:
        out = {"ioi": accuracy.ioi_accuracy(model, TOKENIZER, ioi_set)}
        out.update(diagnostics.countdown_diagnostics(model, TOKENIZER, cd_set))
        if model.attention == "bidirectional":
            answers = diagnostics.decode_countdown(model, TOKENIZER, cd_set, decoder="remask")
            scores = [diagnostics.answer_scores(ex.meta["numbers"], ex.meta["target"], a) for ex, a in zip(cd_set, answers)]
            out["remask_exact"] = sum(s["exact"] for s in scores) / len(scores)
            out["remask_eq1_true"] = sum(s["eq1_true"] for s in scores) / len(scores)
        return out

    return score


def recording_scorer(score, run_name: str, run: Run, cfg: TrainConfig, run_dir: Path, every: int,
                     results: Path, started: float):
    """``score`` that also appends its result as the row of the step it is called at."""
    status = run_status(run_dir)
    state = {"next": min(cfg.steps, ((status["step"] if status else 0) // every + 1) * every)}

    def evaluate(model: Transformer) -> dict[str, float]:
        metrics = score(model)
        step = state["next"]
        state["next"] = min(cfg.steps, step + every)
        append_result(results, {"run": run_name, "step": step, "steps": cfg.steps, "description": run.description,
                                "changes": {**run.post, **({"start": run.start} if run.start != "arm" else {}),
                                            **({"width": run.width} if run.width else {}), **run.arm},
                                "metrics": {k: round(v, 4) for k, v in metrics.items()},
                                "session_s": round(time.perf_counter() - started, 1)})
        print(f"[{run_name} step {step}] " + " ".join(f"{k} {v:.3f}" for k, v in metrics.items()), flush=True)
        return metrics

    return evaluate


# ----- running ------------------------------------------------------------------------------------
def finished(results: list[dict[str, Any]], name: str, steps: int) -> bool:
    return any(r["run"] == name and r["step"] == steps for r in results)


def start_model(run: Run, args, data, score) -> Transformer:
    """The post-training starting point, as a bidirectional model (pre-training its ARM first if needed)."""
    model = Transformer(model_config(run), attention="bidirectional")
    if run.start in STARTS:
        zoo_dir, kind = STARTS[run.start]
        model.load_state_dict(zoo.load(kind, seed=SEED, zoo_dir=zoo_dir).state_dict())
        return model
    if run.start != "pretrain":
        raise ValueError(f"run {run.name}: unknown start {run.start!r}; use 'pretrain' or one of {sorted(STARTS)}")
    owner = run.arm_run or run.name
    cfg, arm_dir, name = arm_config(run), args.work_dir / f"{owner}-arm", f"{owner}/arm"
    arm = Transformer(model_config(run), attention="causal").init_weights(SEED)
    evaluate = recording_scorer(score, name, run, cfg, arm_dir, cfg.steps, args.results, time.perf_counter())
    if not finished(read_results(args.results), name, cfg.steps):
        train(cfg, arm, data, arm_dir, mask_id=TOKENIZER.mask_id, eval_fn=evaluate, eval_every=cfg.steps,
              progress=not args.quiet)
    model.load_state_dict(load_file(str(arm_dir / "final.safetensors")))
    return model


def stoppable() -> None:
    """Make ``kill -INT`` and ``kill PID`` (SIGTERM) stop the study cleanly, even under ``nohup ... &``.

    A background job starts with SIGINT ignored; restore Python's handler, and turn SIGTERM into
    SIGINT, which :func:`~mechshift_lite.training.train` answers by checkpointing the current step.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))


def single_instance(work_dir: Path) -> int:
    """Hold a lock on ``work_dir`` for the life of this process: a second study refuses to start."""
    work_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(work_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another recipe study is running in {work_dir}; stop it first (kill -INT its pid)") from None
    return fd  # kept open: the lock lasts until the process ends


def run_all(args) -> None:
    stoppable()
    lock = single_instance(args.work_dir)  # noqa: F841  (held, not used)
    torch.set_num_threads(args.threads)
    chosen = [r for r in RUNS if not args.only or r.name in args.only]
    unknown = set(args.only or ()) - {r.name for r in RUNS}
    if unknown:
        raise SystemExit(f"unknown runs {sorted(unknown)}; the study has {[r.name for r in RUNS]}")
    score = make_scorer(args.problems, args.ioi)
    data = None
    for run in chosen:
        steps = run.steps or args.steps
        if finished(read_results(args.results), run.name, steps):
            print(f"{run.name}: finished, skipped", flush=True)
            continue
        if data is None:
            print("building the training mixture ...", flush=True)
            data = training_data(BASE_POST, TOKENIZER, tasks.CANVAS)
        print(f"{run.name}: {run.description}", flush=True)
        try:
            cfg = post_config(run, steps)
            run_dir = args.work_dir / run.name
            model = start_model(run, args, data, score)
            evaluate = recording_scorer(score, run.name, run, cfg, run_dir, args.eval_every, args.results, time.perf_counter())
            result = train(cfg, model, data, run_dir, mask_id=TOKENIZER.mask_id, eval_fn=evaluate,
                           eval_every=args.eval_every, progress=not args.quiet)
        except Exception:  # one broken arm must not stop the others: report it and go on
            traceback.print_exc()
            print(f"{run.name}: FAILED (see the traceback above); going on with the next run", flush=True)
            continue
        print(f"{run.name}: done, {result.wall_time_s / 60:.1f} min of training", flush=True)
    print(table(read_results(args.results)))


# ----- the table ----------------------------------------------------------------------------------
def table(results: list[dict[str, Any]]) -> str:
    """The package's results table, runs in this study's order."""
    return study.table(results, order=[r.name for r in RUNS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON lines, one per (run, step) (default %(default)s)")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR, help="resumable run directories (default %(default)s)")
    parser.add_argument("--steps", type=int, default=1500, help="post-training steps per run")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--problems", type=int, default=200, help="held-out Countdown-3 problems per evaluation")
    parser.add_argument("--ioi", type=int, default=200, help="held-out IOI prompts per evaluation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: one core)")
    parser.add_argument("--only", nargs="+", help="run only these (names from --list)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--table", action="store_true", help="print the results table and exit")
    parser.add_argument("--list", action="store_true", help="list the runs and exit")
    args = parser.parse_args()
    for name in ("steps", "eval_every", "problems", "ioi", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.list:
        for run in RUNS:
            print(f"{run.name:10s} {run.description}  {run.post or ''}")
        return
    if args.table:
        print(table(read_results(args.results)))
        return
    run_all(args)


if __name__ == "__main__":
    main()
