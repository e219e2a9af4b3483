"""Shared task machinery: encoding, the tokenizer, the mixture, metrics, MDM canvases, pair batches."""

import pytest
import torch

from mechshift_lite import tasks
from mechshift_lite.tasks import CANVAS, Example, countdown, encode_examples, ioi, logit_diff, mdm_canvas
from mechshift_lite.tokenizer import SPECIAL_TOKENS, split_words

TOK = tasks.build_tokenizer()
MIXTURE = tasks.training_mixture(200, seed=0)


def test_tokenizer_is_deterministic_and_covers_both_tasks() -> None:
    assert tasks.build_tokenizer().tokens == TOK.tokens
    assert TOK.tokens[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    text = " ".join(ex.prompt + " " + ex.answer for ex in MIXTURE)
    assert set(split_words(text)) <= set(TOK.tokens)
    for name in ioi.NAMES + ioi.PLACES + ioi.OBJECTS:  # single tokens
        assert TOK.encode(name, bos=False) == [TOK.token_id(name)]


def test_unknown_word_gives_the_tokenizers_key_error() -> None:
    bad = Example(prompt="Then, Zorro and Mary went to the store. Zorro gave a ring to", answer="Mary", task="ioi")
    with pytest.raises(KeyError, match="Zorro"):
        encode_examples(TOK, [bad])


def test_encode_examples_round_trips_through_decode() -> None:
    enc = encode_examples(TOK, MIXTURE)
    assert enc.ids.shape == (len(MIXTURE), CANVAS)
    for row, start, end, ex in zip(enc.ids, enc.answer_start, enc.answer_end, MIXTURE):
        assert row[0] == TOK.bos_id
        assert TOK.decode(row[1:start]).split(" ") == split_words(ex.prompt)
        assert TOK.decode(row[start:end]).split(" ") == split_words(ex.answer)
        if ex.task == "countdown":
            assert TOK.decode(row[start:end], joiner="") == ex.answer
        assert row[end] == TOK.eos_id
        assert (row[end + 1 :] == TOK.pad_id).all()


def test_encode_examples_refuses_a_sequence_longer_than_the_canvas() -> None:
    with pytest.raises(ValueError, match="length"):
        encode_examples(TOK, MIXTURE[:5], length=10)


def test_training_mixture_is_half_and_half_seeded_and_from_the_train_split() -> None:
    assert sum(ex.task == "ioi" for ex in MIXTURE) == 100
    assert sum(ex.task == "countdown" and len(ex.meta["numbers"]) == 3 for ex in MIXTURE) == 100
    assert tasks.training_mixture(200, seed=0) == MIXTURE
    assert tasks.training_mixture(200, seed=1) != MIXTURE
    test_prompts = {ex.prompt for ex in ioi.generate(500, seed=0, split="test")}
    assert not test_prompts & {ex.prompt for ex in MIXTURE}


def test_test_split_is_about_a_tenth_of_all_problems() -> None:
    keys = [f"problem {i}" for i in range(20_000)]
    share = sum(tasks.split_of(k) == "test" for k in keys) / len(keys)
    assert 0.09 < share < 0.11  # 10% +- 4.7 standard deviations


def random_metric_inputs(n: int = 7, pos: int = 5, vocab: int = 11):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(n, pos, vocab, generator=gen)
    p = torch.randint(0, pos, (n,), generator=gen)
    good = torch.randint(0, vocab, (n,), generator=gen)
    bad = torch.randint(0, vocab, (n,), generator=gen)
    return logits, p, good, bad


def test_logit_diff_matches_a_loop() -> None:
    logits, p, good, bad = random_metric_inputs()
    expected = torch.tensor([logits[b, p[b], good[b]] - logits[b, p[b], bad[b]] for b in range(len(p))])
    torch.testing.assert_close(logit_diff(p, good, bad)(logits), expected)


def test_logit_diff_indexes_by_rows_when_the_batch_is_split() -> None:
    logits, p, good, bad = random_metric_inputs()
    metric = logit_diff(p, good, bad)
    perm = torch.tensor([4, 0, 6, 2, 1, 5, 3])
    chunks = [perm[:3], perm[3:5], perm[5:]]
    pieces = torch.cat([metric(logits[rows], rows=rows) for rows in chunks])
    torch.testing.assert_close(pieces, metric(logits)[perm])


def test_logit_diff_refuses_a_batch_of_the_wrong_size() -> None:
    logits, p, good, bad = random_metric_inputs()
    metric = logit_diff(p, good, bad)
    with pytest.raises(ValueError, match="rows"):
        metric(logits[:3])
    with pytest.raises(ValueError, match="batch size"):
        metric(logits[:3], rows=torch.tensor([0, 1]))


def test_mdm_canvas_keeps_the_prompt_in_place_and_masks_the_rest() -> None:
    ids, mask = TOK.batch_encode(["Then, Mary and John went to the store. John gave a ring to", "3,4,5,17 [SEP]"])
    canvas = mdm_canvas(ids, mask, TOK)
    assert canvas.shape == (2, CANVAS)
    for row, m, out in zip(ids, mask, canvas):
        n = int(m.sum())
        assert torch.equal(out[:n], row[:n])
        assert (out[n:] == TOK.mask_id).all()
    with pytest.raises(ValueError, match="right padding"):
        mdm_canvas(ids, mask.flip(1), TOK)
    with pytest.raises(ValueError, match="canvas"):
        mdm_canvas(ids, mask, TOK, canvas=int(mask.sum(1).max()))


def test_pairs_of_both_tasks_read_the_last_prompt_token_in_arm_and_mdm_views() -> None:
    examples = [*ioi.generate(4, seed=2, split="test"), *(ex for ex in countdown.generate(8, seed=2, split="test") if countdown.pairable(ex))]
    for pairs in (ioi.make_pairs(TOK, examples[:4]), countdown.make_pairs(TOK, examples[4:])):
        mdm = pairs.to_mdm(TOK)
        assert mdm.clean_ids.shape == mdm.corrupted_ids.shape == (len(pairs), CANVAS)
        rows = torch.arange(len(pairs))
        for view in (pairs, mdm):
            last = [TOK.encode(ex.prompt)[-1] for ex in pairs.examples]
            assert view.clean_ids[rows, view.readout_pos].tolist() == last
        after = pairs.readout_pos + 1
        assert (mdm.clean_ids[rows, after] == TOK.mask_id).all()


def test_select_keeps_rows_and_their_metric() -> None:
    pairs = ioi.make_pairs(TOK, ioi.generate(6, seed=3, split="test"))
    logits = torch.randn(6, pairs.clean_ids.shape[1], len(TOK), generator=torch.Generator().manual_seed(1))
    rows = [5, 1, 3]
    sub = pairs.select(rows)
    assert [ex.prompt for ex in sub.examples] == [pairs.examples[i].prompt for i in rows]
    width = sub.clean_ids.shape[1]
    assert width == int(pairs.readout_pos[rows].max()) + 1
    torch.testing.assert_close(sub.metric()(logits[rows, :width]), pairs.metric()(logits)[rows])
