"""Circuits: selection rules, pruning to a fixed point, patched evaluation against an independent
implementation, faithfulness curves."""

import matplotlib
import pytest
import torch

import mechshift_lite as ml
from mechshift_lite import Circuit, Graph, ModelConfig, Scores, Transformer

matplotlib.use("Agg")

VOCAB = 40
GPT2 = ModelConfig(d_vocab=VOCAB, n_ctx=12, d_model=32, n_layers=2, n_heads=4, d_head=8, d_mlp=64)
LLAMA_GQA = ModelConfig(family="llama", d_vocab=VOCAB, n_ctx=12, d_model=32, n_layers=2, n_heads=4, d_head=8,
                        d_mlp=48, n_kv_heads=2, act="silu", out_bias=False, mlp_bias=False)
GRAPH = Graph(2, 4)


def random_model(cfg: ModelConfig, attention: str = "causal", seed: int = 1) -> Transformer:
    """A float64 model with weights 5x the init scale: far from linear, so patching matters."""
    model = Transformer(cfg, attention=attention).init_weights(seed).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("W"):
                p.mul_(5)
    return model


def token_pairs(batch=4, pos=7, seed=3):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, pos), generator=gen), torch.randint(0, VOCAB, (batch, pos), generator=gen)


def metric(logits):
    logp = logits[:, -1].log_softmax(-1)
    return logp[:, 3] - logp[:, 5]


