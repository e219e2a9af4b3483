"""Benchmark: training throughput of the zoo's model, ARM steps vs MDM steps, on a CPU.

One optimizer step = forward + backward + AdamW update on ``batch_size`` training sequences of the
real 50/50 mixture (the same :func:`mechshift_lite.training.loss_on_batch` the zoo uses: ARM steps
trim each batch after its last ``[EOS]``; MDM steps run the full canvas with an annealed mask).
Prints the median time per step over a few repeats, steps/s and tokens/s (tokens = batch x
positions actually run).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/train_throughput.py           # one core, as each zoo worker
    python benchmarks/train_throughput.py --steps 20 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mechshift_lite import tasks
from mechshift_lite.model import Transformer
from mechshift_lite.training import TrainConfig, loss_on_batch, make_optimizer, step_generator
from mechshift_lite.zoo import build


def time_steps(cfg: TrainConfig, model: Transformer, data, mask_id: int, steps: int) -> tuple[float, int]:
    """Seconds per optimizer step, and the tokens run per step (mean)."""
    opt = make_optimizer(model, cfg)
    tokens = 0
    started = time.perf_counter()
    for step in range(steps):
        loss = loss_on_batch(model, cfg, step, data, mask_id)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cfg.objective == "arm":
            rows = torch.randint(len(data.ids), (cfg.batch_size,), generator=step_generator(cfg, step))  # loss_on_batch's first draw
            tokens += cfg.batch_size * (int(data.answer_end[rows].max()) + 1)
        else:
            tokens += cfg.batch_size * data.ids.shape[1]
    return (time.perf_counter() - started) / steps, tokens // steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    tokenizer = tasks.build_tokenizer()
    data = tasks.encode_examples(tokenizer, tasks.training_mixture(2000, seed=0), tasks.CANVAS)
    model_cfg = build.model_config(tokenizer)
    n_params = sum(p.numel() for p in Transformer(model_cfg).parameters())
    print(f"model: {model_cfg.n_layers} layers x d_model {model_cfg.d_model}, {n_params / 1e6:.2f}M parameters; "
          f"batch {args.batch_size} x canvas {tasks.CANVAS}; torch threads {torch.get_num_threads()}")
    for name, objective, attention in (("ARM", "arm", "causal"), ("MDM", "mdm", "bidirectional")):
        cfg = TrainConfig(objective=objective, stage="post", batch_size=args.batch_size, steps=10_000)
        model = Transformer(model_cfg, attention=attention).init_weights(0)
        time_steps(cfg, model, data, tokenizer.mask_id, 2)  # warm-up
        runs = [time_steps(cfg, model, data, tokenizer.mask_id, args.steps) for _ in range(args.repeats)]
        seconds = statistics.median(r[0] for r in runs)
        tokens = statistics.median(r[1] for r in runs)
        print(f"{name} step: {seconds * 1000:7.1f} ms  ({1 / seconds:5.2f} steps/s, {tokens / seconds:8.0f} tokens/s)")


if __name__ == "__main__":
    main()
