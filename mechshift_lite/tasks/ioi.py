"""Indirect Object Identification (IOI), the "local" task (Wang et al. 2022, as used with EAP-IG).

A sentence names two people, then repeats one of them (the subject S); the next word is the
other one, the indirect object IO::

    Then, John and Mary went to the store. John gave a drink to | Mary
          S1       IO                        S2                   answer = IO

The prompt is the sentence without its last word; the answer is IO and the distractor is S.
Templates come in two orders of the first mention: **BABA** (``S1 and IO``) and **ABBA**
(``IO and S1``); 8 sentence frames from Wang et al.'s generator x 2 orders = 16 templates.
Names, places and objects are single tokens of the tokenizer.

**Hold-out.** The split of a problem is decided by a stable hash of its full sentence, i.e. of
(template, IO, S, place, object): train and test never share a sentence, but they share names
and frames (the test asks for the same skill on unseen combinations).

**Clean/corrupted pairs** (:func:`make_pairs`), as in the EAP-IG reference (hannamw/eap-ig-faithfulness):

* clean = the prompt;
* ``corruption="ABC"`` (default): S2 is replaced by a third name C, so no name repeats and the
  cue "the repeated name is not the answer" is gone, while every position keeps its role;
* ``corruption="flipped"``: S2 is replaced by IO, so IO is now the repeated name and the right
  answer flips to S.

Names are single tokens, so clean and corrupted prompts have equal length token by token.
The **metric** is the logit difference ``logit[IO] - logit[S]`` at the last prompt position
(the word "to"), which predicts the answer slot for the ARM and, with the shift, for the MDM.
"""

from __future__ import annotations

import random
from typing import Sequence

from ..tokenizer import Tokenizer, split_words
from .common import Example, TaskPairs, build_pairs, sample_unique

NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Anna", "David", "Emma", "James", "Sarah", "Paul", "Laura", "Kevin",
    "Rachel", "Tom", "Julia", "Mark", "Kate", "Peter", "Lisa", "Adam", "Rose", "Eric", "Clara", "Victor",
)
PLACES: tuple[str, ...] = ("store", "garden", "restaurant", "school", "hospital", "office", "house", "station")
OBJECTS: tuple[str, ...] = ("ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack")

# Sentence frames (Wang et al. 2022's BABA templates that name a place and an object), written
# in BABA order; ``{S1}`` and ``{S2}`` are the two mentions of the subject. The answer follows "to".
_FRAMES: tuple[str, ...] = (
    "Then, {S1} and {IO} went to the {PLACE}. {S2} gave a {OBJECT} to",
    "Then, {S1} and {IO} had a lot of fun at the {PLACE}. {S2} gave a {OBJECT} to",
    "Then, {S1} and {IO} were working at the {PLACE}. {S2} decided to give a {OBJECT} to",
    "Then, {S1} and {IO} were thinking about going to the {PLACE}. {S2} wanted to give a {OBJECT} to",
    "After {S1} and {IO} went to the {PLACE}, {S2} gave a {OBJECT} to",
    "When {S1} and {IO} got a {OBJECT} at the {PLACE}, {S2} decided to give it to",
    "While {S1} and {IO} were commuting to the {PLACE}, {S2} gave a {OBJECT} to",
    "Friends {S1} and {IO} found a {OBJECT} at the {PLACE}. {S2} gave it to",
)
TEMPLATES: tuple[tuple[str, str], ...] = tuple(
    (order, frame if order == "BABA" else frame.replace("{S1} and {IO}", "{IO} and {S1}"))
    for order in ("BABA", "ABBA")
    for frame in _FRAMES
)
"""``(order, template)`` pairs: the 8 frames in BABA order, then the same 8 in ABBA order."""

CORRUPTIONS = ("ABC", "flipped")


def words() -> list[str]:
    """Every word IOI text can contain, in a fixed order (for the shared tokenizer)."""
    text = " ".join(t for _, t in TEMPLATES)
    for field in ("{S1}", "{S2}", "{IO}", "{PLACE}", "{OBJECT}"):
        text = text.replace(field, " ")
    return [*split_words(text), *NAMES, *PLACES, *OBJECTS]


