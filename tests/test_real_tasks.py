"""IOI and Countdown pairs for HuggingFace tokenizers (tokenizers are built in memory: no downloads)."""

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

import mechshift_lite as ml
from mechshift_lite import real_tasks as rt
from mechshift_lite.teaching import standins
from mechshift_lite.tasks import build_tokenizer, countdown, ioi

N = 24


def corpus(names=ioi.NAMES[:12]):
    sentences = [f"{ex.prompt} {ex.answer}" for ex in ioi.generate(150, 1, "train", names=names)]
    problems = countdown.generate(60, 1, "train")
    return sentences + [rt.countdown_prompt(ex.meta["numbers"], ex.meta["target"], problems[:1]) + " " + ex.answer
                        for ex in problems]


def train(bpe: Tokenizer, vocab_size: int, specials: list[str]) -> Tokenizer:
    bpe.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False))
    return bpe


@pytest.fixture(scope="module")
def gpt2_like():
    """The book's stand-in: byte-level BPE, digits split (as Qwen), names not in the corpus split."""
    return standins.tiny_tokenizer()


@pytest.fixture(scope="module")
def llama_like():
    """SentencePiece-style, as LLaMA-2's fast tokenizer: a space becomes "▁", a "▁" is prepended,
    ``<s>`` is added; so ``encode(" Mary")`` is ``["▁", "▁Mary"]``."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    bpe.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Strip(" ", 1, 0)])
    train(bpe, 300, ["<unk>", "<s>", "<mask>"])
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", mask_token="<mask>")


@pytest.fixture(scope="module")
def merged_numbers():
    """Byte-level BPE that merges some numbers (" 44") but not others, so target changes can change lengths."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=420, special_tokens=["<|endoftext|>"],
                                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                          show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")


# ----- single-token names ---------------------------------------------------------------------------
def test_single_token_names_match_the_byte_level_rule(gpt2_like):
    expected = {}
    for name in ioi.NAMES:
        ids = gpt2_like.encode(" " + name, add_special_tokens=False)
        if len(ids) == 1:
            expected[name] = ids[0]
    found = rt.single_token_names(gpt2_like)
    assert found == expected
    assert 3 <= len(found) < len(ioi.NAMES)   # the filter keeps some names and drops others


def test_single_token_names_read_sentencepiece_names_after_a_word(llama_like):
    assert len(llama_like.encode(" Mary", add_special_tokens=False)) == 2   # "▁", "▁Mary": the naive rule fails
    found = rt.single_token_names(llama_like)
    assert "Mary" in found
    assert all(llama_like.convert_ids_to_tokens(i) == "▁" + name for name, i in found.items())


def test_too_few_single_token_names_is_a_clear_error(gpt2_like):
    names = ("Mary", "John", "Zyxwvutsrq")
    with pytest.raises(ValueError, match="only 2 of the 3 names are single tokens"):
        rt.ioi_pairs(gpt2_like, 4, names=names)
    flipped = rt.ioi_pairs(gpt2_like, 4, names=names, corruption="flipped")   # needs only two names
    assert {ex.meta["io"] for ex in flipped.examples} <= {"Mary", "John"}


def test_the_toy_tokenizer_is_refused():
    with pytest.raises(TypeError, match="HuggingFace tokenizer"):
        rt.ioi_pairs(build_tokenizer(), 4)