def random_scores(graph: Graph = GRAPH, seed: int = 0) -> Scores:
    tensor = torch.randn(graph.n_src, graph.n_dst, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return Scores(tensor * graph.edge_mask, graph, "random", 1)


def random_circuit(graph: Graph, keep: float, seed: int) -> Circuit:
    draw = torch.rand(graph.n_src, graph.n_dst, generator=torch.Generator().manual_seed(seed)) < keep
    return Circuit.from_mask(graph, draw)


def custom_scores(values: dict[str, float], graph: Graph = GRAPH) -> Scores:
    """Scores of 1e-3 x (edge index) everywhere (small, distinct) except the named edges."""
    tensor = torch.zeros(graph.n_src, graph.n_dst, dtype=torch.float64)
    src, dst = graph.edge_mask.nonzero(as_tuple=True)
    tensor[src, dst] = 1e-3 * torch.arange(1, len(src) + 1, dtype=torch.float64) / len(src)
    for name, value in values.items():
        tensor[graph.edge_index(name)] = value
    return Scores(tensor, graph, "custom", 1)


# ----- evaluation -------------------------------------------------------------------------------------------
CASES = [(GPT2, "causal"), (GPT2, "bidirectional"), (LLAMA_GQA, "causal"), (LLAMA_GQA, "bidirectional")]


@pytest.mark.parametrize("cfg, attention", CASES, ids=["gpt2-causal", "gpt2-bidir", "llama-causal", "llama-bidir"])
def test_empty_circuit_is_the_corrupted_run_and_full_circuit_the_clean_run(cfg, attention):
    model = random_model(cfg, attention)
    clean, corrupted = token_pairs()
    empty, full = ml.top_n(random_scores(), 0), ml.top_n(random_scores(), GRAPH.n_edges)
    assert not empty.edges and len(full.edges) == GRAPH.n_edges
    with torch.no_grad():
        torch.testing.assert_close(ml.evaluate(model, empty, clean, corrupted, metric, allow_empty=True),
                                   metric(model(corrupted)), atol=1e-5, rtol=0)
        torch.testing.assert_close(ml.evaluate(model, full, clean, corrupted, metric), metric(model(clean)), atol=1e-5, rtol=0)


def test_empty_and_full_circuits_with_padding_and_an_explicit_mask():
    model = random_model(LLAMA_GQA)
    clean, corrupted = token_pairs(batch=3, pos=8)
    mask = torch.tensor([[1] * 8, [1] * 6 + [0] * 2, [1] * 5 + [0] * 3])
    attention = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.7
    attention |= torch.eye(8, dtype=torch.bool)

    def at_position_4(logits):
        return logits[:, 4, 3] - logits[:, 4, 5]

    empty, full = Circuit.from_edges(GRAPH, []), Circuit.from_edges(GRAPH, GRAPH.edge_names)
    with torch.no_grad():
        for circuit, ids in ((empty, corrupted), (full, clean)):
            got = ml.evaluate(model, circuit, clean, corrupted, at_position_4, mask, attention=attention, batch_size=2,
                              allow_empty=True)
            expected = at_position_4(model(ids, mask, attention=attention))
            torch.testing.assert_close(got, expected.double(), atol=1e-5, rtol=0)


def reference_evaluate(model: Transformer, circuit: Circuit, clean, corrupted, metric):
    """The patching rule, implemented independently with run_with_nodes overrides.

    ``x_v = sum over in-circuit u of out_u(this run) + sum over absent u of out_u(corrupted)
    + the constant terms`` (positions, output biases). The overrides of layer l only depend on
    outputs of earlier layers, so n_layers + 1 rounds of "run, recompute overrides" converge.
    """
    graph = model.graph
    clean_run, corrupted_run = model.run_with_nodes(clean), model.run_with_nodes(corrupted)
    kept = circuit.mask
    run, overrides = clean_run, {}
    for _ in range(graph.n_layers + 2):
        overrides = {}
        for d, dst in enumerate(graph.dst_names):
            upstream = graph.src_names[:graph.prev_index(d)]
            constant = clean_run.inputs[dst] - sum(clean_run.outputs[u] for u in upstream)
            overrides[dst] = constant + sum(
                run.outputs[u] if kept[graph.src_index(u), d] else corrupted_run.outputs[u] for u in upstream
            )
        run = model.run_with_nodes(clean, overrides=overrides)
    return metric(run.logits)


@pytest.mark.parametrize("cfg", [GPT2, LLAMA_GQA], ids=["gpt2", "llama-gqa"])
def test_evaluate_matches_an_independent_implementation_and_ignores_pruning(cfg):
    model = random_model(cfg)
    clean, corrupted = token_pairs()
    for seed in range(3):
        circuit = random_circuit(GRAPH, keep=0.5, seed=seed)           # not pruned: dangling nodes included
        with torch.no_grad():
            got = ml.evaluate(model, circuit, clean, corrupted, metric)
            torch.testing.assert_close(got, reference_evaluate(model, circuit, clean, corrupted, metric), atol=1e-5, rtol=0)
            pruned = ml.evaluate(model, ml.prune(circuit), clean, corrupted, metric, allow_empty=True)
            torch.testing.assert_close(pruned, got, atol=1e-5, rtol=0)
        assert len(ml.prune(circuit).edges) < len(circuit.edges)       # pruning really removed something


def test_evaluate_with_a_rows_metric_and_batches():
    model = random_model(GPT2)
    clean, corrupted = token_pairs(batch=5)
    targets = torch.tensor([1, 7, 3, 9, 2])

    def per_row(logits, rows):
        return logits[torch.arange(len(rows)), -1, targets[rows]]

    circuit = ml.top_n(random_scores(), 40)
    whole = ml.evaluate(model, circuit, clean, corrupted, per_row)
    torch.testing.assert_close(ml.evaluate(model, circuit, clean, corrupted, per_row, batch_size=2), whole)
    assert whole.shape == (5,)


# ----- pruning ----------------------------------------------------------------------------------------------
def in_and_out(circuit: Circuit) -> tuple[dict[str, int], dict[str, int]]:
    """Edges in and out of every node (a head's q/k/v inputs count as its inputs)."""
    ins, outs = {}, {}
    for edge in circuit.edges:
        src, dst = edge.split("->")
        outs[src] = outs.get(src, 0) + 1
        node = dst.split("<")[0]
        ins[node] = ins.get(node, 0) + 1
    return ins, outs


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("keep", [0.03, 0.1, 0.3])
def test_prune_reaches_the_largest_valid_subcircuit(seed, keep):
    circuit = random_circuit(GRAPH, keep, seed)
    before = set(circuit.edges)
    pruned = ml.prune(circuit)
    assert circuit.edges == before                                       # pure
    assert pruned.edges <= circuit.edges
    ins, outs = in_and_out(pruned)
    for node in pruned.nodes - {"logits"}:                              # every node has an edge out ...
        assert outs.get(node, 0) > 0, node
        assert node == "input" or ins.get(node, 0) > 0, node           # ... and one in (input exempt)
    assert "logits" in pruned.nodes
    for edge in pruned.edges:
        src, dst = edge.split("->")
        assert src in pruned.nodes and dst.split("<")[0] in pruned.nodes
    for edge in circuit.edges - pruned.edges:                           # nothing removed that could stay
        src, dst = edge.split("->")
        assert not (src in pruned.nodes and dst.split("<")[0] in pruned.nodes), edge
    assert ml.prune(pruned).edges == pruned.edges                       # a fixed point


def test_prune_removes_chains_that_do_not_reach_both_ends():
    chain = ["input->a0.h0<q>", "a0.h0->a1.h2<v>", "a1.h2->m1"]         # m1 never reaches logits
    assert ml.prune(Circuit.from_edges(GRAPH, chain)).edges == set()
    assert ml.prune(Circuit.from_edges(GRAPH, chain + ["m1->logits"])).edges == set(chain + ["m1->logits"])
    dangling_start = ["a0.h0->a1.h2<v>", "a1.h2->logits"]              # a0.h0 has no input
    assert ml.prune(Circuit.from_edges(GRAPH, dangling_start)).edges == set()


# ----- selection --------------------------------------------------------------------------------------------
def test_top_n_counts_edges_before_pruning():
    scores = custom_scores({"input->logits": 10.0, "a0.h0->logits": -9.0, "input->a0.h0<k>": 8.0, "a1.h1->m1": 7.0})
    assert ml.top_n(scores, 3).edges == {"input->logits", "a0.h0->logits", "input->a0.h0<k>"}
    # top 2: a0.h0 has no edge in, so pruning leaves one edge
    assert ml.top_n(scores, 2).edges == {"input->logits"}
    # top 4: a1.h1->m1 dangles (a1.h1 has no input, m1 no output)
    assert ml.top_n(scores, 4).edges == {"input->logits", "a0.h0->logits", "input->a0.h0<k>"}
    # signed ranking puts the -9 edge last
    assert "a0.h0->logits" not in ml.top_n(scores, 3, absolute=False).edges


def test_top_n_picks_the_largest_scores_before_pruning():
    scores = random_scores(seed=4)
    for n in (1, 7, 30, GRAPH.n_edges):
        circuit = ml.top_n(scores, n)
        ranked = sorted(scores.as_dict().items(), key=lambda item: -abs(item[1]))
        chosen = {name for name, _ in ranked[:n]}
        assert circuit.edges == ml.prune(Circuit.from_edges(GRAPH, chosen)).edges


def test_threshold_keeps_edges_at_or_above_t():
    scores = random_scores(seed=5)
    values = scores.as_dict()
    circuit = ml.threshold(scores, 1.0)
    assert circuit.edges == ml.prune(Circuit.from_edges(GRAPH, [e for e, v in values.items() if abs(v) >= 1.0])).edges
    assert ml.threshold(scores, 100.0).edges == set()


def test_greedy_grows_from_the_logits():
    scores = custom_scores({"input->a0.h0<q>": 100.0, "input->logits": 3.0, "a0.h0->logits": 2.0})
    assert ml.greedy(scores, 1).edges == {"input->logits"}          # the 100 edge is not reachable yet
    assert ml.greedy(scores, 2).edges == {"input->logits"}          # a0.h0->logits, pruned: a0.h0 has no input
    assert ml.greedy(scores, 3).edges == {"input->logits", "a0.h0->logits", "input->a0.h0<q>"}
    assert ml.top_n(scores, 1).edges == set()                        # top-n takes the 100 edge and prunes it


@pytest.mark.parametrize("seed", range(4))
def test_greedy_matches_a_brute_force_search_from_the_logits(seed):
    scores = random_scores(seed=seed)
    for n in (1, 2, 5, 12, 24):
        assert ml.greedy(scores, n).edges == ml.prune(Circuit.from_edges(GRAPH, greedy_unpruned_edges(scores, n))).edges


def greedy_unpruned_edges(scores: Scores, n: int) -> set[str]:
    """Greedy's edge choice before pruning, recomputed by brute force: the best edge whose
    destination node is logits or a source of an edge already chosen."""
    chosen: set[str] = set()
    values = scores.as_dict()
    for _ in range(n):
        reached = {"logits"} | {edge.split("->")[0] for edge in chosen}
        candidates = [e for e in values if e not in chosen and e.split("->")[1].split("<")[0] in reached]
        chosen.add(max(candidates, key=lambda e: (abs(values[e]), -GRAPH.edge_names.index(e))))
    return chosen


def test_selection_does_not_mutate_its_inputs():
    scores = random_scores(seed=1)
    snapshot = scores.tensor.clone()
    circuit = ml.top_n(scores, 20)
    edges = set(circuit.edges)
    ml.greedy(scores, 20), ml.threshold(scores, 0.5), ml.prune(circuit)
    assert torch.equal(scores.tensor, snapshot) and circuit.edges == edges


# ----- faithfulness --------------------------------------------------------------------------------------------
def test_faithfulness_curve_runs_from_corrupted_to_clean_and_plots():
    model = random_model(GPT2)
    clean, corrupted = token_pairs()
    scores = ml.attribute(model, clean, corrupted, metric, method="EAP-IG-inputs")
    curve = ml.faithfulness_curve(model, scores, clean, corrupted, metric, fractions=[0.0, 0.1, 0.5, 1.0])
    assert curve.edge_counts == [0, 11, 55, 110]
    assert curve.faithfulness[0] == pytest.approx(0.0, abs=1e-6) and curve.faithfulness[-1] == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        assert curve.clean == pytest.approx(float(metric(model(clean)).mean()), abs=1e-6)
        assert curve.empty == pytest.approx(float(metric(model(corrupted)).mean()), abs=1e-6)
    middle = ml.evaluate(model, ml.top_n(scores, 11), clean, corrupted, metric).mean()
    assert curve.faithfulness[1] == pytest.approx(float((middle - curve.empty) / (curve.clean - curve.empty)), abs=1e-9)
    x, y = curve.fractions, curve.faithfulness
    assert curve.area == pytest.approx(sum((x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2 for i in range(3)))
    assert curve.circuit_edges[-1] == 110 and curve.circuit_edges[1] <= 11

    by_greedy = ml.faithfulness_curve(model, scores, clean, corrupted, metric, edge_counts=[5, 110], select=ml.greedy)
    ax = ml.plot_faithfulness({"top-n": curve, "greedy": by_greedy})
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    assert [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()] == ["top-n", "greedy"]


# ----- bad input ------------------------------------------------------------------------------------------------
def test_bad_input_gives_clear_errors():
    scores = random_scores()
    model = random_model(GPT2)
    clean, corrupted = token_pairs()
    with pytest.raises(ValueError, match=r"n must be an integer edge count in \[0, 110\]"):
        ml.top_n(scores, 111)
    with pytest.raises(ValueError, match="edge count"):
        ml.top_n(scores, -1)
    with pytest.raises(ValueError, match="edge count"):
        ml.greedy(scores, 2.5)
    with pytest.raises(KeyError, match="unknown source node"):
        Circuit.from_edges(GRAPH, ["a7.h0->logits"])
    with pytest.raises(KeyError, match="not an edge"):
        Circuit.from_edges(GRAPH, ["m1->a0.h0<q>"])
    with pytest.raises(ValueError, match="evaluate needs a circuit with at least one edge.*allow_empty=True"):
        ml.evaluate(model, ml.top_n(custom_scores({"input->a0.h0<q>": 100.0}), 1), clean, corrupted, metric)
    with pytest.raises(ValueError, match="3 layers x 4 heads"):
        ml.evaluate(model, ml.top_n(random_scores(Graph(3, 4)), 5), clean, corrupted, metric)
    with pytest.raises(ValueError, match="faithfulness is undefined"):
        ml.faithfulness_curve(model, scores, clean, clean, metric, edge_counts=[5])
    with pytest.raises(ValueError, match="not both"):
        ml.faithfulness_curve(model, scores, clean, corrupted, metric, edge_counts=[5], fractions=[0.1])
    with pytest.raises(ValueError, match=r"fractions must be .* in \[0, 1\]"):
        ml.faithfulness_curve(model, scores, clean, corrupted, metric, fractions=[2.0])
    with pytest.raises(ValueError, match="same shape"):
        ml.evaluate(model, ml.top_n(scores, 5), clean, corrupted[:2], metric)
