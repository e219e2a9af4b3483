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

NOT_IN_REPORT = ("teaching", "plots.py", "viz.py", "cli.py", "heads.py")
"""Parts of the package the report's numbers never go through (they show, teach or read circuits)."""


def report_sources() -> list[Path]:
    """The package's Python sources that can change the report's numbers (all but :data:`NOT_IN_REPORT`)."""
    return [path for path in sorted(PACKAGE_DIR.rglob("*.py"))
            if path.relative_to(PACKAGE_DIR).parts[0] not in NOT_IN_REPORT]


def code_version() -> str:
    """sha256 of :func:`report_sources`: any change to computing code invalidates cached reports."""
    digest = hashlib.sha256(__version__.encode())
    for path in report_sources():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def checkpoint_sums(zoo_dir=zoo.ZOO_DIR) -> list[str]:
    """The sorted sha256 sums of the checkpoints the report reads: every entry of the kinds it compares
    (:data:`~mechshift_lite.zoo.KINDS`, the MDM's snapshots included). A checkpoint of another kind
    (a from-scratch MDM) published later leaves the key, and so the shipped report, as it was."""
    entries = zoo.manifest(zoo_dir)["checkpoints"].values()
    return sorted(e["sha256"] for e in entries if e["kind"] in zoo.KINDS)


def cache_key(cfg: ExperimentConfig, zoo_dir=zoo.ZOO_DIR) -> str:
    """sha256 of the zoo's checkpoint sums, the code version and the config."""
    blob = json.dumps({"zoo": checkpoint_sums(zoo_dir), "code": code_version(), "config": cfg.to_dict()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$MECHSHIFT_CACHE``, else ``~/.cache/mechshift-lite``."""
    return Path(os.environ.get("MECHSHIFT_CACHE", Path.home() / ".cache" / "mechshift-lite"))
