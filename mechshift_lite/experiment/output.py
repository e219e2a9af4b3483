"""The report's output folder: ``report.json``, ``table.txt`` and the figures, never written into a user's folder."""

from __future__ import annotations

import json
from pathlib import Path

from .verdicts import reliability_table, table

MARKER = ".mechshift-report"


def prepare_out_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir``, or reuse it if it is one of ours; never write into a user's folder."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise FileExistsError(
            f"{out} exists and is not a mechshift-lite report folder (no {MARKER} file); "
            "choose a new or empty folder so none of your files is overwritten"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by mechshift_lite.report\n")
    return out


def write(result: dict, out_dir: str | Path) -> Path:
    """Write ``report.json``, ``table.txt``, ``reliability.txt`` and the figures of ``result`` into ``out_dir`` (see :func:`prepare_out_dir`)."""
    from .. import plots

    out = prepare_out_dir(out_dir)
    (out / "report.json").write_text(json.dumps(result, indent=1))
    (out / "table.txt").write_text(table(result) + "\n")
    if "verdict_paired" in result:   # reports of issue 11 and later
        (out / "reliability.txt").write_text(reliability_table(result) + "\n")
    plots.save_report_figures(result, out)
    return out
