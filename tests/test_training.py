"""Training loop: losses fall, runs are seeded and resumable, configurations are checked."""

import os
import signal
from types import SimpleNamespace

import pytest
import torch

from mechshift_lite import ModelConfig, Transformer
from mechshift_lite.training import TrainConfig, lr_at, run_status, step_generator, train

MASK = 3
P = 12


def reversal_data(n: int = 256) -> SimpleNamespace:
    """``[BOS] a b c [SEP] c b a [EOS] [PAD]...``: a tiny task with a learnable answer."""
    digits = torch.randint(5, 11, (n, 3), generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(n, P, dtype=torch.long)
    ids[:, 0], ids[:, 1:4], ids[:, 4], ids[:, 5:8], ids[:, 8] = 1, digits, 4, digits.flip(1), 2
    return SimpleNamespace(ids=ids, answer_start=torch.full((n,), 5), answer_end=torch.full((n,), 8))


def tiny_model(attention: str = "causal", n_ctx: int = P) -> Transformer:
    cfg = ModelConfig(d_vocab=11, n_ctx=n_ctx, d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32)
    return Transformer(cfg, attention=attention).init_weights(0)


def config(**kw) -> TrainConfig:
    base = dict(steps=40, batch_size=16, warmup=5, lr=3e-3, n_train=256, checkpoint_every=10)
    return TrainConfig(**{**base, **kw})


def weights(model: Transformer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("objective,stage,attention", [("arm", "pretrain", "causal"), ("mdm", "post", "bidirectional")])
def test_loss_goes_down(tmp_path, objective, stage, attention):
    result = train(config(objective=objective, stage=stage, steps=100), tiny_model(attention), reversal_data(),
                   tmp_path, mask_id=MASK, progress=False)
    losses = [e["loss"] for e in result.log if "loss" in e]
    assert result.done and len(losses) == 2
    assert losses[-1] < 0.8 * losses[0]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        model = tiny_model()
        train(config(seed=seed, steps=10), model, reversal_data(), tmp_path / name, mask_id=MASK, progress=False)
        runs[name] = weights(model)
    assert same_weights(runs["a"], runs["b"])
    assert not same_weights(runs["a"], runs["c"])


def test_resuming_a_paused_run_gives_the_weights_of_an_uninterrupted_one(tmp_path):
    cfg = config(objective="mdm", stage="post", steps=30, anneal_fraction=0.5)
    straight = tiny_model("bidirectional")
    train(cfg, straight, reversal_data(), tmp_path / "straight", mask_id=MASK, progress=False)
    paused = tiny_model("bidirectional")
    first = train(cfg, paused, reversal_data(), tmp_path / "paused", mask_id=MASK, stop_at=13, progress=False)
    assert not first.done and run_status(tmp_path / "paused")["step"] == 13
    resumed = tiny_model("bidirectional")  # a fresh process: the weights come from the run directory
    second = train(cfg, resumed, reversal_data(), tmp_path / "paused", mask_id=MASK, progress=False)
    assert second.done and second.step == 30
    assert same_weights(weights(resumed), weights(straight))


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    cfg = config(steps=25, checkpoint_every=100)
    straight = tiny_model()
    train(cfg, straight, reversal_data(), tmp_path / "straight", mask_id=MASK, progress=False)

    def press_ctrl_c(model):
        os.kill(os.getpid(), signal.SIGINT)
        return {}

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tiny_model(), reversal_data(), tmp_path / "cut", mask_id=MASK, eval_fn=press_ctrl_c,
              eval_every=7, progress=False)
    assert run_status(tmp_path / "cut")["step"] == 7
    resumed = tiny_model()
    train(cfg, resumed, reversal_data(), tmp_path / "cut", mask_id=MASK, progress=False)
    assert same_weights(weights(resumed), weights(straight))


def test_snapshots_are_the_weights_at_that_step(tmp_path):
    from safetensors.torch import load_file

    model = tiny_model()
    train(config(steps=10, snapshots=(0, 4)), model, reversal_data(), tmp_path / "a", mask_id=MASK, progress=False)
    at4 = tiny_model()
    train(config(steps=10), at4, reversal_data(), tmp_path / "b", mask_id=MASK, stop_at=4, progress=False)
    assert same_weights(load_file(str(tmp_path / "a/snapshots/step4.safetensors")), weights(at4))
    assert same_weights(load_file(str(tmp_path / "a/snapshots/step0.safetensors")), weights(tiny_model()))


def test_mdm_and_arm_continued_see_the_same_batches():
    """The control differs from the MDM only in its objective: batches depend on seed, stage and step."""
    mdm, cont, pre = (TrainConfig(objective=o, stage=s, seed=2) for o, s in (("mdm", "post"), ("arm", "post"), ("arm", "pretrain")))
    draw = lambda cfg: torch.randint(1000, (8,), generator=step_generator(cfg, 17))
    assert torch.equal(draw(mdm), draw(cont))
    assert not torch.equal(draw(mdm), draw(pre))


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=1000, warmup=100, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(cfg, 0) == pytest.approx(1e-5)
    assert lr_at(cfg, 99) == pytest.approx(1e-3)
    assert lr_at(cfg, 1000) == pytest.approx(1e-4)
    assert all(lr_at(cfg, s) >= lr_at(cfg, s + 1) for s in range(100, 1000))


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="objective"):
        TrainConfig(objective="diffusion")
    with pytest.raises(ValueError, match="n_ctx"):
        train(config(), tiny_model(n_ctx=8), reversal_data(), tmp_path / "short", mask_id=MASK, progress=False)
    train(config(steps=2), tiny_model(), reversal_data(), tmp_path / "run", mask_id=MASK, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        train(config(steps=3), tiny_model(), reversal_data(), tmp_path / "run", mask_id=MASK, progress=False)


def test_two_processes_cannot_train_the_same_run(tmp_path):
    import fcntl

    run = tmp_path / "busy"
    run.mkdir()
    fd = os.open(run, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as another trainer holds it
    try:
        with pytest.raises(RuntimeError, match="another process"):
            train(config(steps=2), tiny_model(), reversal_data(), run, mask_id=MASK, progress=False)
    finally:
        os.close(fd)


# ----- the recipe-study options and the device ------------------------------------------------------
STUDY = dict(pad_tail="trim", focal_alpha=0.25, focal_gamma=2.0, t_power=2.0, span_token_ids=(5, 6, 7),
             countdown_share=0.75, countdown_share_from=3, precision="bfloat16")


def mixed_data() -> SimpleNamespace:
    data = reversal_data()
    data.is_countdown = torch.arange(len(data.ids)) % 4 == 0
    return data


def test_a_default_config_serialises_without_the_study_options_so_old_runs_still_match():
    from mechshift_lite.training import STUDY_OPTIONS
    from mechshift_lite.zoo import build, manifest

    assert not set(STUDY_OPTIONS) & set(TrainConfig().to_dict())
    for entry in manifest()["checkpoints"].values():  # 0.1.0's entries were written before the options existed
        assert TrainConfig.from_dict(entry["train_config"]).to_dict() == entry["train_config"]
        if entry.get("recipe") == build.RECIPE:
            assert entry["train_config"] == build.recipe(entry["kind"], entry["seed"]).to_dict()
    cfg = TrainConfig(objective="mdm", stage="post", **STUDY)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert set(STUDY) <= set(cfg.to_dict())


def test_study_options_are_deterministic_per_seed(tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        model = tiny_model("bidirectional")
        train(config(objective="mdm", stage="post", seed=seed, steps=8, **STUDY), model, mixed_data(), tmp_path / name,
              mask_id=MASK, progress=False)
        runs[name] = weights(model)
    assert same_weights(runs["a"], runs["b"])
    assert not same_weights(runs["a"], runs["c"])


def test_countdown_share_sets_the_share_of_countdown_rows_from_its_step_on():
    from mechshift_lite.training import draw_rows

    data = mixed_data()
    cfg = config(batch_size=4000, countdown_share=0.75, countdown_share_from=3)
    uniform = config(batch_size=4000)
    early = draw_rows(cfg, 2, data, step_generator(cfg, 2))
    assert torch.equal(early, draw_rows(uniform, 2, data, step_generator(uniform, 2)))  # before: the recipe's draw
    late = draw_rows(cfg, 3, data, step_generator(cfg, 3))
    assert float(data.is_countdown[late].float().mean()) == pytest.approx(0.75, abs=0.03)
    assert float(data.is_countdown[early].float().mean()) == pytest.approx(0.25, abs=0.03)
    with pytest.raises(ValueError, match="is_countdown"):
        draw_rows(cfg, 3, reversal_data(), step_generator(cfg, 3))


def test_trimmed_pad_tail_runs_only_up_to_the_longest_sequence_of_the_batch():
    from mechshift_lite.training import loss_on_batch

    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.W_E = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, **_):
            seen.append(x.clone())
            return torch.zeros(*x.shape, 11) + self.W_E

    data = reversal_data()
    data.answer_end[::2] = 6  # half the rows end earlier (their [EOS] would sit at 6)
    for pad_tail in ("mask", "trim"):
        loss_on_batch(Spy(), config(objective="mdm", stage="post", pad_tail=pad_tail), 0, data, MASK)
    assert seen[0].shape[1] == P and seen[1].shape[1] == 9  # the longest row's [EOS] is at 8


def test_runs_record_their_device_and_bad_devices_get_clear_errors(tmp_path):
    from mechshift_lite.training import check_device

    result = train(config(steps=2), tiny_model(), reversal_data(), tmp_path / "run", mask_id=MASK, progress=False, device="cpu")
    assert result.devices == ["cpu"] and run_status(tmp_path / "run")["devices"] == ["cpu"]
    with pytest.raises(ValueError, match="unknown device"):
        check_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            check_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_run_on_cuda_resumes_on_the_cpu_and_draws_the_same_batches(tmp_path):
    cfg = config(objective="mdm", stage="post", steps=6)
    model = tiny_model("bidirectional")
    train(cfg, model, reversal_data(), tmp_path / "run", mask_id=MASK, progress=False, device="cuda", stop_at=3)
    resumed = tiny_model("bidirectional")
    train(cfg, resumed, reversal_data(), tmp_path / "run", mask_id=MASK, progress=False, device="cpu")
    cpu = tiny_model("bidirectional")
    train(cfg, cpu, reversal_data(), tmp_path / "cpu", mask_id=MASK, progress=False)
    assert run_status(tmp_path / "run")["devices"] == ["cpu", "cuda"]
    for key, value in weights(cpu).items():  # same batches and masks; only float rounding differs
        assert torch.allclose(weights(resumed)[key], value, atol=1e-4), key


def test_study_options_reject_bad_values():
    for bad in (dict(pad_tail="cut"), dict(focal_alpha=0.0), dict(focal_gamma=-1.0), dict(t_power=0.0),
                dict(countdown_share=1.5), dict(countdown_share_from=-1), dict(span_token_ids=(-2,)),
                dict(precision="float16")):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_zoo_train_takes_a_device_and_refuses_a_bad_one(tmp_path, capsys):
    from mechshift_lite.cli import build_parser, main
    from mechshift_lite.zoo import build

    assert build_parser().parse_args(["zoo", "train", "--kind", "arm", "--device", "cuda:0"]).device == "cuda:0"
    assert main(["zoo", "train", "--kind", "arm", "--device", "abacus", "--work-dir", str(tmp_path)]) == 2
    assert "unknown device" in capsys.readouterr().err
    train(config(steps=2), tiny_model(), reversal_data(), tmp_path / "run", mask_id=MASK, progress=False)
    assert build.run_devices(tmp_path / "run") == "cpu"
    assert build.run_devices(tmp_path / "never-ran") == "cpu"
