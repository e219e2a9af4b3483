"""Neuron statistics on hand-built activations with known answers, and on a model."""

import math

import pytest
import torch

from mechshift_lite import ModelConfig, Transformer, neurons


def test_activations_match_a_manual_mlp_pass():
    model = Transformer(ModelConfig(d_vocab=20, n_ctx=8, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=32)).init_weights(0)
    ids = torch.randint(0, 20, (2, 6), generator=torch.Generator().manual_seed(0))
    acts = neurons.activations(model, ids, layer=1)
    run = model.run_with_nodes(ids)
    mlp = model.blocks[1].mlp
    torch.testing.assert_close(acts @ mlp.W_out + mlp.b_out, run.outputs["m1"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="layer must be"):
        neurons.activations(model, ids, layer=2)


def test_selectivity_is_one_for_a_single_category_and_zero_for_uniform():
    profile = torch.tensor([[2.0, 1.0, 0.0, -1.0],
                            [0.0, 1.0, 0.0, -1.0],
                            [0.0, 1.0, 0.0, -1.0]])
    s = neurons.selectivity(profile)
    assert s[0] == pytest.approx(1.0) and s[1] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(s[2]) and math.isnan(s[3])


def test_category_profile_and_breadth():
    acts = torch.tensor([[[1.0, 0.0], [3.0, 1.0], [5.0, 1.0]]])       # [1, 3, 2]
    cats = torch.tensor([[0, 1, -1]])
    profile = neurons.category_profile(acts, cats, 3)
    assert profile[:2].tolist() == [[1.0, 0.0], [3.0, 1.0]] and torch.isnan(profile[2]).all()
    # neuron 0 exceeds 2.5 at 2 of 3 positions; neuron 1 exceeds 0.5 at 2 of 3
    assert neurons.breadth(acts).tolist() == pytest.approx([2 / 3, 2 / 3])
    assert neurons.breadth(acts, torch.tensor([[1, 1, 0]])).tolist() == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="categories must have shape"):
        neurons.category_profile(acts, cats[:, :2], 3)


def test_token_categories_and_top_neurons():
    vocab = ["[PAD]", "1", "+", "Mary"]
    cats = neurons.token_categories(torch.tensor([[1, 2, 3, 0]]), vocab, lambda t: 0 if t.isdigit() else 1 if t in "+-" else None)
    assert cats.tolist() == [[0, 1, -1, -1]]
    acts = torch.zeros(1, 4, 3)
    acts[0, :, 2] = torch.tensor([0.0, 5.0, -5.0, 0.0])
    assert neurons.top_neurons(acts, 1).tolist() == [2]


# ----- issue 11: neurons compared paired, chosen symmetrically ----------------------------------------
def test_symmetric_top_neurons_do_not_depend_on_which_model_is_first():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 10, 6, generator=g), torch.randn(2, 10, 6, generator=g)
    b[..., 4] *= 10                                   # loud in b only: chosen, although a barely varies there
    assert set(neurons.symmetric_top_neurons(a, b, 3).tolist()) == set(neurons.symmetric_top_neurons(b, a, 3).tolist())
    assert 4 in neurons.symmetric_top_neurons(a, b, 1).tolist()
    assert 4 not in neurons.top_neurons(a, 1).tolist()


def test_paired_mean_differences_are_zero_for_the_same_model_and_find_a_sharpened_neuron():
    cats = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, -1]])
    a = torch.ones(1, 9, 2)                           # both neurons fire equally for every category
    assert neurons.paired_mean_differences(a, a.clone(), cats, 4) == {"selectivity": 0.0, "breadth": 0.0}
    b = a.clone()
    b[0, :, 0] = (cats[0] == 0).float()              # neuron 0 now fires for category 0 only
    means = neurons.paired_mean_differences(a, b, cats, 4, neurons=torch.tensor([0]))
    assert means["selectivity"] == pytest.approx(1.0)
    assert means["breadth"] == pytest.approx(2 / 8 - 1.0)     # exceeds half its max on 2 of 8 real positions


def test_paired_mean_differences_do_not_collapse_on_tied_neurons():
    """Two of three neurons are unchanged (difference exactly 0, as the ~10% of MLP-0 neurons with
    selectivity 1.0 in both zoo models): the median difference would be 0; the mean is a third of the shift."""
    cats = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    a = torch.ones(1, 8, 3)
    b = a.clone()
    b[0, :, 0] = (cats[0] == 0).float()
    means = neurons.paired_mean_differences(a, b, cats, 4)
    assert means["selectivity"] == pytest.approx(1.0 / 3)
    assert means["breadth"] == pytest.approx((2 / 8 - 1.0) / 3)


def test_statistics_of_a_resample_of_examples_equal_those_of_its_positions_gathered():
    """Ground truth: neuron_statistics of the positions of the drawn examples, repeated as drawn."""
    g = torch.Generator().manual_seed(0)
    n_examples, lengths = 9, torch.randint(1, 6, (9,), generator=g)
    example = torch.repeat_interleave(torch.arange(n_examples), lengths)
    acts = torch.randn(len(example), 7, generator=g)
    cats = torch.randint(0, 3, (len(example),), generator=g)
    cats[:3] = torch.tensor([0, 1, 2])
    fast = neurons.ExampleNeuronStatistics(acts, cats, example, 4)   # category 3 never occurs: NaN in both
    for rows in (torch.arange(n_examples), torch.randint(0, n_examples, (n_examples,), generator=g), torch.tensor([4, 4, 2])):
        at = torch.cat([torch.nonzero(example == e)[:, 0] for e in rows.tolist()])
        expected = neurons.neuron_statistics(acts[at][None], cats[at][None], 4)
        got = fast.statistics(torch.bincount(rows, minlength=n_examples))
        for e, v in zip(expected, got):
            torch.testing.assert_close(v, e.double(), rtol=1e-5, atol=1e-6, equal_nan=True)


def test_example_statistics_refuse_uncategorised_positions_and_empty_resamples():
    acts, example = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="category"):
        neurons.ExampleNeuronStatistics(acts, torch.tensor([0, -1, 1, 1]), example, 2)
    with pytest.raises(ValueError, match="not all zero"):
        neurons.ExampleNeuronStatistics(acts, torch.tensor([0, 1, 1, 1]), example, 2).statistics(torch.zeros(2, dtype=torch.long))
