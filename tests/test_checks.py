"""Each checker passes the reference solution and fails plausible wrong answers."""

import ast
import math
import random
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

import mechshift_lite
from mechshift_lite.teaching import checks


def residual_solution(model, run):
    total = sum(run.outputs.values())
    if model.W_pos is not None:
        total = total + model.W_pos[: total.shape[1]]
    return total + sum(b.attn.b_O for b in model.blocks if b.attn.b_O is not None)


def residual_without_biases(model, run):
    total = sum(run.outputs.values())
    return total + model.W_pos[: total.shape[1]] if model.W_pos is not None else total


def residual_without_positions(model, run):
    return sum(run.outputs.values()) + sum(b.attn.b_O for b in model.blocks if b.attn.b_O is not None)


def test_residual_checker(capsys):
    checks.residual_from_nodes(residual_solution)
    assert "all checks passed" in capsys.readouterr().out
    for wrong in (residual_without_biases, residual_without_positions):
        with pytest.raises(AssertionError, match="residual_from_nodes"):
            checks.residual_from_nodes(wrong)


def test_head_output_checker(capsys):
    checks.head_output(lambda p, v, W: p @ v @ W)
    assert "all checks passed" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="max"):
        checks.head_output(lambda p, v, W: p.transpose(1, 2) @ v @ W)   # keys and queries swapped
    with pytest.raises(AssertionError, match="shape"):
        checks.head_output(lambda p, v, W: (p @ v @ W).sum(1))


def test_head_pattern_checker():
    solution = chapter_solution("ch01_transformer.py", "head_pattern")
    checks.head_pattern(solution)

    def masked(scores, causal):
        P = scores.shape[1]
        return scores.masked_fill(~torch.ones(P, P, dtype=torch.bool).tril(), float("-inf")) if causal else scores

    wrong = {
        "not scaled": lambda q, k, causal: masked(q @ k.transpose(-1, -2), causal).softmax(-1),
        "softmax over the queries": lambda q, k, causal: masked(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, causal).softmax(1),
        "mask ignored": lambda q, k, causal: (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1),
        "past hidden, not future": lambda q, k, causal: (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(
            causal & ~torch.ones(q.shape[1], q.shape[1], dtype=torch.bool).triu(), float("-inf")).softmax(-1),
    }
    for name, fn in wrong.items():
        with pytest.raises(AssertionError, match="head_pattern"):
            checks.head_pattern(fn)


# ----- chapter 2 -----
def chapter_solution(chapter: str, name: str):
    """The function ``name`` as the chapter's solution cell defines it (the reference a reader compares with)."""
    lines = (Path(__file__).resolve().parent.parent / "book" / chapter).read_text().splitlines()
    source = "\n".join(line.replace("%", "pass  #", 1) if line.lstrip().startswith("%") else line
                       for line in lines)   # IPython magics: keep the indentation
    functions = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]   # a solution may call another
    if name not in {n.name for n in functions}:
        raise LookupError(f"{chapter} defines no function {name}")
    namespace = {"re": re, "torch": torch, "math": math, "random": random, "ml": mechshift_lite,
                 **{module: getattr(mechshift_lite, module) for module in ("ablation", "compare", "neurons", "diffusion")}}
    exec(compile(ast.Module(functions, []), chapter, "exec"), namespace)
    return namespace[name]


def check_countdown_without_availability(numbers, target, answer):
    # right arithmetic and final result, but numbers may be reused or invented
    equations = [re.fullmatch(r"(\d+)([+\-*/])(\d+)=(\d+)", e) for e in answer.split(",")]
    if not all(equations):
        return False
    true = all(eval(f"{m[1]}{m[2]}{m[3]}") == int(m[4]) for m in equations)
    return true and int(equations[-1][4]) == target


def check_countdown_without_arithmetic(numbers, target, answer):
    # tracks the numbers but believes every equation
    available = list(numbers)
    for equation in answer.split(","):
        match = re.fullmatch(r"(\d+)[+\-*/](\d+)=(\d+)", equation)
        if match is None or int(match[1]) not in available:
            return False
        available.remove(int(match[1]))
        if int(match[2]) not in available:
            return False
        available.remove(int(match[2]))
        available.append(int(match[3]))
    return available == [target]


