"""What a model reads (ModelInputs): the ARM and MDM views of task pairs, and every analysis accepting them."""

import pytest
import torch

import mechshift_lite as ml
from mechshift_lite import ModelConfig, Transformer, ablation, lens, neurons
from mechshift_lite.experiment import task_pairs
from mechshift_lite.inputs import ModelInputs
from mechshift_lite.tasks import CANVAS, build_tokenizer

TOK = build_tokenizer()
CFG = ModelConfig(d_vocab=len(TOK), n_ctx=CANVAS, d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64)
TASKS = ("ioi", "countdown")


@pytest.fixture(scope="module")
def pairs():
    return {task: task_pairs(task, TOK, 6, seed=3) for task in TASKS}


@pytest.fixture(scope="module")
def mdm():
    return Transformer(CFG, "bidirectional").init_weights(1)


def answer_span(p, width=CANVAS):
    """``[N, width]`` bool: the slots after the readout (the answer the MDM fills in)."""
    return torch.arange(width)[None] > p.readout_pos[:, None]


@pytest.mark.parametrize("task", TASKS)
def test_arm_view_is_the_prompt_with_causal_attention(pairs, task):
    p = pairs[task]
    x = ModelInputs.from_pairs(Transformer(CFG, "causal").init_weights(0), p, TOK)
    assert x.attention == "causal" and torch.equal(x.clean_ids, p.clean_ids) and torch.equal(x.corrupted_ids, p.corrupted_ids)
    assert (x.attention_mask is None) == (p.attention_mask is None)
    assert torch.equal(x.readout_pos, p.readout_pos) and torch.equal(x.answer_ids, p.answer_ids)


@pytest.mark.parametrize("task", TASKS)
def test_mdm_step_zero_masks_the_whole_answer_span_and_keeps_the_prompt(pairs, mdm, task):
    p = pairs[task]
    x = ModelInputs.from_pairs(mdm, p, TOK, step=0)
    assert x.attention == "bidirectional" and x.attention_mask is None and x.clean_ids.shape == (len(p), CANVAS)
    answer = answer_span(p)
    for ids, prompts in ((x.clean_ids, p.clean_ids), (x.corrupted_ids, p.corrupted_ids)):
        assert (ids[answer] == TOK.mask_id).all()
        for row, pos in enumerate(p.readout_pos.tolist()):
            assert torch.equal(ids[row, : pos + 1], prompts[row, : pos + 1])      # the prompt, token for token
    assert not torch.equal(x.clean_ids, x.corrupted_ids)                         # the prompts differ


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("step", [1, 3, 6])
def test_mdm_step_k_commits_k_answer_slots_shared_by_clean_and_corrupted(pairs, mdm, task, step):
    p = pairs[task]
    x = ModelInputs.from_pairs(mdm, p, TOK, step=step)
    answer, rows = answer_span(p), torch.arange(len(p))
    committed = answer & (x.clean_ids != TOK.mask_id)
    assert (committed.sum(1) == step).all()
    assert (x.clean_ids[rows, p.readout_pos + 1] == TOK.mask_id).all()            # the explained slot stays masked
    # the same mask configuration and the same committed tokens in both runs: only the prompts differ
    assert torch.equal(x.clean_ids == TOK.mask_id, x.corrupted_ids == TOK.mask_id)
    assert torch.equal(x.clean_ids[answer], x.corrupted_ids[answer])
    start = ModelInputs.from_pairs(mdm, p, TOK, step=0)
    assert torch.equal(x.clean_ids[~answer], start.clean_ids[~answer])
    assert torch.equal(x.corrupted_ids[~answer], start.corrupted_ids[~answer])


@pytest.mark.parametrize("task", TASKS)
def test_later_steps_keep_what_earlier_steps_committed(pairs, mdm, task):
    p = pairs[task]
    earlier, later = (ModelInputs.from_pairs(mdm, p, TOK, step=k) for k in (2, 4))
    kept = earlier.clean_ids != TOK.mask_id
    assert torch.equal(later.clean_ids[kept], earlier.clean_ids[kept])
    assert ((later.clean_ids != TOK.mask_id) & ~kept).sum() == 2 * len(p)


