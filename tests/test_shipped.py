"""The shipped report: used when nothing is cached, and checked against the computed one by the build."""

import json

import pytest
import torch

from mechshift_lite.experiment import pools, report, shipped

from test_reporting import SMALL, write_fake_zoo

N_BOOT = 20


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    """A fake zoo, a cache folder holding its report, and that report."""
    zoo_dir = write_fake_zoo(tmp_path_factory.mktemp("zoo"))
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:   # random models: count every example correct, as test_reporting does
        mp.setattr(pools, "correct_on", lambda model, inputs, both=False: torch.ones(inputs.n_examples, dtype=torch.bool))
        result = report.report(None, SMALL, n_boot=N_BOOT, cache_dir=cache, zoo_dir=zoo_dir, progress=False)
    return zoo_dir, cache, result


@pytest.fixture
def ship(computed, tmp_path, monkeypatch):
    """Ship the fake zoo's report to a temporary file, and treat its settings as the shipped ones."""
    zoo_dir, _, result = computed
    path = tmp_path / "shipped_report.json"
    monkeypatch.setattr(shipped, "SHIPPED_PATH", path)
    monkeypatch.setattr(shipped, "is_shipped_setting", lambda cfg, n_boot, zoo_dir: True)
    shipped.write(result, shipped.shipped_key(SMALL, N_BOOT, zoo_dir))
    return path


def test_an_empty_cache_opens_the_shipped_report_without_computing(computed, ship, tmp_path, monkeypatch):
    zoo_dir, _, result = computed
    monkeypatch.setattr(report, "compute", lambda *a, **k: pytest.fail("the shipped report should have been used"))
    opened = report.report(None, SMALL, n_boot=N_BOOT, cache_dir=tmp_path / "empty", zoo_dir=zoo_dir)
    assert opened == json.loads(json.dumps(shipped.strip(result)))


def test_the_shipped_report_is_not_used_for_another_bootstrap_size(computed, ship, tmp_path, monkeypatch):
    zoo_dir, _, _ = computed
    calls = []
    monkeypatch.setattr(report, "compute", lambda *a, **k: calls.append(a) or {"computed": True})
    report.report(None, SMALL, n_boot=N_BOOT + 1, cache_dir=tmp_path / "empty", zoo_dir=zoo_dir)
    assert calls, "a report for other settings must be computed, not taken from the shipped file"


def test_verify_mode_passes_an_equal_report_and_names_a_changed_number(computed, ship, monkeypatch):
    zoo_dir, cache, result = computed
    monkeypatch.setenv(shipped.VERIFY_ENV, "1")
    report.report(None, SMALL, n_boot=N_BOOT, cache_dir=cache, zoo_dir=zoo_dir)   # equal: no error
    stored = json.loads(ship.read_text())
    stored["report"]["graph"]["n_edges"] += 1
    ship.write_text(json.dumps(stored))
    with pytest.raises(shipped.ShippedReportMismatch, match=r"report\.graph\.n_edges"):
        report.report(None, SMALL, n_boot=N_BOOT, cache_dir=cache, zoo_dir=zoo_dir)


def test_verify_mode_refuses_a_shipped_report_of_another_zoo(computed, ship, monkeypatch):
    zoo_dir, cache, _ = computed
    monkeypatch.setenv(shipped.VERIFY_ENV, "1")
    stored = json.loads(ship.read_text())
    ship.write_text(json.dumps({**stored, "shipped_key": "0000"}))
    with pytest.raises(shipped.ShippedReportMismatch, match="not for this zoo"):
        report.report(None, SMALL, n_boot=N_BOOT, cache_dir=cache, zoo_dir=zoo_dir)


def test_differences_tolerate_rounding_and_report_the_rest():
    a = {"x": 1.0, "ys": [1, 2], "name": "arm", "n": 3}
    assert shipped.differences(a, {**a, "x": 1.0 + 1e-9}) == []
    found = shipped.differences(a, {"x": 1.01, "ys": [1, 2, 3], "name": "mdm", "extra": 0})
    assert any("report.x" in f for f in found)
    assert any("report.ys: 2 items shipped, 3 computed" in f for f in found)
    assert any("report.name" in f for f in found)
    assert any("report.n: only in the shipped" in f for f in found)
    assert any("report.extra: only in the computed" in f for f in found)


def test_the_key_follows_the_checkpoints_the_report_reads_and_no_others(computed, tmp_path):
    zoo_dir, _, _ = computed
    path = zoo_dir / "manifest.json"
    original = path.read_text()
    key = shipped.shipped_key(SMALL, N_BOOT, zoo_dir)
    try:
        manifest = json.loads(original)
        entries = manifest["checkpoints"]
        entries["mdm-scratch-seed0"] = {**entries["mdm-seed0"], "kind": "mdm-scratch", "sha256": "f" * 64}
        path.write_text(json.dumps(manifest))
        assert shipped.shipped_key(SMALL, N_BOOT, zoo_dir) == key     # the report does not read it
        entries["mdm-seed0"] = {**entries["mdm-seed0"], "sha256": "e" * 64}
        path.write_text(json.dumps(manifest))
        assert shipped.shipped_key(SMALL, N_BOOT, zoo_dir) != key     # it reads this one
    finally:
        path.write_text(original)
