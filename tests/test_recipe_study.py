"""The recipe study's bookkeeping (scripts/recipe_study.py): variants of the shipped recipe, resumable results."""

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import recipe_study as study  # noqa: E402

from mechshift_lite.training import STUDY_OPTIONS, TrainConfig  # noqa: E402
from mechshift_lite.zoo import build  # noqa: E402


def test_every_run_is_the_first_zoo_recipe_but_for_what_it_names():
    shipped = study.BASE_POST
    assert shipped.to_dict() == {**TrainConfig(objective="mdm", stage="post", steps=4000).to_dict(), "n_train": 100_000}
    for run in study.RUNS:
        cfg = study.post_config(run, 1500)
        changed = {f.name for f in dataclasses.fields(TrainConfig) if getattr(cfg, f.name) != getattr(shipped, f.name)}
        assert changed - {"steps"} == set(run.post), run.name
        assert set(run.post) <= {f.name for f in dataclasses.fields(TrainConfig)}
    base = next(r for r in study.RUNS if r.name == "base")
    assert not base.post and base.start == "arm"
    varied = {k for r in study.RUNS for k in r.post}
    assert set(STUDY_OPTIONS) | {"lr", "warmup"} <= varied  # every new option and the learning-rate schedule
    assert {r.start for r in study.RUNS} == set(study.STARTS) | {"pretrain"}  # every start is used: ARM length and width arms


def test_a_step_is_recorded_once_and_the_table_shows_the_last_and_best_step(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [{"run": "base", "step": s, "steps": 500, "description": "the control",
             "metrics": {"exact": e, "ioi": 1.0}} for s, e in ((250, 0.2), (500, 0.1))]
    for row in rows + rows[:1]:  # a resumed run evaluates step 250 again
        study.append_result(path, row)
    assert [(r["run"], r["step"]) for r in study.read_results(path)] == [("base", 250), ("base", 500)]
    assert study.finished(study.read_results(path), "base", 500) and not study.finished(study.read_results(path), "base", 750)
    line = study.table(study.read_results(path)).splitlines()[-1]
    assert line.startswith("| base | 500/500 | 100.0% | 10.0% |") and "20.0% (250)" in line


def test_a_broken_results_line_gets_a_clear_error(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"run": "base"}\nnot json\n')
    with pytest.raises(ValueError, match="results.jsonl:2"):
        study.read_results(path)


def test_the_width_arm_keeps_heads_and_scales_the_mlp():
    d128 = next(r for r in study.RUNS if r.name == "d128")
    cfg = study.model_config(d128)
    assert (cfg.d_model, cfg.n_heads * cfg.d_head, cfg.d_mlp, cfg.n_layers) == (128, 128, 512, build.model_config(study.TOKENIZER).n_layers)


def test_a_second_study_on_the_same_work_dir_refuses_to_start(tmp_path):
    import os

    fd = study.single_instance(tmp_path)
    try:
        with pytest.raises(SystemExit, match="another recipe study"):
            study.single_instance(tmp_path)
    finally:
        os.close(fd)
    os.close(study.single_instance(tmp_path))  # free again once the first one ended


def test_package_table_ranks_unordered_runs_by_their_last_exact_accuracy_and_best_prefers_the_earlier_step():
    from mechshift_lite.zoo import study as results

    def row(run, step, exact):
        return {"run": run, "step": step, "steps": 1000, "description": run, "metrics": {"exact": exact}}

    rows = [row("a", 500, 0.3), row("a", 1000, 0.1), row("b", 500, 0.2), row("b", 1000, 0.3)]
    lines = results.table(rows).splitlines()[2:]
    assert [line.split("|")[1].strip() for line in lines] == ["b", "a"]   # last exact 0.3 > 0.1
    assert "30.0% (500)" in lines[1]                                      # a's best, not its last
    assert (results.best(rows)["run"], results.best(rows)["step"]) == ("a", 500)   # tie at 0.3: the earlier step
    pretraining = row("b/arm", 500, 0.9)                                  # an ARM, not a recipe candidate
    assert results.best([*rows, pretraining])["run"] == "a"
    with pytest.raises(ValueError, match="no post-training results"):
        results.best([pretraining])
    assert results.read_results(), "the study's results ship with the package"
