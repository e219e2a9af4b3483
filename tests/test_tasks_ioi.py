"""IOI: who is the indirect object, and are the corruptions what they claim to be.

Ground truth comes from reading the sentences: the subject is the name said twice, the indirect
object the name said once.
"""

from collections import Counter

import pytest
import torch

from mechshift_lite import tasks
from mechshift_lite.tasks import CANVAS, encode_examples, ioi
from mechshift_lite.tokenizer import split_words

TOK = tasks.build_tokenizer()
EXAMPLES = ioi.generate(300, seed=0, split="test")


def name_counts(text: str) -> Counter:
    return Counter(w for w in split_words(text) if w in ioi.NAMES)


def io_and_subject(prompt: str) -> tuple[str, str]:
    """The name said once and the name said twice."""
    counts = name_counts(prompt)
    assert sum(counts.values()) == 3
    (io,) = [n for n, c in counts.items() if c == 1]
    (subject,) = [n for n, c in counts.items() if c == 2]
    return io, subject


def test_templates_cover_both_orders() -> None:
    orders = Counter(order for order, _ in ioi.TEMPLATES)
    assert len(set(ioi.TEMPLATES)) == len(ioi.TEMPLATES) >= 10
    assert orders["BABA"] == orders["ABBA"] == len(ioi.TEMPLATES) // 2


def test_answer_is_the_name_said_once_and_distractor_the_name_said_twice() -> None:
    seen_orders = set()
    for ex in EXAMPLES:
        io, subject = io_and_subject(ex.prompt)
        assert (ex.answer, ex.meta["io"], ex.meta["s"]) == (io, io, subject)
        first = next(w for w in split_words(ex.prompt) if w in ioi.NAMES)
        order = "BABA" if first == subject else "ABBA"
        assert ex.meta["order"] == order
        seen_orders.add(order)
        assert split_words(ex.prompt)[-1] == "to"
        assert ex.meta["place"] in ex.prompt and ex.meta["object"] in ex.prompt
    assert seen_orders == {"BABA", "ABBA"}


def test_generate_is_seeded_distinct_and_its_splits_are_disjoint() -> None:
    assert ioi.generate(300, seed=0, split="test") == EXAMPLES
    assert ioi.generate(300, seed=1, split="test") != EXAMPLES
    assert len({ex.prompt + ex.answer for ex in EXAMPLES}) == len(EXAMPLES)
    # ~565k possible sentences: without a hold-out, 10000 x 2000 draws would share ~35 sentences
    train = {ex.prompt for ex in ioi.generate(10_000, seed=7, split="train")}
    test = {ex.prompt for ex in ioi.generate(2000, seed=7, split="test")}
    assert not train & test
    with pytest.raises(ValueError, match="split"):
        ioi.generate(3, seed=0, split="validation")


def test_every_sentence_fits_the_canvas() -> None:
    longest = max(ioi.NAMES, key=len)
    for t, (_, template) in enumerate(ioi.TEMPLATES):
        prompt = ioi.render(t, longest, longest, longest, ioi.PLACES[0], ioi.OBJECTS[0])
        assert len(TOK.encode(prompt)) + 2 <= CANVAS  # [BOS] prompt + answer + [EOS]
    encode_examples(TOK, EXAMPLES)  # raises if one does not fit


@pytest.mark.parametrize("corruption", ["ABC", "flipped"])
def test_pairs_change_only_the_second_subject_mention(corruption: str) -> None:
    pairs = ioi.make_pairs(TOK, EXAMPLES, corruption=corruption)
    assert pairs.clean_ids.shape == pairs.corrupted_ids.shape
    differ = pairs.clean_ids != pairs.corrupted_ids
    assert (differ.sum(1) == 1).all()
    rows = torch.arange(len(pairs))
    assert (pairs.clean_ids[rows, pairs.readout_pos] == TOK.token_id("to")).all()
    assert pairs.attention_mask is not None and (pairs.attention_mask.sum(1) == pairs.readout_pos + 1).all()
    for b, (clean, corrupt) in enumerate(zip(pairs.examples, pairs.corrupted_examples)):
        io, s = io_and_subject(clean.prompt)
        assert (pairs.answer_ids[b], pairs.distractor_ids[b]) == (TOK.token_id(io), TOK.token_id(s))
        changed = pairs.clean_ids[b, differ[b]].item()
        assert changed == TOK.token_id(s)  # the replaced token is a mention of S ...
        assert split_words(clean.prompt).count(s) == 2 and split_words(corrupt.prompt).count(s) == 1
        counts = name_counts(corrupt.prompt)
        if corruption == "ABC":
            assert len(counts) == 3 and max(counts.values()) == 1  # no repeated name
        else:
            assert counts[io] == 2 and corrupt.answer == s  # IO repeated: the answer flips


def test_the_second_mention_is_the_one_replaced() -> None:
    pairs = ioi.make_pairs(TOK, EXAMPLES[:50])
    for b, ex in enumerate(pairs.examples):
        positions = [i for i, t in enumerate(TOK.encode(ex.prompt)) if t == TOK.token_id(ex.meta["s"])]
        changed = (pairs.clean_ids[b] != pairs.corrupted_ids[b]).nonzero().item()
        assert changed == positions[1]


def test_abc_name_does_not_depend_on_the_batch() -> None:
    whole = ioi.make_pairs(TOK, EXAMPLES[:20])
    part = ioi.make_pairs(TOK, EXAMPLES[10:20])
    assert [ex.prompt for ex in part.corrupted_examples] == [ex.prompt for ex in whole.corrupted_examples[10:]]
    other_seed = ioi.make_pairs(TOK, EXAMPLES[:20], seed=1)
    assert [ex.prompt for ex in other_seed.corrupted_examples] != [ex.prompt for ex in whole.corrupted_examples]


def test_bad_corruption_and_wrong_task_are_refused() -> None:
    with pytest.raises(ValueError, match="corruption"):
        ioi.make_pairs(TOK, EXAMPLES[:2], corruption="ABB")
    cd = tasks.countdown.generate(1, seed=0)
    with pytest.raises(ValueError, match="not an IOI"):
        ioi.make_pairs(TOK, cd)