def check_countdown_final_balance(numbers, target, answer):
    # HKUNLP's cd_metric as written: the multiset only has to balance at the end
    counts = Counter(numbers)
    for equation in answer.split(","):
        match = re.fullmatch(r"(\d+)([+\-*/])(\d+)=(\d+)", equation)
        if match is None or eval(f"{match[1]}{match[2]}{match[3]}") != int(match[4]):
            return False
        counts.subtract([int(match[1]), int(match[3])])
        counts[int(match[4])] += 1
    counts[target] -= 1
    return all(v == 0 for v in counts.values())


def test_check_countdown_cases_hold_both_verdicts():
    from mechshift_lite.tasks import countdown

    verdicts = {countdown.check(n, t, a) for n, t, a, _ in checks._COUNTDOWN_CASES}
    assert verdicts == {True, False}


def test_check_countdown_checker(capsys):
    checks.check_countdown(chapter_solution("ch02_tasks.py", "check_countdown"))
    assert "all checks passed" in capsys.readouterr().out
    wrongs = (check_countdown_without_availability, check_countdown_without_arithmetic, check_countdown_final_balance)
    for wrong in wrongs:
        with pytest.raises(AssertionError, match="check_countdown"):
            checks.check_countdown(wrong)
    with pytest.raises(AssertionError, match="expected a bool"):
        checks.check_countdown(lambda numbers, target, answer: None)


def test_readout_position_checker(capsys):
    checks.readout_position(lambda mask: mask.sum(1) - 1)
    assert "all checks passed" in capsys.readouterr().out
    wrongs = (
        lambda mask: mask.sum(1),                                      # the first answer slot: forgot the shift
        lambda mask: torch.full((mask.shape[0],), mask.shape[1] - 1),  # ignores the padding
        lambda mask: mask.argmin(1) - 1,                               # wrong on rows without padding
    )
    for wrong in wrongs:
        with pytest.raises(AssertionError, match="readout_position"):
            checks.readout_position(wrong)
    with pytest.raises(AssertionError, match="integers"):
        checks.readout_position(lambda mask: mask.float().sum(1) - 1)


# ----- chapter 10 -----
def single_token_names_solution(tokenizer, names):
    found = {}
    for name in names:
        ids = tokenizer.encode(" " + name, add_special_tokens=False)
        if len(ids) == 1:
            found[name] = ids[0]
    return found


def test_single_token_names_checker(capsys):
    checks.single_token_names(single_token_names_solution)
    assert "all checks passed" in capsys.readouterr().out
    without_space = lambda tok, names: {n: tok.encode(n, add_special_tokens=False)[0] for n in names
                                        if len(tok.encode(n, add_special_tokens=False)) == 1}
    first_token_of_all = lambda tok, names: {n: tok.encode(" " + n, add_special_tokens=False)[0] for n in names}
    for wrong in (without_space, first_token_of_all):
        with pytest.raises(AssertionError, match="single_token_names"):
            checks.single_token_names(wrong)


def top_edges_jaccard_solution(a, b, n):
    top_a, top_b = set(a.abs().topk(n).indices.tolist()), set(b.abs().topk(n).indices.tolist())
    return len(top_a & top_b) / len(top_a | top_b)


def test_top_edges_jaccard_checker(capsys):
    checks.top_edges_jaccard(top_edges_jaccard_solution)
    assert "all checks passed" in capsys.readouterr().out
    signed = lambda a, b, n: len(set(a.topk(n).indices.tolist()) & set(b.topk(n).indices.tolist())) / (
        len(set(a.topk(n).indices.tolist()) | set(b.topk(n).indices.tolist())))
    shared_fraction = lambda a, b, n: len(set(a.abs().topk(n).indices.tolist()) & set(b.abs().topk(n).indices.tolist())) / n
    for wrong in (signed, shared_fraction):
        with pytest.raises(AssertionError, match="top_edges_jaccard"):
            checks.top_edges_jaccard(wrong)


