"""Execute chapters the way Colab's "Run all" does: every cell, in order, tags ignored, on the CPU.

Usage::

    python scripts/run_like_colab.py [--record RUNTIMES.json] book/ch03_diffusion.py [book/ch04_attribution.py ...]

Each chapter is converted with jupytext and run by nbclient with the chapter's folder as the working
directory (as in the book build); a cell that raises stops that chapter and is reported. As on a
CPU runtime that must not download anything, the kernel sees no GPU (``CUDA_VISIBLE_DEVICES`` empty),
the HuggingFace libraries are offline, and a first cell, not shown in the book, makes every socket
connection to a host other than this machine raise (:data:`NO_NETWORK`). Prints one
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
import nbformat


COLAB_ENV = {"CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
"""The kernel's environment on top of this process's: no GPU, no model hub."""

NO_NETWORK = """\
import socket
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
def _local_only(connect):
    def guarded(self, address, *args):
        host = address[0] if isinstance(address, tuple) else None   # a str address is a local (AF_UNIX) socket
        if host is not None and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"network access is blocked in the Colab-style run (a connection to {address})")
        return connect(self, address, *args)
    return guarded
socket.socket.connect, socket.socket.connect_ex = _local_only(_connect), _local_only(_connect_ex)
"""
"""The first cell of every run: a connection to any other host raises ``OSError``."""


CELL_TIMEOUT_S = 600
"""A cell running longer than this fails its chapter (the book's budget is 120 s a chapter)."""


def run(chapter: Path, timeout_s: int = CELL_TIMEOUT_S) -> tuple[bool, float, str]:
    """Execute every cell of ``chapter`` (after :data:`NO_NETWORK`, with :data:`COLAB_ENV`); ``(ok, seconds, error)``.
    A cell over ``timeout_s`` seconds, or a kernel that dies, fails the chapter instead of stopping the run."""
    notebook = jupytext.read(chapter)
    for cell in notebook.cells:
        cell.metadata.pop("tags", None)      # Colab honours no tags
    notebook.cells.insert(0, nbformat.v4.new_code_cell(NO_NETWORK))
    client = nbclient.NotebookClient(notebook, timeout=timeout_s, kernel_name="python3",
                                     resources={"metadata": {"path": str(chapter.parent)}})
    start = time.perf_counter()
    try:
        client.execute(env={**os.environ, **COLAB_ENV})   # the kernel's environment only, not this process's
    except nbclient.exceptions.CellExecutionError as error:
        return False, time.perf_counter() - start, str(error).strip().splitlines()[-1]
    except nbclient.exceptions.CellTimeoutError:
        return False, time.perf_counter() - start, f"a cell ran longer than {timeout_s} s (or the kernel never replied)"
    except nbclient.exceptions.DeadKernelError:
        return False, time.perf_counter() - start, "the kernel died"
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
