"""The pools of the experiment: task pairs, the common-correct pool, its blocks, and the attribution of every zoo model.

For each task, one set of held-out clean/corrupted pairs is drawn. The **common-correct pool**
keeps the pairs on which *every* model compared (ARM, MDM and ARM-continued of every seed) puts
the clean answer token first at the readout position (on Countdown, also the corrupted answer's
token on the corrupted prompt): the decision the attribution explains. Countdown problems are
target-dependent by default: no rule that ignores the target predicts their first answer token,
and the report states how often such rules would (:func:`target_blind_rates`).
All models are then attributed on exactly these pairs, split into ``n_chunks`` fixed blocks of
examples, so the report can bootstrap over seeds *and* examples (:mod:`.bootstrap`).

Each model reads its own view of the pairs (ARM: the prompt, causal; MDM: the masked canvas at a
diffusion step, bidirectional): :meth:`mechshift_lite.inputs.ModelInputs.from_pairs`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import zoo
from ..attribution import attribute_blocks
from ..inputs import ModelInputs
from ..model import Transformer
from ..scores import Scores
from ..tasks import countdown, ioi
from ..tasks.common import TaskPairs
from ..tokenizer import Tokenizer, split_words
from ..zoo import KINDS
from .workers import call, run_jobs_with_bar

TASKS: tuple[str, ...] = ("ioi", "countdown")
COUNTDOWN_SELECTIONS: tuple[str, ...] = ("target-dependent", "any")
X_DECISION = "countdown-x"
"""Key of Countdown's second decision (the first digit of the intermediate result X,
:func:`~mechshift_lite.tasks.countdown.make_x_pairs`): ARMs teacher-forced on equation 1 up to its
``=``, each MDM at the step where its own decoding commits X (:func:`x_decision_view`). Its pool
is drawn from the Countdown problems; only the final models are attributed on it."""
BOTH_DECISIONS: tuple[str, ...] = ("countdown", X_DECISION)
"""Tasks whose pool keeps a pair only when every model gets both its decisions right (clean prompt:
the clean answer's first token; corrupted prompt: the corrupted answer's). IOI's corrupted prompt
(three different names) has no right answer, so its pool asks for the clean decision only."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that decides the numbers of the report (its cache key includes all of it).

    Attributes:
        n_problems: held-out problems drawn per task, before the common-correct filter (as the
            paper's pool of 500; Countdown's is ``n_problems_countdown`` when that is not None).
        n_problems_countdown: held-out Countdown problems drawn, if not ``n_problems``.
        max_pool: the pool attributed is the first ``max_pool`` common-correct pairs in draw order
            (None: all of them). It keeps the report's cost fixed whatever the zoo's accuracy: IOI
            keeps nearly every problem, and a better zoo keeps more Countdown ones. The report
            states the survivors and the pairs attributed, and the split-half ceilings show
            whether the pool is large enough (:meth:`.statistics.Analysis.reliability`).
        n_chunks: fixed blocks of examples (the bootstrap resamples blocks).
        method, ig_steps: the attribution method (the paper: EAP-IG).
        edge_fraction: top-N as a fraction of the graph's edges (the paper keeps 1000 edges of a
            7B model's ~10^6, i.e. 0.1%; a 479-edge toy needs a larger fraction to be non-trivial).
        component_fraction: top-K as a fraction of the components (heads and MLPs).
        mdm_step: the diffusion step of the headline MDM attribution (0 = answer fully masked).
        data_seed: seed of the held-out problems.
        countdown_selection: ``"target-dependent"``: only problems whose first answer token no
            target-blind rule predicts (:func:`~mechshift_lite.tasks.countdown.target_dependent`), so
            the attributed decision needs the target; ``"any"``: every pairable problem.
    """

    n_problems: int = 500
    n_problems_countdown: int | None = None
    max_pool: int | None = 160
    n_chunks: int = 8
    method: str = "EAP-IG-inputs"
    ig_steps: int = 5
    edge_fraction: float = 0.05
    component_fraction: float = 0.2
    mdm_step: int = 0
    data_seed: int = 2026
    countdown_selection: str = "target-dependent"

    def __post_init__(self) -> None:
        if self.max_pool is not None and (isinstance(self.max_pool, bool) or not isinstance(self.max_pool, int)
                                          or self.max_pool < self.n_chunks):
            raise ValueError(f"max_pool must be None or a whole number of pairs, at least n_chunks={self.n_chunks}; "
                             f"got {self.max_pool!r}")
        if self.countdown_selection not in COUNTDOWN_SELECTIONS:
            raise ValueError(f"countdown_selection must be one of {COUNTDOWN_SELECTIONS}; got {self.countdown_selection!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def problems(self, task: str) -> int:
        """Held-out problems drawn for ``task``."""
        return self.n_problems_countdown if task == "countdown" and self.n_problems_countdown is not None else self.n_problems


def task_pairs(task: str, tokenizer: Tokenizer, n: int, seed: int, countdown_selection: str = "any") -> TaskPairs:
    """``n`` held-out clean/corrupted pairs of ``task`` (IOI: ABC corruption; Countdown: another
    target, among the problems ``countdown_selection`` keeps, see :class:`ExperimentConfig`)."""
    if task == "ioi":
        return ioi.make_pairs(tokenizer, ioi.generate(n, seed, "test"))
    if task == "countdown":
        keep = countdown.target_dependent if countdown_selection == "target-dependent" else countdown.pairable
        problems = [ex for ex in countdown.generate(COUNTDOWN_OVERDRAW[countdown_selection] * n, seed, "test") if keep(ex)][:n]
        if len(problems) < n:
            raise ValueError(f"only {len(problems)} of the drawn Countdown problems pass {countdown_selection!r}; ask for fewer")
        return countdown.make_pairs(tokenizer, problems, seed=seed)
    raise ValueError(f"unknown task {task!r}; tasks: {TASKS}")


COUNTDOWN_OVERDRAW = {"any": 2, "target-dependent": 10}
"""Problems generated per pair wanted: about 74% are pairable, about 17% target-dependent."""


def target_blind_rates(pairs: TaskPairs) -> dict[str, float]:
    """Share of Countdown ``pairs`` whose clean first answer token each target-blind rule
    (:func:`~mechshift_lite.tasks.countdown.blind_first_tokens`) predicts. No such rule gets both
    decisions of a pair: the two prompts share the operands and want different first tokens."""
    hits = {rule: 0 for rule in countdown.BLIND_RULES}
    for ex in pairs.examples:
        predicted = countdown.blind_first_tokens(ex.meta["numbers"])
        for rule in hits:
            hits[rule] += predicted[rule] == split_words(ex.answer)[0]
    return {rule: hit / len(pairs) for rule, hit in hits.items()}


def correct(model: Transformer, pairs: TaskPairs, tokenizer: Tokenizer, both: bool = False) -> Tensor:
    """``[n]`` bool: the model's top token at the readout is the clean answer token (``both``: and,
    on the corrupted prompt, the corrupted answer's token, i.e. it follows the prompt it reads)."""
    return correct_on(model, ModelInputs.from_pairs(model, pairs, tokenizer), both)


