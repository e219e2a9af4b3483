"""Scoring outside Countdown files: parsing, skipping, errors by line, the Wilson interval, and the score."""

import json
import random

import pytest
import torch

from mechshift_lite import countdown_eval as ce
from mechshift_lite.tasks import countdown
from mechshift_lite.tasks.common import split_of


def write(tmp_path, lines) -> str:
    path = tmp_path / "cd3.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_problems_are_read_and_out_of_range_ones_skipped_by_reason(tmp_path):
    path = write(tmp_path, [
        {"input": "15,44,79,50", "output": "44-15=29,79-29=50"},
        {"input": "1,2,3,4,10", "output": "..."},           # 4 operands
        {"input": "150,2,3,30"},                            # operand out of range
        {"input": "15,44,79,5"},                            # one-digit target
        "",
        {"input": "3, 4, 5, 12"},                           # spaces are fine
    ])
    found = ce.read_problems(path)
    assert [(p.line, p.numbers, p.target) for p in found.problems] == [(1, (15, 44, 79), 50), (6, (3, 4, 5), 12)]
    assert sum(found.skipped.values()) == 3 and len(found.skipped) == 3


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: malformed JSON"),
    (json.dumps({"output": "1+2=3"}), "line 2: missing field 'input'"),
    (json.dumps({"input": "15,4x,79,50"}), "line 2: 'input' must be comma-separated integers"),
    (json.dumps({"input": [15, 44, 79, 50]}), "line 2: 'input' must be a string"),
])
def test_bad_lines_are_errors_that_name_the_line(tmp_path, line, message):
    path = write(tmp_path, [{"input": "15,44,79,50"}, line])
    with pytest.raises(ValueError, match=message):
        ce.read_problems(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Countdown file"):
        ce.read_problems(tmp_path / "absent.jsonl")


def test_wilson_interval_covers_the_truth_as_often_as_it_claims():
    rng = random.Random(0)
    p, n, trials = 0.3, 40, 2000
    covered = 0
    for _ in range(trials):
        k = sum(rng.random() < p for _ in range(n))
        low, high = ce.wilson_interval(k, n)
        covered += low <= p <= high
    assert 0.93 <= covered / trials <= 0.97
    assert ce.wilson_interval(0, 0) == (0.0, 1.0)


def test_training_split_flag_follows_the_projects_hold_out():
    problems = countdown.generate(20, seed=3, split="test") + countdown.generate(20, seed=3, split="train")
    for ex in problems:
        problem = ce.Problem(1, tuple(ex.meta["numbers"]), ex.meta["target"])
        expected = split_of(countdown.problem_key(ex.meta["numbers"], ex.meta["target"])) == "train"
        assert problem.in_training_split == expected
    assert {ce.Problem(1, tuple(ex.meta["numbers"]), ex.meta["target"]).in_training_split for ex in problems} == {True, False}


def test_scores_follow_countdown_check(tmp_path, monkeypatch):
    """With a decoder that solves half the problems (the solver's answer) and garbles the rest,
    the score is exactly that half, whatever the model."""
    problems = countdown.generate(10, seed=5, split="test")
    path = write(tmp_path, [{"input": ",".join(map(str, ex.meta["numbers"] + [ex.meta["target"]]))} for ex in problems])
    answers = [ex.answer if i % 2 == 0 else "1+1=2" for i, ex in enumerate(problems)]
    monkeypatch.setattr(ce.accuracy, "countdown_answers", lambda model, tok, examples, mode=None: answers)
    result = ce.evaluate(model=None, tokenizer=None, found=ce.read_problems(path), mode="arm")
    assert [row["correct"] for row in result.rows] == [i % 2 == 0 for i in range(10)]
    summary = result.summary()
    assert summary["accuracy"] == 0.5 and summary["n_scored"] == 10
    assert summary["ci95"] == list(ce.wilson_interval(5, 10))
