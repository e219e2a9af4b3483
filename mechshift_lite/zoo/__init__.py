"""The shipped toy checkpoints: ARMs, their MDMs, and the ARM-continued controls, for several seeds.

>>> import mechshift_lite as ml
>>> arm = ml.zoo.load("arm", seed=0)              # causal attention
>>> mdm = ml.zoo.load("mdm", seed=0)              # the same architecture, bidirectional attention
>>> early = ml.zoo.load("mdm", seed=0, step=1000) # an intermediate checkpoint of MDM post-training
>>> tok = ml.zoo.tokenizer()

Every checkpoint is a float16 safetensors file listed in ``manifest.json`` with its sha256, its
model and training configuration, its measured accuracies and the command that reproduces it
(:mod:`mechshift_lite.zoo.build` holds the recipe). :func:`load` checks the sha256 and refuses a
file that does not match.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from ..config import ModelConfig
from ..model import Transformer
from ..tokenizer import Tokenizer

ZOO_DIR = Path(__file__).resolve().parent
FIRST_ZOO_DIR = ZOO_DIR / "0.1.0"
"""Seed 0 of the first zoo (recipe 0.1.0, whose MDMs solve 3-7% of Countdown-3), kept as a zoo folder
of its own: the recipe study started from its ARM and ARM-continued model, and chapter 11 diagnoses
why its MDM failed. Its manifest's commands name the commit whose recipe rebuilds them."""
KINDS: tuple[str, ...] = ("arm", "mdm", "arm-continued")
"""The kinds every seed has and the report compares."""
ALL_KINDS: tuple[str, ...] = (*KINDS, "mdm-scratch")
"""With the from-scratch MDM (no AR initialisation: the reference that rewiring moves toward), where the zoo has one."""


def attention_of(kind: str) -> str:
    """``"bidirectional"`` for the MDMs, ``"causal"`` for the others."""
    return "bidirectional" if kind in ("mdm", "mdm-scratch") else "causal"


class ChecksumError(RuntimeError):
    """A checkpoint file's sha256 differs from the manifest's: the file is corrupt or was replaced."""


def manifest(zoo_dir: str | Path = ZOO_DIR) -> dict[str, Any]:
    """The manifest: ``{"checkpoints": {name: entry}}``, one entry per checkpoint file (see the module docstring)."""
    path = Path(zoo_dir) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no zoo manifest at {path}: the zoo has not been built (mechshift-lite zoo train)")
    return json.loads(path.read_text(encoding="utf-8"))


def available(zoo_dir: str | Path = ZOO_DIR) -> list[dict[str, Any]]:
    """``[{"kind", "seed", "step", "final"}, ...]`` of every checkpoint in the zoo, sorted."""
    rows = [
        {"kind": e["kind"], "seed": e["seed"], "step": e["step"], "final": e["final"]}
        for e in manifest(zoo_dir)["checkpoints"].values()
    ]
    return sorted(rows, key=lambda r: (ALL_KINDS.index(r["kind"]), r["seed"], r["step"]))


def tokenizer(zoo_dir: str | Path = ZOO_DIR) -> Tokenizer:
    """The vocabulary every zoo model was trained with."""
    return Tokenizer.load(Path(zoo_dir) / "tokenizer.json")


def finals(kind: str, zoo_dir: str | Path = ZOO_DIR) -> list[dict[str, Any]]:
    """The manifest entries of ``kind``'s final checkpoints, one per seed, sorted by seed."""
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown zoo kind {kind!r}; the zoo has {ALL_KINDS}")
    entries = [e for e in manifest(zoo_dir)["checkpoints"].values() if e["kind"] == kind and e["final"]]
    return sorted(entries, key=lambda e: e["seed"])


def entry(kind: str, seed: int = 0, step: int | None = None, zoo_dir: str | Path = ZOO_DIR) -> dict[str, Any]:
    """The manifest entry of one checkpoint; ``step=None`` is the final one. Clear errors listing what exists."""
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown zoo kind {kind!r}; the zoo has {ALL_KINDS}")
    entries = [e for e in manifest(zoo_dir)["checkpoints"].values() if e["kind"] == kind]
    seeds = sorted({e["seed"] for e in entries})
    mine = [e for e in entries if e["seed"] == seed]
    if not mine:
        raise ValueError(f"no {kind!r} checkpoint for seed {seed}; seeds available for {kind!r}: {seeds}")
    chosen = [e for e in mine if (e["final"] if step is None else e["step"] == step)]
    if not chosen:
        steps = sorted(e["step"] for e in mine)
        raise ValueError(
            f"no {kind!r} checkpoint of seed {seed} at step {step}; steps available: {steps} "
            f"(step=None is the final one)"
        )
    return chosen[0]


def load(kind: str, seed: int = 0, step: int | None = None, zoo_dir: str | Path = ZOO_DIR) -> Transformer:
    """A zoo model in float32 (its weights are the shipped float16 values), in eval mode.

    Args:
        kind: ``"arm"``, ``"mdm"``, ``"arm-continued"`` or ``"mdm-scratch"`` (see :data:`ALL_KINDS`).
        seed: training seed (see :func:`available`).
        step: None for the final checkpoint, or a post-training step of an intermediate one.

    The MDMs come with ``attention="bidirectional"``, the others causal. Raises
    :class:`ChecksumError` if the file's sha256 differs from the manifest's.
    """
    e = entry(kind, seed, step, zoo_dir)
    path = Path(zoo_dir) / e["file"]
    digest = file_sha256(path)
    if digest != e["sha256"]:
        raise ChecksumError(
            f"{path} has sha256 {digest} but the manifest expects {e['sha256']}: the file is corrupt or "
            "was replaced. Reinstall the package, or rebuild it with the entry's command: " + e["command"]
        )
    model = Transformer(ModelConfig.from_dict(e["model_config"]), attention=attention_of(kind))
    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    return model.eval()


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a checkpoint file (the manifest's ``sha256``)."""
    if not path.exists():
        raise FileNotFoundError(f"checkpoint file {path} is listed in the manifest but missing")
    return hashlib.sha256(path.read_bytes()).hexdigest()


__all__ = ["ALL_KINDS", "ChecksumError", "KINDS", "ZOO_DIR", "attention_of", "available", "entry", "file_sha256", "load", "manifest", "tokenizer"]
