"""How the zoo is made: the recipe of every checkpoint, training it, and publishing it with its manifest entry.

A seed's models (recipe 0.3.0, :func:`stages`; each stage starts from its parent's float16 weights):

* ``arm``: ARM pre-training from a fresh init (``ARM_PRETRAIN_STEPS``), then ``ARM_CONTINUE_STEPS``
  more AR steps with a fresh optimizer and warm-up, then ``ARM_EXTEND_STEPS`` more with 90% Countdown
  rows (``POST_OPTIONS``): the 0.2.0 zoo's ARM-continued control, whose held-out Countdown accuracy
  had stopped rising (about 72%);
* ``mdm``: MDM post-training of that ARM (``POST_STEPS`` steps, DiffuLLaMA recipe, ``POST_OPTIONS``),
  with log-spaced snapshots for seed 0 (``SNAPSHOTS``; step 0 is the ARM itself);
* ``arm-continued``: the same ARM trained on, with its AR loss, for ``POST_STEPS`` steps on the very
  same batches (the control for "trained more");
* ``mdm-scratch``: an MDM of the same size from a fresh init, full attention from the start, for
  as many steps as the ARM on the same data (the reference with no AR initialisation; the same
  checkpoint as 0.2.0's, whose budget was its ARM and post-training together).

**The MDM post-training, exactly** (:func:`recipe`): each step draws 64 rows from the 100k-example
50/50 IOI / Countdown-3 mixture, uniformly for the first 250 steps, then each row a Countdown row
with probability 0.9; the whole 40-slot canvas runs, in float32; every slot after the prompt
(answer, ``[EOS]`` and the ``[PAD]`` tail up to slot 40) is maskable and scored; one
``t ~ U(1e-3, 1)`` per row and an independent Bernoulli(t) per slot; the loss is the shifted
cross-entropy of the masked slots weighted 1/t and divided by the number of masked slots;
attention annealed from causal to full over the first 30% of the steps; a fresh AdamW (peak
1e-3, warm-up 100, cosine to 1e-4, weight decay 0.01, clip 1). The study's faster steps
(``pad_tail="trim"``, ``precision="bfloat16"``) are not used: trimming costs decoded chains, and
bfloat16 is slower on a CPU without bfloat16 instructions. ``--device`` does not change the
recipe: batches and masks are drawn on the CPU everywhere, so another device changes only the
float rounding; the manifest's ``device`` says where each checkpoint was trained.

Training runs live in a work directory (default ``.cache/zoo-train-{RECIPE}``), one resumable run per stage
and seed (``{run}-seed{seed}``); :func:`publish` rounds the weights to float16, writes them into a
zoo directory (the package's, or a staging one such as ``zoo-next/``), measures the accuracies and
the Countdown diagnostics on the rounded weights and records everything in its ``manifest.json``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save, save_file

from .. import accuracy, diagnostics, tasks
from . import ALL_KINDS, ZOO_DIR, ChecksumError, attention_of, file_sha256
from ..config import ModelConfig
from ..model import Transformer
from ..tokenizer import Tokenizer
from ..training import TrainConfig, TrainData, TrainResult, run_status, train, training_data

MANIFEST = ZOO_DIR / "manifest.json"
TOKENIZER_FILE = ZOO_DIR / "tokenizer.json"
# The recipe (0.3.0), chosen by the recipe study (``scripts/recipe_study.py``, chapter 11): the
# 0.2.0 zoo's ARM-continued control as the ARM (3000 + 4000 + 8000 AR steps: its accuracy had
# stopped rising) and twice 0.2.0's post-training. The study's ``arm-15k+cd-16k`` run of this recipe
# solved 63.0% of 200 held-out problems at its last step; 0.2.0's recipe 52.0%, 0.1.0's 3-7%.
RECIPE = "0.3.0"
DEFAULT_WORK_DIR = Path(f".cache/zoo-train-{RECIPE}")
ARM_PRETRAIN_STEPS = 3000
ARM_CONTINUE_STEPS = 4000
ARM_EXTEND_STEPS = 8000
POST_STEPS = 16000
POST_OPTIONS: dict[str, Any] = {"countdown_share": 0.9, "countdown_share_from": 250}
SNAPSHOTS: tuple[int, ...] = (125, 250, 500, 1000, 2000, 4000, 8000)  # seed 0's MDM: log-spaced; step 0 is the ARM itself
SNAPSHOT_SEEDS: tuple[int, ...] = (0,)
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
"""The seeds the zoo holds of every kind in :data:`~mechshift_lite.zoo.KINDS`."""
SCRATCH_SEEDS: tuple[int, ...] = (0,)
"""The seeds of the from-scratch MDM."""
N_TRAIN = 100_000
EVAL_SIZES = {"n_ioi": 1000, "n_countdown": 500, "seed": accuracy.TEST_SEED}
TRAIN_EVAL_SIZES = {"n_ioi": 200, "n_countdown": 200, "seed": accuracy.TEST_SEED + 1}
TRAIN_EVAL_EVERY = 1000
DIAGNOSTIC_PROBLEMS = 200  # the manifest's Countdown diagnostics (mechshift_lite.diagnostics), as in the recipe study


def model_config(tokenizer: Tokenizer) -> ModelConfig:
    """The zoo's model: GPT-2 family, 4 layers, d_model 96, 4 heads of 24, d_mlp 384, context = canvas."""
    return ModelConfig(
        family="gpt2", d_vocab=len(tokenizer), n_ctx=tasks.CANVAS,
        d_model=96, n_layers=4, n_heads=4, d_head=24, d_mlp=384,
    )