@pytest.mark.parametrize("task", TASKS)
def test_diffusion_views_of_several_steps_equal_each_step_decoded_on_its_own(pairs, mdm, task):
    """Ground truth: each canvas decoded alone with diffusion.masked_state, as the definition reads."""
    p = pairs[task]
    views = ModelInputs.diffusion_views(mdm, p, TOK, [0, 2, 5])
    assert sorted(views) == [(k, c) for k in (0, 2, 5) for c in ("clean", "own")]
    canvas, start = p.to_mdm(TOK), p.readout_pos + 1
    slots = torch.arange(CANVAS)[None]
    for (step, commits), view in views.items():
        if step == 0:
            assert torch.equal(view.clean_ids, canvas.clean_ids) and torch.equal(view.corrupted_ids, canvas.corrupted_ids)
            continue
        clean = ml.diffusion.masked_state(mdm, canvas.clean_ids, start, step, TOK.mask_id, hold=slots == start[:, None])
        assert torch.equal(view.clean_ids, clean)
        if commits == "clean":
            expected = torch.where(slots >= start[:, None], clean, canvas.corrupted_ids)
        else:
            still = (slots >= start[:, None]) & (clean == TOK.mask_id)
            expected = ml.diffusion.masked_state(mdm, canvas.corrupted_ids, start, step, TOK.mask_id, hold=still)
        assert torch.equal(view.corrupted_ids, expected), (step, commits)
    with pytest.raises(ValueError, match="causal"):
        ModelInputs.diffusion_views(Transformer(CFG, "causal").init_weights(0), p, TOK, [1])
    with pytest.raises(ValueError, match="corrupted_commits"):
        ModelInputs.diffusion_views(mdm, p, TOK, [1], ("leaked",))


def test_committed_tokens_depend_on_the_model(pairs):
    p = pairs["countdown"]
    a, b = (ModelInputs.from_pairs(Transformer(CFG, "bidirectional").init_weights(s), p, TOK, step=6) for s in (1, 2))
    assert not torch.equal(a.clean_ids, b.clean_ids)


def test_select_and_repeat_keep_the_readout_with_its_rows(pairs, mdm):
    x = ModelInputs.from_pairs(mdm, pairs["ioi"], TOK)
    rows = torch.tensor([4, 1])
    logits = x.run(mdm)
    torch.testing.assert_close(x.select(rows).metric()(logits[rows]), x.metric()(logits)[rows])
    twice = x.repeat(2)
    assert len(twice) == 2 * len(x) and torch.equal(twice.answer_ids, x.answer_ids.repeat(2))
    assert torch.equal(x.answer_is_top(logits), logits[torch.arange(len(x)), x.readout_pos].argmax(-1) == x.answer_ids)


def test_every_analysis_accepts_the_inputs_as_one_object(pairs, mdm):
    p = pairs["ioi"]
    x = ModelInputs.from_pairs(mdm, p, TOK, step=2)
    arrays = (x.clean_ids, x.corrupted_ids, p.metric())
    mode = {"attention": x.attention}
    torch.testing.assert_close(ml.attribute(mdm, x, method="EAP").tensor,
                               ml.attribute(mdm, *arrays, method="EAP", **mode).tensor)
    circuit = ml.top_n(ml.attribute(mdm, x, p.metric(), method="EAP"), 20)
    torch.testing.assert_close(ml.evaluate(mdm, circuit, x), ml.evaluate(mdm, circuit, *arrays, **mode))
    scores = ml.attribute(mdm, x, method="EAP")
    assert ml.faithfulness_curve(mdm, scores, x, edge_counts=[10, 40]) == \
        ml.faithfulness_curve(mdm, scores, *arrays, edge_counts=[10, 40], **mode)
    torch.testing.assert_close(lens.component_lens(mdm, x).logits,
                               lens.component_lens(mdm, x.clean_ids, p.readout_pos, **mode).logits)
    torch.testing.assert_close(neurons.activations(mdm, x, 1), neurons.activations(mdm, x.clean_ids, 1, **mode))
    torch.testing.assert_close(ablation.ablated_logits(mdm, x, ["a0.h1", "m1"]),
                               ablation.ablated_logits(mdm, x.clean_ids, ["a0.h1", "m1"], **mode))