# ----- IOI pairs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["gpt2_like", "llama_like"])
def test_ioi_pairs_read_io_against_s_after_the_prompt(fixture, request):
    tok = request.getfixturevalue(fixture)
    pairs = rt.ioi_pairs(tok, N, seed=3)
    assert len(pairs) == N and pairs.dropped == {}
    assert pairs.clean_ids.shape == pairs.corrupted_ids.shape
    for i, (ex, bad) in enumerate(zip(pairs.examples, pairs.corrupted_examples)):
        end = int(pairs.readout_pos[i]) + 1
        clean, corrupted = pairs.clean_ids[i, :end], pairs.corrupted_ids[i, :end]
        assert clean.tolist() == tok.encode(ex.prompt)            # the whole prompt, special tokens included
        assert pairs.attention_mask is None or pairs.attention_mask[i].sum() == end
        tokens = tok.convert_ids_to_tokens([int(pairs.answer_ids[i]), int(pairs.distractor_ids[i])])
        assert [t.lstrip("Ġ▁") for t in tokens] == [ex.meta["io"], ex.meta["s"]]
        changed = (clean != corrupted).nonzero()[:, 0].tolist()   # ABC: only S2 differs
        assert len(changed) == 1 and tok.convert_ids_to_tokens(int(corrupted[changed[0]])).lstrip("Ġ▁") == bad.meta["s2"]
        assert bad.meta["s2"] not in (ex.meta["io"], ex.meta["s"])


def test_llama_like_prompts_start_with_bos(llama_like):
    pairs = rt.ioi_pairs(llama_like, 4)
    assert (pairs.clean_ids[:, 0] == llama_like.bos_token_id).all()


# ----- Countdown pairs ------------------------------------------------------------------------------
def test_countdown_prompt_has_dreams_format():
    shot = countdown._example([15, 44, 79], 50, "44-15=29,79-29=50")
    expected = ("Given 4 numbers, use +-*/ to operate over the first three numbers to achieve the last number.\n\n"
                "Input: 15,44,79,50\nOutput: 44-15=29,79-29=50\n\n"
                "Input: 3,5,7,22\nOutput:")
    assert rt.countdown_prompt([3, 5, 7], 22, [shot]) == expected


def test_countdown_reads_the_first_digit_after_the_space(gpt2_like):
    pairs = rt.countdown_pairs(gpt2_like, N, seed=1, n_shots=2)
    assert len(pairs) + sum(pairs.dropped.values()) == N and len(pairs) > N // 2
    for i, (ex, bad) in enumerate(zip(pairs.examples, pairs.corrupted_examples)):
        assert countdown.check(ex.meta["numbers"], ex.meta["target"], ex.answer)
        assert countdown.check(bad.meta["numbers"], bad.meta["target"], bad.answer)
        assert bad.meta["numbers"] == ex.meta["numbers"] and bad.meta["target"] != ex.meta["target"]
        assert ex.prompt.count("Input:") == 3 and ex.prompt.endswith(f"{ex.meta['target']}\nOutput:")
        end = int(pairs.readout_pos[i]) + 1
        # digits are split, so the space before the answer is a token of its own and joins the prompt
        assert pairs.clean_ids[i, :end].tolist() == gpt2_like.encode(ex.prompt + " ")
        assert gpt2_like.decode(pairs.clean_ids[i, end - 1]) == " "
        assert gpt2_like.decode(pairs.answer_ids[i]) == ex.answer[0]
        assert gpt2_like.decode(pairs.distractor_ids[i]) == bad.answer[0] != ex.answer[0]


def test_countdown_drops_pairs_whose_prompts_differ_in_length(merged_numbers):
    pairs = rt.countdown_pairs(merged_numbers, 40, seed=0, n_shots=1)
    assert pairs.dropped.get("prompts of different token lengths", 0) > 0
    assert len(pairs) + sum(pairs.dropped.values()) == 40
    for i, (ex, bad) in enumerate(zip(pairs.examples, pairs.corrupted_examples)):
        assert len(merged_numbers.encode(ex.prompt)) == len(merged_numbers.encode(bad.prompt))
        end = int(pairs.readout_pos[i]) + 1
        first = merged_numbers.decode(pairs.answer_ids[i])
        assert first.strip() and ex.answer.startswith(first.strip())   # visible: the first number, or its start
        assert (ex.prompt + " " + ex.answer).startswith(merged_numbers.decode(pairs.clean_ids[i, :end]) + first)