@dataclass(frozen=True)
class Stage:
    """One training run of a recipe: its work-directory name, its configuration and where it starts.

    Attributes:
        run: the run's name without the seed (``"arm-pretrain"``, ``"arm"``, ``"mdm"``...).
        config: the run's :class:`TrainConfig`.
        parent: the run whose final weights (rounded to float16, as the zoo ships them) it starts
            from; None = a fresh init from the seed.
    """

    run: str
    config: TrainConfig
    parent: str | None


def stages(kind: str, seed: int) -> tuple[Stage, ...]:
    """The training runs that make ``kind`` for ``seed``, in order; the last one is the checkpoint.

    * ``arm``: AR pre-training (``ARM_PRETRAIN_STEPS``), then ``ARM_CONTINUE_STEPS`` more AR steps
      with a fresh warm-up and optimizer, then ``ARM_EXTEND_STEPS`` more with ``POST_OPTIONS``;
    * ``mdm``: the ARM, then MDM post-training (``POST_STEPS``, DiffuLLaMA's annealed attention,
      ``POST_OPTIONS``), with snapshots for seed 0;
    * ``arm-continued``: the ARM, then the same post-training batches with the AR loss;
    * ``mdm-scratch``: an MDM from a fresh init, full attention from the first step, as many steps as
      the ARM on the same data (90% Countdown rows over its last ``ARM_EXTEND_STEPS``, as the ARM's).
    """
    check_kind(kind)
    arm = (
        Stage("arm-pretrain", TrainConfig(objective="arm", stage="pretrain", seed=seed, steps=ARM_PRETRAIN_STEPS,
                                          n_train=N_TRAIN), None),
        Stage("arm-continue", TrainConfig(objective="arm", stage="post", seed=seed, steps=ARM_CONTINUE_STEPS,
                                          n_train=N_TRAIN), "arm-pretrain"),
        Stage("arm", TrainConfig(objective="arm", stage="post", seed=seed, steps=ARM_EXTEND_STEPS,
                                 n_train=N_TRAIN, **POST_OPTIONS), "arm-continue"),
    )
    if kind == "arm":
        return arm
    if kind == "mdm-scratch":
        steps = sum(stage.config.steps for stage in arm)
        options = {**POST_OPTIONS, "countdown_share_from": steps - ARM_EXTEND_STEPS}
        return (Stage(kind, TrainConfig(objective="mdm", stage="pretrain", seed=seed, steps=steps,
                                        n_train=N_TRAIN, anneal_fraction=0.0, **options), None),)
    snapshots = SNAPSHOTS if kind == "mdm" and seed in SNAPSHOT_SEEDS else ()
    post = TrainConfig(objective="mdm" if kind == "mdm" else "arm", stage="post", seed=seed, steps=POST_STEPS,
                       n_train=N_TRAIN, snapshots=snapshots, **POST_OPTIONS)
    return (*arm, Stage(kind, post, "arm"))


