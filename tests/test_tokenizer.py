import pytest
import torch

from mechshift_lite.tokenizer import SPECIAL_TOKENS, Tokenizer, split_words


@pytest.fixture
def tok() -> Tokenizer:
    return Tokenizer.from_words(split_words("Then , Mary and John went to the store . gave a drink") + list("0123456789+-*/=,"))


def test_special_tokens_have_fixed_ids(tok):
    assert [tok.pad_id, tok.bos_id, tok.eos_id, tok.mask_id, tok.sep_id] == [0, 1, 2, 3, 4]
    assert tuple(tok.tokens[:5]) == SPECIAL_TOKENS


def test_split_rule_keeps_specials_and_splits_digits():
    assert split_words("Then, Mary [SEP] 44-15=29") == ["Then", ",", "Mary", "[SEP]", "4", "4", "-", "1", "5", "=", "2", "9"]


def test_encode_decode_round_trip(tok):
    text = "Then , Mary and John went to the store . John gave a drink to Mary"
    ids = tok.encode(text)
    assert ids[0] == tok.bos_id
    assert tok.decode(ids[1:]) == text
    assert tok.decode(tok.encode("44-15=29,79-29=50", bos=False), joiner="") == "44-15=29,79-29=50"


def test_save_load_round_trip(tok, tmp_path):
    tok.save(tmp_path / "vocab.json")
    assert Tokenizer.load(tmp_path / "vocab.json") == tok


def test_unknown_word_gives_clear_error(tok):
    with pytest.raises(KeyError, match="'Zed' is not in the vocabulary"):
        tok.encode("Zed gave")


def test_batch_encode_right_pads_with_mask(tok):
    ids, mask = tok.batch_encode(["Mary", "John and Mary"])
    assert ids.shape == mask.shape == (2, 4)
    assert ids[0, 2:].tolist() == [tok.pad_id, tok.pad_id] and mask[0].tolist() == [1, 1, 0, 0]
    assert mask[1].sum() == 4 and ids.dtype == torch.long


@pytest.mark.parametrize("tokens", [["Mary", "[PAD]"], [*SPECIAL_TOKENS, "Mary", "Mary"]])
def test_bad_vocabularies_are_rejected(tokens):
    with pytest.raises(ValueError):
        Tokenizer(tokens)