def test_same_seed_same_pairs(gpt2_like):
    for make in (rt.ioi_pairs, lambda tok, n, seed: rt.countdown_pairs(tok, n, seed, n_shots=1)):
        a, b, other = make(gpt2_like, 8, seed=5), make(gpt2_like, 8, seed=5), make(gpt2_like, 8, seed=6)
        assert torch.equal(a.clean_ids, b.clean_ids) and torch.equal(a.corrupted_ids, b.corrupted_ids)
        assert [ex.prompt for ex in a.examples] != [ex.prompt for ex in other.examples]


# ----- metric and MDM view --------------------------------------------------------------------------
def test_metric_reads_each_row_at_its_own_readout(gpt2_like):
    pairs = rt.ioi_pairs(gpt2_like, N, seed=2)
    assert pairs.attention_mask is not None          # prompts of several lengths: readouts differ
    logits = torch.randn(len(pairs), pairs.clean_ids.shape[1], len(gpt2_like), generator=torch.Generator().manual_seed(0))
    expected = torch.tensor([
        logits[i, pairs.readout_pos[i], pairs.answer_ids[i]] - logits[i, pairs.readout_pos[i], pairs.distractor_ids[i]]
        for i in range(len(pairs))
    ])
    metric = pairs.metric()
    torch.testing.assert_close(metric(logits), expected)
    rows = torch.tensor([5, 0, 17])
    torch.testing.assert_close(metric(logits[rows], rows=rows), expected[rows])


def test_mdm_view_puts_masks_after_each_prompt(gpt2_like):
    pairs = rt.ioi_pairs(gpt2_like, N, seed=2)
    mask_id = gpt2_like.mask_token_id
    view = rt.mdm_view(pairs, mask_id, n_mask=3)
    assert view.clean_ids.shape == (len(pairs), pairs.clean_ids.shape[1] + 3) and view.attention_mask is None
    assert torch.equal(view.readout_pos, pairs.readout_pos)
    for i in range(len(pairs)):
        end = int(pairs.readout_pos[i]) + 1
        for ours, arm in ((view.clean_ids, pairs.clean_ids), (view.corrupted_ids, pairs.corrupted_ids)):
            assert torch.equal(ours[i, :end], arm[i, :end])
            assert (ours[i, end:] == mask_id).all() and (ours[i, end:].numel() >= 3)
    with pytest.raises(ValueError, match="n_mask"):
        rt.mdm_view(pairs, mask_id, n_mask=0)


# ----- stand-in models ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", standins.TINY_ARCHITECTURES)
def test_tiny_models_are_seeded_and_load(arch):
    a, b, other = standins.tiny_hf_model(arch, 50, seed=1), standins.tiny_hf_model(arch, 50, seed=1), standins.tiny_hf_model(arch, 50, seed=2)
    weights = lambda m: torch.cat([p.flatten() for p in m.parameters()])
    assert torch.equal(weights(a), weights(b)) and not torch.equal(weights(a), weights(other))
    model = ml.from_hf(a)
    assert model.cfg.family == ("gpt2" if arch == "gpt2" else "llama")
    assert model.cfg.kv_heads == (2 if arch == "qwen2" else 4)


def test_attribution_on_real_tokenizer_pairs_does_not_depend_on_batching(gpt2_like):
    model = ml.from_hf(standins.tiny_hf_model("qwen2", len(gpt2_like), seed=0))
    pairs = rt.ioi_pairs(gpt2_like, 6, seed=4)
    args = (model, pairs.clean_ids, pairs.corrupted_ids, pairs.metric())
    whole = ml.attribute(*args, method="EAP", attention_mask=pairs.attention_mask)
    chunked = ml.attribute(*args, method="EAP", attention_mask=pairs.attention_mask, batch_size=4)
    torch.testing.assert_close(whole.tensor, chunked.tensor)
    assert whole.tensor.abs().sum() > 0


def test_to_device_moves_only_the_model_inputs(gpt2_like):
    pairs = rt.ioi_pairs(gpt2_like, 8, seed=2)
    moved = rt.to_device(pairs, "meta")
    assert moved.clean_ids.is_meta and moved.corrupted_ids.is_meta and moved.attention_mask.is_meta
    assert not moved.readout_pos.is_meta and torch.equal(moved.answer_ids, pairs.answer_ids)
