"""Deterministic circuitsvis views, with matplotlib fallbacks, and the book's shared colours.

circuitsvis's own ``_repr_html_`` probes the network (``urlopen("http://google.com")``) and,
offline, inlines its 1.3 MB JavaScript bundle into every view; online it imports the bundle
from unpkg. The output therefore depends on where a notebook runs. The views here choose
explicitly, by argument or by the environment variable ``MECHSHIFT_CV_MODE``:

- ``inline`` (default; Jupyter, Colab, VS Code): the bundle is inlined, no network needed.
- ``cdn``: the view imports the bundle from unpkg (small notebooks, the viewer needs internet).
- ``page``: only the ``<div>`` and the ``CircuitsVis.render`` call. The book build sets this
  mode and ships the bundle once per site (``_ext/cv_bundle.py``).

Every view has a matplotlib twin (``*_figure``) for print, PDF, and the day circuitsvis breaks.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MODES = ("inline", "cdn", "page")
"""The ways a view can get the circuitsvis JavaScript bundle."""
MODE_ENV_VAR = "MECHSHIFT_CV_MODE"

# Okabe-Ito colours (readable with colour-blindness), used for the same model everywhere in the book.
ARM_COLOR = "#0072B2"  # blue: the autoregressive model
MDM_COLOR = "#D55E00"  # vermillion: the masked diffusion model post-trained from it
CONTROL_COLOR = "#56B4E9"  # sky blue: ARM-continued, the ARM trained on with its own objective (the control)

_ids = itertools.count()  # makes element ids unique within a kernel, and repeatable from run to run


def resolve_mode(mode: str | None = None) -> str:
    """Return ``mode``, or ``$MECHSHIFT_CV_MODE``, or ``"inline"``, after checking it is one of ``MODES``."""
    chosen = mode or os.environ.get(MODE_ENV_VAR) or "inline"
    if chosen not in MODES:
        raise ValueError(
            f"unknown circuitsvis mode {chosen!r} (from the argument or ${MODE_ENV_VAR}); "
            f"allowed modes: {', '.join(MODES)}"
        )
    return chosen


def bundle_path() -> Path:
    """Path of the circuitsvis JavaScript bundle (defines the global ``CircuitsVis``) that ships in its wheel."""
    return Path(find_spec("circuitsvis").origin).parent / "dist" / "cdn" / "iife.js"


@lru_cache(maxsize=1)
def _bundle_source() -> str:
    # A closing script tag inside inline JavaScript would end the <script> element early.
    return bundle_path().read_text(encoding="utf-8").replace("</script>", "")


def _to_json(value: Any) -> Any:
    """Turn tensors and arrays (at any depth) into nested lists that ``json`` can write."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist()
    if isinstance(value, dict):
        return {key: _to_json(item) for key, item in value.items() if item is not None}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    return value


@dataclass(frozen=True)
class CircuitsVisHTML:
    """One circuitsvis React element with its props; Jupyter displays it through ``_repr_html_``.

    Attributes:
        element: name of the circuitsvis React component, e.g. ``"AttentionPatterns"``.
        props_json: the component's props as a JSON object (``<`` escaped, safe inside ``<script>``).
        mode: one of ``MODES``.
    """

    element: str
    props_json: str
    mode: str

    @classmethod
    def create(cls, element: str, props: dict[str, Any], mode: str | None = None) -> CircuitsVisHTML:
        """Build a view; props may hold tensors or arrays, and ``None`` props are left out."""
        props_json = json.dumps(_to_json(props)).replace("<", "\\u003c")
        return cls(element, props_json, resolve_mode(mode))

    def _repr_html_(self) -> str:
        digest = hashlib.sha256(f"{self.element}{self.props_json}".encode()).hexdigest()[:10]
        uid = f"cv-{digest}-{next(_ids)}"
        div = f'<div id="{uid}" class="mechshift-cv" style="margin: 15px 0;"></div>'
        if self.mode == "cdn":
            from circuitsvis import __version__ as cv_version

            url = f"https://unpkg.com/circuitsvis@{cv_version}/dist/cdn/esm.js"
            script = (
                f'import {{ render, {self.element} }} from "{url}";\n'
                f'render("{uid}", {self.element}, {self.props_json});'
            )
        else:
            script = f'CircuitsVis.render("{uid}", CircuitsVis.{self.element}, {self.props_json});'
            if self.mode == "inline":
                script = f"{_bundle_source()}\n{script}"
        return f'{div}\n<script type="module">\n{script}\n</script>'