def recipe(kind: str, seed: int) -> TrainConfig:
    """The :class:`TrainConfig` of the run that makes ``kind``'s checkpoint for ``seed`` (its last stage)."""
    return stages(kind, seed)[-1].config


def check_kind(kind: str) -> None:
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown zoo kind {kind!r}; the zoo has {ALL_KINDS}")


def checkpoint_name(kind: str, seed: int, step: int | None = None) -> str:
    """``{kind}-seed{seed}`` or ``{kind}-seed{seed}-step{step}`` (an intermediate checkpoint)."""
    return f"{kind}-seed{seed}" + ("" if step is None else f"-step{step}")


def command(kind: str, seed: int) -> str:
    return f"mechshift-lite zoo train --kind {kind} --seed {seed}"


def parent_weights(parent: str, seed: int, work_dir: Path, zoo_dir: Path = ZOO_DIR) -> dict[str, torch.Tensor]:
    """A stage's starting weights: the parent run's final weights rounded to float16 (float32 tensors).

    From the work directory when the parent was trained there, else from the parent's published
    checkpoint in ``zoo_dir`` (the same values): a later session can post-train an ARM that an
    earlier one trained and published.
    """
    final = work_dir / checkpoint_name(parent, seed) / "final.safetensors"
    if final.exists():
        return {k: v.to(torch.float16).float() for k, v in load_file(str(final)).items()}
    published = zoo_dir / f"{checkpoint_name(parent, seed)}.safetensors"
    entry = json.loads((zoo_dir / MANIFEST.name).read_text())["checkpoints"].get(checkpoint_name(parent, seed)) \
        if (zoo_dir / MANIFEST.name).exists() else None
    if entry is None or entry.get("recipe") != RECIPE or not published.exists():
        raise FileNotFoundError(
            f"this run starts from {checkpoint_name(parent, seed)}, which is neither trained in {work_dir} nor "
            f"published with recipe {RECIPE} in {zoo_dir}; train it first ({command(parent, seed)})")
    if file_sha256(published) != entry["sha256"]:
        raise ChecksumError(f"{published} does not match its manifest sha256; republish it")
    return {k: v.float() for k, v in load_file(str(published)).items()}


def new_model(stage: Stage, seed: int, tokenizer: Tokenizer, work_dir: Path, zoo_dir: Path = ZOO_DIR) -> Transformer:
    """The starting point of ``stage``: a seeded fresh init, or its parent's float16-rounded weights."""
    model = Transformer(model_config(tokenizer), attention="bidirectional" if stage.config.objective == "mdm" else "causal")
    if stage.parent is None:
        return model.init_weights(seed)
    model.load_state_dict(parent_weights(stage.parent, seed, work_dir, zoo_dir))
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


def own_stages(kind: str, seed: int) -> tuple[Stage, ...]:
    """The stages :func:`train_kind` runs for ``kind``: all of an ARM's or a from-scratch MDM's; a
    post-trained kind's last one only (its ARM is a job of its own)."""
    chain = stages(kind, seed)
    return chain if kind in ("arm", "mdm-scratch") else chain[-1:]


