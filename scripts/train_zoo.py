"""Train and publish the whole zoo with several worker processes (one per core), resumably.

Run one worker per core, e.g. two on a 2-core machine::

    for w in 0 1; do
      OMP_NUM_THREADS=1 TQDM_MININTERVAL=60 nohup .venv/bin/python scripts/train_zoo.py \\
          >> .cache/worker$w.log 2>&1 &
    done

Each worker takes the first job (in the order of :func:`job_order`) that nobody holds, that ``--zoo-dir`` does
not hold yet with this recipe, and whose ARM is published there (a worker publishes each model it trains);
it trains it (resuming any earlier progress), publishes it into ``--zoo-dir`` (default ``mechshift_lite/zoo/``)
and moves on. Seed 0's models come first. Kill a worker (``kill PID``) and start it again to resume; a later
session with an empty work directory goes on from what ``--zoo-dir`` holds.

A new recipe is built into a staging directory (``--zoo-dir zoo-next``) and replaces the package's zoo
when every seed is done, so the book never analyses a zoo of two recipes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import fields
from pathlib import Path

from safetensors.torch import load_file, save_file

from mechshift_lite import tasks
from mechshift_lite.training import MixtureData, training_data
from mechshift_lite import zoo
from mechshift_lite.zoo import build


def job_order(seeds: list[int], scratch_seeds: list[int]) -> list[tuple[str, int]]:
    """The first seed's ARM, MDM and ARM-continued first; then the other seeds' ARMs, then their
    post-training; the from-scratch MDMs last."""
    first, rest = seeds[0], seeds[1:]
    return [("arm", first), ("mdm", first), ("arm-continued", first), *[("arm", s) for s in rest],
            *[(kind, s) for s in rest for kind in ("mdm", "arm-continued")],
            *[("mdm-scratch", s) for s in scratch_seeds]]


def published(kind: str, seed: int, zoo_dir: Path) -> bool:
    """Whether ``zoo_dir`` holds ``kind``'s final checkpoint for ``seed``, made with this package's recipe."""
    path = zoo_dir / "manifest.json"
    entries = json.loads(path.read_text())["checkpoints"] if path.exists() else {}
    entry = entries.get(build.checkpoint_name(kind, seed))
    return entry is not None and entry.get("recipe") == build.RECIPE


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(run: Path) -> bool:
    """Take a job by creating ``run/claim`` atomically; a claim left by a dead process is taken over."""
    run.mkdir(parents=True, exist_ok=True)
    path = run / "claim"
    if path.exists():
        try:
            holder = int(path.read_text())
        except ValueError:
            holder = -1
        if holder > 0 and _alive(holder):
            return False
        path.unlink(missing_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def cached_training_data(tokenizer, work_dir: Path) -> MixtureData:
    """The recipes' shared training data, generated once and kept in ``work_dir`` (a 1-2 minute job).

    A cache file without one of :class:`MixtureData`'s fields (an older script's) is generated again.
    """
    cfg = build.recipe("arm", 0)
    vocab = hashlib.sha256(tokenizer.to_json().encode()).hexdigest()[:12]
    path = work_dir / f"data-n{cfg.n_train}-seed{cfg.data_seed}-vocab{vocab}.safetensors"
    names = [f.name for f in fields(MixtureData)]
    if path.exists():
        tensors = load_file(str(path))
        if set(names) <= tensors.keys():
            return MixtureData(**{name: tensors[name] for name in names})
    data = training_data(cfg, tokenizer, tasks.CANVAS)
    work_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({name: getattr(data, name) for name in names}, str(tmp))
    tmp.replace(path)
    return data


def run_job(kind: str, seed: int, tokenizer, data, work_dir: Path, zoo_dir: Path) -> None:
    name = build.checkpoint_name(kind, seed)
    print(f"[{time.strftime('%H:%M:%S')}] pid {os.getpid()} starts {name}", flush=True)
    result = build.train_kind(kind, seed, tokenizer, data, work_dir, zoo_dir=zoo_dir)
    print(f"[{time.strftime('%H:%M:%S')}] {name} trained: {result.step} steps, {result.wall_time_s:.0f} s", flush=True)
    steps = [None]
    if kind == "mdm" and seed in build.SNAPSHOT_SEEDS:
        steps = [None, 0, *build.SNAPSHOTS]
    for step in reversed(steps):  # the final entry last: it marks the job done
        entry = build.publish(kind, seed, tokenizer, work_dir, step=step, zoo_dir=zoo_dir)
        print(f"[{time.strftime('%H:%M:%S')}] published {build.checkpoint_name(kind, seed, step)}: "
              f"{json.dumps({k: v for k, v in entry['accuracy'].items() if k.endswith('accuracy')})}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(build.SEEDS))
    parser.add_argument("--scratch-seeds", type=int, nargs="*", default=list(build.SCRATCH_SEEDS),
                        help="seeds of the from-scratch MDM")
    parser.add_argument("--kinds", nargs="+", default=list(zoo.ALL_KINDS), choices=zoo.ALL_KINDS,
                        help="train only these kinds (e.g. the first ARM alone, with more threads)")
    parser.add_argument("--work-dir", type=Path, default=build.DEFAULT_WORK_DIR)
    parser.add_argument("--zoo-dir", type=Path, default=zoo.ZOO_DIR, help="where to publish (default: the package's zoo)")
    parser.add_argument("--poll", type=float, default=30.0, help="seconds between looks for a free job")
    args = parser.parse_args()
    tokenizer = tasks.build_tokenizer()
    data = cached_training_data(tokenizer, args.work_dir)  # all recipes share the data
    jobs = [(k, s) for k, s in job_order(args.seeds, args.scratch_seeds) if k in args.kinds]
    while True:
        pending = [(k, s) for k, s in jobs if not published(k, s, args.zoo_dir)]
        if not pending:
            print(f"[{time.strftime('%H:%M:%S')}] nothing left to do", flush=True)
            return
        for kind, seed in pending:
            ready = kind in ("arm", "mdm-scratch") or published("arm", seed, args.zoo_dir)
            run = args.work_dir / build.checkpoint_name(kind, seed)
            if ready and claim(run):
                try:
                    run_job(kind, seed, tokenizer, data, args.work_dir, args.zoo_dir)
                finally:
                    (run / "claim").unlink(missing_ok=True)
                break
        else:
            time.sleep(args.poll)


if __name__ == "__main__":
    main()
