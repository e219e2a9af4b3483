"""Figures of the report (matplotlib). Each takes the report dict (:func:`mechshift_lite.experiment.report.report`),
except :func:`draw_circuit`, which draws one circuit on its graph.

ARM, MDM and the ARM-continued control keep the same colours across the book (:mod:`mechshift_lite.viz`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .scores import Scores
from .circuits import Circuit, FaithfulnessCurve
from .graph import Graph, parse_destination, parse_source
from .viz import ARM_COLOR, CONTROL_COLOR, MDM_COLOR

SEED_COLOR = "#009E73"   # green: two ARMs of different seeds
CHANCE_COLOR = "#999999"
TASK_TITLES = {"ioi": "IOI (local)", "countdown": "Countdown (global)"}
KIND_COLORS = {"arm": ARM_COLOR, "mdm": MDM_COLOR, "arm-continued": CONTROL_COLOR}
KIND_LABELS = {"arm": "ARM", "mdm": "MDM", "arm-continued": "ARM-continued"}


def _err(stat: dict) -> tuple[float, list[list[float]]]:
    """Bar height and error-bar lengths; a side of the interval that lies on the other side of
    the point estimate (possible for non-smooth statistics, see experiment.bootstrap.hierarchical_bootstrap)
    is drawn with length 0."""
    return stat["mean"], [[max(0.0, stat["mean"] - stat["lo"])], [max(0.0, stat["hi"] - stat["mean"])]]


def overlap_bars(result: dict, metric: str = "edge") -> Figure:
    """The Table-1 analogue as bars: ARM-MDM beside its baselines and chance, per task."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars = [("arm_mdm", "ARM vs MDM", MDM_COLOR), ("arm_armc", "ARM vs ARM-continued", CONTROL_COLOR),
            ("arm_arm", "ARM vs ARM (other seed)", SEED_COLOR)]
    width = 0.2
    for t, task in enumerate(result["tasks"]):
        o = result["tasks"][task]["overlap"]
        for b, (key, label, color) in enumerate(bars):
            stat = o.get(f"{metric}_{key}")
            if stat is None:
                continue
            mean, err = _err(stat)
            ax.bar(t + (b - 1) * width, mean, width, yerr=err, color=color, capsize=3, label=label if t == 0 else None)
        ax.hlines(o[f"chance_{metric}"], t - 1.7 * width, t + 1.7 * width, colors=CHANCE_COLOR, linestyles="--",
                  label="chance" if t == 0 else None)
    ax.set_xticks(range(len(result["tasks"])), [TASK_TITLES[t] for t in result["tasks"]])
    what = "edge Jaccard of top-N edges" if metric == "edge" else "shared fraction of top-K components"
    ax.set_ylabel(what)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"How much of the ARM's circuit survives\n({what}; mean and 95% CI over seeds and examples)", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def overlap_curve(result: dict) -> Figure:
    """Edge overlap as a function of N (top-N edges), per task, with the baselines."""
    fig, axes = plt.subplots(1, len(result["tasks"]), figsize=(9, 3.4), sharey=True)
    for ax, task in zip(axes, result["tasks"]):
        c = result["tasks"][task]["curve"]
        frac = [n / result["graph"]["n_edges"] for n in c["n"]]
        for key, label, color in (("arm_mdm", "ARM vs MDM", MDM_COLOR), ("arm_armc", "ARM vs ARM-continued", CONTROL_COLOR),
                                  ("arm_arm", "ARM vs ARM (other seed)", SEED_COLOR)):
            stats = c.get(key)
            if not stats or stats[0] is None:
                continue
            ax.plot(frac, [s["mean"] for s in stats], marker="o", color=color, label=label)
            ax.fill_between(frac, [s["lo"] for s in stats], [s["hi"] for s in stats], color=color, alpha=0.2)
        ax.plot(frac, c["chance"], "--", color=CHANCE_COLOR, label="chance")
        ax.set_xscale("log")
        ax.set_title(TASK_TITLES[task])
        ax.set_xlabel("N as a fraction of all edges (log scale)")
    axes[0].set_ylabel("edge Jaccard of top-N edges")
    axes[0].legend(fontsize=8)
    fig.suptitle("Overlap depends on N: the whole curve, not one point", fontsize=10)
    fig.tight_layout()
    return fig


