"""Building the zoo: stages chained through float16 weights, publishing with the manifest, and the
workers going on from a staging zoo in a later session (scripts/train_zoo.py), on a tiny recipe."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mechshift_lite import tasks, zoo
from mechshift_lite.training import training_data
from mechshift_lite.zoo import build

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import train_zoo  # noqa: E402


@pytest.fixture
def tiny_recipe(monkeypatch):
    """The zoo's recipe cut to a few steps, a small data set and small evaluation sets."""
    monkeypatch.setattr(build, "ARM_PRETRAIN_STEPS", 3)
    monkeypatch.setattr(build, "ARM_CONTINUE_STEPS", 2)
    monkeypatch.setattr(build, "ARM_EXTEND_STEPS", 2)
    monkeypatch.setattr(build, "POST_STEPS", 4)
    monkeypatch.setattr(build, "SNAPSHOTS", (1, 2))
    monkeypatch.setattr(build, "N_TRAIN", 400)
    monkeypatch.setattr(build, "EVAL_SIZES", {"n_ioi": 8, "n_countdown": 4, "seed": 1234})
    monkeypatch.setattr(build, "TRAIN_EVAL_SIZES", {"n_ioi": 4, "n_countdown": 2, "seed": 1235})
    monkeypatch.setattr(build, "DIAGNOSTIC_PROBLEMS", 4)
    tokenizer = tasks.build_tokenizer()
    return tokenizer, training_data(build.recipe("arm", 0), tokenizer, tasks.CANVAS)


def rounded(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.to(torch.float16).float() for k, v in load_file(str(path)).items()}


def test_a_seed_is_built_into_a_staging_zoo_and_a_later_session_goes_on_from_it(tmp_path, tiny_recipe):
    tokenizer, data = tiny_recipe
    work, staging = tmp_path / "work", tmp_path / "zoo-next"
    assert train_zoo.job_order([0, 1], [0])[:4] == [("arm", 0), ("mdm", 0), ("arm-continued", 0), ("arm", 1)]
    assert not train_zoo.published("arm", 0, staging)

    train_zoo.run_job("arm", 0, tokenizer, data, work, staging)
    assert train_zoo.published("arm", 0, staging)
    arm = zoo.entry("arm", 0, zoo_dir=staging)
    assert [s["run"] for s in arm["stages"]] == ["arm-pretrain", "arm-continue", "arm"] and arm["parent"] is None
    assert arm["recipe"] == build.RECIPE and arm["device"] == "cpu" and arm["wall_time_s"] > 0
    assert set(arm["diagnostics"]) >= {"exact", "eq1_true", "x_digits", "first_token", "ends_at_target"}
    # the ARM's second stage started from the first one's float16-rounded weights
    start = build.new_model(build.stages("arm", 0)[1], 0, tokenizer, work, staging)
    expected = rounded(work / "arm-pretrain-seed0" / "final.safetensors")
    assert all(torch.equal(start.state_dict()[k], v) for k, v in expected.items())

    shutil.rmtree(work)                       # a new session: the work directory is gone
    published_arm = zoo.load("arm", 0, zoo_dir=staging).state_dict()
    start = build.new_model(build.stages("mdm", 0)[-1], 0, tokenizer, work, staging)
    assert all(torch.equal(start.state_dict()[k], v) for k, v in published_arm.items())
    train_zoo.run_job("mdm", 0, tokenizer, data, work, staging)
    mdm = zoo.entry("mdm", 0, zoo_dir=staging)
    assert mdm["parent"] == "arm-seed0" and mdm["train_config"] == build.recipe("mdm", 0).to_dict()
    assert [r["step"] for r in zoo.available(staging) if r["kind"] == "mdm"] == [0, 1, 2, 4]
    assert zoo.entry("mdm", 0, step=0, zoo_dir=staging)["file"] == arm["file"]   # step 0 is the ARM
    assert zoo.load("mdm", 0, zoo_dir=staging).attention == "bidirectional"
    assert zoo.load("arm", 0, zoo_dir=staging).attention == "causal"


def test_a_stage_refuses_a_parent_that_is_missing_or_of_another_recipe(tmp_path, tiny_recipe):
    tokenizer, data = tiny_recipe
    stage = build.stages("mdm", 0)[-1]
    with pytest.raises(FileNotFoundError, match="mechshift-lite zoo train --kind arm --seed 0"):
        build.new_model(stage, 0, tokenizer, tmp_path / "work", tmp_path / "empty")
    train_zoo.run_job("arm", 0, tokenizer, data, tmp_path / "work", tmp_path / "zoo")
    manifest = tmp_path / "zoo" / "manifest.json"
    entries = json.loads(manifest.read_text())
    entries["checkpoints"]["arm-seed0"]["recipe"] = "0.1.0"
    manifest.write_text(json.dumps(entries))
    assert not train_zoo.published("arm", 0, tmp_path / "zoo")
    with pytest.raises(FileNotFoundError, match="recipe"):
        build.new_model(stage, 0, tokenizer, tmp_path / "no-work", tmp_path / "zoo")
    (tmp_path / "zoo" / "arm-seed0.safetensors").write_bytes(b"not the weights")
    entries["checkpoints"]["arm-seed0"]["recipe"] = build.RECIPE
    manifest.write_text(json.dumps(entries))
    with pytest.raises(zoo.ChecksumError):
        build.new_model(stage, 0, tokenizer, tmp_path / "no-work", tmp_path / "zoo")


def test_zoo_train_publishes_a_from_scratch_mdm_and_refuses_a_zoo_of_another_recipe(tmp_path, tiny_recipe, capsys):
    from mechshift_lite.cli import main

    staging = tmp_path / "zoo"
    args = ["zoo", "train", "--kind", "mdm-scratch", "--seed", "0", "--quiet", "--work-dir", str(tmp_path / "work"),
            "--zoo-dir", str(staging)]
    assert main([*args, "--publish"]) == 0
    entry = zoo.entry("mdm-scratch", 0, zoo_dir=staging)
    assert entry["parent"] is None and entry["train_config"]["anneal_fraction"] == 0.0
    assert zoo.load("mdm-scratch", 0, zoo_dir=staging).attention == "bidirectional"
    manifest = json.loads((staging / "manifest.json").read_text())
    del manifest["checkpoints"]["mdm-scratch-seed0"]["recipe"]          # as the 0.1.0 zoo's entries
    (staging / "manifest.json").write_text(json.dumps(manifest))
    assert main(args) == 2
    assert "recipe 0.1.0" in capsys.readouterr().err


def test_the_workers_cached_training_data_keeps_each_rows_task(tmp_path, tiny_recipe):
    tokenizer, fresh = tiny_recipe
    first = train_zoo.cached_training_data(tokenizer, tmp_path)     # generates and caches
    again = train_zoo.cached_training_data(tokenizer, tmp_path)     # reads the cache
    for data in (first, again):
        assert torch.equal(data.ids, fresh.ids) and torch.equal(data.is_countdown, fresh.is_countdown)
    # a cache written without the task of each row (as 0.2.0's first workers did) is generated again
    (cache,) = tmp_path.glob("data-*.safetensors")
    save_file({"ids": fresh.ids, "answer_start": fresh.answer_start, "answer_end": fresh.answer_end}, str(cache))
    assert torch.equal(train_zoo.cached_training_data(tokenizer, tmp_path).is_countdown, fresh.is_countdown)
