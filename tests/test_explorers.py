"""The ipywidgets explorers redraw what their controls ask for (checked through ``.result``)."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from mechshift_lite import compare, diffusion, neurons, zoo
from mechshift_lite.teaching import explorers
from mechshift_lite.scores import Scores
from mechshift_lite.experiment import task_pairs
from mechshift_lite.inputs import ModelInputs
from mechshift_lite.graph import Graph

GRAPH = Graph(n_layers=3, n_heads=2)


def random_scores(seed: int) -> Scores:
    t = torch.randn(GRAPH.n_src, GRAPH.n_dst, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return Scores(t * GRAPH.edge_mask, GRAPH, "EAP", 1)


def set_controls(widget, **values) -> None:
    controls = {child.description: child for child in widget.children[:-1]}
    for name, value in values.items():
        controls[name].value = value


def test_overlap_explorer_follows_its_slider_and_dropdowns():
    scores = {"ARM": random_scores(0), "MDM": random_scores(1), "ARMc": random_scores(2)}
    w = explorers.overlap_explorer(scores)
    for n in (1, 7, 20, GRAPH.n_edges):
        set_controls(w, N=n)
        assert w.result == (compare.edge_overlap(scores["ARM"], scores["MDM"], n), compare.chance_jaccard(GRAPH.n_edges, n, n))
    set_controls(w, N=10, vs="ARMc")
    assert w.result[0] == compare.edge_overlap(scores["ARM"], scores["ARMc"], 10)
    set_controls(w, vs="ARM")
    assert w.result[0] == 1.0
    with pytest.raises(ValueError, match="two score sets"):
        explorers.overlap_explorer({"ARM": scores["ARM"]})


def test_denoising_explorer_shows_the_canvas_of_each_step():
    tok, mdm = zoo.tokenizer(), zoo.load("mdm", seed=0)
    pairs = task_pairs("countdown", tok, n=2, seed=0)
    canvas = pairs.to_mdm(tok).clean_ids
    start = pairs.readout_pos + 1
    sample = diffusion.confidence_sample(mdm, canvas, start, tok.mask_id, output_history=True, max_steps=5)
    w = explorers.denoising_explorer(sample, tok, row=1)
    n_slots = canvas.shape[1] - int(start[1])
    for step in (0, 3, 5):
        set_controls(w, step=step)
        words = w.result.split(" ")
        assert words.count("_") == n_slots - step          # one slot committed per step
        assert sum(word.startswith("[") and word.endswith("]") and word not in tok.tokens for word in words) == (step > 0)
    with pytest.raises(ValueError, match="output_history"):
        explorers.denoising_explorer(diffusion.confidence_sample(mdm, canvas, start, tok.mask_id, max_steps=1), tok)


def test_neuron_explorer_shows_the_first_models_most_variable_neurons():
    tok = zoo.tokenizer()
    models = {"ARM": zoo.load("arm", seed=0), "MDM": zoo.load("mdm", seed=0)}
    pairs = task_pairs("ioi", tok, n=3, seed=0)
    w = explorers.neuron_explorer(models, pairs, tok, n_neurons=5)
    for layer in (0, 2):
        set_controls(w, layer=layer, example=1)
        x = ModelInputs.from_pairs(models["ARM"], pairs, tok)
        length = int(pairs.readout_pos[1]) + 1
        acts = neurons.activations(models["ARM"], x.clean_ids, layer, x.attention_mask, x.attention)[:, :length]
        assert w.result == neurons.top_neurons(acts, 5).tolist()