def layer_distribution(result: dict) -> Figure:
    """Share of attribution mass by source layer, ARM vs MDM vs ARM-continued, per task."""
    fig, axes = plt.subplots(1, len(result["tasks"]), figsize=(9, 3.4), sharey=True)
    for ax, task in zip(axes, result["tasks"]):
        d = result["tasks"][task]["depth"]
        labels = d["layer_labels"]
        width = 0.27
        for i, kind in enumerate(("arm", "mdm", "arm-continued")):
            xs = [x + (i - 1) * width for x in range(len(labels))]
            ax.bar(xs, d[f"layers_{kind}"], width, color=KIND_COLORS[kind], label=KIND_LABELS[kind])
        ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_title(TASK_TITLES[task])
        ax.set_xlabel("layer of the edge's source node")
    axes[0].set_ylabel("share of |attribution| mass")
    axes[0].legend(fontsize=8)
    fig.suptitle("Where in depth attribution lives (mean over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def early_share(result: dict) -> Figure:
    """Early share (:func:`mechshift_lite.compare.early_share`) per model and task, with CIs and its chance level."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.25
    for t, task in enumerate(result["tasks"]):
        d = result["tasks"][task]["depth"]
        for i, kind in enumerate(("arm", "mdm", "arm-continued")):
            mean, err = _err(d[f"early_share_{kind}"])
            ax.bar(t + (i - 1) * width, mean, width, yerr=err, capsize=3, color=KIND_COLORS[kind], label=KIND_LABELS[kind] if t == 0 else None)
        ax.hlines(d["early_share_chance"], t - 1.5 * width, t + 1.5 * width, color=CHANCE_COLOR, linestyle=":",
                  label="chance" if t == 0 else None)
    ax.set_xticks(range(len(result["tasks"])), [TASK_TITLES[t] for t in result["tasks"]])
    ax.set_ylabel("early share of |attribution|")
    ax.set_title("Front-loading: attribution on edges from the input and the early layers", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _stat_line(ax: Axes, xs, stats: list[dict], color: str, label: str, style: str = "-", marker: str = "o") -> None:
    ax.plot(xs, [s["mean"] for s in stats], linestyle=style, marker=marker, color=color, label=label)
    ax.fill_between(xs, [s["lo"] for s in stats], [s["hi"] for s in stats], color=color, alpha=0.2)


def diffusion_steps(result: dict) -> Figure:
    """Stability of the MDM's circuit across diffusion steps (overlap with step 0), per metric."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, (key, label) in zip(axes, (("component_overlap", "top-K components"), ("edge_overlap", "top-N edges (Jaccard)"))):
        for task, style, marker in zip(result["tasks"], ("-", "--"), ("o", "s")):   # all MDM circuits: one colour
            s = result["tasks"][task]["diffusion_steps"]
            _stat_line(ax, s["steps"], s[key], MDM_COLOR, TASK_TITLES[task], style, marker)
            ax.set_xticks(s["steps"])
        ax.set_xlabel("diffusion step (tokens committed)")
        ax.set_title(label, fontsize=9)
    axes[0].axhline(0.9, color=CHANCE_COLOR, linestyle=":", label="the paper's 90% (components)")
    axes[0].set_ylabel("overlap with step 0")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8)
    fig.suptitle("Does the MDM's circuit change while it denoises? (mean, 95% CI over seeds and examples)", fontsize=10)
    fig.tight_layout()
    return fig


def trajectory(result: dict) -> Figure:
    """ARM-MDM edge overlap along post-training (seed 0), against the ARM-continued level."""
    fig, axes = plt.subplots(1, len(result["tasks"]), figsize=(9, 3.2), sharey=True)
    for ax, task in zip(axes, result["tasks"]):
        tr = result["tasks"][task]["trajectory"]
        xs = list(range(len(tr["steps"])))
        _stat_line(ax, xs, tr["edge_arm_mdm"], MDM_COLOR, "ARM vs MDM checkpoint")
        ax.axhline(tr["edge_arm_armc"]["mean"], color=CONTROL_COLOR, linestyle="--", label="ARM vs ARM-continued (final)")
        ax.set_xticks(xs, [str(s) for s in tr["steps"]], rotation=30)
        ax.set_xlabel("post-training step")
        ax.set_title(TASK_TITLES[task])
    axes[0].set_ylabel("edge Jaccard of top-N edges")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8)
    fig.suptitle("Rewiring along post-training (seed 0; CI over examples)", fontsize=10)
    fig.tight_layout()
    return fig


