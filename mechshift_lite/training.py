"""Training loops: ARM pre-training, MDM post-training (DiffuLLaMA recipe), ARM-continued (the control).

One loop serves all three; a :class:`TrainConfig` says which objective and stage:

* ARM pre-training: ``objective="arm", stage="pretrain"`` from a fresh seeded init; next-token loss
  on the answer and ``[EOS]`` only.
* MDM post-training: ``objective="mdm", stage="post"`` from the ARM's weights; attention annealed
  from causal to bidirectional over the first ``anneal_fraction`` of the steps, 1/t-weighted shifted
  masked loss, a fresh AdamW.
* ARM-continued: ``objective="arm", stage="post"`` from the same ARM, the same number of steps and
  the very same batches as the MDM (batches depend on ``seed``, ``stage`` and the step only).

A run lives in a directory: ``latest.json`` names the newest complete checkpoint
(``ckpt-{step}/weights.safetensors``, ``ckpt-{step}/optimizer.safetensors``); ``log.jsonl`` holds
losses and evaluations; ``snapshots/step{k}.safetensors`` the weights asked for along the way; and
``final.safetensors`` the trained weights. Calling :func:`train` again on the same directory resumes
where it stopped (Ctrl-C saves first), and gives the same weights as an uninterrupted run.
No pickles: weights and optimizer state are safetensors, everything else JSON.

Speed: :func:`train` takes a ``device``; batches and masking noise are drawn on the CPU from the
step's generator whatever the device, so a seed gives the same batches everywhere. On this
project's CPU ``precision="bfloat16"`` makes an MDM step about 1.5x faster, and ``pad_tail="trim"``
another ~1.1x; ``benchmarks/train_throughput.py`` measures both against the shipped step in the
same run. Both change the numbers of the shipped recipe, and the recipe study
(``scripts/recipe_study.py``, runs ``bf16``, ``trim``, ``fast``) measures what they do to the
result after 1500 post-training steps: bf16 alone matches the shipped step (within the noise of
200 problems); bf16 with the trimmed tail (run ``fast``) ends far fewer decoded chains at the
target (54% against 96%): the model, trained on shorter canvases, is decoded on the whole one.
So bf16 is a speed-up at the same result and ``trim`` is not, but only on a CPU with bfloat16
instructions: on one without (AMD Zen 3, measured 2026-12-02) the bf16 step is about 8x *slower*,
so the zoo's recipe stays float32 (``benchmarks/train_throughput.py``).
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from . import diffusion
from .model import Transformer

OBJECTIVES: tuple[str, ...] = ("arm", "mdm")
STAGES: tuple[str, ...] = ("pretrain", "post")
PAD_TAILS: tuple[str, ...] = ("mask", "trim")
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's numbers.

    Attributes:
        objective: ``"arm"`` (next-token loss on the answer) or ``"mdm"`` (masked diffusion loss).
        stage: ``"pretrain"`` (fresh init from ``seed``) or ``"post"`` (continue given weights).
        seed: init (pretrain) and batch order / masking noise.
        steps: optimizer steps.
        batch_size: sequences per step.
        lr: peak learning rate (linear warmup, then cosine down to ``min_lr_ratio * lr``).
        min_lr_ratio: final learning rate as a share of ``lr``.
        warmup: warmup steps.
        weight_decay: AdamW decay on matrices and embeddings (not on biases and norms).
        clip: gradient-norm clip.
        anneal_fraction: MDM only: share of the steps over which attention goes causal -> full.
        mask_eps: MDM only: t ~ U(mask_eps, 1).
        n_train: training examples (50/50 IOI / Countdown-3 mixture), see :func:`training_data`.
        data_seed: seed of the training examples.
        checkpoint_every: steps between resumable checkpoints.
        snapshots: step counts after which to keep a copy of the weights (0 = the initial weights).

    Options of the recipe study (issue 12). Their defaults are the shipped recipe, bit for bit, and
    a configuration at its defaults serialises without them (:meth:`to_dict`), so the runs and the
    manifest entries written before these options existed still match:

        pad_tail: MDM only. ``"mask"``: every step runs the whole canvas and every slot after the
            prompt, ``[PAD]`` tail included, is maskable and scored (the recipe). ``"trim"``: the
            step's canvas ends after the longest real sequence (``[EOS]``) of its batch; shorter
            rows keep a maskable ``[PAD]`` tail up to there. Fewer positions run (faster), but the
            model sees less of the tail while decoding still uses the whole canvas (see the
            module docstring: it hurts the decoded chains).
        focal_alpha, focal_gamma: MDM only: per-token weight ``alpha (1 - p) ** gamma`` of the
            masked cross-entropy, ``p`` the probability of the right token (Ye et al. 2024: 0.25,
            2); ``1, 0`` = no reweighting. See :func:`mechshift_lite.diffusion.mdm_loss`.
        t_power: MDM only: ``t = mask_eps + (1 - mask_eps) u ** t_power``; 1 = uniform (the
            recipe), > 1 = low mask rates more often.
        span_token_ids: MDM only: ids whose runs are masked as a whole (the digits: whole numbers
            masked at once); empty = each slot on its own (the recipe).
        countdown_share: None = rows drawn uniformly from the 50/50 mixture (the recipe); else
            from step ``countdown_share_from`` on each row is a Countdown row with this
            probability (needs ``data.is_countdown``, which :func:`training_data` provides).
        countdown_share_from: see ``countdown_share``.
        precision: ``"float32"`` (the recipe) or ``"bfloat16"``: the forward pass runs under
            bfloat16 autocast (weights, gradients, optimizer state and the loss stay float32).
            About 1.5x faster per MDM step on this project's CPU (AVX512-BF16); not bit-identical
            to float32 (still deterministic per seed).
    """

    objective: str = "arm"
    stage: str = "pretrain"
    seed: int = 0
    steps: int = 6000
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.01
    clip: float = 1.0
    anneal_fraction: float = 0.3
    mask_eps: float = diffusion.MASK_EPS
    n_train: int = 100_000
    data_seed: int = 0
    checkpoint_every: int = 250
    snapshots: tuple[int, ...] = ()
    pad_tail: str = "mask"
    focal_alpha: float = 1.0
    focal_gamma: float = 0.0
    t_power: float = 1.0
    span_token_ids: tuple[int, ...] = ()
    countdown_share: float | None = None
    countdown_share_from: int = 0
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; use one of {OBJECTIVES}")
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; use one of {STAGES}")
        for name in ("steps", "batch_size", "n_train", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}")
        if not 0.0 <= self.anneal_fraction <= 1.0:
            raise ValueError(f"anneal_fraction must lie in [0, 1]; got {self.anneal_fraction}")
        bad = [s for s in self.snapshots if not 0 <= s <= self.steps]
        if bad:
            raise ValueError(f"snapshots {bad} lie outside 0..steps={self.steps}")
        object.__setattr__(self, "snapshots", tuple(sorted(set(self.snapshots))))
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use one of {PRECISIONS}")
        if self.pad_tail not in PAD_TAILS:
            raise ValueError(f"unknown pad_tail {self.pad_tail!r}; use one of {PAD_TAILS}")
        if not self.focal_alpha > 0 or self.focal_gamma < 0:
            raise ValueError(f"focal_alpha must be > 0 and focal_gamma >= 0; got {self.focal_alpha}, {self.focal_gamma}")
        if not self.t_power > 0:
            raise ValueError(f"t_power must be positive; got {self.t_power}")
        if self.countdown_share is not None and not 0.0 <= self.countdown_share <= 1.0:
            raise ValueError(f"countdown_share must be None or lie in [0, 1]; got {self.countdown_share}")
        if self.countdown_share_from < 0:
            raise ValueError(f"countdown_share_from must be >= 0; got {self.countdown_share_from}")
        if any(not isinstance(i, int) or i < 0 for i in self.span_token_ids):
            raise ValueError(f"span_token_ids must be token ids (non-negative ints); got {self.span_token_ids}")
        object.__setattr__(self, "span_token_ids", tuple(sorted(set(self.span_token_ids))))

    @property
    def anneal_steps(self) -> int:
        return round(self.anneal_fraction * self.steps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; the study options (:data:`STUDY_OPTIONS`) only where they differ from their default."""
        out = dataclasses.asdict(self)
        for name in STUDY_OPTIONS:
            if out[name] == _DEFAULTS[name]:
                del out[name]
        out["snapshots"] = list(self.snapshots)
        if "span_token_ids" in out:
            out["span_token_ids"] = list(self.span_token_ids)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{**data, "snapshots": tuple(data.get("snapshots", ())),
                      "span_token_ids": tuple(data.get("span_token_ids", ()))})


STUDY_OPTIONS: tuple[str, ...] = ("pad_tail", "focal_alpha", "focal_gamma", "t_power", "span_token_ids",
                                  "countdown_share", "countdown_share_from", "precision")
"""The :class:`TrainConfig` fields added for the recipe study (written out only when not at their default)."""
_DEFAULTS = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
             for f in dataclasses.fields(TrainConfig)}


class TrainData(Protocol):
    """Encoded training sequences (``mechshift_lite.tasks.encode_examples`` returns one).

    :func:`training_data` also gives ``is_countdown`` (``[N]`` bool), which ``countdown_share`` needs.
    """

    ids: Tensor           # [N, P] long: [BOS] prompt answer [EOS] [PAD]...
    answer_start: Tensor  # [N] index of the first answer token
    answer_end: Tensor    # [N] index of [EOS]


@dataclass
class MixtureData:
    """Encoded training mixture: :class:`TrainData` plus ``is_countdown [N]`` bool (the row's task)."""

    ids: Tensor
    answer_start: Tensor
    answer_end: Tensor
    is_countdown: Tensor

    def __len__(self) -> int:
        return self.ids.shape[0]


@dataclass
class TrainResult:
    """What :func:`train` returns: the model, how far it got and what it logged."""

    model: Transformer
    step: int
    done: bool
    wall_time_s: float
    log: list[dict[str, Any]] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)


def training_data(cfg: TrainConfig, tokenizer, length: int) -> MixtureData:
    """The 50/50 IOI / Countdown-3 training mixture of ``cfg.n_train`` examples, encoded to ``length`` slots."""
    from .tasks import encode_examples, training_mixture

    examples = training_mixture(cfg.n_train, cfg.data_seed)
    enc = encode_examples(tokenizer, examples, length)
    is_countdown = torch.tensor([ex.task == "countdown" for ex in examples], dtype=torch.bool)
    return MixtureData(enc.ids, enc.answer_start, enc.answer_end, is_countdown)


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine decay."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    floor = cfg.min_lr_ratio
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def step_generator(cfg: TrainConfig, step: int) -> torch.Generator:
    """The random stream of one step (batch, masking, annealing): a function of seed, stage and step only."""
    digest = hashlib.sha256(f"{cfg.seed}/{cfg.stage}/{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def make_optimizer(model: Transformer, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices/embeddings only (nanoGPT's split)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))


def draw_rows(cfg: TrainConfig, step: int, data: TrainData, gen: torch.Generator) -> Tensor:
    """The ``[batch_size]`` training rows of step ``step`` (the first draws of its generator ``gen``).

    Uniform over the data (the recipe), or with ``cfg.countdown_share`` Countdown rows from step
    ``cfg.countdown_share_from`` on (see :class:`TrainConfig`).
    """
    if cfg.countdown_share is None or step < cfg.countdown_share_from:
        return torch.randint(len(data.ids), (cfg.batch_size,), generator=gen)
    is_countdown = getattr(data, "is_countdown", None)
    if is_countdown is None:
        raise ValueError("countdown_share needs data.is_countdown (the row's task); build the data with training_data()")
    countdown_rows, other_rows = is_countdown.nonzero()[:, 0], (~is_countdown).nonzero()[:, 0]
    if not len(countdown_rows) or not len(other_rows):
        raise ValueError("countdown_share needs both Countdown and other rows in the data")
    pick = torch.rand(cfg.batch_size, generator=gen) < cfg.countdown_share
    cd = countdown_rows[torch.randint(len(countdown_rows), (cfg.batch_size,), generator=gen)]
    other = other_rows[torch.randint(len(other_rows), (cfg.batch_size,), generator=gen)]
    return torch.where(pick, cd, other)


def loss_on_batch(model: Transformer, cfg: TrainConfig, step: int, data: TrainData, mask_id: int) -> Tensor:
    """The training loss of optimizer step ``step`` (batch and noise drawn from :func:`step_generator`).

    Batches and noise are drawn on the CPU, then moved to the model's device: a seed gives the
    same batches and masks on every device.
    """
    gen = step_generator(cfg, step)
    device = model.W_E.device
    rows = draw_rows(cfg, step, data, gen)
    ids, start, end = data.ids[rows], data.answer_start[rows], data.answer_end[rows]
    if cfg.objective == "arm":
        ids = ids[:, : int(end.max()) + 1]  # causal: slots after the last [EOS] change no scored logit
        ids, start, end = ids.to(device), start.to(device), end.to(device)
        return diffusion.arm_loss(_forward(model, cfg, ids, "causal"), ids, start, end)
    if cfg.pad_tail == "trim":
        ids = ids[:, : int(end.max()) + 1]
    spans = diffusion.number_spans(ids, cfg.span_token_ids) if cfg.span_token_ids else None
    x_t, t = diffusion.forward_mask(ids, diffusion.answer_region(start, ids.shape[1]), mask_id, gen, cfg.mask_eps,
                                    t_power=cfg.t_power, span_start=spans)
    ratio = diffusion.anneal_ratio(step, cfg.anneal_steps)
    attention = "bidirectional" if ratio >= 1 else diffusion.annealed_attention(ratio, ids.shape[1], gen)
    x_t, ids, t = x_t.to(device), ids.to(device), t.to(device)
    return diffusion.mdm_loss(_forward(model, cfg, x_t, attention), ids, x_t, t, mask_id,
                              focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma)


def _forward(model: Transformer, cfg: TrainConfig, ids: Tensor, attention) -> Tensor:
    """Training logits ``[B, P, V]`` in float32, the forward in ``cfg.precision``."""
    if cfg.precision == "float32":
        return model(ids, attention=attention)
    with torch.autocast(device_type=ids.device.type, dtype=torch.bfloat16):
        return model(ids, attention=attention).float()


def check_fits(model: Transformer, data: TrainData) -> None:
    """Clear errors when the training sequences cannot go through the model."""
    P = data.ids.shape[1]
    if P > model.cfg.n_ctx:
        raise ValueError(
            f"training sequences are {P} tokens long but the model's context is n_ctx={model.cfg.n_ctx}; "
            f"build the model with n_ctx >= {P} (the task canvas) or encode shorter sequences"
        )
    if int(data.ids.max()) >= model.cfg.d_vocab:
        raise ValueError(
            f"token id {int(data.ids.max())} does not exist in a model with d_vocab={model.cfg.d_vocab}; "
            "build the model with d_vocab = len(tokenizer)"
        )
    if int(data.answer_start.min()) < 1:
        raise ValueError("answer_start must be >= 1 ([BOS] comes first and is never predicted)")


def train(
    cfg: TrainConfig,
    model: Transformer,
    data: TrainData,
    run_dir: str | Path,
    *,
    mask_id: int,
    eval_fn: Callable[[Transformer], dict[str, float]] | None = None,
    eval_every: int = 0,
    stop_at: int | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train ``model`` in place with ``cfg``, checkpointing to ``run_dir``; resumes if a checkpoint is there.

    Args:
        model: the starting weights (fresh init for a pretrain stage, the ARM for a post stage).
            Resuming replaces them with the checkpoint's.
        data: encoded training sequences, see :class:`TrainData`.
        mask_id: id of ``[MASK]`` (used by the MDM objective).
        eval_fn: called on the model every ``eval_every`` steps and at the end; its dict is logged.
        stop_at: pause after this many steps (a resumable checkpoint is written), e.g. to split a
            long run into sittings.
        device: where the steps run (``"cpu"``, ``"cuda"``, ...). The model is moved there;
            batches and noise are still drawn on the CPU, checkpoints are written from the CPU,
            and ``eval_fn`` gets a CPU copy of the model. A run may resume on another device;
            ``latest.json`` lists every device it ran on (``devices``).
    """
    check_fits(model, data)
    device = check_device(device)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    with _exclusive(run):
        return _train(cfg, model.to(device), data, run, mask_id, eval_fn, eval_every, stop_at, progress, device)


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device`; a clear error for a name torch does not know or a missing accelerator."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r} ({error}); use e.g. 'cpu', 'cuda' or 'cuda:1'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but torch sees no CUDA device here; use 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} asked for, but there are {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but torch sees no MPS device here; use 'cpu'")
    return device


@contextmanager
def _exclusive(run: Path) -> Iterator[None]:
    """Hold a lock on the run directory: two processes must never train the same run."""
    fd = os.open(run, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another process is training in {run}; wait for it or stop it first") from None
        yield
    finally:
        os.close(fd)


def _train(cfg: TrainConfig, model: Transformer, data: TrainData, run: Path, mask_id: int,
           eval_fn: Callable[[Transformer], dict[str, float]] | None, eval_every: int, stop_at: int | None,
           progress: bool, device: torch.device) -> TrainResult:
    _check_run_config(run, cfg, model)
    opt = make_optimizer(model, cfg)
    step, wall, log, devices = _resume(run, model, opt)
    devices = sorted({*devices, str(device)})
    if step == 0 and 0 in cfg.snapshots:
        _save_weights(model, run / "snapshots" / "step0.safetensors")
    target = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=f"{cfg.objective}/{cfg.stage} seed {cfg.seed}")
    started, running_loss = time.perf_counter(), None
    try:
        with _deferred_interrupt() as interrupted:
            while step < target:
                model.train()
                for group in opt.param_groups:
                    group["lr"] = lr_at(cfg, step)
                loss = loss_on_batch(model, cfg, step, data, mask_id)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
                opt.step()
                step += 1
                running_loss = loss.item() if running_loss is None else 0.98 * running_loss + 0.02 * loss.item()
                bar.update(1)
                bar.set_postfix(loss=f"{running_loss:.4f}", refresh=False)
                if step % 50 == 0:
                    log.append({"step": step, "loss": loss.item(), "lr": lr_at(cfg, step - 1)})
                if step in cfg.snapshots:
                    _save_weights(model, run / "snapshots" / f"step{step}.safetensors")
                if eval_fn is not None and eval_every and step % eval_every == 0 and step < cfg.steps:
                    log.append({"step": step, **_evaluate(model, eval_fn)})
                    bar.write(json.dumps(log[-1]))
                if interrupted() or step % cfg.checkpoint_every == 0 or step == target:
                    wall_now = wall + time.perf_counter() - started
                    if step == cfg.steps:
                        if eval_fn is not None:
                            log.append({"step": step, **_evaluate(model, eval_fn)})
                            bar.write(json.dumps(log[-1]))
                        _save_weights(model, run / "final.safetensors")
                    _save_checkpoint(run, model, opt, step, wall_now, log, done=step == cfg.steps, devices=devices)
                    if interrupted():
                        raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.write(f"interrupted at step {step}: the run in {run} resumes from its last checkpoint when train() is called again")
        raise
    finally:
        bar.close()
    return TrainResult(model, step, step == cfg.steps, wall + time.perf_counter() - started, log, devices)


def _evaluate(model: Transformer, eval_fn: Callable[[Transformer], dict[str, float]]) -> dict[str, float]:
    """``eval_fn`` on the model in eval mode, without gradients; on a CPU copy when it lives elsewhere."""
    model.eval()
    subject = model if model.W_E.device.type == "cpu" else copy.deepcopy(model).cpu()
    with torch.no_grad():
        return {k: float(v) for k, v in eval_fn(subject).items()}


@contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Hold Ctrl-C until the current optimizer step is complete, so a checkpoint is never half-updated."""
    flag = {"hit": False}
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        flag["hit"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: flag["hit"]
    finally:
        signal.signal(signal.SIGINT, previous)


# ----- checkpoints --------------------------------------------------------------------------------
def _save_weights(model: Transformer, path: Path, dtype: torch.dtype = torch.float32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    tensors = {}
    for index, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"{index}.{name}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
    return tensors


def _load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, Tensor]) -> None:
    state_dict = opt.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    state_dict["state"] = state
    opt.load_state_dict(state_dict)


def _save_checkpoint(run: Path, model: Transformer, opt, step: int, wall: float, log: list, done: bool,
                     devices: list[str]) -> None:
    folder = run / f"ckpt-{step}"
    folder.mkdir(exist_ok=True)
    _save_weights(model, folder / "weights.safetensors")
    save_file(_optimizer_tensors(opt), str(folder / "optimizer.safetensors"))
    (folder / "log.json").write_text(json.dumps(log))
    pointer = {"step": step, "folder": folder.name, "wall_time_s": wall, "done": done, "devices": devices}
    tmp = run / "latest.json.tmp"
    tmp.write_text(json.dumps(pointer))
    tmp.replace(run / "latest.json")
    for old in run.glob("ckpt-*"):
        if old != folder:
            shutil.rmtree(old)
    with open(run / "log.jsonl", "w") as out:
        out.writelines(json.dumps(entry) + "\n" for entry in log)


def _resume(run: Path, model: Transformer, opt) -> tuple[int, float, list, list[str]]:
    """Load the newest checkpoint of ``run`` into ``model`` and ``opt``; (step, wall time, log, devices so far)."""
    pointer_file = run / "latest.json"
    if not pointer_file.exists():
        return 0, 0.0, [], []
    pointer = json.loads(pointer_file.read_text())
    folder = run / pointer["folder"]
    model.load_state_dict(load_file(str(folder / "weights.safetensors")))
    _load_optimizer_tensors(opt, load_file(str(folder / "optimizer.safetensors")))
    log = json.loads((folder / "log.json").read_text())
    return int(pointer["step"]), float(pointer["wall_time_s"]), log, list(pointer.get("devices", ["cpu"]))


def _check_run_config(run: Path, cfg: TrainConfig, model: Transformer) -> None:
    """A run directory belongs to one configuration: refuse to resume it with another."""
    record = {"train": cfg.to_dict(), "model": model.cfg.to_dict()}
    path = run / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != record:
            raise ValueError(
                f"{run} holds a run with another configuration ({path}); use a fresh run directory "
                "or delete that one to start over"
            )
    else:
        path.write_text(json.dumps(record, indent=1))


def run_status(run_dir: str | Path) -> dict[str, Any] | None:
    """``latest.json`` of a run directory (step, wall time, done), or None if it never checkpointed."""
    pointer = Path(run_dir) / "latest.json"
    return json.loads(pointer.read_text()) if pointer.exists() else None
