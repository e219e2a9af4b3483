"""Execute chapters the way Colab's "Run all" does: every cell, in order, tags ignored, on the CPU.

Usage::

    python scripts/run_like_colab.py book/ch03_diffusion.py [book/ch04_attribution.py ...]

Each chapter is converted with jupytext and run by nbclient with the chapter's folder as the working
directory (as in the book build); a cell that raises stops that chapter and is reported. Prints one
line per chapter with its wall time; exits 1 if any chapter failed.
"""

from __future__ import annotations

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


def main(paths: list[str]) -> int:
    failed = 0
    for path in paths:
        ok, seconds, error = run(Path(path))
        print(f"{'ok  ' if ok else 'FAIL'} {path}  {seconds:.1f} s  {error}", flush=True)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
