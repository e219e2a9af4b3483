"""`mechshift-lite eval countdown`: the score equals an independent decode-and-check, and bad input is refused clearly."""

import dataclasses
import json

import pytest
from safetensors.torch import save_file

from mechshift_lite import accuracy, zoo
from mechshift_lite.cli import main
from mechshift_lite.tasks import countdown


@pytest.fixture(scope="module")
def problems():
    return countdown.generate(12, seed=21, split="test")


def write_file(path, problems, extra=()):
    lines = [json.dumps({"input": ",".join(map(str, ex.meta["numbers"] + [ex.meta["target"]])), "output": ex.answer})
             for ex in problems]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


def test_zoo_model_score_matches_decoding_and_checking_directly(tmp_path, capsys, problems):
    path = write_file(tmp_path / "cd.jsonl", problems, extra=[json.dumps({"input": "1,2,3,4,10"})])
    assert main(["eval", "countdown", str(path), "--kind", "arm", "--seed", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    answers = accuracy.countdown_answers(zoo.load("arm", 0), zoo.tokenizer(), problems)
    solved = [countdown.check(ex.meta["numbers"], ex.meta["target"], a) for ex, a in zip(problems, answers)]
    assert summary["n_scored"] == len(problems) and summary["n_correct"] == sum(solved)
    assert summary["n_skipped"] == 1
    rows = [json.loads(line) for line in (tmp_path / "cd.scored.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in rows] == answers and [r["correct"] for r in rows] == solved


def test_a_model_file_from_a_run_directory_scores_like_the_zoo_model(tmp_path, capsys, problems):
    path = write_file(tmp_path / "cd.jsonl", problems)
    model = zoo.load("mdm", 0)
    run = tmp_path / "run"
    run.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(run / "final.safetensors"))
    (run / "config.json").write_text(json.dumps({"train": {"objective": "mdm"}, "model": model.cfg.to_dict()}))
    assert main(["eval", "countdown", str(path), "--model-file", str(run / "final.safetensors"), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main(["eval", "countdown", str(path), "--kind", "mdm", "--seed", "0", "--json"]) == 0
    from_zoo = json.loads(capsys.readouterr().out)
    assert from_file["mode"] == "mdm" and from_file["n_correct"] == from_zoo["n_correct"]


def test_a_model_file_whose_config_does_not_fit_the_tokenizer_is_refused(tmp_path, capsys, problems):
    path = write_file(tmp_path / "cd.jsonl", problems)
    run = tmp_path / "run"
    run.mkdir()
    cfg = dataclasses.replace(zoo.load("arm", 0).cfg, d_vocab=7)
    (run / "config.json").write_text(json.dumps({"train": {"objective": "arm"}, "model": cfg.to_dict()}))
    save_file({}, str(run / "final.safetensors"))
    assert main(["eval", "countdown", str(path), "--model-file", str(run / "final.safetensors")]) == 2
    assert "d_vocab=7" in capsys.readouterr().err


def test_a_bad_line_exits_2_naming_it(tmp_path, capsys, problems):
    path = write_file(tmp_path / "cd.jsonl", problems[:2], extra=['{"input": "3,x,5,12"}'])
    assert main(["eval", "countdown", str(path)]) == 2
    assert "line 3" in capsys.readouterr().err
