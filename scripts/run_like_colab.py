"""Execute chapters the way Colab's "Run all" does: every cell, in order, tags ignored, on the CPU.

Usage::

    python scripts/run_like_colab.py [--record RUNTIMES.json] book/ch03_diffusion.py [book/ch04_attribution.py ...]

Each chapter is converted with jupytext and run by nbclient with the chapter's folder as the working
directory (as in the book build); a cell that raises stops that chapter and is reported. Prints one
line per chapter with its wall time; exits 1 if any chapter failed. ``--record`` merges the wall
times of the chapters that passed into a JSON file (the book states them at the top of each page).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import jupytext
import nbclient


def run(chapter: Path, timeout_s: int = 1800) -> tuple[bool, float, str]:
    """Execute every cell of ``chapter``; ``(ok, seconds, error)``."""
    notebook = jupytext.read(chapter)
    for cell in notebook.cells:
        cell.metadata.pop("tags", None)      # Colab honours no tags
    client = nbclient.NotebookClient(notebook, timeout=timeout_s, kernel_name="python3",
                                     resources={"metadata": {"path": str(chapter.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        return False, time.perf_counter() - start, str(error).strip().splitlines()[-1]
    return True, time.perf_counter() - start, ""


def record(path: Path, seconds: dict[str, float]) -> None:
    """Merge ``{chapter stem: seconds}`` into the runtimes file, with when and on how many cores."""
    runtimes = json.loads(path.read_text()) if path.exists() else {"chapters": {}}
    for stem, s in seconds.items():
        runtimes["chapters"][stem] = {"seconds": round(s, 1), "date": datetime.date.today().isoformat(),
                                      "cpu_cores": os.cpu_count()}
    path.write_text(json.dumps(runtimes, indent=1, sort_keys=True) + "\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="+", type=Path)
    parser.add_argument("--record", type=Path, help="merge the passing chapters' wall times into this JSON file")
    args = parser.parse_args(argv)
    failed, seconds = 0, {}
    for path in args.chapters:
        ok, s, error = run(path)
        print(f"{'ok  ' if ok else 'FAIL'} {path}  {s:.1f} s  {error}", flush=True)
        failed += not ok
        if ok:
            seconds[path.stem] = s
    if args.record:
        record(args.record, seconds)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