def render(template: int, io: str, s1: str, s2: str, place: str, obj: str) -> str:
    """The prompt of ``TEMPLATES[template]`` with its fields filled in."""
    return TEMPLATES[template][1].format(IO=io, S1=s1, S2=s2, PLACE=place, OBJECT=obj)


def _draw(rng: random.Random, names: Sequence[str]) -> Example:
    """One sentence; IOI draws are cheap, so the split is left to the filter in ``sample_unique``."""
    template = rng.randrange(len(TEMPLATES))
    io, s = rng.sample(list(names), 2)
    place, obj = rng.choice(PLACES), rng.choice(OBJECTS)
    meta = {"template": template, "order": TEMPLATES[template][0], "io": io, "s": s, "place": place, "object": obj}
    return Example(prompt=render(template, io, s, s, place, obj), answer=io, task="ioi", meta=meta)


def generate(n: int, seed: int, split: str = "train", names: Sequence[str] = NAMES) -> list[Example]:
    """``n`` distinct IOI examples of ``split`` (``"train"`` or ``"test"``), reproducible from ``seed``.

    Templates, names, places and objects are drawn uniformly; ``meta`` holds ``template`` (an
    index into :data:`TEMPLATES`), ``order`` ("BABA"/"ABBA"), ``io``, ``s``, ``place``, ``object``.
    ``names`` restricts the names (e.g. to those a HuggingFace tokenizer reads as one token).
    """
    _check_names(names, 2)
    return sample_unique(lambda rng, _split: _draw(rng, names), lambda ex: f"ioi|{ex.prompt} {ex.answer}", n, seed, split)


def _check_names(names: Sequence[str], needed: int) -> None:
    if len(set(names)) != len(names) or len(names) < needed:
        raise ValueError(f"need at least {needed} distinct names; got {list(names)}")


def corrupt(example: Example, corruption: str = "ABC", seed: int = 0, names: Sequence[str] = NAMES) -> Example:
    """The corrupted version of ``example`` (see the module docstring), with its own answer.

    For ``"ABC"`` the third name is drawn from the other ``names`` with a generator seeded by
    ``seed`` and the sentence, so it does not depend on which other examples are in the batch.
    """
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption must be one of {CORRUPTIONS}; got {corruption!r}")
    m = example.meta
    if corruption == "ABC":
        _check_names(names, 3)
        others = [name for name in names if name not in (m["io"], m["s"])]
        s2 = random.Random(f"{seed}|{example.prompt}").choice(others)
        answer = m["io"]  # ambiguous now (no name repeats); IO is kept as the reference answer
    else:
        s2, answer = m["io"], m["s"]
    prompt = render(m["template"], m["io"], m["s"], s2, m["place"], m["object"])
    return Example(prompt=prompt, answer=answer, task="ioi", meta={**m, "s2": s2, "corruption": corruption})


def make_pairs(tokenizer: Tokenizer, examples: Sequence[Example], corruption: str = "ABC", seed: int = 0) -> TaskPairs:
    """Clean/corrupted pairs of IOI ``examples`` for attribution.

    ``answer_ids`` = IO, ``distractor_ids`` = S, read at the last prompt position; the metric
    (:meth:`TaskPairs.metric`) is ``logit[IO] - logit[S]``. ARM inputs are ``[BOS] prompt``
    right-padded to the batch's longest template (with an attention mask); the MDM view is
    :meth:`TaskPairs.to_mdm`.
    """
    for i, ex in enumerate(examples):
        if ex.task != "ioi":
            raise ValueError(f"example {i} is a {ex.task!r} example, not an IOI one")
    corrupted = [corrupt(ex, corruption, seed) for ex in examples]
    return build_pairs(
        tokenizer, examples, corrupted,
        answers=[ex.meta["io"] for ex in examples],
        distractors=[ex.meta["s"] for ex in examples],
    )