def for_decisions(model: Transformer) -> Transformer:
    """A float64 copy of ``model`` for the report's discrete choices: which pairs a model gets right
    (:func:`correct_on`) and which slot a confidence decoding commits (:func:`decoded_views`,
    :func:`x_decision_view`). Such a choice compares two numbers that can be nearly equal. In
    float32 another CPU's kernels (AVX2 against AVX-512) round them differently, and a few
    commits flipped: the same zoo gave two reports. In float64 the rounding is about 10^8 times
    smaller, so a choice flips only where two numbers agree to 15 digits. The scores and metrics of
    the views stay float32 (they are continuous: rounding moves them by about 1e-7)."""
    return copy.deepcopy(model).to(torch.float64)


@torch.no_grad()
def correct_on(model: Transformer, inputs: ModelInputs, both: bool = False) -> Tensor:
    """:func:`correct` on a view already built (``inputs``: the pairs as ``model`` reads them),
    decided in float64 (:func:`for_decisions`)."""
    model = for_decisions(model)
    right = inputs.answer_is_top(inputs.run(model))
    if both:
        flipped = dataclasses.replace(inputs, clean_ids=inputs.corrupted_ids, answer_ids=inputs.distractor_ids)
        right &= flipped.answer_is_top(flipped.run(model))
    return right


