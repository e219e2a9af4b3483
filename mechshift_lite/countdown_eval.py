"""Score a model on Countdown problems from outside this project (the HKUNLP / Dream format).

The format: one JSON object a line, ``{"input": "15,44,79,50", "output": "44-15=29,79-29=50"}``:
the operands then the target, and one reference answer (not needed to score: any correct chain
counts, :func:`mechshift_lite.tasks.countdown.check`). Each problem is decoded with the model's own
decoder (greedy for an ARM, the confidence sampler for an MDM, as :mod:`mechshift_lite.accuracy`
does), and the accuracy comes with a 95% Wilson interval.

Problems the zoo's tokenizer cannot represent (operands outside 1..99, targets outside 10..99,
other than 3 operands) are skipped and counted by reason, never silently dropped. A line that is
not a problem at all (malformed JSON, a missing field, a non-integer) is an error naming the line.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import accuracy
from .model import Transformer
from .tasks import countdown
from .tasks.common import Example, split_of
from .tokenizer import Tokenizer

N_OPERANDS = 3


@dataclass(frozen=True)
class Problem:
    """One problem of the file: its 1-based line number, operands and target."""

    line: int
    numbers: tuple[int, ...]
    target: int

    @property
    def in_training_split(self) -> bool:
        """Whether this project's training data may contain the problem (its split is ``"train"``)."""
        return split_of(countdown.problem_key(self.numbers, self.target)) == "train"

    def example(self) -> Example:
        """The problem as an :class:`Example`; its answer is a one-token placeholder, which the
        decoders never read (they write the answer region themselves)."""
        return Example(prompt=countdown.prompt_text(self.numbers, self.target), answer="0", task="countdown",
                       meta={"numbers": list(self.numbers), "target": self.target})


@dataclass
class ProblemFile:
    """What :func:`read_problems` found: the usable problems and the skipped lines, by reason."""

    problems: list[Problem]
    skipped: Counter = field(default_factory=Counter)


def _fail(path: Path, line: int, what: str) -> ValueError:
    return ValueError(f"{path} line {line}: {what} (expected a JSON object like "
                      '{"input": "15,44,79,50", "output": "44-15=29,79-29=50"})')


def _skip_reason(numbers: list[int], target: int) -> str | None:
    if len(numbers) != N_OPERANDS:
        return f"{len(numbers)} operands (the zoo's models take {N_OPERANDS})"
    if not all(1 <= x <= countdown.MAX_OPERAND for x in numbers):
        return f"an operand outside 1..{countdown.MAX_OPERAND}"
    low, high = countdown.TARGET_RANGE
    if not low <= target <= high:
        return f"a target outside {low}..{high}"
    return None


def read_problems(path: str | Path) -> ProblemFile:
    """Read a Countdown file in the HKUNLP / Dream format (blank lines are ignored).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: naming the line, for malformed JSON, a missing ``input`` field or a value in
            ``input`` that is not an integer.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no Countdown file at {path}")
    found = ProblemFile([])
    for line_no, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise _fail(path, line_no, f"malformed JSON ({error.msg})") from None
        if not isinstance(record, dict) or "input" not in record:
            raise _fail(path, line_no, "missing field 'input'")
        if not isinstance(record["input"], str):
            raise _fail(path, line_no, f"'input' must be a string of comma-separated integers, got {record['input']!r}")
        fields = [part.strip() for part in record["input"].split(",")]
        if len(fields) < 2 or not all(part.lstrip("-").isdigit() for part in fields):
            raise _fail(path, line_no, f"'input' must be comma-separated integers (operands, then the target), got {record['input']!r}")
        *numbers, target = (int(part) for part in fields)
        reason = _skip_reason(numbers, target)
        if reason is not None:
            found.skipped[reason] += 1
            continue
        found.problems.append(Problem(line_no, tuple(numbers), target))
    return found


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% by default); ``(0, 1)`` when ``n = 0``."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Evaluation:
    """The scored problems and the summary :func:`evaluate` returns."""

    rows: list[dict[str, Any]]
    skipped: Counter

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def n_correct(self) -> int:
        return sum(row["correct"] for row in self.rows)

    def summary(self) -> dict[str, Any]:
        low, high = wilson_interval(self.n_correct, self.n)
        in_train = [row for row in self.rows if row["in_training_split"]]
        return {
            "n_scored": self.n, "n_correct": self.n_correct,
            "accuracy": self.n_correct / self.n if self.n else None, "ci95": [low, high],
            "n_skipped": sum(self.skipped.values()), "skipped": dict(self.skipped),
            "n_in_training_split": len(in_train),
            "accuracy_held_out_only": (sum(r["correct"] for r in self.rows if not r["in_training_split"])
                                       / (self.n - len(in_train)) if self.n > len(in_train) else None),
        }


def evaluate(model: Transformer, tokenizer: Tokenizer, found: ProblemFile, mode: str | None = None) -> Evaluation:
    """Decode and score every problem of ``found``; ``mode`` ``"arm"``/``"mdm"`` (None: from the model's attention)."""
    examples = [problem.example() for problem in found.problems]
    answers = accuracy.countdown_answers(model, tokenizer, examples, mode) if examples else []
    rows = [
        {"line": p.line, "input": ",".join(map(str, (*p.numbers, p.target))), "answer": answer,
         "correct": countdown.check(list(p.numbers), p.target, answer), "in_training_split": p.in_training_split}
        for p, answer in zip(found.problems, answers)
    ]
    return Evaluation(rows, found.skipped)


def load_model_file(path: str | Path, tokenizer: Tokenizer, mode: str | None = None) -> tuple[Transformer, str]:
    """A checkpoint outside the zoo: ``path`` is a safetensors file of this package's :class:`Transformer`
    inside a training run directory (``final.safetensors``, ``snapshots/step*.safetensors`` or
    ``ckpt-*/weights.safetensors``), whose ``config.json`` gives the model config and the objective.

    Returns:
        the model in float32 eval mode, and its mode (``"arm"`` or ``"mdm"``; ``mode`` overrides
        the run's objective).

    Raises:
        FileNotFoundError: no such file, or no run ``config.json`` beside it or one folder up.
        ValueError: the config does not fit the tokenizer, or the weights do not fit the config.
    """
    from safetensors.torch import load_file

    from .config import ModelConfig

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    configs = [folder / "config.json" for folder in (path.parent, path.parent.parent) if (folder / "config.json").is_file()]
    if not configs:
        raise FileNotFoundError(f"no training-run config.json beside {path} or one folder up: a model file is read "
                                "with the config of the run that wrote it (mechshift-lite zoo train)")
    record = json.loads(configs[0].read_text())
    if "model" not in record:
        raise ValueError(f"{configs[0]} is not a training-run config (it has no 'model' entry)")
    cfg = ModelConfig.from_dict(record["model"])
    if cfg.d_vocab != len(tokenizer):
        raise ValueError(f"{path}: its config has d_vocab={cfg.d_vocab} but the zoo's tokenizer has {len(tokenizer)} tokens; "
                         "this model was not trained on this project's tasks")
    mode = mode or record.get("train", {}).get("objective")
    if mode not in ("arm", "mdm"):
        raise ValueError(f"cannot tell whether {path} is an ARM or an MDM; pass mode='arm' or 'mdm' (--mode)")
    model = Transformer(cfg, attention="bidirectional" if mode == "mdm" else "causal")
    try:
        model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit the config in {configs[0]}: {str(error).splitlines()[0]}") from None
    return model.eval(), mode
