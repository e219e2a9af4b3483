"""The HF loader never returns a wrong model: every config either loads with HF's logits or is refused.

A property-based test draws small random configs across the fields that change the forward pass
and checks, against HuggingFace's own forward, that the loaded model matches to 1e-4 or that loading
refuses with an error naming the field. Which configs must be refused is decided here, by the test,
from the drawn values: a loader that refused everything would fail it.
"""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

import mechshift_lite as ml
from mechshift_lite.hf import UnsupportedConfigError, audit_config

V = 53
IDS = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(3))
SUPPORTED_ACTS = {"gelu_new", "gelu_pytorch_tanh", "gelu", "silu", "swish", "relu"}


def randomise(hf: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random biases and norm weights too (HF initialises them to 0 and 1), in eval mode."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return hf.eval()


def max_logit_gap(hf: torch.nn.Module) -> float:
    ours = ml.from_hf(hf, attention="causal")
    with torch.no_grad():
        return (ours(IDS) - hf(IDS).logits).abs().max().item()


def load_or_refusal(hf: torch.nn.Module) -> str | float:
    """The max |logit gap| when the loader accepts, else the refusal's message."""
    try:
        return max_logit_gap(hf)
    except UnsupportedConfigError as error:
        return str(error)


def test_untied_gpt2_loads_its_own_unembedding():
    hf = randomise(GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                                              tie_word_embeddings=False)), seed=0)
    assert not torch.equal(hf.lm_head.weight, hf.transformer.wte.weight), "the test needs a distinct lm_head"
    assert ml.from_hf(hf).W_U is not None
    assert max_logit_gap(hf) < 1e-4


def test_tied_gpt2_shares_the_embedding():
    hf = randomise(GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=16, n_embd=32, n_layer=1, n_head=4)), seed=0)
    assert hf.lm_head.weight is hf.transformer.wte.weight
    assert ml.from_hf(hf).W_U is None and max_logit_gap(hf) < 1e-4


gpt2_fields = st.fixed_dictionaries({
    "n_layer": st.integers(1, 2), "n_head": st.sampled_from([2, 4]), "n_positions": st.integers(9, 24),
    "n_inner": st.sampled_from([None, 24, 72]), "tie_word_embeddings": st.booleans(),
    "activation_function": st.sampled_from(["gelu_new", "gelu", "relu", "gelu_pytorch_tanh", "quick_gelu", "gelu_fast"]),
    "scale_attn_weights": st.booleans(), "scale_attn_by_inverse_layer_idx": st.booleans(),
    "reorder_and_upcast_attn": st.booleans(), "layer_norm_epsilon": st.sampled_from([1e-5, 1e-3]),
})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=gpt2_fields, seed=st.integers(0, 2**16))
def test_gpt2_configs_load_exactly_or_are_refused_by_name(fields, seed):
    hf = randomise(GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=32, **fields)), seed)
    refused = {
        "scale_attn_weights": not fields["scale_attn_weights"],
        "scale_attn_by_inverse_layer_idx": fields["scale_attn_by_inverse_layer_idx"],
        "reorder_and_upcast_attn": fields["reorder_and_upcast_attn"],
        "activation_function": fields["activation_function"] not in SUPPORTED_ACTS,
    }
    check(load_or_refusal(hf), fields, refused)


rope_scalings = st.sampled_from([None, {"rope_type": "default"}, {"rope_type": "linear", "factor": 2.0},
                                 {"rope_type": "dynamic", "factor": 2.0}])
llama_like_fields = {
    "num_hidden_layers": st.integers(1, 2), "num_key_value_heads": st.sampled_from([1, 2, 4]),
    "head_dim": st.sampled_from([None, 8, 12]), "intermediate_size": st.sampled_from([24, 40]),
    "tie_word_embeddings": st.booleans(), "rope_scaling": rope_scalings,
    "rope_theta": st.sampled_from([10000.0, 1e6]), "hidden_act": st.sampled_from(["silu", "gelu", "relu", "gelu_new", "tanh"]),
    "max_position_embeddings": st.sampled_from([16, 64]),
}


def llama_like(cls, config_cls, fields: dict, seed: int) -> torch.nn.Module:
    fields = {k: v for k, v in fields.items() if not (k == "head_dim" and v is None)}
    config = config_cls(vocab_size=V, hidden_size=32, num_attention_heads=4, bos_token_id=None,
                        eos_token_id=None, pad_token_id=None, **fields)
    return randomise(cls(config), seed)


def rope_refused(fields: dict) -> bool:
    scaling = fields["rope_scaling"]
    return scaling is not None and scaling.get("rope_type") != "default"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=st.fixed_dictionaries({**llama_like_fields, "attention_bias": st.booleans(), "mlp_bias": st.booleans(),
                                     "pretraining_tp": st.sampled_from([1, 2])}),
       seed=st.integers(0, 2**16))
