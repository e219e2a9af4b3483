"""The report's worker processes: the same results in the same order as one process, one thread each, errors raised."""

import json
import operator
import os
import time

import pytest
import torch

from mechshift_lite.experiment import pools, workers
from mechshift_lite.experiment.workers import run_jobs

from test_reporting import SMALL, write_fake_zoo


def test_jobs_run_in_other_processes_on_one_thread_and_come_back_in_the_order_given():
    jobs = {f"job{i}": (i, 3) for i in (5, 1, 4, 2)}
    seen = []
    assert run_jobs(operator.pow, jobs, workers=2, on_done=seen.append) == {k: operator.pow(*a) for k, a in jobs.items()}
    assert list(run_jobs(operator.pow, jobs, workers=2)) == list(jobs) and sorted(seen) == sorted(jobs)
    pids = run_jobs(os.getpid, {0: (), 1: ()}, workers=2)
    assert os.getpid() not in pids.values()
    assert set(run_jobs(torch.get_num_threads, {0: (), 1: ()}, workers=2).values()) == {1}
    assert run_jobs(os.getpid, {0: ()}, workers=1) == {0: os.getpid()}


def test_each_job_is_reported_done_as_it_finishes_not_when_all_have():
    stamps = []
    run_jobs(time.sleep, {"fast": (0.05,), "slow": (3.0,)}, workers=2, on_done=lambda key: stamps.append((key, time.monotonic())))
    assert [key for key, _ in stamps] == ["fast", "slow"] and stamps[1][1] - stamps[0][1] > 1.5


def test_a_failing_job_raises_its_own_error_here():
    with pytest.raises(ValueError, match="invalid literal"):
        run_jobs(int, {0: ("1",), 1: ("not a number",), 2: ("3",)}, workers=2)


def test_worker_counts_are_checked(monkeypatch):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="at least 1"):
            run_jobs(int, {0: ("1",)}, workers=bad)
    monkeypatch.setenv(workers.WORKERS_ENV, "two")
    with pytest.raises(ValueError, match="MECHSHIFT_WORKERS"):
        workers.default_workers()
    monkeypatch.setenv(workers.WORKERS_ENV, "3")
    assert workers.default_workers() == 3
    monkeypatch.delenv(workers.WORKERS_ENV)
    assert 1 <= workers.default_workers() <= min(workers.MAX_DEFAULT_WORKERS, workers.available_cpus())


def test_attributions_spread_over_two_workers_equal_those_of_one(tmp_path, monkeypatch):
    zoo_dir = write_fake_zoo(tmp_path, seeds=(0,), snapshots=())
    monkeypatch.setattr(pools, "correct_on", lambda model, inputs, both=False: torch.ones(inputs.n_examples, dtype=torch.bool))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as report.compute runs: one thread here, one in each worker
    try:
        one, two = (pools.collect(SMALL, diffusion_steps=(0, 4), post_training_steps=[], zoo_dir=zoo_dir, progress=False, workers=n)
                    for n in (1, 2))
    finally:
        torch.set_num_threads(threads)
    for task in pools.TASKS:
        assert list(one[task].scores) == list(two[task].scores) and len(one[task].scores) >= 5
        for key, scores in one[task].scores.items():
            assert torch.equal(scores, two[task].scores[key]), (task, key)


def test_the_whole_report_is_the_same_with_one_worker_or_two(tmp_path, monkeypatch):
    from mechshift_lite.experiment import report, shipped

    zoo_dir = write_fake_zoo(tmp_path)
    monkeypatch.setattr(pools, "correct_on", lambda model, inputs, both=False: torch.ones(inputs.n_examples, dtype=torch.bool))
    one, two = (report.compute(SMALL, n_boot=20, zoo_dir=zoo_dir, progress=False, workers=n) for n in (1, 2))
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert list(one["tasks"]["ioi"]) == ["pool", *report.TASK_SECTIONS] and not shipped.differences(one, two)