def test_chance_jaccard_checker():
    from mechshift_lite.compare import chance_jaccard

    checks.chance_jaccard(chance_jaccard)

    def simulated(n, a, b, draws=2000):   # a Monte Carlo estimate: close, not exact
        g = torch.Generator().manual_seed(0)
        total = 0.0
        for _ in range(draws):
            x, y = set(torch.randperm(n, generator=g)[:a].tolist()), set(torch.randperm(n, generator=g)[:b].tolist())
            total += len(x & y) / len(x | y) if x | y else 1.0
        return total / draws

    wrong = {
        "plug-in, not the expectation": lambda n, a, b: a * b / n / (a + b - a * b / n) if a + b else 1.0,
        "the expected share of one set": lambda n, a, b: b / n,
        "simulated": simulated,
    }
    for name, fn in wrong.items():
        with pytest.raises(AssertionError, match="chance_jaccard"):
            checks.chance_jaccard(fn)


def test_duplicate_score_checker():
    def solution(patterns, s1, s2):
        return patterns[:, :, torch.arange(patterns.shape[2]), s2, s1].mean(-1)

    checks.duplicate_score(solution)
    wrong = {
        "S1 to S2": lambda p, s1, s2: p[:, :, torch.arange(p.shape[2]), s1, s2].mean(-1),
        "every pair of prompts": lambda p, s1, s2: p[:, :, :, s2, s1].mean((-2, -1)),
        "summed over prompts": lambda p, s1, s2: p[:, :, torch.arange(p.shape[2]), s2, s1].sum(-1),
        "every key of S2": lambda p, s1, s2: p[:, :, torch.arange(p.shape[2]), s2].mean((-2, -1)),
    }
    for name, fn in wrong.items():
        with pytest.raises(AssertionError, match="duplicate_score"):
            checks.duplicate_score(fn)


def test_component_scores_checker():
    def solution(edges):
        totals = {}
        for name, score in edges.items():
            src, dst = name.split("->")
            for node in (src, dst.split("<")[0]):
                if node not in ("input", "logits"):
                    totals[node] = totals.get(node, 0.0) + abs(score)
        return totals

    checks.component_scores(solution)
    with pytest.raises(AssertionError, match="absolute values"):
        checks.component_scores(lambda e: {k: sum(v for n, v in e.items() if k in n) for k in ("a0.h1", "a1.h0", "m1")})

    def only_sources(edges):
        totals = {name.split("->")[1].split("<")[0]: 0.0 for name in edges} | {name.split("->")[0]: 0.0 for name in edges}
        for name, score in edges.items():
            totals[name.split("->")[0]] += abs(score)
        return {k: v for k, v in totals.items() if k not in ("input", "logits")}

    def endpoints_kept(edges):   # input and logits counted as components
        totals = {}
        for name, score in edges.items():
            for node in (name.split("->")[0], name.split("->")[1].split("<")[0]):
                totals[node] = totals.get(node, 0.0) + abs(score)
        return totals

    def suffix_kept(edges):      # a1.h0<k> counted apart from a1.h0
        totals = {}
        for name, score in edges.items():
            for node in name.split("->"):
                if node not in ("input", "logits"):
                    totals[node] = totals.get(node, 0.0) + abs(score)
        return totals

    for fn in (only_sources, endpoints_kept, suffix_kept):
        with pytest.raises(AssertionError, match="component_scores"):
            checks.component_scores(fn)


def test_lens_projection_checker():
    import torch

    def solution(o, r, w, W_U, eps):
        return ((o - o.mean(-1, keepdim=True)) * torch.rsqrt(r.var(-1, unbiased=False, keepdim=True) + eps) * w) @ W_U

    checks.lens_projection(solution)
    wrong = {
        "the part normalised by its own statistics": lambda o, r, w, W_U, eps: torch.nn.functional.layer_norm(o, (o.shape[-1],), weight=w, eps=eps) @ W_U,
        "the part not centred": lambda o, r, w, W_U, eps: (o * torch.rsqrt(r.var(-1, unbiased=False, keepdim=True) + eps) * w) @ W_U,
        "the unbiased variance": lambda o, r, w, W_U, eps: ((o - o.mean(-1, keepdim=True)) * torch.rsqrt(r.var(-1, keepdim=True) + eps) * w) @ W_U,
        "no norm weight": lambda o, r, w, W_U, eps: ((o - o.mean(-1, keepdim=True)) * torch.rsqrt(r.var(-1, unbiased=False, keepdim=True) + eps)) @ W_U,
    }
    for name, fn in wrong.items():
        with pytest.raises(AssertionError, match="lens_projection"):
            checks.lens_projection(fn)


