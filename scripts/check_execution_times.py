"""Fail when a chapter, or the whole book, took longer to execute than its budget.

Reads the lines ``<path>: Executed notebook in N seconds`` that myst-nb writes to the book
build log (``make test`` saves it to ``_build/logs/book-build.log``). Besides slow code, this
catches the rare kernel stall that adds one ``execute.timeout`` to a chapter and still reports
success. Every ``.py`` chapter in ``_toc.yml`` must appear in the log, so a build that skipped
execution cannot pass.

Usage: python scripts/check_execution_times.py _build/logs/book-build.log
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sphinx_external_toc.parsing import parse_toc_yaml

# The budgets, in seconds of execution on a 2-core CPU (the CI machine). Give a chapter more
# by adding it to CHAPTER_BUDGETS_S, keyed by its path from the repository root.
BOOK_BUDGET_S = 20 * 60
DEFAULT_CHAPTER_BUDGET_S = 120
CHAPTER_BUDGETS_S: dict[str, float] = {}
"""None needs more today: chapter 6 reads the report that ``make report-check`` computed just before."""

ROOT = Path(__file__).resolve().parent.parent
EXECUTED = re.compile(r"^(?P<path>\S+): Executed notebook in (?P<seconds>[\d.]+) seconds", re.MULTILINE)
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def toc_chapters(toc_path: Path) -> list[str]:
    """Paths (from the repository root) of the executable ``.py`` chapters listed in the toc."""
    docnames = parse_toc_yaml(toc_path).keys()
    return [f"{name}.py" for name in docnames if (ROOT / f"{name}.py").is_file()]


def execution_times(log_text: str) -> dict[str, float]:
    """Seconds per executed chapter, keyed by path from the repository root."""
    times = {}
    for match in EXECUTED.finditer(ANSI_ESCAPE.sub("", log_text)):
        path = Path(match["path"]).resolve()
        times[path.relative_to(ROOT).as_posix()] = float(match["seconds"])
    return times


def problems(times: dict[str, float], chapters: list[str]) -> list[str]:
    """What breaks the budgets, one line per problem; empty when all is well."""
    found = [f"{chapter}: no 'Executed notebook' line (did it run?)" for chapter in chapters if chapter not in times]
    for chapter, seconds in times.items():
        budget = CHAPTER_BUDGETS_S.get(chapter, DEFAULT_CHAPTER_BUDGET_S)
        if seconds > budget:
            found.append(f"{chapter}: {seconds:.1f} s is over its budget of {budget:.0f} s")
    total = sum(times.values())
    if total > BOOK_BUDGET_S:
        found.append(f"whole book: {total:.1f} s is over its budget of {BOOK_BUDGET_S:.0f} s")
    return found


def main(log_path: str) -> int:
    times = execution_times(Path(log_path).read_text(encoding="utf-8", errors="replace"))
    for chapter, seconds in sorted(times.items()):
        budget = CHAPTER_BUDGETS_S.get(chapter, DEFAULT_CHAPTER_BUDGET_S)
        print(f"{seconds:8.1f} s / {budget:4.0f} s  {chapter}")
    print(f"{sum(times.values()):8.1f} s / {BOOK_BUDGET_S:4.0f} s  whole book (execution)")
    found = problems(times, toc_chapters(ROOT / "_toc.yml"))
    for line in found:
        print(f"FAILED: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
