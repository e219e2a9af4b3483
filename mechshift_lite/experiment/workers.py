"""Run the report's independent jobs (one attribution each) in worker processes, one thread apiece.

Each job computes on one thread wherever it runs, so the numbers do not depend on the number of
workers; on a 2-core machine two workers halve the attribution time. The workers are started with
``spawn`` (a fresh interpreter: safe after torch has started threads, and in a Jupyter kernel) and
get their arguments through in-memory pickling, never from a file.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Hashable, Mapping

import torch
from tqdm.auto import tqdm

WORKERS_ENV = "MECHSHIFT_WORKERS"
MAX_DEFAULT_WORKERS = 4
"""More workers than this rarely pays on a laptop: each holds its own torch (about 300 MB)."""


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # macOS, Windows
        return os.cpu_count() or 1


def default_workers() -> int:
    """``$MECHSHIFT_WORKERS`` if set, else the available CPUs up to :data:`MAX_DEFAULT_WORKERS`."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if not value:
        return max(1, min(MAX_DEFAULT_WORKERS, available_cpus()))
    try:
        return check_workers(int(value))
    except ValueError:
        raise ValueError(f"${WORKERS_ENV} must be a whole number of processes, at least 1; got {value!r}") from None


def check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number of processes, at least 1; got {workers!r}")
    return workers


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``: a job that names its function, for :func:`run_jobs` of different functions."""
    return fn(*args)


def _one_thread() -> None:
    torch.set_num_threads(1)


def run_jobs(fn: Callable[..., Any], jobs: Mapping[Hashable, tuple], workers: int = 1,
             on_done: Callable[[Hashable], None] | None = None) -> dict[Hashable, Any]:
    """``{key: fn(*args)}`` for every ``key: args`` of ``jobs``, in the order of ``jobs``.

    ``workers`` = 1 runs them here, one after the other; more spreads them over that many worker
    processes (``fn`` must be importable: a module-level function). ``on_done(key)`` is called as
    each job finishes (a progress bar). An error in a job, or an interrupt, cancels the jobs not
    yet started and is raised here.
    """
    check_workers(workers)
    if workers == 1 or len(jobs) <= 1:
        results = {}
        for key, args in jobs.items():
            results[key] = fn(*args)
            if on_done is not None:
                on_done(key)
        return results
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread)
    try:
        futures = {pool.submit(fn, *args): key for key, args in jobs.items()}
        pending, results = set(futures), {}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                results[futures[future]] = future.result()   # raises the job's error
                if on_done is not None:
                    on_done(futures[future])
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return {key: results[key] for key in jobs}


def run_jobs_with_bar(fn: Callable[..., Any], jobs: Mapping[Hashable, tuple], workers: int, desc: str,
                      progress: bool = True) -> dict[Hashable, Any]:
    """:func:`run_jobs` with a progress bar named ``desc`` (none when ``progress`` is False)."""
    with tqdm(total=len(jobs), desc=desc, disable=not progress) as bar:
        return run_jobs(fn, jobs, workers, on_done=lambda key: bar.update())