def test_llama_configs_load_exactly_or_are_refused_by_name(fields, seed):
    hf = llama_like(LlamaForCausalLM, LlamaConfig, fields, seed)
    refused = {"rope": rope_refused(fields), "hidden_act": fields["hidden_act"] not in SUPPORTED_ACTS}
    check(load_or_refusal(hf), fields, refused)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=st.fixed_dictionaries({**llama_like_fields, "use_sliding_window": st.booleans(),
                                     "sliding_window": st.sampled_from([2, 4, 64]),
                                     "max_window_layers": st.integers(0, 2)}),
       seed=st.integers(0, 2**16))
def test_qwen2_configs_load_exactly_or_are_refused_by_name(fields, seed):
    hf = llama_like(Qwen2ForCausalLM, Qwen2Config, fields, seed)
    refused = {"rope": rope_refused(fields), "hidden_act": fields["hidden_act"] not in SUPPORTED_ACTS,
               "sliding_window": fields["use_sliding_window"]}
    check(load_or_refusal(hf), fields, refused)


def check(outcome: str | float, fields: dict, refused: dict[str, bool]) -> None:
    """A config with a refused value must be refused, by the name of one such field; any other must match."""
    if any(refused.values()):
        assert isinstance(outcome, str), f"{fields} should have been refused, but loaded (gap {outcome:.2e})"
        named = [field for field, bad in refused.items() if bad]
        assert any(field in outcome for field in named), f"refusal {outcome!r} names none of {named}"
    else:
        assert not isinstance(outcome, str), f"{fields} was refused: {outcome}"
        assert outcome < 1e-4, f"{fields}: max |logit difference| {outcome:.2e}"


def test_an_unknown_field_with_a_non_default_value_is_refused_by_name():
    config = GPT2Config(vocab_size=V, n_positions=16, n_embd=32, n_layer=1, n_head=4)
    config.attention_temperature = 0.5   # a made-up option a future HF might read
    with pytest.raises(UnsupportedConfigError, match=r"attention_temperature=0\.5 is not known"):
        audit_config(config, "GPT2LMHeadModel")


# The published configs of the checkpoints the book names (fields and values as on their hub pages,
# the sizes shrunk): the audit must accept them, or chapter 10 would refuse real models.
HUB_CONFIGS = {
    "gpt2": (GPT2Config, dict(activation_function="gelu_new", architectures=["GPT2LMHeadModel"], attn_pdrop=0.1,
                              bos_token_id=50256, embd_pdrop=0.1, eos_token_id=50256, initializer_range=0.02,
                              layer_norm_epsilon=1e-05, model_type="gpt2", n_ctx=1024, n_embd=32, n_head=4, n_layer=2,
                              n_positions=1024, resid_pdrop=0.1, summary_activation=None, summary_first_dropout=0.1,
                              summary_proj_to_labels=True, summary_type="cls_index", summary_use_proj=True,
                              task_specific_params={"text-generation": {"do_sample": True, "max_length": 50}},
                              vocab_size=V)),
    "Qwen/Qwen2.5-7B": (Qwen2Config, dict(architectures=["Qwen2ForCausalLM"], attention_dropout=0.0, bos_token_id=1,
                                          eos_token_id=1, hidden_act="silu", hidden_size=32, initializer_range=0.02,
                                          intermediate_size=40, max_position_embeddings=131072, max_window_layers=28,
                                          model_type="qwen2", num_attention_heads=4, num_hidden_layers=2,
                                          num_key_value_heads=2, rms_norm_eps=1e-06, rope_theta=1000000.0,
                                          sliding_window=131072, tie_word_embeddings=False, torch_dtype="bfloat16",
                                          use_cache=True, use_mrope=False, use_sliding_window=False, vocab_size=V)),
    "meta-llama/Llama-2-7b-hf": (LlamaConfig, dict(architectures=["LlamaForCausalLM"], bos_token_id=1, eos_token_id=2,
                                                   hidden_act="silu", hidden_size=32, initializer_range=0.02,
                                                   intermediate_size=40, max_position_embeddings=4096, model_type="llama",
                                                   num_attention_heads=4, num_hidden_layers=2, num_key_value_heads=4,
                                                   pretraining_tp=1, rms_norm_eps=1e-05, rope_scaling=None,
                                                   tie_word_embeddings=False, torch_dtype="float16", use_cache=True,
                                                   vocab_size=V)),
}


@pytest.mark.parametrize("hub_id", list(HUB_CONFIGS))
def test_the_books_hub_configs_pass_the_audit_and_load_exactly(hub_id):
    config_cls, fields = HUB_CONFIGS[hub_id]
    model_cls = {GPT2Config: GPT2LMHeadModel, LlamaConfig: LlamaForCausalLM, Qwen2Config: Qwen2ForCausalLM}[config_cls]
    hf = randomise(model_cls(config_cls(**fields)), seed=1)
    assert max_logit_gap(hf) < 1e-4
