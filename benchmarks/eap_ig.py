"""Benchmark: EAP-IG-inputs (m = 5) against the bare cost of the same model, on a CPU.

The bare cost is what any EAP-IG implementation must at least pay: 2 plain forward passes (the
clean and corrupted node outputs) and m forward+backward passes (the gradients along the path).
The bare backward runs through every layer with respect to the activations: all parameters are
frozen except the first block's ``ln1.w``, which every layer's computation depends on. The goal
is EAP-IG <= 1.3 x bare (the reference implementation, hannamw/EAP-IG, measured 8.5 x on the
GPT-2-small shape when this project began).

Times are medians of 3 runs, alternating bare and EAP-IG in one process. Peak memory is measured
in a fresh child process per item, as the growth of the resident set above the model's own
(Linux: the VmHWM high-water mark is reset through ``/proc/self/clear_refs`` first).

Usage::

    python benchmarks/eap_ig.py            # both shapes (the GPT-2-small shape takes a minute or two)
    python benchmarks/eap_ig.py --only zoo
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported: no spinning threads

import argparse
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mechshift_lite as ml  # noqa: E402
from mechshift_lite import ModelConfig, Transformer  # noqa: E402

IG_STEPS = 5
SHAPES = {
    "gpt2-small": (ModelConfig(family="gpt2", d_vocab=50257, n_ctx=1024, d_model=768, n_layers=12, n_heads=12,
                               d_head=64, d_mlp=3072), 8, 16),
    "zoo": (ModelConfig.from_dict(ml.zoo.entry("arm", seed=0)["model_config"]), 8, 40),   # the shipped zoo's shape
}


def metric(logits: torch.Tensor) -> torch.Tensor:
    """Logit difference of two fixed tokens at the last position, ``[batch]``."""
    return logits[:, -1, 1] - logits[:, -1, 2]


def setup(shape: str) -> tuple[Transformer, torch.Tensor, torch.Tensor]:
    cfg, batch, pos = SHAPES[shape]
    model = Transformer(cfg).init_weights(0)
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, cfg.d_vocab, (batch, pos), generator=gen)
    corrupted = torch.randint(0, cfg.d_vocab, (batch, pos), generator=gen)
    return model, clean, corrupted


@contextmanager
def only_first_norm_trainable(model: Transformer):
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    model.blocks[0].ln1.w.requires_grad_(True)
    try:
        yield
    finally:
        model.blocks[0].ln1.w.grad = None
        for p, flag in flags:
            p.requires_grad_(flag)


def bare(model: Transformer, clean: torch.Tensor, corrupted: torch.Tensor) -> None:
    with torch.no_grad():
        model(clean)
        model(corrupted)
    with only_first_norm_trainable(model):
        for _ in range(IG_STEPS):
            metric(model(clean)).sum().backward()


def eap_ig(model: Transformer, clean: torch.Tensor, corrupted: torch.Tensor) -> None:
    ml.attribute(model, clean, corrupted, metric, method="EAP-IG-inputs", ig_steps=IG_STEPS, progress=False)


def exact(model: Transformer, clean: torch.Tensor, corrupted: torch.Tensor) -> None:
    ml.attribute(model, clean, corrupted, metric, method="exact", progress=False)


ITEMS = {"bare": bare, "EAP-IG": eap_ig, "exact": exact}


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def median_times(shape: str, items: list[str], repeats: int = 3) -> dict[str, float]:
    """Median wall time of each item, alternating the items so that load changes hit all alike."""
    args = setup(shape)
    for item in items:  # warm-up
        ITEMS[item](*args)
    times: dict[str, list[float]] = {item: [] for item in items}
    for _ in range(repeats):
        for item in items:
            times[item].append(seconds(ITEMS[item], *args))
    return {item: statistics.median(values) for item, values in times.items()}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_peak_mib(shape: str, item: str) -> None:
    """(In a child process) print the peak resident growth of one run of ``item``, in MiB."""
    args = setup(shape)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    before = _status_kib("VmRSS")
    ITEMS[item](*args)
    print((_status_kib("VmHWM") - before) / 1024)


def peak_mib(shape: str, item: str) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", shape, item], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=list(SHAPES), help="benchmark one shape only")
    parser.add_argument("--child", nargs=2, metavar=("SHAPE", "ITEM"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child_peak_mib(*options.child)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, m = {IG_STEPS}, medians of 3\n")
    header = f"{'shape':<11} {'batch x pos':>11} {'bare s':>8} {'EAP-IG s':>9} {'ratio':>6} " \
             f"{'bare MiB':>9} {'EAP-IG MiB':>11} {'exact s':>8}"
    print(header)
    print("-" * len(header))
    for shape in [options.only] if options.only else list(SHAPES):
        _, batch, pos = SHAPES[shape]
        items = ["bare", "EAP-IG"] + (["exact"] if shape == "zoo" else [])
        times = median_times(shape, items)
        memory = {item: peak_mib(shape, item) for item in ("bare", "EAP-IG")}
        exact_time = f"{times['exact']:8.2f}" if "exact" in times else f"{'-':>8}"
        print(f"{shape:<11} {f'{batch} x {pos}':>11} {times['bare']:8.3f} {times['EAP-IG']:9.3f} "
              f"{times['EAP-IG'] / times['bare']:6.2f} {memory['bare']:9.0f} {memory['EAP-IG']:11.0f} {exact_time}",
              flush=True)


if __name__ == "__main__":
    main()
