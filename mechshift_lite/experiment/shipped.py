"""The report that ships with the package, so a fresh Colab runtime opens chapters 6-9 in seconds.

The shipped file holds one computed report (the default config) and the key it was computed for:
the zoo's sha256 sums, the config, the bootstrap size and the package version
(:func:`shipped_key`). :func:`~.report.report` uses it when the key matches and nothing is cached.

The book build keeps it honest: with ``MECHSHIFT_VERIFY_SHIPPED=1`` (the Makefile's ``test``
target sets it), every report that is computed for the shipped key is compared with the shipped
one (:func:`differences`) and a mismatch raises :class:`ShippedReportMismatch`. After a change
that moves the numbers, write a new one with ``mechshift-lite report --ship``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

from .. import __version__, zoo
from .cache import checkpoint_sums
from .pools import ExperimentConfig

SHIPPED_PATH = Path(__file__).resolve().parent / "shipped_report.json"
VERIFY_ENV = "MECHSHIFT_VERIFY_SHIPPED"
SHIPPED_N_BOOT = 500
"""The bootstrap size of the shipped report (the default of :func:`~.report.report`)."""
TOLERANCE = 5e-5
"""Numbers may differ by this much (absolute, or relative to their size) across machines: the report
is computed on one thread (:func:`~.report.compute`), but another CPU's vector instructions round
float32 sums differently. The discrete choices are made in float64 (:func:`.pools.for_decisions`),
so what moves is continuous: computed with AVX2 kernels against a report shipped from AVX-512 ones,
the largest difference was 8e-6 (a Spearman correlation: the ranks of near-zero edge scores swap).
To run that check: ``ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
MECHSHIFT_VERIFY_SHIPPED=1 mechshift-lite report --recompute``."""


class ShippedReportMismatch(RuntimeError):
    """The shipped report is not what the code computes: regenerate it (``mechshift-lite report --ship``)."""


def shipped_key(cfg: ExperimentConfig, n_boot: int, zoo_dir=zoo.ZOO_DIR) -> str:
    """sha256 of the zoo's checkpoint sums, the config, the bootstrap size and the package version."""
    blob = json.dumps({"zoo": checkpoint_sums(zoo_dir), "config": cfg.to_dict(), "n_boot": n_boot, "version": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load(key: str, path: Path | None = None) -> dict | None:
    """The shipped report (at ``path``, default :data:`SHIPPED_PATH`) if it was computed for ``key``, else None."""
    path = path or SHIPPED_PATH
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    return stored["report"] if stored.get("shipped_key") == key else None


def strip(result: dict) -> dict:
    """``result`` without its cache key (which names the code version, not a number)."""
    return {k: v for k, v in result.items() if k != "cache_key"}


def write(result: dict, key: str, path: Path | None = None) -> Path:
    """Ship ``result`` as the report for ``key`` (compact JSON; default path :data:`SHIPPED_PATH`)."""
    path = path or SHIPPED_PATH
    path.write_text(json.dumps({"shipped_key": key, "report": strip(result)}, separators=(",", ":")))
    return path


def is_shipped_setting(cfg: ExperimentConfig, n_boot: int, zoo_dir) -> bool:
    """Whether a report of this config, bootstrap size and zoo is the one that ships (the defaults)."""
    return cfg == ExperimentConfig() and n_boot == SHIPPED_N_BOOT and Path(zoo_dir) == Path(zoo.ZOO_DIR)


def verifying() -> bool:
    """Whether computed reports must be checked against the shipped one (``$MECHSHIFT_VERIFY_SHIPPED``)."""
    return os.environ.get(VERIFY_ENV, "") not in ("", "0")


def differences(shipped: Any, computed: Any, where: str = "report", limit: int = 10) -> list[str]:
    """Paths at which two JSON values differ (numbers beyond :data:`TOLERANCE`), at most ``limit``."""
    found: list[str] = []

    def walk(a: Any, b: Any, at: str) -> None:
        if len(found) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if k not in a or k not in b:
                    found.append(f"{at}.{k}: only in the {'computed' if k in b else 'shipped'} report")
                else:
                    walk(a[k], b[k], f"{at}.{k}")
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                found.append(f"{at}: {len(a)} items shipped, {len(b)} computed")
            else:
                for i, (x, y) in enumerate(zip(a, b)):
                    walk(x, y, f"{at}[{i}]")
        elif _is_number(a) and _is_number(b):
            if not math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE) and not (math.isnan(a) and math.isnan(b)):
                found.append(f"{at}: shipped {a!r}, computed {b!r}")
        elif a != b:
            found.append(f"{at}: shipped {a!r}, computed {b!r}")

    walk(shipped, computed, where)
    return found


def check(computed: dict, key: str, path: Path | None = None) -> None:
    """Raise :class:`ShippedReportMismatch` unless the shipped report for ``key`` equals ``computed``."""
    path = path or SHIPPED_PATH
    stored = json.loads(path.read_text()) if path.exists() else {}
    if stored.get("shipped_key") != key:
        raise ShippedReportMismatch(
            f"{path.name} was computed for key {stored.get('shipped_key')!r}, not for this zoo, config and version "
            f"({key!r}): run `mechshift-lite report --ship` and commit the file")
    diff = differences(stored["report"], _comparable(strip(computed)))
    if diff:
        raise ShippedReportMismatch(f"{path.name} differs from what the code computes ("
                                    + "; ".join(diff) + "): run `mechshift-lite report --ship` and commit the file")


def _comparable(result: dict) -> dict:
    """``result`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(result))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