def ablation(result: dict) -> Figure:
    """Accuracy drop when position-mean ablating each model's top early components vs layer-matched random ones."""
    fig, axes = plt.subplots(1, len(result["tasks"]), figsize=(9, 3.2), sharey=True)
    models = (("arm", "arm", "ARM"), ("mdm", "mdm", "MDM"), ("arm-continued", "armc", "ARMc"))
    for ax, task in zip(axes, result["tasks"]):
        a = result["tasks"][task]["ablation"]
        for i, (kind, key, _) in enumerate(models):
            for j, (which, hatch) in enumerate((("targeted", None), ("matched", "//"))):
                mean, err = _err(a[f"drop_{which}_{key}"])
                ax.bar(2 * i + j * 0.8, mean, 0.7, yerr=err, capsize=3, color=KIND_COLORS[kind], hatch=hatch,
                       edgecolor="black" if hatch else None)
        ax.set_xticks([2 * i + j * 0.8 for i in range(len(models)) for j in (0, 1)],
                      [f"{label}\n{which}" for _, _, label in models for which in ("top early", "matched")], fontsize=8)
        ax.set_title(TASK_TITLES[task])
    axes[0].set_ylabel("accuracy drop on the pool")
    a = result["tasks"]["ioi"]["ablation"]
    fig.suptitle(f"Position-mean ablating {a['n_ablated']} components of the first {a['early_cutoff']} layer(s)", fontsize=10)
    fig.tight_layout()
    return fig