def train_kind(kind: str, seed: int, tokenizer: Tokenizer, data: TrainData | None = None,
               work_dir: Path = DEFAULT_WORK_DIR, progress: bool = True, device: str = "cpu",
               zoo_dir: Path = ZOO_DIR) -> TrainResult:
    """Train (or resume) ``kind`` for ``seed``: each of :func:`own_stages` in ``work_dir/{run}-seed{seed}`` on ``device``.

    A post-trained kind starts from the ARM of its seed, trained in ``work_dir`` or published in
    ``zoo_dir``. The batches and masks are drawn on the CPU whatever the device, so the device
    changes only the float rounding of the steps; the run directory records where it ran
    (:func:`run_devices`). Returns the last stage's result.
    """
    result = None
    for stage in own_stages(kind, seed):
        data = data if data is not None else training_data(stage.config, tokenizer, tasks.CANVAS)
        model = new_model(stage, seed, tokenizer, work_dir, zoo_dir)
        result = train(stage.config, model, data, work_dir / checkpoint_name(stage.run, seed), mask_id=tokenizer.mask_id,
                       eval_fn=train_eval_fn(tokenizer), eval_every=TRAIN_EVAL_EVERY, progress=progress, device=device)
    return result


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
    zoo_dir.mkdir(parents=True, exist_ok=True)
    run = work_dir / checkpoint_name(kind, seed)
    name = checkpoint_name(kind, seed, step)
    if kind == "mdm" and step == 0:
        target = zoo_dir / f"{checkpoint_name('arm', seed)}.safetensors"
        if not target.exists():
            raise FileNotFoundError(f"{target} does not exist: publish the ARM of seed {seed} first")
        runs = [work_dir / checkpoint_name(st.run, seed) for st in own_stages("arm", seed)]
    else:
        source = run / ("final.safetensors" if step is None else f"snapshots/step{step}.safetensors")
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist: train {checkpoint_name(kind, seed)} first")
        target = zoo_dir / f"{name}.safetensors"
        save_file({k: v.to(torch.float16) for k, v in load_file(str(source)).items()}, str(target))
        target.chmod(0o644)  # safetensors writes 0600; the package's files must be readable by everyone
        runs = [work_dir / checkpoint_name(st.run, seed) for st in own_stages(kind, seed)]
    tokenizer.save(zoo_dir / TOKENIZER_FILE.name)
    model = Transformer(model_config(tokenizer), attention=attention_of(kind))
    model.load_state_dict({k: v.float() for k, v in load_file(str(target)).items()})
    started = time.perf_counter()
    measured = accuracy.measure(model, tokenizer, **EVAL_SIZES)
    measure_time = time.perf_counter() - started
    diagnosed = diagnostics.countdown_diagnostics(model, tokenizer, diagnostics.test_problems(DIAGNOSTIC_PROBLEMS))
    chain = stages(kind, seed)
    cfg = chain[-1].config
    walls = [run_status(r)["wall_time_s"] for r in runs if run_status(r)] if step is None else []
    mixture = "50/50 IOI / Countdown-3 train splits"
    if cfg.countdown_share is not None:
        mixture += f"; {cfg.countdown_share:.0%} Countdown-3 rows from step {cfg.countdown_share_from}"
    entry = {
        "kind": kind, "seed": seed, "step": cfg.steps if step is None else step, "final": step is None,
        "file": target.name, "sha256": file_sha256(target), "dtype": "float16", "recipe": RECIPE,
        "model_config": model_config(tokenizer).to_dict(), "train_config": cfg.to_dict(),
        "stages": [{"run": st.run, "parent": st.parent, "train_config": st.config.to_dict()} for st in chain],
        "parent": checkpoint_name("arm", seed) if chain[-1].parent == "arm" else None,
        "data": {"mixture": mixture, "n_train": cfg.n_train, "data_seed": cfg.data_seed,
                 "tokens_seen": cfg.steps * cfg.batch_size * tasks.CANVAS},
        "wall_time_s": round(sum(walls), 1) if walls else None,
        "device": "+".join(sorted({d for r in runs for d in run_devices(r).split("+")})),
        "accuracy": {**{k: round(v, 4) for k, v in measured.items()}, "test_sets": EVAL_SIZES,
                     "decoding": "IOI: logit[IO] > logit[S] at the readout; Countdown: ARM greedy, MDM confidence sampler (1 token/step)",
                     "measure_time_s": round(measure_time, 1)},
        "diagnostics": {**{k: round(v, 4) for k, v in diagnosed.items()}, "n_problems": DIAGNOSTIC_PROBLEMS,
                        "problems": "mechshift_lite.diagnostics.test_problems"},
        "command": command(kind, seed),
    }
    with _locked_manifest(zoo_dir) as manifest:
        manifest["checkpoints"][name] = entry
    return entry