def test_selectivity_checker():
    from mechshift_lite.neurons import selectivity

    checks.selectivity(selectivity)

    def entropy_selectivity(positive: torch.Tensor, n_log: float) -> torch.Tensor:
        p = positive / positive.sum(0)
        return 1 - (-(p * p.clamp(min=1e-12).log()).sum(0)) / n_log

    wrong = {
        "softmax profile": lambda p: 1 - (p.softmax(0) * p.softmax(0).log()).sum(0).neg() / torch.log(torch.tensor(3.0)),
        "absolute values, not the positive part": lambda p: entropy_selectivity(p.abs(), torch.log(torch.tensor(3.0))),
        "normalised by the number of neurons": lambda p: entropy_selectivity(p.clamp(min=0), torch.log(torch.tensor(5.0))).nan_to_num(0.0),
        "0, not NaN, for a neuron that never fires": lambda p: entropy_selectivity(p.clamp(min=0), torch.log(torch.tensor(3.0))).nan_to_num(0.0),
    }
    for name, fn in wrong.items():
        with pytest.raises(AssertionError, match="selectivity"):
            checks.selectivity(fn)


def test_layer_matched_control_checker():
    import random

    from mechshift_lite.ablation import layer_matched_random, layer_of

    checks.layer_matched_control(layer_matched_random)
    wrong = {
        "all layers": lambda g, t, seed: random.Random(seed).sample(g.src_names[1:], len(t)),
        "not random": lambda g, t, seed: [n for l in sorted({layer_of(x) for x in t}) for n in g.src_names[1:]
                                          if layer_of(n) == l][:len(t)],
        "targeted excluded": lambda g, t, seed: [n for l in sorted({layer_of(x) for x in t}) for n in random.Random(seed).sample(
            [m for m in g.src_names[1:] if layer_of(m) == l and m not in t], sum(layer_of(x) == l for x in t))],
        "with repeats": lambda g, t, seed: [random.Random(seed).choice([n for n in g.src_names[1:] if layer_of(n) == layer_of(x)])
                                            for x in t] + [t[0]],
    }
    for name, fn in wrong.items():
        with pytest.raises(AssertionError, match="layer_matched_control"):
            checks.layer_matched_control(fn)


# ----- chapters 4 and 5 -----
def integrated_gradients_solution(grad_fn, clean, corrupted, m):
    grads = [grad_fn(corrupted + k / m * (clean - corrupted)) for k in range(1, m + 1)]
    return (corrupted - clean) * torch.stack(grads).mean(dim=0)


def test_integrated_gradients_checker(capsys):
    checks.integrated_gradients(integrated_gradients_solution)
    assert "all checks passed" in capsys.readouterr().out
    left_sum = lambda g, a, b, m: (b - a) * torch.stack([g(b + k / m * (a - b)) for k in range(m)]).mean(0)
    no_delta = lambda g, a, b, m: torch.stack([g(b + k / m * (a - b)) for k in range(1, m + 1)]).mean(0)
    wrong_sign = lambda g, a, b, m: -integrated_gradients_solution(g, a, b, m)
    only_clean = lambda g, a, b, m: (b - a) * g(a)                      # EAP for every m
    for wrong in (left_sum, no_delta, wrong_sign, only_clean):
        with pytest.raises(AssertionError, match="integrated_gradients"):
            checks.integrated_gradients(wrong)


def _node_of(name):
    return name.split("<")[0]


def prune_solution(edges, one_pass=False, input_exempt=True, qkv_are_nodes=False):
    edges = set(edges)
    while True:
        owner = (lambda d: d) if qkv_are_nodes else _node_of
        sources = {e.split("->")[0] for e in edges}
        fed = {owner(e.split("->")[1]) for e in edges}
        alive = {n for n in sources if n in fed or (input_exempt and n == "input")} | {"logits"}
        kept = {e for e in edges if e.split("->")[0] in alive and owner(e.split("->")[1]) in alive}
        if kept == edges or one_pass:
            return kept
        edges = kept


def test_prune_edges_checker(capsys):
    checks.prune_edges(prune_solution)
    assert "all checks passed" in capsys.readouterr().out
    for wrong in (
        lambda e: prune_solution(e, one_pass=True),          # stops before the fixed point
        lambda e: prune_solution(e, input_exempt=False),     # input has no edge in, so everything goes
        lambda e: prune_solution(e, qkv_are_nodes=True),     # a1.h0<q> taken for a node of its own
        lambda e: set(e),                                    # no pruning
    ):
        with pytest.raises(AssertionError, match="prune_edges"):
            checks.prune_edges(wrong)


