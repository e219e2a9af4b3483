"""The report pipeline end to end on a fake zoo of tiny random models (every example counted correct)."""

import dataclasses
import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from mechshift_lite import ModelConfig, ModelInputs, Transformer, compare, experiment, plots, zoo
from mechshift_lite.experiment import pools, report, verdicts
from mechshift_lite.tasks import CANVAS, build_tokenizer, countdown

TOK = build_tokenizer()
CFG = ModelConfig(d_vocab=len(TOK), n_ctx=CANVAS, d_model=32, n_layers=3, n_heads=2, d_head=16, d_mlp=64)
SMALL = experiment.ExperimentConfig(n_problems=12, n_problems_countdown=15, n_chunks=3, method="EAP", ig_steps=1, edge_fraction=0.1)


def write_fake_zoo(folder, seeds=(0, 1), snapshots=(100,), armc_copies_arm=False):
    """A zoo of random models; with ``armc_copies_arm`` every ARM-continued checkpoint is its ARM's weights."""
    entries = {}
    rows = [(k, s, None) for s in seeds for k in zoo.KINDS] + [("mdm", seeds[0], step) for step in snapshots]
    for i, (kind, seed, step) in enumerate(rows):
        name = f"{kind}-seed{seed}" + (f"-step{step}" if step else "")
        copy = armc_copies_arm and kind == "arm-continued"
        model = Transformer(CFG).init_weights(10 * seed + (rows.index(("arm", seed, None)) if copy else i))
        path = folder / f"{name}.safetensors"
        save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(path))
        entries[name] = {"kind": kind, "seed": seed, "step": step or 1000, "final": step is None, "file": path.name,
                         "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "model_config": CFG.to_dict(), "command": "fake"}
    (folder / "manifest.json").write_text(json.dumps({"checkpoints": entries}))
    TOK.save(folder / "tokenizer.json")
    return folder


@pytest.fixture(scope="module")
def fake_zoo(tmp_path_factory):
    return write_fake_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def result(fake_zoo):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pools, "correct_on", lambda model, inputs, both=False: torch.ones(inputs.n_examples, dtype=torch.bool))
        return report.compute(SMALL, n_boot=20, zoo_dir=fake_zoo, progress=False)


def all_stats(tree):
    if isinstance(tree, dict) and set(tree) == {"mean", "lo", "hi"}:
        yield tree
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from all_stats(v)
    elif isinstance(tree, list):
        for v in tree:
            yield from all_stats(v)


def test_diffusion_steps_are_attributed_on_the_models_own_commits_never_on_copied_ones_and_before_each_commit(fake_zoo):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pools, "correct_on", lambda model, inputs, both=False: torch.ones(inputs.n_examples, dtype=torch.bool))
        data = pools.collect(SMALL, seeds=[0], diffusion_steps=(0, 4), post_training_steps=[], zoo_dir=fake_zoo, progress=False)
    d = data["countdown"]
    assert "mdm/0#k4~copied" in d.views and set(d.scores) == set(d.views) - {"mdm/0#k4~copied"}
    mdm = zoo.load("mdm", 0, zoo_dir=fake_zoo)
    own = ModelInputs.from_pairs(mdm, d.pairs, TOK, step=4, corrupted_commits="own")   # built on its own, not from the views
    torch.testing.assert_close(d.scores["mdm/0#k4"], pools.attribute_view(mdm, own, SMALL))
    before, _ = ModelInputs.before_commit(mdm, d.pairs, TOK)
    torch.testing.assert_close(d.scores["mdm/0#pre"], pools.attribute_view(mdm, before, SMALL))