def lens_summary(result: dict) -> Figure:
    """Distinct winning components and lens entropy of the top-K components, ARM vs MDM."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (key, label) in zip(axes, (("winners", "distinct winning components"), ("entropy_top", "lens entropy of top-K (nats)"))):
        for t, task in enumerate(result["tasks"]):
            lens = result["tasks"][task]["lens"]
            for i, kind in enumerate(("arm", "mdm")):
                mean, err = _err(lens[f"{key}_{kind}"])
                ax.bar(t + (i - 0.5) * 0.35, mean, 0.35, yerr=err, capsize=3, color=KIND_COLORS[kind], label=KIND_LABELS[kind] if t == 0 else None)
        ax.set_xticks(range(len(result["tasks"])), [TASK_TITLES[t] for t in result["tasks"]])
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    fig.suptitle("Sharp specialisation (ARM) or distributed integration (MDM)?", fontsize=10)
    fig.tight_layout()
    return fig


def neuron_heatmaps(result: dict) -> Figure:
    """Category profile of the 16 most variable early-layer neurons, ARM vs MDM (seed 0)."""
    n = result["neurons"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.0))
    for ax, kind in zip(axes, ("arm", "mdm")):
        h = n["heatmap"][kind]
        image = ax.imshow(h["profile"], aspect="auto", cmap="viridis")
        ax.set_yticks(range(len(n["categories"])), n["categories"])
        ax.set_xticks(range(len(h["neurons"])), h["neurons"], rotation=90, fontsize=7)
        ax.set_xlabel(f"neuron of MLP {n['layer']}")
        ax.set_title(KIND_LABELS[kind], color=KIND_COLORS[kind])
        fig.colorbar(image, ax=ax, label="mean activation")
    fig.suptitle("Early-layer neurons: mean activation per token category", fontsize=10)
    fig.tight_layout()
    return fig


PAIRED_ROWS = (
    ("edge_armc_minus_mdm", "(ARM-ARMc) - (ARM-MDM), top-N Jaccard", MDM_COLOR),
    ("weighted_armc_minus_mdm", "(ARM-ARMc) - (ARM-MDM), weighted Jaccard", MDM_COLOR),
    ("spearman_armc_minus_mdm", "(ARM-ARMc) - (ARM-MDM), Spearman", MDM_COLOR),
    ("component_armc_minus_mdm", "(ARM-ARMc) - (ARM-MDM), top-K components", MDM_COLOR),
    ("depth_mdm_minus_arm", "mean edge depth, MDM - ARM", MDM_COLOR),
    ("depth_armc_minus_arm", "mean edge depth, ARMc - ARM (control)", CONTROL_COLOR),
)
"""The per-task paired differences of :func:`paired_differences` (keys of ``result['tasks'][task]['paired']``)."""


def paired_differences(result: dict) -> Figure:
    """Every paired difference of :data:`PAIRED_ROWS` per task, mean and 95% interval, against zero."""
    fig, axes = plt.subplots(1, len(result["tasks"]), figsize=(10, 3.4), sharey=True)
    for ax, task in zip(axes, result["tasks"]):
        paired = result["tasks"][task]["paired"]
        for y, (key, _, color) in enumerate(PAIRED_ROWS):
            stat = paired[key]
            ax.errorbar([stat["mean"]], [y], xerr=_err(stat)[1], fmt="o", color=color, capsize=3, label=key)
        ax.axvline(0, color=CHANCE_COLOR, linestyle="--")
        ax.set_title(f"{TASK_TITLES[task]} ({paired['n_seed_resamples']} distinct seed resamples)", fontsize=9)
        ax.set_xlabel("paired difference (mean, 95% CI)")
    axes[0].set_yticks(range(len(PAIRED_ROWS)), [label for _, label, _ in PAIRED_ROWS], fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("Paired differences: each seed's difference on the same resampled examples", fontsize=10)
    fig.tight_layout()
    return fig


def depth_profiles(result: dict) -> Figure:
    """Share of ``|score|`` mass by the layer of each edge's source (``input`` its own bucket) and by
    the layer of its destination (``logits`` its own bucket), per task and model (mean over seeds)."""
    tasks = list(result["tasks"])
    fig, axes = plt.subplots(2, len(tasks), figsize=(9, 5.6), sharey=True)
    width = 0.27
    for col, task in enumerate(tasks):
        d = result["tasks"][task]["depth"]
        for row, (labels, prefix, what) in enumerate(((d["layer_labels"], "layers", "source"),
                                                      (d["layer_labels_dst"], "layers_dst", "destination"))):
            ax = axes[row][col]
            for i, kind in enumerate(("arm", "mdm", "arm-continued")):
                xs = [x + (i - 1) * width for x in range(len(labels))]
                ax.bar(xs, d[f"{prefix}_{kind}"], width, color=KIND_COLORS[kind], label=KIND_LABELS[kind])
            ax.set_xticks(range(len(labels)), labels, fontsize=8)
            ax.set_xlabel(f"layer of the edge's {what}", fontsize=8)
            if row == 0:
                ax.set_title(TASK_TITLES[task])
        axes[0][col].axvline(d["early_cutoff"] + 0.5, color=CHANCE_COLOR, linestyle=":")
    for ax in axes[:, 0]:
        ax.set_ylabel("share of |attribution| mass")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Depth profiles (mean over seeds); dotted: the end of the early edges", fontsize=10)
    fig.tight_layout()
    return fig


def component_curve(result: dict) -> Figure:
    """Top-K component overlap over K (a fraction of the components), |score| and signed, with chance."""
    tasks = list(result["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(9, 3.4), sharey=True)
    for ax, task in zip(axes, tasks):
        c = result["tasks"][task]["component_curve"]
        for key, label, color, style in (("arm_mdm", "ARM vs MDM", MDM_COLOR, "-"), ("arm_armc", "ARM vs ARM-continued", CONTROL_COLOR, "-"),
                                         ("signed_arm_mdm", "ARM vs MDM, signed", MDM_COLOR, ":"),
                                         ("signed_arm_armc", "ARM vs ARM-continued, signed", CONTROL_COLOR, ":")):
            _stat_line(ax, c["fraction"], c[key], color, label, style)
            ax.lines[-1].set_gid(key)
        ax.plot(c["fraction"], c["chance"], "--", color=CHANCE_COLOR, label="chance (K / components)")
        ax.set_title(TASK_TITLES[task])
        ax.set_xlabel("K as a fraction of the components")
    axes[0].set_ylabel("shared fraction of top-K components")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=7)
    fig.suptitle("Component overlap over K (mean, 95% CI over seeds and examples)", fontsize=10)
    fig.tight_layout()
    return fig


def residual_lens(result: dict) -> Figure:
    """The residual-stream logit lens per layer: mean logit difference (answer - distractor) when the
    model stops after each layer, ARM, MDM and ARM-continued, per task (mean, 95% CI over seeds and examples)."""
    tasks = list(result["tasks"])
    fig, axes = plt.subplots(1, len(tasks), figsize=(9, 3.4))
    for ax, task in zip(axes, tasks):
        lens = result["tasks"][task]["lens"]
        for kind in ("arm", "mdm", "arm-continued"):
            reading = lens[f"residual_{kind}"]
            xs = list(range(len(reading["labels"])))
            _stat_line(ax, xs, reading["logit_diff"], KIND_COLORS[kind], KIND_LABELS[kind])
            ax.lines[-1].set_gid(kind)
            ax.set_xticks(xs, reading["labels"], rotation=30, fontsize=8)
        ax.axhline(0, color=CHANCE_COLOR, linestyle="--")
        ax.set_title(TASK_TITLES[task])
        ax.set_xlabel("residual stream after")
    axes[0].set_ylabel("logit[answer] - logit[distractor]")
    axes[0].legend(fontsize=8)
    fig.suptitle("Logit lens of the residual stream (mean, 95% CI over seeds and examples)", fontsize=10)
    fig.tight_layout()
    return fig


FIGURES = {
    "overlap_edges": lambda r: overlap_bars(r, "edge"),
    "overlap_components": lambda r: overlap_bars(r, "component"),
    "overlap_curve": overlap_curve,
    "layer_distribution": layer_distribution,
    "early_share": early_share,
    "diffusion_steps": diffusion_steps,
    "trajectory": trajectory,
    "ablation": ablation,
    "lens": lens_summary,
    "neurons": neuron_heatmaps,
}


def save_report_figures(result: dict, out_dir: Path) -> list[Path]:
    """Write every report figure as PNG into ``out_dir``."""
    paths = []
    for name, make in FIGURES.items():
        fig = make(result)
        path = Path(out_dir) / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


# ----- circuit drawings ---------------------------------------------------------------------------
EDGE_KIND_COLORS = {"q": "#E69F00", "k": "#009E73", "v": "#CC79A7", "residual": "#555555"}
"""Edge colour by what the destination reads: a head's query, key or value input, or an MLP's/the logits' input."""
_EDGE_KIND_BEND = {"q": 0.10, "k": 0.18, "v": 0.26, "residual": -0.14}
"""Sideways bend of an edge's curve, as a fraction of its length, so parallel edges stay apart."""


