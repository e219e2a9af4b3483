"""The zoo: loading with checksum verification, clear errors, and the shipped checkpoints themselves."""

import dataclasses
import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from mechshift_lite import ModelConfig, Transformer, accuracy, tasks, zoo
from mechshift_lite.zoo import build

SHIPPED = (zoo.ZOO_DIR / "manifest.json").exists()
needs_zoo = pytest.mark.skipif(not SHIPPED, reason="the zoo has not been built yet (scripts/train_zoo.py)")


def fake_zoo(tmp_path, entries=(("arm", 0, None), ("mdm", 0, None), ("mdm", 0, 50))):
    """A zoo directory with tiny random models, laid out like the shipped one."""
    cfg = ModelConfig(d_vocab=len(tasks.build_tokenizer()), n_ctx=tasks.CANVAS, d_model=16, n_layers=1,
                      n_heads=2, d_head=8, d_mlp=32)
    checkpoints = {}
    for i, (kind, seed, step) in enumerate(entries):
        name = build.checkpoint_name(kind, seed, step)
        model = Transformer(cfg).init_weights(i)
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.half() for k, v in model.state_dict().items()}, str(path))
        checkpoints[name] = {
            "kind": kind, "seed": seed, "step": 100 if step is None else step, "final": step is None,
            "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "model_config": cfg.to_dict(), "command": build.command(kind, seed),
        }
    (tmp_path / "manifest.json").write_text(json.dumps({"checkpoints": checkpoints}))
    tasks.build_tokenizer().save(tmp_path / "tokenizer.json")
    return tmp_path


def test_load_returns_the_stored_float16_values_with_the_right_attention(tmp_path):
    zoo_dir = fake_zoo(tmp_path)
    arm = zoo.load("arm", seed=0, zoo_dir=zoo_dir)
    mdm = zoo.load("mdm", seed=0, zoo_dir=zoo_dir)
    early = zoo.load("mdm", seed=0, step=50, zoo_dir=zoo_dir)
    assert arm.attention == "causal" and mdm.attention == "bidirectional" and early.attention == "bidirectional"
    expected = Transformer(arm.cfg).init_weights(0).state_dict()
    for key, value in arm.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, expected[key].half().float())
    assert not torch.equal(mdm.W_E, early.W_E)


def test_a_file_that_does_not_match_its_sha256_is_refused(tmp_path):
    zoo_dir = fake_zoo(tmp_path)
    path = zoo_dir / "arm-seed0.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.ChecksumError, match="sha256"):
        zoo.load("arm", seed=0, zoo_dir=zoo_dir)
    zoo.load("mdm", seed=0, zoo_dir=zoo_dir)  # the others still load


def test_unknown_kind_seed_or_step_lists_what_exists(tmp_path):
    zoo_dir = fake_zoo(tmp_path)
    with pytest.raises(ValueError, match="unknown zoo kind 'gpt'.*arm-continued"):
        zoo.load("gpt", zoo_dir=zoo_dir)
    with pytest.raises(ValueError, match=r"seed 7.*\[0\]"):
        zoo.load("arm", seed=7, zoo_dir=zoo_dir)
    with pytest.raises(ValueError, match=r"step 10.*\[50, 100\]"):
        zoo.load("mdm", seed=0, step=10, zoo_dir=zoo_dir)
    with pytest.raises(FileNotFoundError, match="not been built"):
        zoo.load("arm", zoo_dir=tmp_path / "nowhere")
    assert zoo.available(zoo_dir) == [
        {"kind": "arm", "seed": 0, "step": 100, "final": True},
        {"kind": "mdm", "seed": 0, "step": 50, "final": False},
        {"kind": "mdm", "seed": 0, "step": 100, "final": True},
    ]


def test_recipes_follow_the_design():
    arm_chain, mdm_chain, cont_chain = (build.stages(k, 0) for k in zoo.KINDS)
    pretrain, continued, arm = arm_chain
    assert (pretrain.config.objective, pretrain.config.stage, pretrain.parent) == ("arm", "pretrain", None)
    assert (continued.parent, arm.parent, arm.run) == ("arm-pretrain", "arm-continue", "arm")
    assert all(stage.config.objective == "arm" for stage in arm_chain)
    assert mdm_chain[:3] == cont_chain[:3] == arm_chain          # both start from the very same ARM
    mdm, cont = mdm_chain[-1].config, cont_chain[-1].config
    assert mdm_chain[-1].parent == cont_chain[-1].parent == "arm"
    assert (mdm.objective, mdm.stage, cont.objective, cont.stage) == ("mdm", "post", "arm", "post")
    # the control differs from the MDM in its objective only: the same steps, batches and schedule
    assert dataclasses.replace(cont, objective="mdm", snapshots=mdm.snapshots) == mdm
    assert mdm.anneal_fraction == 0.3 and mdm.countdown_share == 0.9
    snaps = (0, *mdm.snapshots, mdm.steps)                        # step 0 is the ARM itself
    assert len(snaps) >= 6 and build.recipe("mdm", 1).snapshots == ()
    assert all(b / a >= 1.9 for a, b in zip(snaps[1:], snaps[2:]))   # log-spaced
    (scratch,) = build.stages("mdm-scratch", 0)
    assert (scratch.parent, scratch.config.objective, scratch.config.anneal_fraction) == (None, "mdm", 0.0)
    assert scratch.config.steps == sum(st.config.steps for st in arm_chain)   # as long as the ARM
    assert scratch.config.steps - scratch.config.countdown_share_from == arm.config.steps
    assert build.model_config(tasks.build_tokenizer()).n_ctx >= tasks.CANVAS
    with pytest.raises(ValueError, match="unknown zoo kind"):
        build.stages("mdm-continued", 0)


