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