def chunk_rows(n: int, n_chunks: int) -> list[Tensor]:
    """Split ``range(n)`` into ``n_chunks`` contiguous blocks of (almost) equal size."""
    if n < n_chunks:
        raise ValueError(
            f"the common-correct pool has {n} examples, fewer than n_chunks={n_chunks}; "
            "draw more problems (n_problems) or use fewer chunks"
        )
    return list(torch.arange(n).tensor_split(n_chunks))


def attribute_chunks(model: Transformer, pairs: TaskPairs, tokenizer: Tokenizer, cfg: ExperimentConfig, step: int = 0,
                     corrupted_commits: str = "clean") -> Tensor:
    """``[n_chunks, n_src, n_dst]`` scores of each block of examples (their mean over blocks,
    weighted by block size, is the score over the whole pool), from one attribution of the whole
    pool (:func:`~mechshift_lite.attribution.attribute_blocks`); ``step``, ``corrupted_commits``:
    the MDM's canvas (:meth:`~mechshift_lite.inputs.ModelInputs.from_pairs`)."""
    return attribute_view(model, ModelInputs.from_pairs(model, pairs, tokenizer, step, corrupted_commits), cfg)


def attribute_view(model: Transformer, inputs: ModelInputs, cfg: ExperimentConfig) -> Tensor:
    """:func:`attribute_chunks` of a view already built (``inputs``: the pool as ``model`` reads it)."""
    blocks = torch.zeros(inputs.n_examples, dtype=torch.long)
    for block, rows in enumerate(chunk_rows(inputs.n_examples, cfg.n_chunks)):
        blocks[rows] = block
    return attribute_blocks(model, inputs, inputs.metric(), blocks, method=cfg.method, ig_steps=cfg.ig_steps)


def step0_views(models: dict[str, Transformer], trajectory: dict[str, Transformer], pool: TaskPairs, tokenizer: Tokenizer,
                cfg: ExperimentConfig) -> dict[str, ModelInputs]:
    """The views of the pool that need no decoding, by model key (:func:`model_key`): each model of
    ``models`` (an MDM at ``cfg.mdm_step``) and each post-training checkpoint of ``trajectory`` (step 0)."""
    views = {key: ModelInputs.from_pairs(model, pool, tokenizer, cfg.mdm_step if key.startswith("mdm/") else 0)
             for key, model in models.items()}
    views.update({key: ModelInputs.from_pairs(model, pool, tokenizer) for key, model in trajectory.items()})
    return views


def decoded_views(mdm: Transformer, pool: TaskPairs, tokenizer: Tokenizer, seed: int,
                  diffusion_steps: Iterable[int]) -> dict[str, ModelInputs]:
    """The views of the pool that seed ``seed``'s MDM must decode, by model key: the canvas at each
    diffusion step > 0 with both corrupted canvases (one clean decoding:
    :meth:`~mechshift_lite.inputs.ModelInputs.diffusion_views`), and each example just before it
    commits the explained slot (:meth:`~mechshift_lite.inputs.ModelInputs.before_commit`), decoded in
    float64 (:func:`for_decisions`). Empty when no step is > 0. The expensive part of the views: :func:`collect` runs it per seed on the workers."""
    steps = [k for k in diffusion_steps if k > 0]
    if not steps:
        return {}
    mdm = for_decisions(mdm)
    views = {model_key("mdm", seed, diffusion_step=k, copied_commits=commits == "clean"): view
             for (k, commits), view in ModelInputs.diffusion_views(mdm, pool, tokenizer, steps).items()}
    views[model_key("mdm", seed, before_commit=True)] = ModelInputs.before_commit(mdm, pool, tokenizer)[0]
    return views


def x_decision_pairs(drawn: TaskPairs, tokenizer: Tokenizer, seed: int) -> TaskPairs:
    """The pairs of :data:`X_DECISION` for the Countdown problems of ``drawn`` that have one
    (:func:`~mechshift_lite.tasks.countdown.x_pairable`), with the same corrupted targets."""
    return countdown.make_x_pairs(tokenizer, [ex for ex in drawn.examples if countdown.x_pairable(ex, seed)], seed=seed)


def x_decision_view(model: Transformer, pairs: TaskPairs, tokenizer: Tokenizer) -> ModelInputs:
    """``model``'s view of :data:`X_DECISION` pairs: an ARM reads the teacher-forced prefix
    (:meth:`~mechshift_lite.inputs.ModelInputs.from_pairs`), an MDM the canvas one step before its
    own decoding commits X's first digit (:meth:`~mechshift_lite.inputs.ModelInputs.before_commit`, decoded
    in float64: :func:`for_decisions`)."""
    if model.attention == "causal":
        return ModelInputs.from_pairs(model, pairs, tokenizer)
    return ModelInputs.before_commit(for_decisions(model), pairs, tokenizer)[0]