def test_the_second_countdown_decision_attributes_arms_teacher_forced_and_mdms_where_they_commit_x(fake_zoo):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pools, "correct_on", lambda model, inputs, both=False: torch.ones(inputs.n_examples, dtype=torch.bool))
        data = pools.collect(SMALL, seeds=[0], diffusion_steps=(0,), post_training_steps=[], zoo_dir=fake_zoo, progress=False)
    x, first = data[pools.X_DECISION], data["countdown"]
    assert x.n_drawn == sum(countdown.x_pairable(ex, SMALL.data_seed) for ex in first.pairs.examples)   # all drawn are correct here
    expected = countdown.make_x_pairs(TOK, [ex for ex in first.pairs.examples if countdown.x_pairable(ex, SMALL.data_seed)],
                                      seed=SMALL.data_seed)
    assert torch.equal(x.pairs.clean_ids, expected.clean_ids) and set(x.scores) == {f"{k}/0" for k in zoo.KINDS}
    arm, mdm = zoo.load("arm", 0, zoo_dir=fake_zoo), zoo.load("mdm", 0, zoo_dir=fake_zoo)
    torch.testing.assert_close(x.scores["arm/0"], pools.attribute_view(arm, ModelInputs.from_pairs(arm, expected, TOK), SMALL))
    torch.testing.assert_close(x.scores["mdm/0"], pools.attribute_view(mdm, ModelInputs.before_commit(mdm, expected, TOK)[0], SMALL))


def test_the_pool_attributed_is_the_first_max_pool_common_correct_pairs_in_draw_order(fake_zoo):
    def correct_on(model, inputs, both=False):   # every third pair wrong for the MDM: not common-correct
        right = torch.ones(inputs.n_examples, dtype=torch.bool)
        right[::3] = model.attention == "causal"
        return right

    pools_of = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pools, "correct_on", correct_on)
        mp.setattr(pools, "attribute_view", lambda model, view, cfg: torch.zeros(cfg.n_chunks))
        for cap in (None, 4):
            cfg = dataclasses.replace(SMALL, max_pool=cap)
            pools_of[cap] = pools.collect(cfg, seeds=[0], diffusion_steps=(0,), post_training_steps=[], zoo_dir=fake_zoo,
                                          progress=False)
    for task in ("ioi", "countdown"):
        full, capped = pools_of[None][task], pools_of[4][task]
        survivors = [i for i in range(full.n_drawn) if i % 3]
        assert full.n_common_correct == capped.n_common_correct == len(full.pairs) == len(survivors)
        assert [ex.prompt for ex in capped.pairs.examples] == [ex.prompt for ex in full.pairs.examples][:4]
        assert int(capped.chunk_sizes.sum()) == 4 and capped.views["arm/0"].n_examples == 4
    with pytest.raises(ValueError, match="max_pool"):
        dataclasses.replace(SMALL, max_pool=SMALL.n_chunks - 1)


def test_each_task_draws_its_own_number_of_problems(result):
    assert {t: result["tasks"][t]["pool"]["n_drawn"] for t in ("ioi", "countdown")} == {"ioi": 12, "countdown": 15}
    assert experiment.ExperimentConfig(n_problems=7, n_problems_countdown=None).problems("countdown") == 7


def test_intervals_are_ordered_and_overlaps_lie_in_the_unit_interval(result):
    stats = list(all_stats(result))
    assert len(stats) > 50
    for s in stats:
        assert s["lo"] <= s["hi"] + 1e-12, s
    for task in result["tasks"].values():
        for s in all_stats(task["overlap"]):
            assert 0 <= s["lo"] <= s["hi"] <= 1, s


def test_counts_of_distinct_winners_are_bootstrapped_over_seeds_only(result):
    lens = result["tasks"]["ioi"]["lens"]
    # with every seed's examples fixed, the interval spans the per-seed values and holds the mean
    for kind in ("arm", "mdm"):
        s = lens[f"winners_{kind}"]
        assert s["lo"] <= s["mean"] <= s["hi"]


def test_table_one_analogue_has_baselines_and_chance(result):
    o = result["tasks"]["countdown"]["overlap"]
    n = o["n_edges"]
    assert n == round(0.1 * result["graph"]["n_edges"])
    assert o["chance_edge"] == pytest.approx(compare.chance_jaccard(result["graph"]["n_edges"], n, n))
    for key in ("edge_arm_mdm", "edge_arm_armc", "edge_arm_arm", "component_arm_mdm"):
        assert 0 <= o[key]["mean"] <= 1
    text = verdicts.table(result)
    assert "ARM-ARMc" in text and "countdown" in text and "early share" in text
    x_row = next(line for line in text.splitlines() if line.startswith("countdown-x edge Jaccard"))
    assert verdicts.fmt(result["tasks"]["countdown"]["x_decision"]["overlap"]["edge_arm_mdm"]) in x_row