def test_evaluate_circuit_checker():
    solution = chapter_solution("ch05_circuits.py", "evaluate_by_hand")
    checks.evaluate_circuit(solution)

    def one_pass(model, inputs, metric, circuit_edges):   # upstream inputs never patched: the clean run's outputs
        clean, corrupted = inputs.run_with_nodes(model, "clean"), inputs.run_with_nodes(model, "corrupted")
        overrides = {}
        for edge in model.graph.edge_names:
            src, dst = edge.split("->")
            if edge not in circuit_edges:
                overrides[dst] = overrides.get(dst, clean.inputs[dst]) + corrupted.outputs[src] - clean.outputs[src]
        return metric(inputs.run_with_nodes(model, "clean", overrides=overrides).logits)

    def whole_input_corrupted(model, inputs, metric, circuit_edges):   # a destination with an absent edge reads the corrupted run
        corrupted = inputs.run_with_nodes(model, "corrupted")
        absent = {edge.split("->")[1] for edge in model.graph.edge_names if edge not in circuit_edges}
        return metric(inputs.run_with_nodes(model, "clean", overrides={d: corrupted.inputs[d] for d in absent}).logits)

    def logits_forgotten(model, inputs, metric, circuit_edges):
        kept = {edge for edge in circuit_edges} | {edge for edge in model.graph.edge_names if edge.endswith("->logits")}
        return solution(model, inputs, metric, kept)

    def layer_by_layer(model, inputs, metric, circuit_edges):   # a layer's MLP patched from the run before its heads were
        graph, corrupted, overrides = model.graph, inputs.run_with_nodes(model, "corrupted"), {}
        for layer in range(graph.n_layers + 1):
            run = inputs.run_with_nodes(model, "clean", overrides=overrides)
            for i, dst in enumerate(graph.dst_names):
                if graph.layer_of_dst(i) == layer:
                    absent = [e.split("->")[0] for e in graph.edge_names if e.endswith("->" + dst) and e not in circuit_edges]
                    overrides[dst] = run.inputs[dst] + sum((corrupted.outputs[u] - run.outputs[u] for u in absent), 0.0)
        return metric(inputs.run_with_nodes(model, "clean", overrides=overrides).logits)

    for fn in (one_pass, whole_input_corrupted, logits_forgotten, layer_by_layer):
        with pytest.raises(AssertionError, match="evaluate_circuit"):
            checks.evaluate_circuit(fn)


def test_faithfulness_checker(capsys):
    checks.faithfulness(lambda c, e, k: float((c.mean() - e.mean()) / (k.mean() - e.mean())))
    assert "all checks passed" in capsys.readouterr().out
    for wrong in (
        lambda c, e, k: float(c.mean() / k.mean()),                          # ignores the empty circuit
        lambda c, e, k: float(((c - e) / (k - e)).mean()),                   # mean of per-example ratios
        lambda c, e, k: float((c.mean() - e.mean()) / k.mean()),             # wrong denominator
    ):
        with pytest.raises(AssertionError, match="faithfulness"):
            checks.faithfulness(wrong)


# ----- chapter 3 -----
def test_shift_logits_checker(capsys):
    checks.shift_logits(lambda logits: torch.cat([logits[:, :1], logits[:, :-1]], dim=1))
    checks.shift_logits(lambda logits: torch.roll(logits, 1, dims=1))     # slot 0 is free
    assert capsys.readouterr().out.count("all checks passed") == 2
    for wrong in (
        lambda logits: logits,                                             # no shift
        lambda logits: torch.roll(logits, -1, dims=1),                     # shifted the wrong way
        lambda logits: logits[:, :-1],                                     # drops a slot: wrong shape
    ):
        with pytest.raises(AssertionError, match="shift_logits"):
            checks.shift_logits(wrong)


