"""Experiment plumbing on tiny random models: inputs, chunking, recombination, bootstrap, report folders."""

import json

import pytest
import torch

from mechshift_lite import ModelConfig, Transformer, attribute
from mechshift_lite.experiment import ExperimentConfig, attribute_chunks, chunk_rows, combine, correct, task_pairs
from mechshift_lite.experiment import bootstrap, output
from mechshift_lite.inputs import ModelInputs
from mechshift_lite.tasks import CANVAS, build_tokenizer

TOK = build_tokenizer()
CFG = ModelConfig(d_vocab=len(TOK), n_ctx=CANVAS, d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64)


@pytest.fixture(scope="module")
def pairs():
    return {task: task_pairs(task, TOK, 8, seed=5) for task in ("ioi", "countdown")}


def models():
    return Transformer(CFG, "causal").init_weights(0), Transformer(CFG, "bidirectional").init_weights(0)


def test_arm_and_mdm_views_share_readout_and_prompt(pairs):
    arm, mdm = models()
    p = pairs["countdown"]
    a, m = ModelInputs.from_pairs(arm, p, TOK), ModelInputs.from_pairs(mdm, p, TOK)
    assert a.attention == "causal" and m.attention == "bidirectional" and m.clean_ids.shape[1] == CANVAS
    for row, pos in enumerate(p.readout_pos.tolist()):
        assert torch.equal(a.clean_ids[row, : pos + 1], m.clean_ids[row, : pos + 1])
        assert (m.clean_ids[row, pos + 1:] == TOK.mask_id).all()


def test_later_diffusion_step_shares_committed_tokens_between_clean_and_corrupted(pairs):
    _, mdm = models()
    p = pairs["ioi"]
    m = ModelInputs.from_pairs(mdm, p, TOK, step=3)
    answer = torch.arange(CANVAS)[None] > p.readout_pos[:, None]
    committed = answer & (m.clean_ids != TOK.mask_id)
    assert (committed.sum(1) == 3).all()
    explained = m.clean_ids[torch.arange(len(p)), p.readout_pos + 1]
    assert (explained == TOK.mask_id).all()                                       # the decision the metric reads
    assert torch.equal(m.clean_ids[answer], m.corrupted_ids[answer])              # same diffusion state
    assert not torch.equal(m.clean_ids[~answer], m.corrupted_ids[~answer])         # prompts differ


def test_own_commits_keep_the_clean_mask_but_never_copy_the_clean_runs_tokens(pairs):
    """Issue 11: the corrupted canvas holds the model's own commits for the corrupted prompt."""
    from dataclasses import replace

    _, mdm = models()
    p = pairs["countdown"]
    own = ModelInputs.from_pairs(mdm, p, TOK, step=4, corrupted_commits="own")
    copied = ModelInputs.from_pairs(mdm, p, TOK, step=4)
    answer = torch.arange(CANVAS)[None] > p.readout_pos[:, None]
    assert torch.equal(own.clean_ids, copied.clean_ids)                                  # the clean canvas is unchanged
    assert torch.equal(own.corrupted_ids == TOK.mask_id, own.clean_ids == TOK.mask_id)  # the same masked slots
    assert torch.equal(own.corrupted_ids[~answer], copied.corrupted_ids[~answer])        # the corrupted prompt
    # ground truth: when the corrupted prompt is the clean one, its own commits are the clean run's
    same = replace(p, corrupted_ids=p.clean_ids, corrupted_examples=p.examples)
    twin = ModelInputs.from_pairs(mdm, same, TOK, step=4, corrupted_commits="own")
    assert torch.equal(twin.corrupted_ids, twin.clean_ids)
    with pytest.raises(ValueError, match="corrupted_commits must be one of"):
        ModelInputs.from_pairs(mdm, p, TOK, step=4, corrupted_commits="leak")


