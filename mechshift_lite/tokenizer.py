"""A word-level tokenizer for the toy tasks, with an explicit vocabulary saved as JSON.

Splitting rule (one rule for both tasks): special tokens like ``[MASK]`` stay whole, words are
runs of letters, and every digit and punctuation character is its own token. So
``"Then, Mary gave"`` -> ``["Then", ",", "Mary", "gave"]`` and ``"44-15=29"`` ->
``["4", "4", "-", "1", "5", "=", "2", "9"]`` (multi-digit numbers are several tokens, as in the
character-level Countdown format of Ye et al.).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import torch

PAD, BOS, EOS, MASK, SEP = "[PAD]", "[BOS]", "[EOS]", "[MASK]", "[SEP]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS, MASK, SEP)
_SPLIT = re.compile(r"\[[A-Z]+\]|[A-Za-z']+|\d|[^\sA-Za-z\d]")


def split_words(text: str) -> list[str]:
    """Split ``text`` into token strings with the module's rule (no vocabulary needed)."""
    return _SPLIT.findall(text)


class Tokenizer:
    """Maps token strings to ids and back. Ids 0..4 are always the special tokens.

    Args:
        tokens: the vocabulary in id order. Must start with ``SPECIAL_TOKENS`` and have no
            duplicates.
    """

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}")
        if len(set(tokens)) != len(tokens):
            dupes = sorted({t for t in tokens if tokens.count(t) > 1})
            raise ValueError(f"duplicate tokens in the vocabulary: {dupes}")
        self.tokens: list[str] = tokens
        self.index: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def from_words(cls, words: Iterable[str]) -> "Tokenizer":
        """Build a vocabulary: the special tokens, then ``words`` (deduplicated, order kept)."""
        extra = [w for w in dict.fromkeys(words) if w not in SPECIAL_TOKENS]
        return cls([*SPECIAL_TOKENS, *extra])

    # ids of the special tokens
    pad_id = property(lambda self: self.index[PAD])
    bos_id = property(lambda self: self.index[BOS])
    eos_id = property(lambda self: self.index[EOS])
    mask_id = property(lambda self: self.index[MASK])
    sep_id = property(lambda self: self.index[SEP])

    def __len__(self) -> int:
        return len(self.tokens)

    def token_id(self, token: str) -> int:
        """The id of one token string; a clear error if it is not in the vocabulary."""
        try:
            return self.index[token]
        except KeyError:
            raise KeyError(
                f"token {token!r} is not in the vocabulary ({len(self)} tokens). Build the "
                f"tokenizer from words that include it (Tokenizer.from_words) or use another word."
            ) from None

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """``text`` -> ids, with ``[BOS]`` first unless ``bos=False``."""
        ids = [self.token_id(t) for t in split_words(text)]
        return [self.bos_id, *ids] if bos else ids

    def decode(self, ids: Iterable[int], joiner: str = " ", skip_special: bool = False) -> str:
        """Ids -> text, tokens joined by ``joiner`` (use ``""`` for Countdown answers)."""
        words = [self.tokens[int(i)] for i in ids]
        if skip_special:
            words = [w for w in words if w not in SPECIAL_TOKENS]
        return joiner.join(words)

    def batch_encode(self, texts: Sequence[str], bos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and right-pad a batch.

        Returns:
            ``(input_ids, attention_mask)``, both ``[batch, pos]`` long tensors; the mask is 1 on
            real tokens and 0 on ``[PAD]``.
        """
        rows = [self.encode(t, bos=bos) for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask

    def to_json(self) -> str:
        """The vocabulary as JSON: ``{"tokens": [...]}``."""
        return json.dumps({"tokens": self.tokens}, indent=0)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        return cls(json.loads(Path(path).read_text(encoding="utf-8"))["tokens"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Tokenizer({len(self)} tokens)"