def attention_patterns(
    tokens: Sequence[str],
    attention: torch.Tensor | np.ndarray,
    head_labels: Sequence[str] | None = None,
    mode: str | None = None,
) -> CircuitsVisHTML:
    """Interactive attention patterns, one per head, with a head selector.

    Args:
        tokens: ``pos`` token strings.
        attention: ``[n_heads, pos_dest, pos_src]`` attention probabilities (rows sum to 1).
        head_labels: ``n_heads`` labels, e.g. ``["a0.h0", "a0.h1"]``; default ``"Head 0"``, ...
        mode: ``"inline"``, ``"cdn"`` or ``"page"``; default ``$MECHSHIFT_CV_MODE`` or ``"inline"``.
    """
    props = {"tokens": list(tokens), "attention": attention, "headLabels": head_labels}
    return CircuitsVisHTML.create("AttentionPatterns", props, mode)


def colored_tokens(
    tokens: Sequence[str],
    values: torch.Tensor | np.ndarray | Sequence[float],
    mode: str | None = None,
) -> CircuitsVisHTML:
    """Tokens shaded by one value each (hover a token to read its value).

    Args:
        tokens: ``pos`` token strings.
        values: ``[pos]`` values, e.g. a neuron's activation or an attribution score per token.
        mode: ``"inline"``, ``"cdn"`` or ``"page"``; default ``$MECHSHIFT_CV_MODE`` or ``"inline"``.
    """
    return CircuitsVisHTML.create("ColoredTokens", {"tokens": list(tokens), "values": values}, mode)


def attention_patterns_figure(
    tokens: Sequence[str],
    attention: torch.Tensor | np.ndarray,
    head_labels: Sequence[str] | None = None,
    title: str = "Attention patterns",
) -> Figure:
    """Static twin of :func:`attention_patterns`: one heatmap per head, in a row.

    Args:
        tokens: ``pos`` token strings.
        attention: ``[n_heads, pos_dest, pos_src]`` attention probabilities.
        head_labels: ``n_heads`` panel titles; default ``"head 0"``, ...
        title: figure title.
    """
    import matplotlib.pyplot as plt

    weights = np.asarray(_to_json(attention), dtype=float)
    n_heads, n_pos = weights.shape[0], len(tokens)
    labels = list(head_labels) if head_labels is not None else [f"head {h}" for h in range(n_heads)]
    side = 0.35 * n_pos + 1.5
    fig, axes = plt.subplots(1, n_heads, figsize=(side * n_heads, side + 0.5), squeeze=False)
    for ax, pattern, label in zip(axes[0], weights, labels):
        image = ax.imshow(pattern, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_title(label)
        ax.set_xticks(range(n_pos), tokens, rotation=90)
        ax.set_yticks(range(n_pos), tokens)
        ax.set_xlabel("source position (key)")
    axes[0][0].set_ylabel("destination position (query)")
    fig.colorbar(image, ax=axes[0].tolist(), label="attention probability", shrink=0.8)
    fig.suptitle(title)
    return fig


def colored_tokens_figure(
    tokens: Sequence[str],
    values: torch.Tensor | np.ndarray | Sequence[float],
    title: str = "Value per token",
    value_label: str = "value",
) -> Figure:
    """Static twin of :func:`colored_tokens`: tokens in a row, shaded on a diverging scale centred at 0.

    Args:
        tokens: ``pos`` token strings.
        values: ``[pos]`` one value per token.
        title: figure title.
        value_label: colour bar label, with units.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    shades = np.asarray(_to_json(values), dtype=float).reshape(1, -1)
    limit = max(float(np.abs(shades).max()), 1e-12)
    fig, ax = plt.subplots(figsize=(0.6 * len(tokens) + 2.0, 1.6))
    image = ax.imshow(shades, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto")
    for position, token in enumerate(tokens):
        ax.text(position, 0, token, ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(tokens)))
    ax.set_xlabel("position")
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, label=value_label)
    ax.set_title(title)
    return fig


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions_footer() -> str:
    """One line naming the versions a page was built with (markdown and HTML alike).

    Returns e.g. ``"mechshift_lite 0.1.0 · torch 2.13.0+cpu · transformers 5.23.0 · Python 3.11.7"``.
    Display it at the end of a chapter with ``IPython.display.Markdown(versions_footer())``.
    Reads package metadata, so it imports nothing heavy.
    """
    from mechshift_lite import __version__

    return (
        f"mechshift_lite {__version__} · torch {_version('torch')} · "
        f"transformers {_version('transformers')} · Python {platform.python_version()}"
    )
