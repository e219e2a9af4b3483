"""Loading HuggingFace models: logits match HF on tiny random configs (no downloads)."""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

import mechshift_lite as ml
from mechshift_lite.hf import diffugpt_to_gpt2_keys, load_pretrained

V = 61
SMALL = dict(vocab_size=V, hidden_size=48, intermediate_size=80, num_hidden_layers=2, max_position_embeddings=32,
             bos_token_id=None, eos_token_id=None, pad_token_id=None)


def eager(config):
    """The config with eager attention, set before the model is built (transformers 4.x reads it then)."""
    config._attn_implementation = "eager"
    return config


def gpt2(**kw):
    return GPT2LMHeadModel(eager(GPT2Config(vocab_size=V, n_positions=32, n_embd=48, n_layer=2, n_head=4,
                                            bos_token_id=None, eos_token_id=None, **kw)))


def llama(**kw):
    return LlamaForCausalLM(eager(LlamaConfig(**{**SMALL, "num_attention_heads": 4, "num_key_value_heads": 4, **kw})))


def qwen(**kw):
    return Qwen2ForCausalLM(eager(Qwen2Config(**{**SMALL, "num_attention_heads": 4, "num_key_value_heads": 4, **kw})))


MODELS = {
    "gpt2": lambda: gpt2(),
    "llama-gqa-untied": lambda: llama(num_key_value_heads=2, tie_word_embeddings=False),
    "llama-attention-bias-tied": lambda: llama(attention_bias=True, mlp_bias=True, tie_word_embeddings=True),
    "qwen2-gqa-tied": lambda: qwen(num_key_value_heads=1, tie_word_embeddings=True),
    "qwen2-untied": lambda: qwen(tie_word_embeddings=False),
}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    hf = MODELS[name]()
    with torch.no_grad():  # random biases and norm weights, so that every weight is exercised
        for pname, p in hf.named_parameters():
            if pname.endswith("bias") or "norm" in pname or "ln_" in pname:
                p.add_(0.2 * torch.randn_like(p))
    return hf.eval()


def batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    return ids, mask


def real(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x[mask.bool()]


@pytest.mark.parametrize("name", list(MODELS))
def test_causal_logits_match_hf(name):
    hf = build(name)
    ids, mask = batch()
    ours = ml.from_hf(hf, attention="causal")
    with torch.no_grad():
        diff = (real(ours(ids, mask), mask) - real(hf(ids, attention_mask=mask).logits, mask)).abs().max()
    assert diff < 1e-4, f"{name}: max |logit difference| {diff:.2e}"


def hf_bidirectional_logits(hf: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """HF's own logits with every real key visible to every query.

    transformers 5 (and 4.x LLaMA/Qwen2) take a 4-D additive mask as given. GPT-2 in 4.x applies
    its causal buffer ``attn.bias`` whatever the mask says, so that buffer is opened for the call.
    """
    buffers = [m.bias for m in hf.modules() if type(m).__name__.startswith("GPT2") and isinstance(getattr(m, "bias", None), torch.Tensor)
               and m.bias.dtype == torch.bool]
    if buffers:
        saved = [b.clone() for b in buffers]
        for b in buffers:
            b.fill_(True)
        try:
            return hf(ids, attention_mask=mask).logits
        finally:
            for b, old in zip(buffers, saved):
                b.copy_(old)
    B, P = ids.shape
    visible = mask.bool()[:, None, None, :].expand(B, 1, P, P)
    additive = torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)  # HF eager adds it
    return hf(ids, attention_mask=additive).logits


@pytest.mark.parametrize("name", list(MODELS))
def test_bidirectional_logits_match_hf_with_all_visible_mask(name):
    hf = build(name)
    ids, mask = batch()
    ours = ml.from_hf(hf, attention="bidirectional")
    with torch.no_grad():
        reference = hf_bidirectional_logits(hf, ids, mask)
        diff = (real(ours(ids, mask), mask) - real(reference, mask)).abs().max()
        causal_gap = (real(ours(ids, mask, attention="causal"), mask) - real(reference, mask)).abs().max()
    assert diff < 1e-4, f"{name}: max |logit difference| {diff:.2e}"
    assert causal_gap > 1e-3, "the bidirectional check would pass for a causal model"


@pytest.mark.parametrize("name", ["gpt2", "qwen2-gqa-tied"])
def test_weights_are_shared_views_with_dtype_kept(name):
    hf = build(name).to(torch.bfloat16)
    ours = ml.from_hf(hf)
    embed = hf.get_input_embeddings().weight
    assert ours.W_E.dtype == torch.bfloat16 and ours.W_E.data_ptr() == embed.data_ptr()
    hf_bytes = sum(p.numel() * p.element_size() for p in hf.parameters())
    with torch.no_grad():
        embed[0, 0] = 7.0  # a write through HF is seen by ours: shared storage, not a copy
    assert ours.W_E[0, 0].item() == 7.0
    assert all(not p.requires_grad for p in ours.parameters())
    assert hf_bytes > 0


def test_unsupported_architecture_is_named():
    with pytest.raises(TypeError, match="unsupported HuggingFace model Linear; supported: GPT2LMHeadModel"):
        ml.from_hf(torch.nn.Linear(2, 2))


def test_diffugpt_checkpoint_loads_through_key_renames(tmp_path):
    hf = build("gpt2")
    state = {k.replace("transformer.", "denoise_model.", 1): v for k, v in hf.state_dict().items()
             if k.startswith("transformer.") and k != "transformer.wte.weight"}
    state["embed_tokens.weight"] = hf.transformer.wte.weight.detach().clone()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    hf.config.save_pretrained(tmp_path)
    ours = load_pretrained("diffusionfamily/diffugpt-s", path=str(tmp_path), dtype=torch.float32)
    assert ours.attention == "bidirectional"
    ids, _ = batch()
    torch.testing.assert_close(ours(ids), ml.from_hf(hf, "bidirectional")(ids), atol=1e-5, rtol=0)
    with pytest.raises(KeyError, match="unexpected key"):
        diffugpt_to_gpt2_keys({"transformer.h.0.attn.bias": torch.zeros(1)})


def test_dream_checkpoint_loads_as_qwen2_without_remote_code(tmp_path):
    hf = build("qwen2-untied")
    hf.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(model_type="Dream", architectures=["DreamModel"], auto_map={"AutoModel": "modeling_dream.DreamModel"})
    (tmp_path / "config.json").write_text(json.dumps(config))
    ours = load_pretrained("Dream-org/Dream-v0-Base-7B", path=str(tmp_path), dtype=torch.float32)
    ids, _ = batch()
    torch.testing.assert_close(ours(ids), ml.from_hf(hf, "bidirectional")(ids), atol=1e-5, rtol=0)


def test_unknown_hub_id_lists_the_known_ones():
    with pytest.raises(KeyError, match="known: gpt2"):
        load_pretrained("bert-base-uncased")
