"""Countdown, the "global planning" task: reach a target from n numbers with + - * /.

Rules (Stream of Search, Gandhi et al. 2024): a step combines two available numbers into one with
``a+b``, ``a*b``, larger minus smaller (never negative) or larger divided by smaller when it divides
exactly; every number is used exactly once and the last result is the target. Format (Ye et al.,
HKUNLP Dream's ``cd3/cd4`` data)::

    prompt  "15,44,79,50 [SEP]"        the n operands, then the target
    answer  "44-15=29,79-29=50"        n-1 equations, comma-separated (any correct chain;
                                       the generator's is "79+15=94,94-44=50", see below)

The tokenizer reads numbers digit by digit, so ``44`` is two tokens. Operands are 1..99, targets
10..99 (always two digits). With 3 operands a training sequence takes at most 35 tokens and fits
the canvas of 40; 4 operands need up to about 55 (pass a longer ``length`` to ``encode_examples``).

**Canonical answers.** :func:`solve` returns the first solution of a depth-first search in a fixed
order: operations ``+ * - /``, and for each operation the pairs ``(i, j)`` of the current list in
index order; the result is appended at the end of the list, and each equation is written larger
operand first. The answer is therefore a deterministic function of the prompt, which a model can
learn exactly. (Trying operations before pairs makes the first pair depend on the target more
often than the pair-first order: with pairs first, pair (0, 1) starts almost every answer, and only
about a third of the problems would have a corrupted target for :func:`make_pairs`; this order
gives about three quarters.)

**Hold-out.** :func:`generate` draws a target, then operands until the target is reachable (as SoS
does). The split is a stable hash of (sorted operands, target), so a reordering of a test problem
can never appear in training.

**Correctness** (:func:`check`) follows HKUNLP Dream's ``cd_metric``, made strict: each equation must
read ``a op b = c`` exactly, be true in integers, use two numbers available at that point (a
multiset that starts as the operands and gains each result), the last result must be the target,
and every operand must be used exactly once. (``cd_metric`` only balances the multiset at the end
and accepts a longer left side such as ``1+2+3=6``; no well-formed chain is affected.)

**Clean/corrupted pairs** (:func:`make_pairs`). The corrupted prompt keeps the operands and changes
the target to another reachable two-digit target T' whose canonical answer starts with a different
token; T' is drawn among all such targets by a generator seeded with ``seed`` and the problem.
Why: the only thing that changes is the number at the *end* of the prompt, yet it decides the *first*
answer token (the first digit of the first equation's larger operand, i.e. which numbers to combine
first). Reading that token at the last prompt position (``[SEP]``) therefore isolates the planning
step: the first move can only be chosen by looking ahead to where the chain must end, so the model
must combine the target with all the operands before writing anything. Both prompts have equal token
length, so every position keeps its role. About a quarter of the problems have no such T' (every
reachable two-digit target starts the same way); :func:`make_pairs` refuses them, :func:`pairable`
filters them out. The **metric** is the logit difference, at
the last prompt position, between the clean answer's first token and the corrupted answer's first
token (positive when the model follows the clean target). A whole-answer log-probability would need
the answer in the input (teacher forcing for the ARM, a partly unmasked canvas for the MDM), which
changes what is attributed, so we keep the one-slot metric that both models are read on identically.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from itertools import combinations
from typing import Iterator, Sequence

import torch

from ..tokenizer import SEP, Tokenizer, split_words
from .common import Example, TaskPairs, build_pairs, sample_unique, split_of

OPERATIONS = ("+", "*", "-", "/")
"""The operations, in the order the search tries them (Stream of Search's order)."""

MAX_OPERAND = 99
TARGET_RANGE = (10, 99)

_NUMBER = r"(0|[1-9]\d*)"
EQUATION = re.compile(rf"{_NUMBER}([+\-*/]){_NUMBER}={_NUMBER}")


def words() -> list[str]:
    """Every token Countdown text can contain except ``[SEP]`` (a special token), in a fixed order."""
    return [*"0123456789", *OPERATIONS, "=", ","]


def _check_problem(numbers: Sequence[int], target: int) -> None:
    if len(numbers) < 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in numbers):
        raise ValueError(f"numbers must be at least two non-negative integers; got {numbers!r}")
    if not isinstance(target, int) or isinstance(target, bool) or target < 0:
        raise ValueError(f"target must be a non-negative integer; got {target!r}")