def test_layer_shares_and_steps_are_well_formed(result):
    d = result["tasks"]["ioi"]["depth"]
    assert sum(d["layers_mdm"]) == pytest.approx(1.0)
    assert len(d["layer_labels"]) == CFG.n_layers + 1
    steps = result["tasks"]["ioi"]["diffusion_steps"]
    assert len(steps["component_overlap"]) == len(steps["steps"])
    traj = result["tasks"]["ioi"]["trajectory"]
    assert traj["steps"] == [100, "final"]
    assert len(result["verdict"]) == 3 and all(isinstance(v["holds"], bool) for v in result["verdict"])


def test_report_writes_figures_and_reuses_a_valid_cache(fake_zoo, result, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "compute", lambda *a, **k: json.loads(json.dumps(result)))
    out = report.report(tmp_path / "out", SMALL, n_boot=20, cache_dir=tmp_path / "cache", zoo_dir=fake_zoo, progress=False)
    assert (tmp_path / "out" / "report.json").exists() and (tmp_path / "out" / "table.txt").exists()
    assert len(list((tmp_path / "out").glob("*.png"))) == len(plots.FIGURES)

    def must_not_run(*a, **k):
        raise AssertionError("the cached report should have been used")

    monkeypatch.setattr(report, "compute", must_not_run)
    again = report.report(None, SMALL, n_boot=20, cache_dir=tmp_path / "cache", zoo_dir=fake_zoo)
    assert again["cache_key"] == out["cache_key"]
    # a stale file (its key differs from the one the zoo and config give) is recomputed
    cached = next((tmp_path / "cache").glob("report-*.json"))
    cached.write_text(json.dumps({**again, "cache_key": "stale"}))
    with pytest.raises(AssertionError, match="should have been used"):
        report.report(None, SMALL, n_boot=20, cache_dir=tmp_path / "cache", zoo_dir=fake_zoo)


def test_summary_compares_by_intervals_and_follows_the_numbers(result):
    text = verdicts.summary(result)
    assert "IOI (local)" in text and "Countdown (global)" in text
    changed = json.loads(json.dumps(result))
    o = changed["tasks"]["ioi"]["overlap"]
    o["edge_arm_mdm"] = {"mean": 0.2, "lo": 0.1, "hi": 0.3}
    o["edge_arm_armc"] = {"mean": 0.8, "lo": 0.7, "hi": 0.9}
    o["edge_arm_arm"] = {"mean": 0.25, "lo": 0.15, "hi": 0.35}
    ioi = verdicts.summary(changed).split("\n\n")[0]
    assert "below the ARM-ARM-continued" in ioi and "not separable from the overlap of two ARM seeds" in ioi
    o["edge_arm_mdm"] = {"mean": 0.95, "lo": 0.92, "hi": 0.98}
    assert "above the ARM-ARM-continued" in verdicts.summary(changed).split("\n\n")[0]
    # the count of directions follows the paired verdict rule, not the older unpaired reading
    for paired, old in ((True, False), (False, True)):
        changed["verdict_paired"] = [{**v, "holds": paired} for v in result["verdict_paired"]]
        changed["verdict"] = [{**v, "holds": old} for v in result["verdict"]]
        assert f"{3 if paired else 0} of the paper's three directions hold" in verdicts.summary(changed)