def combine(chunks: Tensor, sizes: Tensor, graph, method: str) -> Scores:
    """Scores of the whole pool from block scores ``[n_chunks, n_src, n_dst]`` and block sizes."""
    weights = sizes.double() / sizes.sum()
    return Scores((chunks * weights[:, None, None]).sum(0), graph, method, int(sizes.sum()))


@dataclass
class TaskData:
    """Attribution of every model on one task's common-correct pool.

    Attributes:
        pairs: the pool attributed (the first ``max_pool`` clean/corrupted pairs every model gets right).
        n_drawn: pairs drawn before the filter; n_common_correct: pairs that pass it (before the
            ``max_pool`` cut); accuracy: per model key, share of drawn pairs right
            (on Countdown both decisions of the pair, :data:`BOTH_DECISIONS`).
        target_blind: Countdown only: ``{"drawn"|"pool": {rule: share}}`` of :func:`target_blind_rates`.
        chunk_sizes: ``[n_chunks]`` examples per block.
        scores: model key (``"arm/0"``, ``"mdm/1"``, ``"mdm/0@step2000"``, ``"mdm/0#k3"`` for
            diffusion step 3) -> ``[n_chunks, n_src, n_dst]`` block scores, for the views :func:`attributed` keeps.
        views: model key -> the :class:`~mechshift_lite.inputs.ModelInputs` it was attributed on
            (:func:`step0_views`, :func:`decoded_views`), so later analyses read the same canvases without decoding again.
    """

    pairs: TaskPairs
    n_drawn: int
    n_common_correct: int
    accuracy: dict[str, float]
    chunk_sizes: Tensor
    scores: dict[str, Tensor]
    target_blind: dict[str, dict[str, float]] | None = None
    views: dict[str, ModelInputs] = dataclasses.field(default_factory=dict)


def model_key(kind: str, seed: int, step: int | None = None, diffusion_step: int = 0, copied_commits: bool = False,
              before_commit: bool = False) -> str:
    """``"mdm/0"``, ``"mdm/0@step2000"`` (a post-training checkpoint), ``"mdm/0#k3"`` (diffusion step 3,
    the corrupted canvas holding the model's own commits), ``"mdm/0#k3~copied"`` (the corrupted
    canvas copying the clean run's commits: built to measure the leak, never attributed),
    ``"mdm/0#pre"`` (each example one step before its decoding commits the explained slot,
    :meth:`~mechshift_lite.inputs.ModelInputs.before_commit`)."""
    key = f"{kind}/{seed}" + (f"@step{step}" if step is not None else "")
    if before_commit:
        return key + "#pre"
    return key + (f"#k{diffusion_step}" if diffusion_step else "") + ("~copied" if copied_commits and diffusion_step else "")


def attributed(key: str) -> bool:
    """Whether the report attributes the view ``key``: all but the copied-commit canvases, whose
    corrupted run reads the clean target (:meth:`~mechshift_lite.inputs.ModelInputs.from_pairs`)."""
    return not key.endswith("~copied")


def _task_data(drawn: TaskPairs, right: dict[str, Tensor], cfg: ExperimentConfig, blind: bool) -> tuple[TaskData, Tensor]:
    """The :class:`TaskData` of the pairs ``drawn``, given which of them each model gets ``right``
    (no views or scores yet; ``blind``: with the target-blind rates), and the rows of ``drawn`` it
    keeps: the first ``cfg.max_pool`` common-correct pairs."""
    common = torch.stack(list(right.values())).all(0).nonzero()[:, 0]
    rows = common[:cfg.max_pool]
    pool = drawn.select(rows)
    sizes = torch.tensor([len(r) for r in chunk_rows(len(pool), cfg.n_chunks)])
    accuracy = {key: float(r.float().mean()) for key, r in right.items()}
    blind = {"drawn": target_blind_rates(drawn), "pool": target_blind_rates(pool)} if blind else None
    return TaskData(pool, len(drawn), len(common), accuracy, sizes, {}, blind), rows