def test_an_object_and_loose_attention_arguments_are_not_mixed(pairs, mdm):
    x = ModelInputs.from_pairs(mdm, pairs["ioi"], TOK)
    with pytest.raises(ValueError, match="carries its own"):
        ml.attribute(mdm, x, method="EAP", attention="causal")
    with pytest.raises(TypeError, match="metric once"):
        ml.attribute(mdm, x, x.metric(), x.metric(), method="EAP")
    with pytest.raises(ValueError, match="same shape"):
        ModelInputs(x.clean_ids, x.corrupted_ids[:, :-1])


@pytest.mark.parametrize("task", TASKS)
def test_before_commit_is_each_examples_canvas_at_the_step_its_free_decoding_commits_the_explained_slot(pairs, mdm, task):
    p = pairs[task]
    x, steps = ModelInputs.before_commit(mdm, p, TOK)
    free = ml.diffusion.confidence_sample(mdm, p.to_mdm(TOK).clean_ids, p.readout_pos + 1, TOK.mask_id)
    rows = torch.arange(len(p))
    assert torch.equal(steps, free.commit_step[rows, p.readout_pos + 1])
    assert torch.equal(steps, (answer_span(p) & (x.clean_ids != TOK.mask_id)).sum(1))   # what commit_analysis reads off the view
    assert (x.clean_ids[rows, p.readout_pos + 1] == TOK.mask_id).all()
    for row, k in enumerate(steps.tolist()):   # one example at a time, stopped at its own step with the slot held
        alone = ModelInputs.from_pairs(mdm, p.select(torch.tensor([row])), TOK, step=k, corrupted_commits="own")
        assert torch.equal(x.clean_ids[row], alone.clean_ids[0]) and torch.equal(x.corrupted_ids[row], alone.corrupted_ids[0])
    assert torch.equal(x.clean_ids == TOK.mask_id, x.corrupted_ids == TOK.mask_id)


def test_before_commit_refuses_an_arm(pairs):
    with pytest.raises(ValueError, match="causal"):
        ModelInputs.before_commit(Transformer(CFG, "causal").init_weights(0), pairs["ioi"], TOK)


def test_the_mdm_reads_a_teacher_forced_decision_where_it_commits_the_slot_itself_never_the_forced_prefix(mdm):
    from mechshift_lite.tasks import countdown

    problems = [ex for ex in countdown.generate(80, 4, "test") if countdown.x_pairable(ex)][:6]
    forced, prompt_only = countdown.make_x_pairs(TOK, problems), countdown.make_pairs(TOK, problems)
    x, steps = ModelInputs.before_commit(mdm, forced, TOK)
    slot = forced.readout_pos + 1                                         # X's first digit
    free = ml.diffusion.confidence_sample(mdm, prompt_only.to_mdm(TOK).clean_ids, prompt_only.readout_pos + 1, TOK.mask_id)
    rows = torch.arange(len(problems))
    assert torch.equal(steps, free.commit_step[rows, slot])
    committed = (free.commit_step >= 0) & (free.commit_step < steps[:, None])
    assert torch.equal(x.clean_ids, free.ids.masked_fill(answer_span(prompt_only) & ~committed, TOK.mask_id))
    assert torch.equal(x.clean_ids[:, :int(forced.answer_start.min())], prompt_only.to_mdm(TOK).clean_ids[:, :int(forced.answer_start.min())])
    assert torch.equal(x.readout_pos, forced.readout_pos) and (x.clean_ids[rows, slot] == TOK.mask_id).all()
    arm = ModelInputs.from_pairs(Transformer(CFG, "causal").init_weights(0), forced, TOK)
    assert torch.equal(arm.clean_ids, forced.clean_ids)                  # the ARM reads the prefix