def mdm_loss_solution(logits, x0, x_t, t, mask_id, shift=1, weight=True, normaliser="masked", mask_at_target=True):
    B, P, V = logits.shape
    if shift:
        logits, targets = logits[:, :-1], x0[:, 1:]
        masked = (x_t[:, 1:] if mask_at_target else x_t[:, :-1]) == mask_id
    else:
        targets, masked = x0, x_t == mask_id
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none").view(B, -1)
    terms = ce * masked / (t[:, None] if weight else 1.0)
    if normaliser == "masked":
        return terms.sum() / masked.sum().clamp(min=1)
    if normaliser == "all":
        return terms.sum() / masked.numel()
    return (terms.sum(1) / masked.sum(1).clamp(min=1)).mean()           # per sequence, then the batch mean


def test_mdm_loss_checker(capsys):
    checks.mdm_loss(mdm_loss_solution)
    assert "all checks passed" in capsys.readouterr().out
    for wrong in (
        lambda *a: mdm_loss_solution(*a, shift=0),                         # logits at i scored against token i
        lambda *a: mdm_loss_solution(*a, weight=False),                    # no 1/t
        lambda *a: mdm_loss_solution(*a, normaliser="all"),                # mean over every slot
        lambda *a: mdm_loss_solution(*a, normaliser="per sequence"),       # LLaDA-style per-row normalisation
        lambda *a: mdm_loss_solution(*a, mask_at_target=False),            # counted where x_t[i] (not i+1) is masked
    ):
        with pytest.raises(AssertionError, match="mdm_loss"):
            checks.mdm_loss(wrong)


def anneal_mask_solution(ratio, n_pos, generator):
    return torch.ones(n_pos, n_pos, dtype=torch.bool).tril() | (torch.rand(n_pos, n_pos, generator=generator) < ratio)


def test_anneal_mask_checker(capsys):
    from mechshift_lite.diffusion import annealed_attention

    checks.anneal_mask(anneal_mask_solution)
    checks.anneal_mask(annealed_attention)
    checks.anneal_mask(lambda r, n, g: torch.ones(n, n).tril().bool() | torch.bernoulli(torch.full((n, n), min(r, 1.0)), generator=g).bool())
    assert capsys.readouterr().out.count("all checks passed") == 3
    causal = lambda n: torch.ones(n, n, dtype=torch.bool).tril()
    distance = lambda n: torch.arange(n)[None, :] - torch.arange(n)[:, None]
    for wrong in (
        lambda r, n, g: causal(n) | (distance(n) <= round(r * n)),                          # a band that widens
        lambda r, n, g: causal(n) | (torch.rand(n, 1, generator=g) < r).expand(n, n),       # one draw per query row
        lambda r, n, g: causal(n) | (torch.rand(1, 1, generator=g) < r).expand(n, n),       # one draw per mask
        lambda r, n, g: torch.rand(n, n, generator=g) < r,                                  # causal part not kept
        lambda r, n, g: causal(n) | (torch.rand(n, n, generator=g) < 1 - r),                # Bernoulli(1 - ratio)
        lambda r, n, g: causal(n) | (torch.rand(n, n) < r),                                 # ignores the generator
        lambda r, n, g: causal(n) if r < 1 else torch.ones(n, n, dtype=torch.bool),         # no annealing at all
    ):
        with pytest.raises(AssertionError, match="anneal_mask"):
            checks.anneal_mask(wrong)


def test_wilson_interval_checker():
    import math

    from mechshift_lite.countdown_eval import wilson_interval   # the reference solution (tested in test_countdown_eval)

    def normal_approximation(k, n):   # the textbook interval: zero width at k = 0
        p = k / n if n else 0.5
        half = 1.96 * math.sqrt(p * (1 - p) / n) if n else 0.5
        return max(0.0, p - half), min(1.0, p + half)

    checks.wilson_interval(wilson_interval)
    with pytest.raises(AssertionError, match="wilson_interval"):
        checks.wilson_interval(normal_approximation)
    with pytest.raises(AssertionError, match="wilson_interval"):
        checks.wilson_interval(lambda k, n: wilson_interval(k, n)[::-1])


# ----- new in-flow exercises: chapters 3 and 4 -----
def decode_step_solution(logits, x, mask_id, k, shift=True, exclude=True, only_masked=True, probs=True, per_row=True):
    if shift:
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    logits = logits.clone()
    if exclude:
        logits[..., mask_id] = float("-inf")
    confidence, token = (logits.log_softmax(-1) if probs else logits).max(-1)
    if only_masked:
        confidence = confidence.masked_fill(x != mask_id, float("-inf"))
    if per_row:
        chosen = torch.zeros_like(x, dtype=torch.bool).scatter(1, confidence.topk(k, dim=-1).indices, True)
    else:
        chosen = torch.zeros(x.numel(), dtype=torch.bool)
        chosen[confidence.flatten().topk(k * x.shape[0]).indices] = True
        chosen = chosen.view_as(x)
    return torch.where(chosen, token, x)


