"""How the zoo is made: the recipe of every checkpoint, training it, and publishing it with its manifest entry.

A seed's three models:

* ``arm``: ARM pre-training from a fresh init (``ARM_STEPS`` steps);
* ``mdm``: MDM post-training of that ARM (``POST_STEPS`` steps, DiffuLLaMA recipe), with snapshots
  along the way for seed 0 (``SNAPSHOTS``);
* ``arm-continued``: the same ARM trained on, with its AR loss, for ``POST_STEPS`` steps on the very
  same batches (the control for "trained more").

**The shipped MDM recipe, exactly** (:func:`recipe`, all :class:`~mechshift_lite.training.TrainConfig`
study options at their defaults): each step draws 64 rows uniformly from the 100k-example 50/50
IOI / Countdown-3 mixture; the whole 40-slot canvas runs, in float32; every slot after the prompt
(answer, ``[EOS]`` and the ``[PAD]`` tail up to slot 40) is maskable and scored; one
``t ~ U(1e-3, 1)`` per row and an independent Bernoulli(t) per slot; the loss is the shifted
cross-entropy of the masked slots weighted 1/t and divided by the number of masked slots;
attention annealed from causal to full over the first 30% of the steps; a fresh AdamW (peak
1e-3, warm-up 100, cosine to 1e-4, weight decay 0.01, clip 1). The faster step of the recipe study
(``pad_tail="trim"``, ``precision="bfloat16"``) changes these numbers and is opt-in; whoever
retrains the zoo with it must record it in the recipe (it then appears in the manifest's
``train_config``). ``--device`` does not change the recipe: batches and masks are drawn on the CPU
everywhere, so another device changes only the float rounding; the manifest's ``device`` says where
each checkpoint was trained.

Training runs live in a work directory (default ``.cache/zoo-train``), one resumable run per
``{kind}-seed{seed}``; :func:`publish` rounds the weights to float16, writes them into the package,
measures the accuracies on the rounded weights and records everything in ``manifest.json``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save, save_file

from .. import accuracy, tasks
from . import KINDS, ZOO_DIR, file_sha256
from ..config import ModelConfig
from ..model import Transformer
from ..tokenizer import Tokenizer
from ..training import TrainConfig, TrainData, TrainResult, run_status, train, training_data

MANIFEST = ZOO_DIR / "manifest.json"
TOKENIZER_FILE = ZOO_DIR / "tokenizer.json"
DEFAULT_WORK_DIR = Path(".cache/zoo-train")

# Sized to this project's 2-core CPU (about 0.25 s per step per core under load): the notes'
# recipe (4 x 128, 4k + 10k + 10k steps per seed) needs over 4 CPU-hours for three seeds.
ARM_STEPS = 3000
POST_STEPS = 4000
SNAPSHOTS: tuple[int, ...] = (250, 500, 1000, 2000, 3000)  # seed 0's MDM; step 0 is the ARM itself
SNAPSHOT_SEEDS: tuple[int, ...] = (0,)
N_TRAIN = 100_000
EVAL_SIZES = {"n_ioi": 1000, "n_countdown": 500, "seed": accuracy.TEST_SEED}
TRAIN_EVAL_SIZES = {"n_ioi": 200, "n_countdown": 200, "seed": accuracy.TEST_SEED + 1}
TRAIN_EVAL_EVERY = 1000


def model_config(tokenizer: Tokenizer) -> ModelConfig:
    """The zoo's model: GPT-2 family, 4 layers, d_model 96, 4 heads of 24, d_mlp 384, context = canvas."""
    return ModelConfig(
        family="gpt2", d_vocab=len(tokenizer), n_ctx=tasks.CANVAS,
        d_model=96, n_layers=4, n_heads=4, d_head=24, d_mlp=384,
    )


def recipe(kind: str, seed: int) -> TrainConfig:
    """The :class:`TrainConfig` of ``kind`` for ``seed``."""
    check_kind(kind)
    if kind == "arm":
        return TrainConfig(objective="arm", stage="pretrain", seed=seed, steps=ARM_STEPS, n_train=N_TRAIN)
    snapshots = SNAPSHOTS if kind == "mdm" and seed in SNAPSHOT_SEEDS else ()
    objective = "mdm" if kind == "mdm" else "arm"
    return TrainConfig(objective=objective, stage="post", seed=seed, steps=POST_STEPS, n_train=N_TRAIN,
                       snapshots=snapshots)


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown zoo kind {kind!r}; the zoo has {KINDS}")


def checkpoint_name(kind: str, seed: int, step: int | None = None) -> str:
    """``{kind}-seed{seed}`` or ``{kind}-seed{seed}-step{step}`` (an intermediate checkpoint)."""
    return f"{kind}-seed{seed}" + ("" if step is None else f"-step{step}")


def command(kind: str, seed: int) -> str:
    return f"mechshift-lite zoo train --kind {kind} --seed {seed}"


def new_model(kind: str, seed: int, tokenizer: Tokenizer, work_dir: Path) -> Transformer:
    """The starting point of a run: a seeded fresh init (arm) or the finished ARM of the same seed."""
    cfg = model_config(tokenizer)
    if kind == "arm":
        return Transformer(cfg, attention="causal").init_weights(seed)
    parent = work_dir / checkpoint_name("arm", seed) / "final.safetensors"
    if not parent.exists():
        raise FileNotFoundError(f"{kind} seed {seed} starts from the ARM of seed {seed}, but {parent} does not exist; train the ARM first")
    model = Transformer(cfg, attention="bidirectional" if kind == "mdm" else "causal")
    model.load_state_dict(load_file(str(parent)))
    return model