def test_a_trained_mdm_commits_other_tokens_for_the_corrupted_countdown_target():
    from mechshift_lite import zoo

    tok, mdm = zoo.tokenizer(), zoo.load("mdm", 0)
    p = task_pairs("countdown", tok, 8, seed=5)
    own = ModelInputs.from_pairs(mdm, p, tok, step=16, corrupted_commits="own")
    answer = torch.arange(own.clean_ids.shape[1])[None] > p.readout_pos[:, None]
    assert torch.equal(own.corrupted_ids == tok.mask_id, own.clean_ids == tok.mask_id)
    assert (own.corrupted_ids[answer] != own.clean_ids[answer]).sum() >= 5            # its own digits, not the clean ones


def test_block_scores_recombine_to_the_whole_pool(pairs):
    arm, _ = models()
    p = pairs["ioi"]
    cfg = ExperimentConfig(n_chunks=3, method="EAP", ig_steps=1)
    blocks = attribute_chunks(arm, p, TOK, cfg)
    sizes = torch.tensor([len(r) for r in chunk_rows(len(p), 3)])
    whole = attribute(arm, p.clean_ids, p.corrupted_ids, p.metric(), method="EAP", attention_mask=p.attention_mask)
    torch.testing.assert_close(combine(blocks, sizes, arm.graph, "EAP").tensor, whole.tensor, atol=1e-6, rtol=1e-5)


def test_correct_matches_the_argmax_definition(pairs):
    arm, _ = models()
    p = pairs["ioi"]
    logits = arm(p.clean_ids, p.attention_mask)
    expected = logits[torch.arange(len(p)), p.readout_pos].argmax(-1) == p.answer_ids
    assert torch.equal(correct(arm, p, TOK), expected)


def test_both_decisions_need_the_corrupted_prompts_own_answer_too(pairs):
    arm, mdm = models()
    p = pairs["countdown"]
    rows = torch.arange(len(p))
    for model in (arm, mdm):
        both, clean = correct(model, p, TOK, both=True), correct(model, p, TOK)
        assert not (both & ~clean).any()
    logits_clean = arm(p.clean_ids, p.attention_mask)[rows, p.readout_pos].argmax(-1)
    logits_corrupt = arm(p.corrupted_ids, p.attention_mask)[rows, p.readout_pos].argmax(-1)
    expected = (logits_clean == p.answer_ids) & (logits_corrupt == p.distractor_ids)
    assert torch.equal(correct(arm, p, TOK, both=True), expected)


def test_target_dependent_pairs_defeat_the_target_blind_rules():
    from mechshift_lite.experiment.pools import target_blind_rates

    any_pairs = task_pairs("countdown", TOK, 60, seed=5, countdown_selection="any")
    dependent = task_pairs("countdown", TOK, 60, seed=5, countdown_selection="target-dependent")
    assert min(target_blind_rates(any_pairs).values()) > 0.3
    assert set(target_blind_rates(dependent).values()) == {0.0}
    with pytest.raises(ValueError, match="countdown_selection"):
        ExperimentConfig(countdown_selection="hard")


def test_chunks_need_enough_examples():
    with pytest.raises(ValueError, match="fewer than n_chunks"):
        chunk_rows(2, 4)


def test_hierarchical_bootstrap_brackets_the_mean_and_is_seeded():
    values = {0: 0.2, 1: 0.4, 2: 0.9}
    stat = bootstrap.hierarchical_bootstrap(list(values), 4, lambda u, blocks: values[u] + 0.01 * float(blocks.float().mean()), 300, seed=1)
    assert stat["lo"] <= stat["mean"] <= stat["hi"]
    assert stat == bootstrap.hierarchical_bootstrap(list(values), 4, lambda u, blocks: values[u] + 0.01 * float(blocks.float().mean()), 300, seed=1)
    constant = bootstrap.hierarchical_bootstrap([0, 1], 3, lambda u, b: 0.5, 50)
    assert constant == {"mean": 0.5, "lo": 0.5, "hi": 0.5}


def test_report_folder_never_overwrites_a_users_files(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a mechshift-lite report folder"):
        output.prepare_out_dir(user)
    ours = output.prepare_out_dir(tmp_path / "new")
    (ours / "report.json").write_text(json.dumps({}))
    assert output.prepare_out_dir(ours) == ours          # ours: reused