# ----- the shipped zoo ----------------------------------------------------------------------------
@needs_zoo
def test_every_shipped_checkpoint_loads_and_matches_its_manifest_entry():
    entries = zoo.manifest()["checkpoints"]
    for name, e in entries.items():
        model = zoo.load(e["kind"], e["seed"], None if e["final"] else e["step"])
        assert model.cfg == ModelConfig.from_dict(e["model_config"])
        for field in ("train_config", "data", "wall_time_s", "accuracy", "command", "sha256"):
            assert field in e, f"{name} lacks {field}"


@needs_zoo
def test_shipped_tokenizer_is_the_tasks_tokenizer_and_the_zoo_is_small():
    assert zoo.tokenizer() == tasks.build_tokenizer()
    size = sum(p.stat().st_size for p in zoo.ZOO_DIR.iterdir() if p.is_file())
    assert size < 30 * 2**20


@needs_zoo
def test_shipped_ioi_accuracy_is_reproduced_on_the_float16_weights():
    e = zoo.entry("arm", 0)
    sizes = e["accuracy"]["test_sets"]
    ioi_set, _ = accuracy.test_sets(sizes["n_ioi"], 0, sizes["seed"])
    measured = accuracy.ioi_accuracy(zoo.load("arm", 0), zoo.tokenizer(), ioi_set)
    assert measured == pytest.approx(e["accuracy"]["ioi_accuracy"], abs=1e-3)


@needs_zoo
def test_the_zoo_is_complete():
    have = {(r["kind"], r["seed"]) for r in zoo.available() if r["final"]}
    missing = [(k, s) for k in zoo.KINDS for s in (0, 1, 2) if (k, s) not in have]
    assert not missing, f"missing final checkpoints: {missing}"
    steps = [r["step"] for r in zoo.available() if r["kind"] == "mdm" and r["seed"] == 0 and not r["final"]]
    assert len([s for s in steps if s > 0]) >= 5


def test_zoo_verify_passes_on_matching_accuracies_and_fails_on_a_wrong_one(tmp_path, capsys):
    from mechshift_lite.cli import main

    zoo_dir = fake_zoo(tmp_path, entries=(("arm", 0, None), ("mdm", 0, None)))
    manifest = json.loads((zoo_dir / "manifest.json").read_text())
    sizes = {"n_ioi": 30, "n_countdown": 4, "seed": 5}
    for e in manifest["checkpoints"].values():
        model = zoo.load(e["kind"], e["seed"], zoo_dir=zoo_dir)
        e["accuracy"] = {**accuracy.measure(model, zoo.tokenizer(zoo_dir), **sizes), "test_sets": sizes}
    (zoo_dir / "manifest.json").write_text(json.dumps(manifest))
    assert main(["zoo", "verify", "--zoo-dir", str(zoo_dir)]) == 0
    manifest["checkpoints"]["mdm-seed0"]["accuracy"]["ioi_accuracy"] += 0.1
    (zoo_dir / "manifest.json").write_text(json.dumps(manifest))
    assert main(["zoo", "verify", "--zoo-dir", str(zoo_dir)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


@pytest.mark.skipif(not SHIPPED, reason="no shipped zoo")
def test_fp16_sha256_of_a_shipped_file_is_its_manifest_sha256():
    """What `zoo train` compares a retrained run with: the bytes publish would write, hashed."""
    e = zoo.entry("arm", 0)
    path = zoo.ZOO_DIR / e["file"]
    assert build.fp16_sha256(path) == e["sha256"] == zoo.file_sha256(path)


def test_finals_lists_each_seeds_final_checkpoint_by_seed(tmp_path):
    zoo_dir = fake_zoo(tmp_path, entries=(("mdm", 1, None), ("mdm", 0, 50), ("mdm", 0, None), ("arm", 0, None)))
    assert [(e["seed"], e["final"]) for e in zoo.finals("mdm", zoo_dir)] == [(0, True), (1, True)]   # no snapshot
    assert zoo.finals("mdm-scratch", zoo_dir) == []
    with pytest.raises(ValueError, match="unknown zoo kind"):
        zoo.finals("mdm-seed0", zoo_dir)
