"""Known-answer report (issue 11): a fake zoo whose ARM-continued checkpoints are copies of the ARMs.

ARM and ARM-continued then have identical scores on every block, so every ARM-ARMc agreement must
be exactly 1 in the point estimate *and* in every bootstrap replicate, every ARMc - ARM difference
exactly 0, their split-half ceilings equal, and the paired verdict's controls show no change.
"""

import pytest
import torch

from mechshift_lite.experiment import pools, report
from test_reporting import SMALL, write_fake_zoo

EXACT = {"mean": 1.0, "lo": 1.0, "hi": 1.0}
ZERO = {"mean": 0.0, "lo": 0.0, "hi": 0.0}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    folder = write_fake_zoo(tmp_path_factory.mktemp("copies"), armc_copies_arm=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pools, "correct_on", lambda model, inputs, both=False: torch.ones(inputs.n_examples, dtype=torch.bool))
        return report.compute(SMALL, n_boot=20, zoo_dir=folder, progress=False)


def approx(stat):
    return {k: pytest.approx(v, abs=1e-9) for k, v in stat.items()}


@pytest.mark.parametrize("task", ["ioi", "countdown"])
def test_arm_continued_copies_overlap_the_arm_fully_and_never_move_its_depth(result, task):
    t = result["tasks"][task]
    for key in ("edge_arm_armc", "component_arm_armc", "component_signed_arm_armc"):
        assert t["overlap"][key] == approx(EXACT), key
    for key in ("weighted_arm_armc", "spearman_arm_armc"):
        assert t["agreement"][key] == approx(EXACT), key
    for key in ("depth_armc_minus_arm", "early_share_armc_minus_arm"):
        assert t["paired"][key] == approx(ZERO), key
    assert t["depth"]["early_armc_minus_arm"] == approx(ZERO)
    assert t["depth"]["depth_edge_arm-continued"] == approx(t["depth"]["depth_edge_arm"])
    for name in ("edge", "weighted", "spearman"):
        assert t["reliability"][f"ceiling_{name}_arm-continued_per_seed"] == pytest.approx(t["reliability"][f"ceiling_{name}_arm_per_seed"])
    # the MDMs are other random models: what diffusion "changed" is all of ARM-ARMc minus ARM-MDM
    assert t["paired"]["edge_armc_minus_mdm"]["mean"] == pytest.approx(1 - t["overlap"]["edge_arm_mdm"]["mean"])
    for key in ("entropy_top_matched_armc_minus_arm", "winners_armc_minus_arm"):
        assert t["lens"][key] == approx(ZERO), key
    assert t["ablation"]["excess_armc_minus_arm"] == approx(ZERO)
    assert t["lens"]["residual_arm-continued"]["logit_diff"] == [approx(s) for s in t["lens"]["residual_arm"]["logit_diff"]]


def test_paired_neurons_of_copies_do_not_differ(result):
    for name in ("selectivity", "breadth"):
        for suffix in ("", "_top"):
            assert result["neurons"][f"paired_{name}_armc_minus_arm{suffix}"] == approx(ZERO)


def test_the_paired_verdicts_controls_show_no_change(result):
    x = result["between_tasks"]
    assert x["n_seed_resamples"] == 3          # two seeds: {0,0}, {0,1}, {1,1}
    for name in ("edge", "weighted", "spearman"):
        assert x[f"{name}_arm_armc_ioi_minus_countdown"] == approx(ZERO), name
    controls = [v["control"] for v in result["verdict_paired"] if "control" in v]
    assert len(controls) == 2 and all(c == approx(ZERO) for c in controls)
    assert len(result["verdict_paired"]) == 3 and all(isinstance(v["holds"], bool) for v in result["verdict_paired"])


def test_reliability_table_shows_the_ceilings_beside_the_overlaps(result):
    from mechshift_lite.experiment.verdicts import reliability_table

    text = reliability_table(result)
    assert "ceiling MDM" in text and "weighted Jaccard" in text and "3 distinct seed resamples" in text
    assert text.count("countdown ") == 3 and text.count("countdown-x") == 3 and text.count("ioi") == 3


def test_diffusion_steps_and_what_each_step_commits_are_reported(result):
    t = result["tasks"]["countdown"]
    steps, commits = t["diffusion_steps"], t["diffusion_commits"]
    assert steps["steps"] == commits["steps"] and "diffusion_steps_own" not in t
    assert len(steps["component_overlap"]) == len(steps["edge_overlap"]) == len(steps["steps"])
    assert set(steps["before_commit"]) == {"component_overlap", "edge_overlap"}
    assert all(0 <= x <= 1 for x in commits["pad_share"])
    assert commits["explained_commit_step"]["median"] >= 0


def test_countdowns_second_decision_is_reported_and_the_copies_agree_fully_on_it(result):
    x = result["tasks"]["countdown"]["x_decision"]
    assert set(x) == {"pool", *report.X_DECISION_SECTIONS} and x["pool"]["both_decisions"]
    assert SMALL.n_chunks <= x["pool"]["n_attributed"] == x["pool"]["n_common_correct"] < x["pool"]["n_drawn"] + 1
    for key in ("edge_arm_armc", "component_arm_armc"):
        assert x["overlap"][key] == approx(EXACT), key
    assert x["agreement"]["spearman_arm_armc"] == approx(EXACT)
    assert x["paired"]["depth_armc_minus_arm"] == approx(ZERO)
    assert x["overlap"]["edge_arm_mdm"]["mean"] < 1    # the MDMs are other random models