def node_positions(graph: Graph) -> dict[str, tuple[float, float]]:
    """``(x, y)`` of every node: ``x`` is the layer (``input`` at -1, ``logits`` at ``n_layers``),
    ``y`` the head index, with the MLP on row ``n_heads``; ``input`` and ``logits`` sit mid-height."""
    middle = graph.n_heads / 2
    positions = {"input": (-1.0, middle), "logits": (float(graph.n_layers), middle)}
    for name in graph.src_names[1:]:
        _, layer, head = parse_source(name, graph)
        positions[name] = (float(layer), float(graph.n_heads if head is None else head))
    return positions


def _edge_kind(destination: str, graph: Graph) -> str:
    kind, _, _, qkv = parse_destination(destination, graph)
    return "qkv"[qkv] if kind == "attn" else "residual"


def _curve(start: tuple[float, float], end: tuple[float, float], bend: float, n: int = 24) -> tuple[list[float], list[float]]:
    """Points of a quadratic Bezier curve from ``start`` to ``end``, bent sideways by ``bend`` x its length."""
    (x0, y0), (x1, y1) = start, end
    cx, cy = (x0 + x1) / 2 - bend * (y1 - y0), (y0 + y1) / 2 + bend * (x1 - x0)
    ts = [i / (n - 1) for i in range(n)]
    xs = [(1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t**2 * x1 for t in ts]
    ys = [(1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t**2 * y1 for t in ts]
    return xs, ys


def draw_circuit(circuit: Circuit, scores: Scores, ax: Axes | None = None) -> Axes:
    """Draw a circuit on its graph: nodes by layer (x) and head or MLP (y), edges with width ∝ |score|.

    Every node of the graph is a faint dot; the circuit's nodes are labelled markers. Each edge is a
    curve from its source to the node it feeds, coloured by the input it reaches (a head's q, k or v,
    or the residual input of an MLP or the logits; see :data:`EDGE_KIND_COLORS`). Each drawn edge and
    circuit node is a ``Line2D`` whose ``gid`` is its name (``"a0.h1->m1"``, ``"a0.h1"``).

    Args:
        circuit: the circuit (e.g. from :func:`~mechshift_lite.circuits.top_n`).
        scores: the scores that set the widths; they must belong to the circuit's graph.
        ax: the axes to draw on (None: a new figure).

    Returns:
        the matplotlib ``Axes``.
    """
    graph = circuit.graph
    if scores.graph != graph:
        raise ValueError(
            f"the scores are for a graph with {scores.graph.n_layers} layers x {scores.graph.n_heads} heads, the "
            f"circuit for {graph.n_layers} x {graph.n_heads}: draw a circuit with the scores it was selected from"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * graph.n_layers + 3, 0.6 * graph.n_heads + 2.5))
    positions = node_positions(graph)
    xs, ys = zip(*positions.values())
    ax.scatter(xs, ys, s=12, color="#cccccc", zorder=1)
    magnitudes = {edge: abs(scores.edge(edge)) for edge in circuit.edges}
    largest = max(magnitudes.values(), default=0.0) or 1.0
    for edge in sorted(circuit.edges):
        source, destination = edge.split("->")
        kind = _edge_kind(destination, graph)
        target = "logits" if destination == "logits" else destination.split("<")[0]
        curve_x, curve_y = _curve(positions[source], positions[target], _EDGE_KIND_BEND[kind])
        ax.plot(curve_x, curve_y, color=EDGE_KIND_COLORS[kind], linewidth=0.4 + 5.6 * magnitudes[edge] / largest,
                alpha=0.75, solid_capstyle="round", gid=edge, zorder=2)
    for node in sorted(circuit.nodes):
        x, y = positions[node]
        ax.plot([x], [y], marker="o", markersize=3, color="black", gid=node, zorder=3)
        ax.annotate(node, (x, y), ha="center", va="center", fontsize=7, zorder=4,
                    bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "black", "linewidth": 0.8})
    for kind, color in EDGE_KIND_COLORS.items():
        ax.plot([], [], color=color, linewidth=3, label=f"into {kind}" if kind != "residual" else "into MLP / logits")
    ax.set_xticks(range(-1, graph.n_layers + 1), ["input", *(f"layer {l}" for l in range(graph.n_layers)), "logits"])
    ax.set_yticks(range(graph.n_heads + 1), [*(f"head {h}" for h in range(graph.n_heads)), "MLP"])
    ax.set_xlim(-1.6, graph.n_layers + 0.6)
    ax.set_ylim(graph.n_heads + 0.8, -0.8)
    ax.set_xlabel("layer")
    ax.set_ylabel("head / MLP")
    ax.set_title(f"A circuit of {circuit.n_edges} edges and {len(circuit.nodes)} nodes (line width ∝ |score|)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def plot_faithfulness(curves: dict[str, FaithfulnessCurve], ax=None, log_x: bool = True):
    """Plot faithfulness against the fraction of edges kept, one line per labelled curve.

    Returns:
        the matplotlib ``Axes``.
    """
    if not curves:
        raise ValueError("plot_faithfulness needs at least one curve, e.g. {'EAP-IG': curve}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        order = sorted(range(len(curve.fractions)), key=curve.fractions.__getitem__)
        x = [100 * curve.fractions[i] for i in order]
        y = [curve.faithfulness[i] for i in order]
        ax.plot(x, y, marker="o", label=f"{label} (area {curve.area:.3f})")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(0.0, color="grey", linestyle=":", linewidth=0.8)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("edges kept (% of all edges, counted before pruning)")
    ax.set_ylabel("faithfulness (0 = corrupted run, 1 = clean run)")
    ax.set_title("Circuit faithfulness against circuit size")
    ax.legend()
    return ax