def zoo_seeds(zoo_dir=zoo.ZOO_DIR) -> list[int]:
    """Seeds for which the zoo has all three final models (ARM, MDM, ARM-continued)."""
    finals = [e for e in zoo.available(zoo_dir) if e["final"]]
    return sorted(set.intersection(*({e["seed"] for e in finals if e["kind"] == k} for k in KINDS)))


def trajectory_steps(seed: int = 0, zoo_dir=zoo.ZOO_DIR) -> list[int]:
    """Post-training steps of the intermediate MDM checkpoints of ``seed``."""
    return sorted(e["step"] for e in zoo.available(zoo_dir) if e["kind"] == "mdm" and e["seed"] == seed and not e["final"])


def collect(
    cfg: ExperimentConfig,
    seeds: Iterable[int] | None = None,
    diffusion_steps: Iterable[int] = (0, 4, 8, 16, 24),
    post_training_steps: Iterable[int] | None = None,
    zoo_dir=zoo.ZOO_DIR,
    progress: bool = True,
    workers: int = 1,
) -> dict[str, TaskData]:
    """Run every attribution the report needs. Returns task -> :class:`TaskData`.

    ``post_training_steps``: the intermediate MDM checkpoints of the first seed to attribute
    (None: all that the zoo has, :func:`trajectory_steps`). ``workers``: processes the
    decodings (one job per task and seed) and the attributions (one per view) are spread over
    (:func:`~.workers.run_jobs`; the numbers do not depend on it).
    """
    tokenizer = zoo.tokenizer(zoo_dir)
    seeds = list(zoo_seeds(zoo_dir) if seeds is None else seeds)
    if not seeds:
        raise ValueError("the zoo has no seed with all of arm, mdm and arm-continued")
    if post_training_steps is None:
        post_training_steps = trajectory_steps(seeds[0], zoo_dir)
    diffusion_steps = tuple(diffusion_steps)
    models = {model_key(k, s): zoo.load(k, s, zoo_dir=zoo_dir) for s in seeds for k in KINDS}
    trajectory = {model_key("mdm", seeds[0], step): zoo.load("mdm", seeds[0], step, zoo_dir=zoo_dir)
                  for step in post_training_steps}
    out, drawn, decodings = {}, {}, {}
    for task in tqdm(TASKS, desc="pools", disable=not progress):
        drawn[task] = task_pairs(task, tokenizer, cfg.problems(task), cfg.data_seed, cfg.countdown_selection)
        right = {key: correct(model, drawn[task], tokenizer, both=task in BOTH_DECISIONS) for key, model in models.items()}
        out[task] = _task_data(drawn[task], right, cfg, blind=task == "countdown")[0]
        out[task].views = step0_views(models, trajectory, out[task].pairs, tokenizer, cfg)
        decodings.update({(task, s): (decoded_views, models[model_key("mdm", s)], out[task].pairs, tokenizer, s, diffusion_steps)
                          for s in seeds})
    x_drawn = x_decision_pairs(drawn["countdown"], tokenizer, cfg.data_seed)
    decodings.update({(X_DECISION, key): (x_decision_view, model, x_drawn, tokenizer) for key, model in models.items()})
    decoded = run_jobs_with_bar(call, decodings, workers, "decoding canvases", progress)
    for task in TASKS:
        for s in seeds:
            out[task].views.update(decoded[task, s])
    x_views = {key: decoded[X_DECISION, key] for key in models}
    out[X_DECISION], rows = _task_data(x_drawn, {key: correct_on(models[key], view, both=True) for key, view in x_views.items()}, cfg,
                                       blind=False)
    # the MDMs' decoded canvases are cut to the pool; the ARMs' views are rebuilt on it (no decoding, trimmed padding)
    out[X_DECISION].views = {key: view.select(rows) if view.attention != "causal" else
                             x_decision_view(models[key], out[X_DECISION].pairs, tokenizer) for key, view in x_views.items()}
    jobs = {}
    for task, data in out.items():
        for key, view in filter(lambda item: attributed(item[0]), data.views.items()):
            model = trajectory[key] if key in trajectory else models[key.split("#")[0]]   # "mdm/0#k4": mdm/0's canvas
            jobs[task, key] = (model, view, cfg)
    for (task, key), block_scores in run_jobs_with_bar(attribute_view, jobs, workers, "attributing", progress).items():
        out[task].scores[key] = block_scores
    return out

