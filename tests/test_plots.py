"""draw_circuit draws exactly the circuit: its edges between the right nodes, nodes at their layer."""

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mechshift_lite import plots  # noqa: E402
from mechshift_lite.scores import Scores  # noqa: E402
from mechshift_lite.circuits import top_n  # noqa: E402
from mechshift_lite.graph import Graph  # noqa: E402


def random_scores(graph: Graph, seed: int) -> Scores:
    values = torch.randn(graph.n_edges, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    tensor = torch.zeros(graph.n_src, graph.n_dst, dtype=torch.float64).masked_scatter(graph.edge_mask, values)
    return Scores(tensor, graph, "EAP", 1)


def expected_xy(name: str, graph: Graph) -> tuple[float, float]:
    """Where a node should sit, from its name alone: x = layer, y = head (MLP on row n_heads)."""
    if name == "input":
        return -1, graph.n_heads / 2
    if name == "logits":
        return graph.n_layers, graph.n_heads / 2
    head = re.fullmatch(r"a(\d+)\.h(\d+)", name)
    if head:
        return int(head[1]), int(head[2])
    return int(re.fullmatch(r"m(\d+)", name)[1]), graph.n_heads


@pytest.fixture
def drawn():
    graph = Graph(3, 4)
    scores = random_scores(graph, 0)
    circuit = top_n(scores, 40)
    ax = plots.draw_circuit(circuit, scores)
    yield graph, scores, circuit, ax
    plt.close(ax.figure)


def test_draws_each_edge_of_the_circuit_once_between_its_nodes(drawn):
    graph, _, circuit, ax = drawn
    assert 5 < circuit.n_edges < 40  # pruning left a non-trivial circuit
    edges = [line for line in ax.lines if line.get_gid() and "->" in line.get_gid()]
    assert sorted(line.get_gid() for line in edges) == sorted(circuit.edges)
    for line in edges:
        source, destination = line.get_gid().split("->")
        node = destination.split("<")[0]
        assert (line.get_xdata()[0], line.get_ydata()[0]) == pytest.approx(expected_xy(source, graph))
        assert (line.get_xdata()[-1], line.get_ydata()[-1]) == pytest.approx(expected_xy(node, graph))


def test_circuit_nodes_sit_at_their_layer(drawn):
    graph, _, circuit, ax = drawn
    nodes = {line.get_gid(): line for line in ax.lines if line.get_gid() and "->" not in line.get_gid()}
    assert set(nodes) == circuit.nodes
    for name, line in nodes.items():
        assert (line.get_xdata()[0], line.get_ydata()[0]) == pytest.approx(expected_xy(name, graph))


def test_edge_width_grows_with_absolute_score(drawn):
    _, scores, _, ax = drawn
    edges = [line for line in ax.lines if line.get_gid() and "->" in line.get_gid()]
    by_magnitude = sorted(edges, key=lambda line: abs(scores.edge(line.get_gid())))
    widths = [line.get_linewidth() for line in by_magnitude]
    assert widths == sorted(widths) and widths[0] < widths[-1]


def test_draws_on_the_given_axes_and_refuses_scores_of_another_graph():
    graph = Graph(2, 3)
    scores = random_scores(graph, 1)
    fig, ax = plt.subplots()
    assert plots.draw_circuit(top_n(scores, 20), scores, ax=ax) is ax
    with pytest.raises(ValueError, match="graph"):
        plots.draw_circuit(top_n(scores, 20), random_scores(Graph(3, 3), 1))
    plt.close(fig)


# ----- report figures: what they plot is the report's numbers --------------------------------------
def stat(mean: float) -> dict:
    return {"mean": mean, "lo": mean - 0.05, "hi": mean + 0.1}


@pytest.fixture
def result():
    """A report dict holding only what the figures below read, with distinct values everywhere."""
    tasks = {}
    for t, task in enumerate(("ioi", "countdown")):
        paired = {"n_seed_resamples": 10, **{key: stat(0.1 * i + t) for i, (key, _, _) in enumerate(plots.PAIRED_ROWS)}}
        depth = {"layer_labels": ["input", "layer 0", "layer 1"], "layer_labels_dst": ["layer 0", "layer 1", "logits"], "early_cutoff": 1}
        for i, kind in enumerate(("arm", "mdm", "arm-continued")):
            depth[f"layers_{kind}"] = [0.5 - 0.1 * i, 0.3, 0.2 + 0.1 * i + t / 100]
            depth[f"layers_dst_{kind}"] = [0.2, 0.3 + t / 100, 0.5 - 0.1 * i]
        curve = {"fraction": [0.1, 0.3], "chance": [0.1, 0.3]}
        for i, key in enumerate(("arm_mdm", "arm_armc", "signed_arm_mdm", "signed_arm_armc")):
            curve[key] = [stat(0.6 + 0.05 * i + t / 100), stat(0.7 + 0.05 * i)]
        tasks[task] = {"paired": paired, "depth": depth, "component_curve": curve}
    return {"tasks": tasks}


def test_paired_differences_plots_each_difference_at_its_mean_and_interval(result):
    fig = plots.paired_differences(result)
    for ax, task in zip(fig.axes, result["tasks"]):
        drawn = {c.get_label(): c for c in ax.containers}
        assert set(drawn) == {key for key, _, _ in plots.PAIRED_ROWS}
        for y, (key, _, _) in enumerate(plots.PAIRED_ROWS):
            expected = result["tasks"][task]["paired"][key]
            point, _, (bar,) = drawn[key].lines
            assert (point.get_xdata()[0], point.get_ydata()[0]) == pytest.approx((expected["mean"], y))
            segment = bar.get_segments()[0]
            assert sorted(segment[:, 0]) == pytest.approx([expected["lo"], expected["hi"]])
    plt.close(fig)


def test_depth_profiles_bars_are_the_source_and_destination_shares(result):
    fig = plots.depth_profiles(result)
    axes = fig.axes
    for col, task in enumerate(result["tasks"]):
        d = result["tasks"][task]["depth"]
        for row, prefix in enumerate(("layers", "layers_dst")):
            ax = axes[2 * row + col]
            for kind in ("arm", "mdm", "arm-continued"):
                (bars,) = [c for c in ax.containers if c.get_label() == plots.KIND_LABELS[kind]]
                assert [b.get_height() for b in bars] == pytest.approx(d[f"{prefix}_{kind}"])
            labels = [label.get_text() for label in ax.get_xticklabels()]
            assert labels == d["layer_labels" if row == 0 else "layer_labels_dst"]
    plt.close(fig)


def test_component_curve_lines_are_the_overlaps_over_k(result):
    fig = plots.component_curve(result)
    for ax, task in zip(fig.axes, result["tasks"]):
        c = result["tasks"][task]["component_curve"]
        lines = {line.get_gid(): line for line in ax.lines if line.get_gid()}
        assert set(lines) == {"arm_mdm", "arm_armc", "signed_arm_mdm", "signed_arm_armc"}
        for key, line in lines.items():
            assert list(line.get_xdata()) == pytest.approx(c["fraction"])
            assert list(line.get_ydata()) == pytest.approx([s["mean"] for s in c[key]])
    plt.close(fig)


def test_residual_lens_lines_are_the_logit_differences_per_layer(result):
    for t, task in enumerate(result["tasks"]):
        result["tasks"][task]["lens"] = {f"residual_{kind}": {
            "labels": ["embedding", "layer 0", "layer 1"],
            "logit_diff": [stat(0.5 * layer + i + t) for layer in range(3)], "answer_top": [0.1, 0.5, 0.9]}
            for i, kind in enumerate(("arm", "mdm", "arm-continued"))}
    fig = plots.residual_lens(result)
    for ax, task in zip(fig.axes, result["tasks"]):
        lines = {line.get_gid(): line for line in ax.lines if line.get_gid()}
        assert set(lines) == {"arm", "mdm", "arm-continued"}
        for kind, line in lines.items():
            assert list(line.get_ydata()) == pytest.approx([s["mean"] for s in result["tasks"][task]["lens"][f"residual_{kind}"]["logit_diff"]])
        assert [label.get_text() for label in ax.get_xticklabels()] == ["embedding", "layer 0", "layer 1"]
    plt.close(fig)
