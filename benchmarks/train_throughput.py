"""Benchmark: training throughput of the zoo's model on a CPU (or ``--device``), old MDM step vs faster ones.

One optimizer step = forward + backward + AdamW update on ``batch_size`` training sequences of the
real 50/50 mixture, through the same :func:`mechshift_lite.training.loss_on_batch` the zoo uses.
Measured paths (all in one run, their repeats interleaved, so a machine whose load changes
affects them alike):

* ``ARM``: the ARM step (each batch trimmed after its last ``[EOS]``);
* ``MDM old``: the shipped MDM recipe: the whole 40-slot canvas, float32;
* ``MDM trim``: ``pad_tail="trim"``: the canvas ends after the batch's longest sequence;
* ``MDM bf16``: ``precision="bfloat16"``: the forward under bfloat16 autocast;
* ``MDM trim+bf16``: both.

Prints the median time per step over the repeats, steps/s, **canvas tokens/s** (batch x 40 per step:
the same training data per step on every path, the basis of the issue's 11.7k figure) and the
positions actually run per second, and each MDM path's speed-up over ``MDM old``.

Measured on this project's 2-core CPU, one thread, the machine shared (medians of 5 x 10 steps,
2026-12-02): trim x1.26, bf16 x1.54, trim+bf16 x1.74 over ``MDM old`` (absolute times move 2-3x
with the load; the ratios are steadier). The recipe study (``scripts/recipe_study.py``) found
bf16 alone gives the shipped step's result after 1500 steps, while the trimmed tail costs
decoded chains (``ends_at_target`` 54% against 96%): only bf16 is a speed-up at the same result.
Computing ``model.Norm`` with ``F.layer_norm`` would bring bf16 to about x2.0 (measured by patching).

bf16 depends on the CPU: on a 2-core AMD EPYC (Zen 3: AVX2, no AVX512, no BF16 instructions), one
thread, 2026-12-02 (5 steps x 3 repeats, the machine shared with two training jobs), ``MDM old``
took 303 ms per step and ``MDM bf16`` 2329 ms (x0.13): without hardware bfloat16 the autocast
path is emulated. That is why the 0.2.0 zoo recipe trains in float32 everywhere. ``model.Norm``
now calls ``F.layer_norm`` (the same function as HuggingFace's ``nn.LayerNorm``): x1.07 per
float32 MDM step on that machine (477 against 513 ms, interleaved, under load).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py           # one core, as each zoo worker
    python benchmarks/train_throughput.py --steps 20 --repeats 5 --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from mechshift_lite import tasks
from mechshift_lite.model import Transformer
from mechshift_lite.training import TrainConfig, check_device, draw_rows, loss_on_batch, make_optimizer, step_generator
from mechshift_lite.zoo import build

PATHS: dict[str, dict] = {
    "ARM": {"objective": "arm"},
    "MDM old": {"objective": "mdm"},
    "MDM trim": {"objective": "mdm", "pad_tail": "trim"},
    "MDM bf16": {"objective": "mdm", "precision": "bfloat16"},
    "MDM trim+bf16": {"objective": "mdm", "pad_tail": "trim", "precision": "bfloat16"},
}


def positions_run(cfg: TrainConfig, data, step: int) -> int:
    """Positions the step's forward pass runs: ``batch x`` its canvas (``loss_on_batch``'s first draws)."""
    if cfg.objective == "mdm" and cfg.pad_tail == "mask":
        return cfg.batch_size * data.ids.shape[1]
    rows = draw_rows(cfg, step, data, step_generator(cfg, step))
    return cfg.batch_size * (int(data.answer_end[rows].max()) + 1)


def time_steps(cfg: TrainConfig, model: Transformer, data, mask_id: int, first: int, steps: int,
               device: torch.device) -> tuple[float, int]:
    """Seconds per optimizer step, and the positions run per step (mean), over ``steps`` steps from ``first``."""
    opt = make_optimizer(model, cfg)
    positions = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for step in range(first, first + steps):
        loss = loss_on_batch(model, cfg, step, data, mask_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        positions += positions_run(cfg, data, step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps, positions // steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (default %(default)s)")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS), help="which paths to time")
    args = parser.parse_args()
    if min(args.steps, args.repeats, args.batch_size) < 1:
        parser.error("--steps, --repeats and --batch-size must be positive")
    device = check_device(args.device)

    tokenizer = tasks.build_tokenizer()
    data = tasks.encode_examples(tokenizer, tasks.training_mixture(2000, seed=0), tasks.CANVAS)
    model_cfg = build.model_config(tokenizer)
    n_params = sum(p.numel() for p in Transformer(model_cfg).parameters())
    print(f"model: {model_cfg.n_layers} layers x d_model {model_cfg.d_model}, {n_params / 1e6:.2f}M parameters; "
          f"batch {args.batch_size} x canvas {tasks.CANVAS}; device {device}; torch threads {torch.get_num_threads()}")
    setups = {}
    for name in args.paths:
        options = PATHS[name]
        # anneal over 10k steps and time from step 1000: the annealed (not yet bidirectional) attention of early post-training
        cfg = dataclasses.replace(TrainConfig(stage="post", batch_size=args.batch_size, steps=10_000), **options)
        model = Transformer(model_cfg, attention="causal" if cfg.objective == "arm" else "bidirectional").init_weights(0)
        model.to(device)
        time_steps(cfg, model, data, tokenizer.mask_id, 0, 2, device)  # warm-up
        setups[name] = (cfg, model)
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in setups}
    for repeat in range(args.repeats):  # interleaved: load changes hit every path alike
        for name, (cfg, model) in setups.items():
            runs[name].append(time_steps(cfg, model, data, tokenizer.mask_id, 1000 + repeat * args.steps, args.steps, device))
    old = statistics.median(r[0] for r in runs["MDM old"]) if "MDM old" in runs else None
    for name, measured in runs.items():
        seconds = statistics.median(r[0] for r in measured)
        positions = statistics.median(r[1] for r in measured)
        canvas = args.batch_size * tasks.CANVAS
        ratio = f"   x{old / seconds:4.2f} vs MDM old" if old is not None and name.startswith("MDM") else ""
        print(f"{name:14s} step: {seconds * 1000:7.1f} ms  ({1 / seconds:5.2f} steps/s, {canvas / seconds:8.0f} canvas tokens/s, "
              f"{positions / seconds:8.0f} positions run/s){ratio}")


if __name__ == "__main__":
    main()