def _combine(a: int, b: int) -> list[tuple[str, int]]:
    """``(op, result)`` of every allowed step on ``a`` and ``b`` (larger operand first), in
    :data:`OPERATIONS` order: Stream of Search's ``combine_nums``."""
    hi, lo = (a, b) if a >= b else (b, a)
    results = [("+", hi + lo), ("*", hi * lo), ("-", hi - lo)]
    if lo != 0 and hi % lo == 0:
        results.append(("/", hi // lo))
    return results


def _steps(nums: tuple[int, ...]) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every allowed first step on ``nums``, in the canonical order.

    Yields ``(equation, numbers after the step)``: the two operands removed, the result appended.
    Order: operations ``+ * - /``, and for each one the pairs ``(i, j)``, ``i < j``, in index order.
    """
    steps = [(op, i, j, value) for i, j in combinations(range(len(nums)), 2) for op, value in _combine(nums[i], nums[j])]
    steps.sort(key=lambda step: OPERATIONS.index(step[0]))  # stable: pairs keep index order within an operation
    for op, i, j, value in steps:
        equation = f"{max(nums[i], nums[j])}{op}{min(nums[i], nums[j])}={value}"
        yield equation, nums[:i] + nums[i + 1 : j] + nums[j + 1 :] + (value,)


def _solutions(nums: tuple[int, ...]) -> dict[int, tuple[str, ...]]:
    """``{result: equations}`` for every result of combining all of ``nums``, the first one the
    depth-first search in canonical order finds (a subtree keeps its own first, so the order holds)."""
    if len(nums) == 1:
        return {nums[0]: ()}
    found: dict[int, tuple[str, ...]] = {}
    for equation, after in _steps(nums):
        for result, later in _solutions(after).items():
            if result not in found:
                found[result] = (equation, *later)
    return found


def solutions(numbers: Sequence[int]) -> dict[int, str]:
    """The canonical answer for every reachable target of ``numbers``: ``{target: answer}``."""
    _check_problem(numbers, 0)
    return {result: ",".join(equations) for result, equations in _solutions(tuple(numbers)).items()}


def reachable(numbers: Sequence[int]) -> set[int]:
    """Every target ``numbers`` can reach: the keys of :func:`solutions`, found without building answers (faster)."""
    nums = tuple(numbers)
    if len(nums) == 1:
        return {nums[0]}
    found: set[int] = set()
    for i, j in combinations(range(len(nums)), 2):
        rest = nums[:i] + nums[i + 1 : j] + nums[j + 1 :]
        for _, value in _combine(nums[i], nums[j]):
            found |= reachable(rest + (value,)) if rest else {value}
    return found


def solve(numbers: Sequence[int], target: int) -> str | None:
    """The canonical answer (first solution of the fixed-order search), or None if ``target`` is unreachable."""
    _check_problem(numbers, target)
    return solutions(numbers).get(target)


def check(numbers: Sequence[int], target: int, answer: str) -> bool:
    """Is ``answer`` a correct solution? (the strict ``cd_metric`` semantics of the module docstring)."""
    _check_problem(numbers, target)
    available = Counter(numbers)
    result = None
    for equation in answer.split(","):
        match = EQUATION.fullmatch(equation)
        if match is None:
            return False
        a, op, b, c = int(match[1]), match[2], int(match[3]), int(match[4])
        if not is_true(a, op, b, c):
            return False
        available.subtract([a, b])
        if available[a] < 0 or available[b] < 0:
            return False
        available[c] += 1
        result = c
    available[target] -= 1
    return result == target and all(count == 0 for count in available.values())


def is_true(a: int, op: str, b: int, c: int) -> bool:
    """Is ``a op b = c`` arithmetically true? (exact: ``a / b = c`` means ``a == b * c``)"""
    if op == "/":
        return b != 0 and a == b * c
    return {"+": a + b, "-": a - b, "*": a * b}[op] == c


TWO_EQUATIONS = re.compile(r"(\d+)([+\-*/])(\d+)=(\d+),(\d+)([+\-*/])(\d+)=(\d+)")
_GROUP_ROLES = {1: "eq. 1 operands", 3: "eq. 1 operands", 4: "eq. 1 result", 5: "eq. 2 operands",
                7: "eq. 2 operands", 8: "eq. 2 result (the target)"}
SLOT_ROLES = ("after [EOS]", "[EOS]", "eq. 2 result (the target)", "symbols + - * / = ,", "eq. 1 operands",
              "eq. 2 operands", "eq. 1 result")
"""The roles :func:`slot_roles` gives the slots of a two-equation answer region."""


def slot_roles(answer: str, n_slots: int) -> list[str] | None:
    """Role (one of :data:`SLOT_ROLES`) of each of the ``n_slots`` answer-region slots, one character
    per slot, then ``[EOS]`` and padding; None unless ``answer`` has the form ``a?b=c,d?e=f`` and fits."""
    match = TWO_EQUATIONS.fullmatch(answer)
    if match is None or len(answer) + 1 > n_slots:
        return None
    roles = ["symbols + - * / = ,"] * len(answer)
    for group, role in _GROUP_ROLES.items():
        roles[match.start(group) : match.end(group)] = [role] * (match.end(group) - match.start(group))
    return roles + ["[EOS]"] + ["after [EOS]"] * (n_slots - len(answer) - 1)


def prompt_text(numbers: Sequence[int], target: int) -> str:
    """``"15,44,79,50 [SEP]"``."""
    return ",".join(str(x) for x in (*numbers, target)) + f" {SEP}"


def _example(numbers: Sequence[int], target: int, answer: str) -> Example:
    meta = {"numbers": list(numbers), "target": target}
    return Example(prompt=prompt_text(numbers, target), answer=answer, task="countdown", meta=meta)


def generate(n: int, seed: int, split: str = "train", n_operands: int = 3) -> list[Example]:
    """``n`` distinct Countdown problems of ``split`` with their canonical answers, reproducible from ``seed``.

    Each problem: a target uniform in 10..99, then ``n_operands`` numbers uniform in 1..99, redrawn
    until the target is reachable. ``meta`` holds ``numbers`` and ``target``.
    """
    if n_operands < 2:
        raise ValueError(f"n_operands must be at least 2; got {n_operands}")

    def draw(rng: random.Random, wanted: str) -> Example:
        target = rng.randint(*TARGET_RANGE)
        while True:
            numbers = [rng.randint(1, MAX_OPERAND) for _ in range(n_operands)]
            # the split test is cheap: do it first, and search only problems of the wanted split
            if split_of(problem_key(numbers, target)) == wanted and target in reachable(numbers):
                return _example(numbers, target, solve(numbers, target))

    return sample_unique(draw, lambda ex: problem_key(ex.meta["numbers"], ex.meta["target"]), n, seed, split)


def problem_key(numbers: Sequence[int], target: int) -> str:
    """A problem's identity for the hold-out: operand order does not make a new problem."""
    return f"countdown|{sorted(numbers)}|{target}"


def corrupted_target(numbers: Sequence[int], target: int, seed: int = 0) -> int | None:
    """A target T' for the corrupted prompt, or None when there is none.

    T' has as many digits as ``target`` (equal prompt length), is reachable from ``numbers``, and
    its canonical answer's first token differs from the clean one's. Drawn uniformly among all
    such targets with a generator seeded by ``seed`` and the problem.
    """
    answers = solutions(numbers)
    if target not in answers:
        raise ValueError(f"target {target} cannot be reached from {list(numbers)}: no clean answer to contrast")
    first = split_words(answers[target])[0]
    digits = len(str(target))
    candidates = [
        t for t, answer in sorted(answers.items())
        if len(str(t)) == digits and split_words(answer)[0] != first
    ]
    if not candidates:
        return None
    return random.Random(f"{seed}|{prompt_text(numbers, target)}").choice(candidates)


def pairable(example: Example) -> bool:
    """Does ``example`` have a corrupted target (:func:`corrupted_target`)? Filter with it before :func:`make_pairs`."""
    return corrupted_target(example.meta["numbers"], example.meta["target"]) is not None


BLIND_RULES: tuple[str, ...] = ("largest operand", "most common")
"""Target-blind rules for the first answer token (:func:`blind_first_tokens`)."""


def blind_first_tokens(numbers: Sequence[int]) -> dict[str, str]:
    """The first answer token that each target-blind rule predicts from the operands alone.

    ``"largest operand"``: the first digit of the largest operand; ``"most common"``: the commonest
    first token of the canonical answers over every reachable two-digit target (ties: the smallest
    token). A decision that such a rule gets right needs no look at the target.
    """
    firsts = Counter(split_words(answer)[0] for target, answer in solutions(numbers).items() if len(str(target)) == 2)
    commonest = min(firsts, key=lambda token: (-firsts[token], token))
    return {"largest operand": str(max(numbers))[0], "most common": commonest}


def target_dependent(example: Example) -> bool:
    """Does ``example``'s first answer token need the target? It is pairable (:func:`pairable`) and
    its canonical answer's first token differs from every target-blind rule's (:func:`blind_first_tokens`).

    About 17% of drawn problems qualify; on them no rule that ignores the target gets the first move.
    """
    if not pairable(example):
        return False
    first = split_words(example.answer)[0]
    return first not in blind_first_tokens(example.meta["numbers"]).values()


def corrupt(example: Example, seed: int = 0) -> Example:
    """``example`` with its target replaced by :func:`corrupted_target`, with the canonical answer."""
    numbers, target = example.meta["numbers"], example.meta["target"]
    new_target = corrupted_target(numbers, target, seed)
    if new_target is None:
        raise ValueError(
            f"no corrupted target for {example.prompt!r}: every reachable target with "
            f"{len(str(target))} digits starts its canonical answer with the same token. Drop such "
            f"examples first (keep those where countdown.pairable(example) is True)."
        )
    return _example(numbers, new_target, solutions(numbers)[new_target])


def make_pairs(tokenizer: Tokenizer, examples: Sequence[Example], seed: int = 0) -> TaskPairs:
    """Clean/corrupted pairs of Countdown ``examples`` for attribution (see the module docstring).

    ``answer_ids`` = first token of the clean answer, ``distractor_ids`` = first token of the
    corrupted answer, both read at the last prompt position (``[SEP]``). Every example's answer
    must be the canonical one (:func:`solve`), the one the models are trained on. Operands have one
    or two digits, so ARM inputs are right-padded to the longest prompt, with an attention mask.
    """
    for i, ex in enumerate(examples):
        if ex.task != "countdown":
            raise ValueError(f"example {i} is a {ex.task!r} example, not a Countdown one")
        canonical = solve(ex.meta["numbers"], ex.meta["target"])
        if canonical is None:
            raise ValueError(f"example {i} has no solution: {ex.prompt!r}")
        if ex.answer != canonical:
            raise ValueError(
                f"example {i} answer {ex.answer!r} is not the canonical solution {canonical!r}; "
                "pairs contrast canonical answers (countdown.solve)"
            )
    corrupted = [corrupt(ex, seed) for ex in examples]
    return build_pairs(
        tokenizer, examples, corrupted,
        answers=[split_words(ex.answer)[0] for ex in examples],
        distractors=[split_words(ex.answer)[0] for ex in corrupted],
    )


# ----- the second decision: the intermediate result -----------------------------------------------
def _first_equation(answer: str) -> re.Match:
    match = EQUATION.match(answer)
    if match is None:
        raise ValueError(f"answer {answer!r} does not start with an equation a?b=c")
    return match


def equation_prefix(answer: str) -> str:
    """Equation 1 of ``answer`` up to its ``=`` (``"44-15=29,79-29=50"`` -> ``"44-15="``)."""
    return answer[: _first_equation(answer).start(4)]


def intermediate(answer: str) -> str:
    """Equation 1's result X of ``answer``, as text (``"44-15=29,79-29=50"`` -> ``"29"``)."""
    return _first_equation(answer)[4]


def x_pairable(example: Example, seed: int = 0) -> bool:
    """Can ``example`` be a pair of the intermediate-result decision (:func:`make_x_pairs`)? It has a
    corrupted target (:func:`pairable`), the two answers' equation-1 prefixes have equally many
    tokens (so X starts at the same slot), and the two X start with different digits."""
    if not pairable(example):
        return False
    corrupted = corrupt(example, seed)
    clean_prefix, corrupted_prefix = equation_prefix(example.answer), equation_prefix(corrupted.answer)
    return (len(split_words(clean_prefix)) == len(split_words(corrupted_prefix))
            and intermediate(example.answer)[0] != intermediate(corrupted.answer)[0])


def make_x_pairs(tokenizer: Tokenizer, examples: Sequence[Example], seed: int = 0) -> TaskPairs:
    """Pairs of the second Countdown decision: the first digit of equation 1's result X.

    The corrupted prompt is :func:`make_pairs`'s (another target, the same operands). Each prompt is
    followed by its own answer's equation-1 prefix (``"15,44,79,50 [SEP]44-15="``), teacher-forced:
    the ARM reads it and is read at its ``=``, as when it writes X. ``answer_start`` is the end of
    the prompt, so an MDM's canvas masks the prefix and the MDM is read where *it* commits X
    (:meth:`~mechshift_lite.inputs.ModelInputs.before_commit`). ``answer_ids`` / ``distractor_ids``:
    the first digit of the clean / the corrupted X. Refuses examples :func:`x_pairable` rejects.
    """
    bad = [i for i, ex in enumerate(examples) if ex.task != "countdown" or not x_pairable(ex, seed)]
    if bad:
        raise ValueError(f"example {bad[0]} has no intermediate-result pair (prefixes of different lengths, the same "
                         f"first digit of X, or no corrupted target): keep those where countdown.x_pairable(example) is True")
    pairs = [(ex, corrupt(ex, seed)) for ex in examples]
    forced = lambda ex: _forced(ex, equation_prefix(ex.answer))
    x_pairs = build_pairs(
        tokenizer, [forced(ex) for ex, _ in pairs], [forced(c) for _, c in pairs],
        answers=[intermediate(ex.answer)[0] for ex, _ in pairs],
        distractors=[intermediate(c.answer)[0] for _, c in pairs],
    )
    prompt_lengths = torch.tensor([len(tokenizer.encode(ex.prompt, bos=True)) for ex, _ in pairs])
    return dataclasses.replace(x_pairs, answer_start=prompt_lengths)


def _forced(example: Example, prefix: str) -> Example:
    """``example`` with ``prefix`` moved from the start of its answer to the end of its prompt."""
    return dataclasses.replace(example, prompt=example.prompt + prefix, answer=example.answer[len(prefix):])
