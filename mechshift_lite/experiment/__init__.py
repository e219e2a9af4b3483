"""The mechanism-shift experiment in miniature, on the zoo: one module per step, read top to bottom.

* :mod:`.pools`: the task pairs, the common-correct pool, its blocks, and the attribution of every model;
* :mod:`.bootstrap`: the one bootstrap (seeds, then examples within them);
* :mod:`.statistics`: score statistics (overlaps with their baselines, depth, curves, steps, trajectory);
* :mod:`.analyses`: the analyses that run the models (lens, neurons, ablations);
* :mod:`.verdicts`: the paper's directions decided by the numbers, the summary and the table;
* :mod:`.cache`, :mod:`.output`: the report's cache key, and its output folder;
* :mod:`.report`: :func:`~.report.compute` and :func:`~.report.report`, which run all of it (``ml.report``).
"""

from .pools import (
    TASKS, ExperimentConfig, TaskData, attribute_chunks, chunk_rows, collect, combine, correct, model_key, task_pairs,
    trajectory_steps, zoo_seeds,
)

__all__ = ["TASKS", "ExperimentConfig", "TaskData", "attribute_chunks", "chunk_rows", "collect", "combine", "correct",
           "model_key", "task_pairs", "trajectory_steps", "zoo_seeds"]
