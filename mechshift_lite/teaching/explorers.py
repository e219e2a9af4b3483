"""ipywidgets explorers: turn a knob (N, a decoding step, a layer) and watch the figure change.

They live in Jupyter and Colab; a static page cannot run their callbacks, so the book shows a
static figure beside each and does not execute the explorer cells. Each explorer is an
``ipywidgets.interactive``: its controls are ``.children[:-1]``, and after every redraw
``.result`` holds what was drawn, which makes them testable without a browser.
"""

from __future__ import annotations

from typing import Mapping

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from .. import compare, neurons
from ..scores import Scores
from ..diffusion import Sample
from ..inputs import ModelInputs
from ..model import Transformer
from ..tasks.common import TaskPairs
from ..tokenizer import Tokenizer
from ..viz import ARM_COLOR, MDM_COLOR


def overlap_explorer(scores: Mapping[str, Scores]) -> widgets.interactive:
    """Top-N edge overlap of two models: a slider for N, a dropdown for each model.

    Draws the Jaccard index over all N (log scale) with chance, and marks the chosen N.
    ``.result``: ``(jaccard, chance)`` at the chosen N.
    """
    names = list(scores)
    if len(names) < 2:
        raise ValueError(f"the overlap explorer compares two score sets; got {len(names)}: {names}")
    graph = scores[names[0]].graph
    grid = sorted({round(graph.n_edges ** (i / 24)) for i in range(25)})

    def show(n: int, first: str, second: str) -> tuple[float, float]:
        a, b = scores[first], scores[second]
        value = compare.edge_overlap(a, b, n)
        chance = compare.chance_jaccard(graph.n_edges, n, n)
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.plot(grid, compare.overlap_curve(a, b, grid), marker=".", color=MDM_COLOR, label=f"{first} vs {second}")
        ax.plot(grid, [compare.chance_jaccard(graph.n_edges, m, m) for m in grid], "--", color="#999999", label="chance")
        ax.axvline(n, color="black", linewidth=0.8)
        ax.set(xscale="log", ylim=(0, 1.05), xlabel="N (top edges by |score|)", ylabel="edge Jaccard",
               title=f"N = {n}: Jaccard {value:.2f} (chance {chance:.2f})")
        ax.legend(fontsize=8)
        plt.show()
        plt.close(fig)
        return value, chance

    return widgets.interactive(
        show,
        n=widgets.IntSlider(value=max(1, round(0.05 * graph.n_edges)), min=1, max=graph.n_edges, description="N"),
        first=widgets.Dropdown(options=names, value=names[0], description="model"),
        second=widgets.Dropdown(options=names, value=names[1], description="vs"),
    )


def denoising_explorer(sample: Sample, tokenizer: Tokenizer, row: int = 0) -> widgets.interactive:
    """The canvas of one example at each decoding step of a sample kept with ``output_history=True``.

    ``.result``: the canvas text at the chosen step (``_`` = ``[MASK]``; the slot committed at
    that step in brackets).
    """
    if sample.history is None:
        raise ValueError("the sample has no history: decode with output_history=True")
    history = torch.stack([canvas[row] for canvas in sample.history])      # [steps + 1, P]

    def show(step: int) -> str:
        new = (history[step] != history[step - 1]) if step > 0 else torch.zeros_like(history[0], dtype=torch.bool)
        words = []
        for token_id, is_new in zip(history[step].tolist(), new.tolist()):
            word = "_" if token_id == tokenizer.mask_id else tokenizer.tokens[token_id]
            words.append(f"[{word}]" if is_new else word)
        text = " ".join(words)
        print(f"step {step} of {len(history) - 1}:\n{text}")
        return text

    return widgets.interactive(show, step=widgets.IntSlider(value=0, min=0, max=len(history) - 1, description="step"))


def neuron_explorer(models: Mapping[str, Transformer], pairs: TaskPairs, tokenizer: Tokenizer, n_neurons: int = 16) -> widgets.interactive:
    """MLP activations on one prompt, for each model: sliders for the layer and the example.

    The neurons shown are the first model's ``n_neurons`` most variable ones over all the pairs'
    prompt positions, in the same order for every model. ``.result``: their indices.
    """
    names = list(models)
    first = models[names[0]]
    inputs = {name: ModelInputs.from_pairs(model, pairs, tokenizer) for name, model in models.items()}
    colors = [ARM_COLOR, MDM_COLOR] + ["black"] * len(names)

    def show(layer: int, example: int) -> list[int]:
        length = int(pairs.readout_pos[example]) + 1
        acts = {name: neurons.activations(models[name], x, layer)[:, :length]
                for name, x in inputs.items()}
        top = neurons.top_neurons(acts[names[0]], n_neurons)
        tokens = [tokenizer.tokens[t] for t in pairs.clean_ids[example, :length].tolist()]
        fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.2), sharey=True, squeeze=False)
        for ax, name, color in zip(axes[0], names, colors):
            image = ax.imshow(acts[name][example][:, top].T.numpy(), aspect="auto", cmap="RdBu_r", vmin=-2, vmax=2)
            ax.set_xticks(range(length), tokens, rotation=90, fontsize=7)
            ax.set_title(f"{name}: MLP {layer}", color=color, fontsize=9)
        axes[0][0].set_yticks(range(len(top)), top.tolist(), fontsize=6)
        axes[0][0].set_ylabel("neuron")
        fig.colorbar(image, ax=axes[0].tolist(), label="activation")
        plt.show()
        plt.close(fig)
        return top.tolist()

    return widgets.interactive(
        show,
        layer=widgets.IntSlider(value=0, min=0, max=first.cfg.n_layers - 1, description="layer"),
        example=widgets.IntSlider(value=0, min=0, max=len(pairs) - 1, description="example"),
    )