def test_decode_step_checker(capsys):
    checks.decode_step(decode_step_solution)
    assert "all checks passed" in capsys.readouterr().out
    for mistake in (
        "shift",          # slot j read from the logits at j, not j - 1
        "exclude",        # [MASK] may win the argmax
        "only_masked",    # commits prompt or already committed slots
        "probs",          # ranks by the raw logit, not the probability
        "per_row",        # the top k * B slots of the whole batch
    ):
        with pytest.raises(AssertionError, match="decode_step"):
            checks.decode_step(lambda *a, mistake=mistake: decode_step_solution(*a, **{mistake: False}))


def patch_edge_solution(model, inputs, metric, edge, replace_whole_input=False, add_clean_output=False):
    src, dst = edge.split("->")
    with torch.no_grad():
        clean, corrupted = inputs.run_with_nodes(model, "clean"), inputs.run_with_nodes(model, "corrupted")
        if replace_whole_input:
            x = corrupted.inputs[dst]
        elif add_clean_output:
            x = clean.inputs[dst] + corrupted.outputs[src]
        else:
            x = clean.inputs[dst] + corrupted.outputs[src] - clean.outputs[src]
        patched = inputs.run_with_nodes(model, "clean", overrides={dst: x})
    return float((metric(patched.logits) - metric(clean.logits)).mean())


def test_patch_edge_checker(capsys):
    checks.patch_edge(patch_edge_solution)
    assert "all checks passed" in capsys.readouterr().out
    for wrong in (
        lambda *a: patch_edge_solution(*a, replace_whole_input=True),   # patches every edge into v
        lambda *a: patch_edge_solution(*a, add_clean_output=True),      # adds the corrupted output, not the difference
        lambda *a: -patch_edge_solution(*a),                            # clean minus patched
    ):
        with pytest.raises(AssertionError, match="patch_edge"):
            checks.patch_edge(wrong)


def eap_scores_solution(clean_out, corrupted_out, grads):
    return torch.einsum("sbpd,tbpd->st", corrupted_out - clean_out, grads) / clean_out.shape[1]


def test_eap_scores_checker(capsys):
    checks.eap_scores(eap_scores_solution)
    assert "all checks passed" in capsys.readouterr().out
    B = lambda out: out.shape[1]
    for wrong in (
        lambda c, k, g: torch.einsum("sbpd,tbpd->st", c, g) / B(c),       # the clean activation, not the difference
        lambda c, k, g: torch.einsum("sbpd,tbpd->st", k, g) / B(c),       # the corrupted activation
        lambda c, k, g: -eap_scores_solution(c, k, g),                    # clean minus corrupted
        lambda c, k, g: eap_scores_solution(c, k, g) * B(c),              # sum over the batch, not the mean
    ):
        with pytest.raises(AssertionError, match="eap_scores"):
            checks.eap_scores(wrong)
    with pytest.raises(AssertionError, match="n_src, n_dst"):
        checks.eap_scores(lambda c, k, g: eap_scores_solution(c, k, g).T)


BOOK = Path(__file__).resolve().parent.parent / "book"
CHECKED = sorted({(path.name, m[1], m[2]) for path in BOOK.glob("ch*.py")
                  for m in re.finditer(r"^checks\.(\w+)\((\w+)\)$", path.read_text(), re.MULTILINE)})


def test_every_chapter_checks_its_exercises():
    chapters = {path.name.split("_")[0] for path in BOOK.glob("ch*.py")}
    assert {chapter.split("_")[0] for chapter, _, _ in CHECKED} == chapters and len(chapters) == 12


@pytest.mark.parametrize("chapter, checker, solution", CHECKED)
def test_the_chapters_own_solution_passes_its_checker(chapter, checker, solution):
    """The reference a reader compares with is the solution cell of the chapter, not the package's function."""
    getattr(checks, checker)(chapter_solution(chapter, solution))