def test_report_command_writes_its_folder_and_refuses_a_foreign_one(fake_zoo, tmp_path, capsys):
    from mechshift_lite.cli import main

    args = ["report", "--zoo-dir", str(fake_zoo), "--problems", "12", "--chunks", "3", "--method", "EAP", "--ig-steps", "1",
            "--boot", "10", "--edge-fraction", "0.1", "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pools, "correct_on", lambda model, inputs, both=False: torch.ones(inputs.n_examples, dtype=torch.bool))
        assert main([*args, "--out", str(tmp_path / "out")]) == 0
        printed = capsys.readouterr().out
        written = json.loads((tmp_path / "out" / "report.json").read_text())
        assert written["config"]["n_problems"] == 12 and "IOI (local)" in printed and "edge Jaccard" in printed
        assert {p.name for p in (tmp_path / "out").glob("*.png")} == {f"{name}.png" for name in plots.FIGURES}
        foreign = tmp_path / "mine"
        foreign.mkdir()
        (foreign / "notes.txt").write_text("keep me")
        assert main([*args, "--out", str(foreign)]) == 2   # a clear message, no traceback
        assert "not a mechshift-lite report folder" in capsys.readouterr().err
        assert (foreign / "notes.txt").read_text() == "keep me"


def test_code_version_follows_computing_code_not_presentation(tmp_path, monkeypatch):
    from mechshift_lite.experiment import cache

    package = tmp_path / "mechshift_lite"
    (package / "teaching").mkdir(parents=True)
    (package / "compare.py").write_text("x = 1\n")
    (package / "plots.py").write_text("y = 1\n")
    (package / "teaching" / "checks.py").write_text("z = 1\n")
    monkeypatch.setattr(cache, "PACKAGE_DIR", package)
    before = cache.code_version()
    (package / "plots.py").write_text("y = 2\n")
    (package / "teaching" / "checks.py").write_text("z = 2\n")
    assert cache.code_version() == before, "a plotting or teaching change must not invalidate the report"
    (package / "compare.py").write_text("x = 2\n")
    assert cache.code_version() != before, "a change to computing code must invalidate the report"


def test_the_report_is_computed_on_one_thread_and_the_thread_count_restored(monkeypatch):
    import torch

    from mechshift_lite.experiment import report as report_module

    seen = []
    monkeypatch.setattr(report_module, "_compute", lambda *args: seen.append(torch.get_num_threads()) or {})
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report_module.compute(report_module.ExperimentConfig())
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_reports_discrete_choices_are_made_in_float64_where_float32_rounding_would_flip_them():
    """A model whose predictions are nearly uniform (unembedding scaled down) has confidences that
    float32 cannot tell apart: its float32 decodings differ from the float64 ones, so a CPU with
    other float32 kernels could decode other canvases. The report's decodings and its
    right-or-wrong checks must be the float64 model's, and leave the model itself as it was."""
    mdm = Transformer(CFG, "bidirectional").init_weights(7)
    with torch.no_grad():
        (mdm.W_U if mdm.W_U is not None else mdm.W_E).mul_(1e-4)
    pairs = pools.task_pairs("ioi", TOK, 12, seed=5)
    as_float64 = pools.for_decisions(mdm)
    assert mdm.W_E.dtype == torch.float32 and as_float64.W_E.dtype == torch.float64
    views = pools.decoded_views(mdm, pairs, TOK, 0, [3, 6])
    expected = {(k, c): v for (k, c), v in ModelInputs.diffusion_views(as_float64, pairs, TOK, [3, 6]).items()}
    in_float32 = ModelInputs.diffusion_views(mdm, pairs, TOK, [3, 6])
    assert any(not torch.equal(in_float32[key].clean_ids, expected[key].clean_ids) for key in expected)   # the test has power
    for (k, commits), view in expected.items():
        got = views[pools.model_key("mdm", 0, diffusion_step=k, copied_commits=commits == "clean")]
        assert torch.equal(got.clean_ids, view.clean_ids) and torch.equal(got.corrupted_ids, view.corrupted_ids)
    before = views[pools.model_key("mdm", 0, before_commit=True)]
    assert torch.equal(before.clean_ids, ModelInputs.before_commit(as_float64, pairs, TOK)[0].clean_ids)
    assert torch.equal(pools.x_decision_view(mdm, pairs, TOK).clean_ids, before.clean_ids)
    inputs = ModelInputs.from_pairs(mdm, pairs, TOK)
    assert torch.equal(pools.correct_on(mdm, inputs), inputs.answer_is_top(inputs.run(as_float64)))
