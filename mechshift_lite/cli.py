"""The ``mechshift-lite`` command.

    mechshift-lite zoo list                          # the shipped checkpoints and their accuracies
    mechshift-lite zoo train --kind mdm --seed 0     # reproduce a checkpoint from its recipe
    mechshift-lite zoo verify                        # re-measure the accuracies, compare with the manifest
    mechshift-lite report --out results/             # every analysis, with baselines and CIs (cached)
    mechshift-lite eval countdown FILE.jsonl --kind mdm --seed 0   # score a model on outside Countdown data

Each command group registers its subcommands in :func:`build_parser`; add new groups there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence


def _zoo_list(args: argparse.Namespace) -> int:
    from . import zoo

    for name, e in sorted(zoo.manifest()["checkpoints"].items(), key=lambda kv: (kv[1]["kind"], kv[1]["seed"], kv[1]["step"])):
        acc = e["accuracy"]
        print(f"{name:28s} step {e['step']:>6}  IOI {acc['ioi_accuracy']:.3f}  Countdown-3 {acc['countdown3_accuracy']:.3f}")
    return 0


def _zoo_train(args: argparse.Namespace) -> int:
    from . import tasks, zoo
    from .training import check_device, training_data
    from .zoo import build

    check_device(args.device)  # a clear error before the training data is built
    tokenizer = tasks.build_tokenizer()
    has_manifest = (args.zoo_dir / build.MANIFEST.name).exists()
    recorded = zoo.manifest(args.zoo_dir)["checkpoints"].get(build.checkpoint_name(args.kind, args.seed)) if has_manifest else None
    if recorded is not None and recorded.get("recipe") != build.RECIPE:
        print(f"{args.zoo_dir} holds {build.checkpoint_name(args.kind, args.seed)} of recipe {recorded.get('recipe', '0.1.0')}, "
              f"this package trains recipe {build.RECIPE}: reinstall the matching version, or pass --zoo-dir", file=sys.stderr)
        return 2
    data = training_data(build.recipe(args.kind, args.seed), tokenizer, tasks.CANVAS)
    needed = [args.kind] if args.kind in ("arm", "mdm-scratch") else ["arm", args.kind]
    for kind in needed:
        result = build.train_kind(kind, args.seed, tokenizer, data, args.work_dir, progress=not args.quiet,
                                  device=args.device, zoo_dir=args.zoo_dir)
        print(f"{build.checkpoint_name(kind, args.seed)}: {result.step} steps, {result.wall_time_s:.0f} s on "
              f"{'+'.join(result.devices)} (run directory {args.work_dir / build.checkpoint_name(kind, args.seed)})")
    if args.publish:
        steps = [None, 0, *build.SNAPSHOTS] if args.kind == "mdm" and args.seed in build.SNAPSHOT_SEEDS else [None]
        for kind in needed:
            for step in steps if kind == args.kind else [None]:
                entry = build.publish(kind, args.seed, tokenizer, args.work_dir, step=step, zoo_dir=args.zoo_dir)
                print(f"published {entry['file']}: IOI {entry['accuracy']['ioi_accuracy']:.3f}, "
                      f"Countdown-3 {entry['accuracy']['countdown3_accuracy']:.3f}")
    elif recorded is not None:
        final = args.work_dir / build.checkpoint_name(args.kind, args.seed) / "final.safetensors"
        print("float16 weights identical to the shipped checkpoint:", build.fp16_sha256(final) == recorded["sha256"])
    return 0


def _zoo_verify(args: argparse.Namespace) -> int:
    from . import accuracy, zoo

    tokenizer = zoo.tokenizer(args.zoo_dir)
    failures = 0
    for name, e in sorted(zoo.manifest(args.zoo_dir)["checkpoints"].items()):
        if (args.kind and e["kind"] != args.kind) or (args.seed is not None and e["seed"] != args.seed):
            continue
        model = zoo.load(e["kind"], e["seed"], None if e["final"] else e["step"], zoo_dir=args.zoo_dir)
        sizes = e["accuracy"]["test_sets"]
        measured = accuracy.measure(model, tokenizer, sizes["n_ioi"], sizes["n_countdown"], sizes["seed"])
        for key, value in measured.items():
            expected = e["accuracy"][key]
            ok = abs(value - expected) <= args.tolerance
            failures += not ok
            print(f"{name:28s} {key:22s} manifest {expected:.4f}  measured {value:.4f}  {'ok' if ok else 'MISMATCH'}")
    print("all accuracies match the manifest" if not failures else f"{failures} accuracies differ from the manifest")
    return 1 if failures else 0


def _report(args: argparse.Namespace) -> int:
    from .experiment import ExperimentConfig
    from .experiment import shipped
    from .experiment.report import report
    from .experiment.verdicts import summary, table

    cfg = ExperimentConfig(n_problems=args.problems, n_problems_countdown=args.problems_countdown, max_pool=args.max_pool,
                           n_chunks=args.chunks, method=args.method, ig_steps=args.ig_steps, edge_fraction=args.edge_fraction, mdm_step=args.mdm_step)
    if args.ship and not shipped.is_shipped_setting(cfg, args.boot, args.zoo_dir):
        raise SystemExit("--ship writes the report of the default settings on the installed zoo: drop the other options")
    result = report(args.out, cfg, n_boot=args.boot, cache_dir=args.cache_dir, zoo_dir=args.zoo_dir,
                    progress=not args.quiet, recompute=args.recompute or args.ship, workers=args.workers)
    if args.ship:
        path = shipped.write(result, shipped.shipped_key(cfg, args.boot, args.zoo_dir))
        print(f"shipped report written to {path} (commit it)")
    print(table(result))
    for v in result["verdict_paired"]:   # the one verdict rule (verdicts.shift_holds)
        print(("holds:         " if v["holds"] else "does not hold: ") + v["claim"] + "\n               " + v["evidence"])
    print("\n" + summary(result).replace("**", ""))
    if args.out is not None:
        print(f"report.json, table.txt and figures written to {args.out}")
    return 0


def _eval_countdown(args: argparse.Namespace) -> int:
    import json

    from . import countdown_eval, zoo

    tokenizer = zoo.tokenizer()
    if args.model_file is not None:
        model, mode = countdown_eval.load_model_file(args.model_file, tokenizer, args.mode)
        name = str(args.model_file)
    else:
        model, mode = zoo.load(args.kind, args.seed, args.step), "mdm" if args.kind == "mdm" else "arm"
        name = f"{args.kind} seed {args.seed}" + ("" if args.step is None else f" step {args.step}")
    found = countdown_eval.read_problems(args.file)
    result = countdown_eval.evaluate(model, tokenizer, found, mode)
    out = args.out or args.file.with_name(args.file.stem + ".scored.jsonl")
    out.write_text("".join(json.dumps(row) + "\n" for row in result.rows))
    summary = {"model": name, "mode": mode, "file": str(args.file), "rows_written_to": str(out), **result.summary()}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    if summary["n_scored"] == 0:
        print(f"{name}: no problem of {args.file} could be scored ({summary['n_skipped']} skipped: {summary['skipped']})")
        return 0
    low, high = summary["ci95"]
    print(f"{name} ({mode}): {summary['accuracy']:.1%} of {summary['n_scored']} problems solved, 95% CI [{low:.1%}, {high:.1%}]")
    print(f"  {summary['n_in_training_split']} of them lie in this project's training split"
          + ("" if summary["accuracy_held_out_only"] is None else f"; held-out only: {summary['accuracy_held_out_only']:.1%}"))
    if summary["n_skipped"]:
        print(f"  {summary['n_skipped']} skipped: " + "; ".join(f"{n} with {why}" for why, n in summary["skipped"].items()))
    print(f"  one line per problem (answer, correct, in_training_split) in {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import zoo
    from .experiment import ExperimentConfig
    from .zoo import build

    parser = argparse.ArgumentParser(prog="mechshift-lite", description="Circuits of ARMs vs masked diffusion LMs, on a CPU.")
    groups = parser.add_subparsers(dest="group", required=True)

    zoo_parser = groups.add_parser("zoo", help="the shipped toy checkpoints")
    zoo_commands = zoo_parser.add_subparsers(dest="command", required=True)

    listing = zoo_commands.add_parser("list", help="list the checkpoints and their accuracies")
    listing.set_defaults(func=_zoo_list)

    train = zoo_commands.add_parser("train", help="reproduce a checkpoint from its recipe (resumable)")
    train.add_argument("--kind", required=True, choices=zoo.ALL_KINDS)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--work-dir", type=Path, default=build.DEFAULT_WORK_DIR,
                       help="where the resumable runs live (default: %(default)s)")
    train.add_argument("--device", default="cpu",
                       help="where the steps run: cpu (the reproduction path), cuda, cuda:1, mps ... (default %(default)s); "
                            "recorded in the run directory and the manifest entry")
    train.add_argument("--publish", action="store_true", help="write the result into --zoo-dir and its manifest")
    train.add_argument("--zoo-dir", type=Path, default=zoo.ZOO_DIR,
                       help="the zoo to publish into and compare with (default: the installed one)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_zoo_train)

    verify = zoo_commands.add_parser("verify", help="re-measure the accuracies and compare with the manifest")
    verify.add_argument("--kind", choices=zoo.ALL_KINDS)
    verify.add_argument("--seed", type=int)
    verify.add_argument("--zoo-dir", type=Path, default=zoo.ZOO_DIR, help="a zoo other than the installed one")
    verify.add_argument("--tolerance", type=float, default=0.005, help="largest accepted difference (default %(default)s)")
    verify.set_defaults(func=_zoo_verify)

    rep = groups.add_parser("report", help="every analysis on the zoo: the Table-1 analogue with baselines and CIs")
    rep.add_argument("--out", type=Path, help="write report.json, table.txt and figures here (a new or earlier report folder)")
    rep.add_argument("--problems", type=int, default=ExperimentConfig.n_problems,
                     help="held-out problems per task before the common-correct filter (default %(default)s)")
    rep.add_argument("--problems-countdown", type=int, default=ExperimentConfig.n_problems_countdown,
                     help="held-out Countdown problems, if not --problems (default: as --problems)")
    rep.add_argument("--max-pool", type=int, default=ExperimentConfig.max_pool,
                     help="attribute the first this many common-correct pairs of each task (default %(default)s)")
    rep.add_argument("--edge-fraction", type=float, default=0.05, help="top-N edges as a fraction of all edges")
    rep.add_argument("--method", default="EAP-IG-inputs", help="attribution method (see mechshift_lite.METHODS)")
    rep.add_argument("--ig-steps", type=int, default=5, help="integrated-gradient steps m of the EAP-IG methods")
    rep.add_argument("--chunks", type=int, default=8, help="blocks of examples the bootstrap resamples")
    rep.add_argument("--mdm-step", type=int, default=0, help="diffusion step of the headline MDM attribution")
    rep.add_argument("--boot", type=int, default=500, help="bootstrap replicates")
    rep.add_argument("--cache-dir", type=Path, help="cache folder (default: $MECHSHIFT_CACHE or ~/.cache/mechshift-lite)")
    rep.add_argument("--recompute", action="store_true", help="ignore a cached report")
    rep.add_argument("--ship", action="store_true",
                     help="recompute the default report and write it into the package (the one Colab opens)")
    rep.add_argument("--quiet", action="store_true", help="no progress bar")
    rep.add_argument("--workers", type=int, help="one-thread processes for the attributions (default: $MECHSHIFT_WORKERS, "
                                                 "else the CPUs up to 4; the numbers do not depend on it)")
    rep.add_argument("--zoo-dir", type=Path, default=zoo.ZOO_DIR, help="a zoo other than the installed one")
    rep.set_defaults(func=_report)

    evaluation = groups.add_parser("eval", help="score a model on outside data")
    eval_tasks = evaluation.add_subparsers(dest="task", required=True)
    cd = eval_tasks.add_parser("countdown", help="Countdown problems in the HKUNLP / Dream format (one JSON object a line)")
    cd.add_argument("file", type=Path, help='a .jsonl file of {"input": "15,44,79,50", "output": ...} lines')
    cd.add_argument("--kind", choices=zoo.KINDS, default="mdm", help="a zoo model (default %(default)s)")
    cd.add_argument("--seed", type=int, default=0)
    cd.add_argument("--step", type=int, help="an intermediate checkpoint's post-training step (default: the final one)")
    cd.add_argument("--model-file", type=Path, help="a checkpoint outside the zoo, inside its training-run directory")
    cd.add_argument("--mode", choices=("arm", "mdm"), help="with --model-file: override the run's objective")
    cd.add_argument("--out", type=Path, help="where the per-problem lines go (default: FILE.scored.jsonl beside FILE)")
    cd.add_argument("--json", action="store_true", help="print a machine-readable summary")
    cd.set_defaults(func=_eval_countdown)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as error:  # our clear errors: no traceback needed
        print(f"mechshift-lite: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
