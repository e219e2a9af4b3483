"""The recipe study's results (issue 12), shipped with the package so the zoo appendix opens in Colab.

``scripts/recipe_study.py`` runs the study and appends one JSON line per evaluated (run, step) to
:data:`RESULTS`: ``{"run", "step", "steps", "description", "changes", "metrics": {...}}``, the
metrics being :func:`mechshift_lite.diagnostics.countdown_diagnostics` plus IOI accuracy and the
remasking decoder's exact accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

RESULTS = Path(__file__).resolve().with_name("recipe_study.jsonl")
COLUMNS = (("ioi", "IOI"), ("exact", "exact"), ("eq1_true", "eq. 1 true"), ("x_digits", "X digits"),
           ("x_number", "X whole"), ("first_token", "first token"), ("ends_at_target", "ends at T"),
           ("remask_exact", "exact (remask)"))
"""The metrics the table shows, with their column labels."""


def read_results(path: Path = RESULTS) -> list[dict[str, Any]]:
    """Every (run, step) row of a results file; [] when there is none. A line that is not JSON is an error."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not JSON ({error}); fix or delete that line") from None
    return rows


def curves(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``{run: its rows by step}``."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(results, key=lambda r: r["step"]):
        runs.setdefault(row["run"], []).append(row)
    return runs


def is_post_training(row: dict[str, Any]) -> bool:
    """Whether ``row`` scores an MDM post-training run; a run's own ARM pre-training is recorded as
    ``"<run>/arm"`` and is not a recipe candidate."""
    return "/" not in row["run"]


def highest(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row with the highest exact accuracy (the earlier step on a tie)."""
    return max(rows, key=lambda r: (r["metrics"]["exact"], -r["step"]))


def best(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The best recipe candidate: :func:`highest` of the post-training rows (:func:`is_post_training`)."""
    rows = [r for r in results if is_post_training(r)]
    if not rows:
        raise ValueError("no post-training results: run scripts/recipe_study.py first")
    return highest(rows)


def table(results: list[dict[str, Any]], order: Sequence[str] = ()) -> str:
    """Markdown table: per run its last evaluated step and its best exact accuracy over the steps.

    Runs named in ``order`` (a name before any ``/``) come first in that order; the others follow by
    their last exact accuracy, highest first.
    """
    runs = curves(results)

    def rank(name: str) -> tuple:
        base = name.split("/")[0]
        return (order.index(base), name) if base in order else (len(order), -runs[name][-1]["metrics"]["exact"], name)

    lines = ["| run | step | " + " | ".join(label for _, label in COLUMNS) + " | best exact (step) | what changes |",
             "| --- | ---: | " + " | ".join("---:" for _ in COLUMNS) + " | ---: | --- |"]
    for name in sorted(runs, key=rank):
        rows = runs[name]
        last, top = rows[-1], highest(rows)
        cells = [f"{last['metrics'][k]:.1%}" if k in last["metrics"] else "–" for k, _ in COLUMNS]
        lines.append(f"| {name} | {last['step']}/{last['steps']} | " + " | ".join(cells)
                     + f" | {top['metrics']['exact']:.1%} ({top['step']}) | {last['description']} |")
    return "\n".join(lines)