def train_eval_fn(tokenizer: Tokenizer):
    """Quick accuracies logged during training (small held-out sets, not the manifest's)."""
    ioi_set, cd_set = accuracy.test_sets(TRAIN_EVAL_SIZES["n_ioi"], TRAIN_EVAL_SIZES["n_countdown"], TRAIN_EVAL_SIZES["seed"])

    def evaluate(model: Transformer) -> dict[str, float]:
        return {
            "ioi_accuracy": accuracy.ioi_accuracy(model, tokenizer, ioi_set),
            "countdown3_accuracy": accuracy.countdown_accuracy(model, tokenizer, cd_set),
        }

    return evaluate


def train_kind(kind: str, seed: int, tokenizer: Tokenizer, data: TrainData | None = None,
               work_dir: Path = DEFAULT_WORK_DIR, progress: bool = True, device: str = "cpu") -> TrainResult:
    """Train (or resume) ``kind`` for ``seed`` in ``work_dir/{kind}-seed{seed}`` on ``device``.

    The batches and masks are drawn on the CPU whatever the device, so the device changes only the
    float rounding of the steps; the run directory records where it ran (:func:`run_devices`).
    """
    cfg = recipe(kind, seed)
    data = data if data is not None else training_data(cfg, tokenizer, tasks.CANVAS)
    model = new_model(kind, seed, tokenizer, work_dir)
    return train(cfg, model, data, work_dir / checkpoint_name(kind, seed), mask_id=tokenizer.mask_id,
                 eval_fn=train_eval_fn(tokenizer), eval_every=TRAIN_EVAL_EVERY, progress=progress, device=device)


def run_devices(run: Path) -> str:
    """Where a run directory's steps ran, e.g. ``"cpu"`` or ``"cpu+cuda"``; runs from before devices were recorded ran on the CPU."""
    status = run_status(run)
    return "+".join(status.get("devices", ["cpu"])) if status else "cpu"


def fp16_sha256(path: Path) -> str:
    """The sha256 the manifest would record for ``path``'s weights rounded to float16 (as :func:`publish` writes them)."""
    return hashlib.sha256(save({k: v.to(torch.float16) for k, v in load_file(str(path)).items()})).hexdigest()


@contextmanager
def _locked_manifest(zoo_dir: Path) -> Iterator[dict[str, Any]]:
    """Read-modify-write ``zoo_dir/manifest.json`` under a file lock (two trainers may publish at once)."""
    path = zoo_dir / MANIFEST.name
    lock = os.open(zoo_dir, os.O_RDONLY)  # the directory itself is the lock: no lock file to ship
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = json.loads(path.read_text()) if path.exists() else {"checkpoints": {}}
        yield manifest
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    finally:
        os.close(lock)


def publish(kind: str, seed: int, tokenizer: Tokenizer, work_dir: Path = DEFAULT_WORK_DIR,
            step: int | None = None, zoo_dir: Path = ZOO_DIR) -> dict[str, Any]:
    """Copy a trained run's weights (final, or the snapshot at ``step``) into the zoo as float16.

    The accuracies are measured on the float16-rounded weights, as :func:`mechshift_lite.zoo.load` returns them.
    The MDM at ``step=0`` is the ARM itself read as an MDM: its entry points at the ARM's file.
    """
    run = work_dir / checkpoint_name(kind, seed)
    name = checkpoint_name(kind, seed, step)
    if kind == "mdm" and step == 0:
        target = zoo_dir / f"{checkpoint_name('arm', seed)}.safetensors"
        if not target.exists():
            raise FileNotFoundError(f"{target} does not exist: publish the ARM of seed {seed} first")
    else:
        source = run / ("final.safetensors" if step is None else f"snapshots/step{step}.safetensors")
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist: train {checkpoint_name(kind, seed)} first")
        target = zoo_dir / f"{name}.safetensors"
        save_file({k: v.to(torch.float16) for k, v in load_file(str(source)).items()}, str(target))
        target.chmod(0o644)  # safetensors writes 0600; the package's files must be readable by everyone
    tokenizer.save(zoo_dir / TOKENIZER_FILE.name)
    status = run_status(run) if step is None else None
    model = Transformer(model_config(tokenizer), attention="bidirectional" if kind == "mdm" else "causal")
    model.load_state_dict({k: v.float() for k, v in load_file(str(target)).items()})
    started = time.perf_counter()
    measured = accuracy.measure(model, tokenizer, **EVAL_SIZES)
    cfg = recipe(kind, seed)
    entry = {
        "kind": kind, "seed": seed, "step": cfg.steps if step is None else step, "final": step is None,
        "file": target.name, "sha256": file_sha256(target), "dtype": "float16",
        "model_config": model_config(tokenizer).to_dict(), "train_config": cfg.to_dict(),
        "parent": None if kind == "arm" else checkpoint_name("arm", seed),
        "data": {"mixture": "50/50 IOI / Countdown-3 train splits", "n_train": cfg.n_train, "data_seed": cfg.data_seed,
                 "tokens_seen": cfg.steps * cfg.batch_size * tasks.CANVAS},
        "wall_time_s": None if status is None else round(status["wall_time_s"], 1),
        "device": run_devices(work_dir / checkpoint_name("arm", seed) if kind == "mdm" and step == 0 else run),
        "accuracy": {**{k: round(v, 4) for k, v in measured.items()}, "test_sets": EVAL_SIZES,
                     "decoding": "IOI: logit[IO] > logit[S] at the readout; Countdown: ARM greedy, MDM confidence sampler (1 token/step)",
                     "measure_time_s": round(time.perf_counter() - started, 1)},
        "command": command(kind, seed),
    }
    with _locked_manifest(zoo_dir) as manifest:
        manifest["checkpoints"][name] = entry
    return entry
