"""Cache keys of the report: the zoo's checkpoint sums, the package's sources and the experiment config."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .. import __version__, zoo
from .pools import ExperimentConfig

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``mechshift_lite`` folder, whose ``*.py`` files make the code version."""


def code_version() -> str:
    """sha256 of the package's Python sources: any code change invalidates cached reports."""
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(cfg: ExperimentConfig, zoo_dir=zoo.ZOO_DIR) -> str:
    """sha256 of the zoo's checkpoint sums, the code version and the config."""
    sums = sorted(e["sha256"] for e in zoo.manifest(zoo_dir)["checkpoints"].values())
    blob = json.dumps({"zoo": sums, "code": code_version(), "config": cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$MECHSHIFT_CACHE``, else ``~/.cache/mechshift-lite``."""
    return Path(os.environ.get("MECHSHIFT_CACHE", Path.home() / ".cache" / "mechshift-lite"))
