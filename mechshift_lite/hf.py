"""Load HuggingFace models into :class:`~mechshift_lite.model.Transformer`.

``from_hf`` reads a loaded ``GPT2LMHeadModel``, ``Qwen2ForCausalLM`` or ``LlamaForCausalLM``
and builds our transformer whose parameters are *reshaped views* of the HF tensors: no copy is
made, the dtype and device are kept, so a 7B model in bfloat16 fits one 80 GB GPU with room left
for EAP-IG. Several GPUs: load the HF model with ``device_map="auto"`` (layers spread over the
GPUs); our forward moves the residual stream to each block's device as it goes.

A loader that cannot reproduce a model exactly refuses it. Every field of the HF config is
sorted into one of three groups (see :func:`audit_config`): fields that never change the forward
pass in evaluation mode (ids, dropout, caching), fields we honour, and fields whose value we
accept only where we reproduce it. A field outside all three whose value differs from its
class's default is refused too, so a new HF option is never silently ignored. Sizes, biases and
the tied unembedding are read from the weight tensors themselves, which is what the HF forward
uses, whatever the config claims.

``load_pretrained`` fetches the real checkpoints by hub id for readers with internet (ARMs
GPT-2 / Qwen2.5 / LLaMA-2, and their MDMs DiffuGPT / Dream / DiffuLLaMA), applying the key
renames those checkpoints need. Nothing in the book or the tests calls it with a hub id: they
run the same code on tiny random configs and local folders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .model import AttentionMode, Transformer

SUPPORTED = ("GPT2LMHeadModel", "Qwen2ForCausalLM", "LlamaForCausalLM")


class UnsupportedConfigError(ValueError):
    """A HuggingFace config asks for something this loader cannot reproduce exactly."""


# Fields that do not change an evaluation-mode forward pass: bookkeeping, token ids, dropout
# (off in eval mode), caching, output switches, initialisation, and HF's attention kernels
# (eager / sdpa / flash compute the same function).
INERT_FIELDS = frozenset({
    "transformers_version", "architectures", "model_type", "_name_or_path", "name_or_path",
    "dtype", "torch_dtype", "use_bfloat16", "id2label", "label2id", "problem_type",
    "finetuning_task", "tokenizer_class", "prefix", "task_specific_params", "auto_map",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "mask_token_id",
    "decoder_start_token_id", "output_hidden_states", "output_attentions", "return_dict",
    "use_return_dict", "torchscript", "use_cache", "initializer_range", "attention_dropout",
    "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_type", "summary_use_proj",
    "summary_activation", "summary_proj_to_labels", "summary_first_dropout",
    "chunk_size_feed_forward", "tf_legacy_loss", "_attn_implementation_autoset",
    "_attn_implementation", "_commit_hash", "gradient_checkpointing",
    "n_ctx",  # GPT-2's legacy alias of n_positions; the position table's size is what counts
})


@dataclass(frozen=True)
class FieldRule:
    """Which values of one config field we reproduce, and what any other value would mean."""

    accepts: Callable[[Any], bool]
    meaning: str


def _is(expected: Any) -> Callable[[Any], bool]:
    return lambda value: value == expected


def _default_rope(value: Any) -> bool:
    """``rope_scaling`` (transformers 4) or ``rope_parameters`` (5): plain rotary positions only."""
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    kind = value.get("rope_type", value.get("type", "default"))
    return kind == "default" and value.get("partial_rotary_factor", 1.0) == 1.0


_GPT2_RULES = {
    "scale_attn_weights": FieldRule(_is(True), "attention scores without the 1/sqrt(d_head) scale"),
    "scale_attn_by_inverse_layer_idx": FieldRule(_is(False), "attention scores scaled by 1/(layer + 1)"),
    "reorder_and_upcast_attn": FieldRule(_is(False), "attention scores computed in float32 in another order"),
    "add_cross_attention": FieldRule(_is(False), "cross-attention to an encoder"),
    "is_decoder": FieldRule(lambda v: True, ""),   # GPT-2 is causal whatever this says
}
_LLAMA_RULES = {
    "rope_scaling": FieldRule(_default_rope, "scaled rotary positions (linear, dynamic, YaRN, LLaMA-3, ...)"),
    "rope_parameters": FieldRule(_default_rope, "scaled or partial rotary positions"),
    # pretraining_tp > 1 splits HF's matmuls into slices and sums them: the same function.
    "pretraining_tp": FieldRule(lambda v: isinstance(v, int) and v >= 1, "a tensor-parallel split"),
}
_QWEN2_RULES = {
    **_LLAMA_RULES,
    "use_sliding_window": FieldRule(_is(False), "sliding-window attention in some layers"),
    "layer_types": FieldRule(lambda v: v is None or all(t == "full_attention" for t in v),
                             "sliding-window attention in some layers"),
    "use_mrope": FieldRule(_is(False), "multimodal rotary positions"),
    # Only read when use_sliding_window is true, which is refused above.
    "sliding_window": FieldRule(lambda v: True, ""),
    "max_window_layers": FieldRule(lambda v: True, ""),
}
_COMMON_RULES = {
    "is_encoder_decoder": FieldRule(_is(False), "an encoder-decoder model"),
    "pruned_heads": FieldRule(lambda v: not v, "pruned attention heads"),
}

# Fields whose value is honoured: read into the ModelConfig, or checked against the weights.
_GPT2_HONOURED = frozenset({
    "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function",
    "layer_norm_epsilon", "tie_word_embeddings",
})
_LLAMA_HONOURED = frozenset({
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "attention_bias", "mlp_bias", "head_dim", "tie_word_embeddings",
})

FIELDS: dict[str, tuple[frozenset[str], dict[str, FieldRule]]] = {
    "GPT2LMHeadModel": (_GPT2_HONOURED, {**_COMMON_RULES, **_GPT2_RULES}),
    "LlamaForCausalLM": (_LLAMA_HONOURED, {**_COMMON_RULES, **_LLAMA_RULES}),
    "Qwen2ForCausalLM": (_LLAMA_HONOURED, {**_COMMON_RULES, **_QWEN2_RULES}),
}

# HF activation names -> ours (only the ones that compute the same function).
_ACTIVATIONS = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu",
                "silu": "silu", "swish": "silu", "relu": "relu"}


def audit_config(hf_config, class_name: str) -> None:
    """Refuse a config with any field this loader would not reproduce exactly.

    Raises:
        UnsupportedConfigError: naming the first offending field, its value and what it means.
    """
    honoured, rules = FIELDS[class_name]
    values = hf_config.to_dict()
    defaults = type(hf_config)().to_dict()
    for field, value in values.items():
        if field in rules:
            rule = rules[field]
            if not rule.accepts(value):
                raise UnsupportedConfigError(
                    f"{class_name} config field {field}={value!r} is not supported ({rule.meaning}); "
                    "this loader reproduces only the standard architecture, and refuses rather than "
                    "return a model whose logits differ from HuggingFace's"
                )
        elif field not in honoured and field not in INERT_FIELDS and (field not in defaults or defaults[field] != value):
            raise UnsupportedConfigError(
                f"{class_name} config field {field}={value!r} is not known to this loader and may change "
                "the forward pass; loading refused (if it does not, add it to mechshift_lite.hf.INERT_FIELDS "
                "with a test)"
            )
    activation = "activation_function" if class_name == "GPT2LMHeadModel" else "hidden_act"
    if values[activation] not in _ACTIVATIONS:
        raise UnsupportedConfigError(
            f"{class_name} config field {activation}={values[activation]!r} is not supported; "
            f"supported: {', '.join(_ACTIVATIONS)}"
        )


def from_hf(hf_model: nn.Module, attention: AttentionMode = "causal") -> Transformer:
    """Our :class:`Transformer` sharing the weights of a HuggingFace causal LM.

    Args:
        hf_model: a ``GPT2LMHeadModel``, ``Qwen2ForCausalLM`` or ``LlamaForCausalLM``.
        attention: ``"causal"`` for an ARM, ``"bidirectional"`` for an MDM (DiffuGPT, Dream,
            DiffuLLaMA run the same architecture with full attention).

    Raises:
        TypeError: for another architecture.
        UnsupportedConfigError: when the config asks for something we do not reproduce
            (sliding windows, scaled rotary positions, ...), naming the field and its value.

    The parameters do not require gradients (attribution needs gradients of activations only).
    """
    name = type(hf_model).__name__
    if name not in SUPPORTED:
        raise TypeError(
            f"unsupported HuggingFace model {name}; supported: {', '.join(SUPPORTED)} "
            "(Dream loads as Qwen2 and DiffuLLaMA as LLaMA through load_pretrained)"
        )
    cfg = config_from_hf(hf_model)
    with torch.device("meta"):
        model = Transformer(cfg, attention=attention)
    weights = _gpt2_weights(hf_model, cfg) if name == "GPT2LMHeadModel" else _llama_weights(hf_model, cfg)
    if not cfg.tied_embeddings:
        weights["W_U"] = hf_model.get_output_embeddings().weight.T
    for path, tensor in weights.items():
        module_path, _, attr = path.rpartition(".")
        module = model.get_submodule(module_path) if module_path else model
        setattr(module, attr, nn.Parameter(tensor.detach(), requires_grad=False))
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:  # a programming error in the key map, never a user error
        raise RuntimeError(f"weights not loaded: {missing}")
    return model.eval()


def config_from_hf(hf_model: nn.Module) -> ModelConfig:
    """The :class:`ModelConfig` of a HuggingFace model, after :func:`audit_config`.

    Sizes, biases and tying are read from the weights (what HF's forward computes with), the
    rest from the config.
    """
    name = type(hf_model).__name__
    c = hf_model.config
    audit_config(c, name)
    tied = _unembedding_is_embedding(hf_model)
    if name == "GPT2LMHeadModel":
        return ModelConfig(
            family="gpt2", d_vocab=c.vocab_size, n_ctx=hf_model.transformer.wpe.weight.shape[0], d_model=c.n_embd,
            n_layers=c.n_layer, n_heads=c.n_head, d_head=c.n_embd // c.n_head,
            d_mlp=hf_model.transformer.h[0].mlp.c_fc.weight.shape[1], act=_ACTIVATIONS[c.activation_function],
            norm_eps=c.layer_norm_epsilon, tied_embeddings=tied,
        )
    layer = hf_model.model.layers[0]
    a, mlp = layer.self_attn, layer.mlp
    d_head = a.q_proj.weight.shape[0] // c.num_attention_heads
    qkv_bias = {p.bias is not None for p in (a.q_proj, a.k_proj, a.v_proj)}
    mlp_bias = {p.bias is not None for p in (mlp.gate_proj, mlp.up_proj, mlp.down_proj)}
    if len(qkv_bias) > 1 or len(mlp_bias) > 1:
        raise UnsupportedConfigError(f"{name}: biases on only some of the q/k/v or MLP projections are not supported")
    return ModelConfig(
        family="llama", d_vocab=c.vocab_size, n_ctx=c.max_position_embeddings, d_model=c.hidden_size,
        n_layers=c.num_hidden_layers, n_heads=c.num_attention_heads, d_head=d_head,
        d_mlp=mlp.gate_proj.weight.shape[0], n_kv_heads=a.k_proj.weight.shape[0] // d_head,
        act=_ACTIVATIONS[c.hidden_act], norm_eps=c.rms_norm_eps, rope_theta=_rope_theta(c),
        qkv_bias=qkv_bias.pop(), out_bias=a.o_proj.bias is not None, mlp_bias=mlp_bias.pop(),
        tied_embeddings=tied,
    )


def _unembedding_is_embedding(hf_model: nn.Module) -> bool:
    """Whether the LM head *is* the token embedding (shared storage), as HF's forward sees it."""
    head, embed = hf_model.get_output_embeddings(), hf_model.get_input_embeddings()
    if getattr(head, "bias", None) is not None:
        raise UnsupportedConfigError(f"{type(hf_model).__name__}: an LM head with a bias is not supported")
    return head.weight is embed.weight or (
        head.weight.shape == embed.weight.shape and head.weight.data_ptr() == embed.weight.data_ptr()
    )


def _rope_theta(hf_config) -> float:
    """The rotary base: ``rope_parameters["rope_theta"]`` (transformers 5) or ``rope_theta`` (4)."""
    rope = getattr(hf_config, "rope_parameters", None) or {}
    return float(rope.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0)))


def _gpt2_weights(hf: nn.Module, cfg: ModelConfig) -> dict[str, Tensor]:
    """Our parameter paths -> views of GPT-2's tensors (Conv1D weights are ``[in, out]``)."""
    t, D, H, K = hf.transformer, cfg.d_model, cfg.n_heads, cfg.d_head
    out = {"W_E": t.wte.weight, "W_pos": t.wpe.weight, "ln_final.w": t.ln_f.weight, "ln_final.b": t.ln_f.bias}
    for l, block in enumerate(t.h):
        p = f"blocks.{l}."
        W, b = block.attn.c_attn.weight, block.attn.c_attn.bias       # [D, 3D], [3D]
        for i, name in enumerate("QKV"):
            out[p + f"attn.W_{name}"] = W[:, i * D:(i + 1) * D].view(D, H, K).permute(1, 0, 2)
            out[p + f"attn.b_{name}"] = b[i * D:(i + 1) * D].view(H, K)
        out[p + "attn.W_O"] = block.attn.c_proj.weight.view(H, K, D)
        out[p + "attn.b_O"] = block.attn.c_proj.bias
        out[p + "mlp.W_in"], out[p + "mlp.b_in"] = block.mlp.c_fc.weight, block.mlp.c_fc.bias
        out[p + "mlp.W_out"], out[p + "mlp.b_out"] = block.mlp.c_proj.weight, block.mlp.c_proj.bias
        out[p + "ln1.w"], out[p + "ln1.b"] = block.ln_1.weight, block.ln_1.bias
        out[p + "ln2.w"], out[p + "ln2.b"] = block.ln_2.weight, block.ln_2.bias
    return out


def _llama_weights(hf: nn.Module, cfg: ModelConfig) -> dict[str, Tensor]:
    """Our parameter paths -> views of LLaMA/Qwen2 tensors (``nn.Linear`` weights are ``[out, in]``)."""
    m, D, H, G, K = hf.model, cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.d_head
    out = {"W_E": m.embed_tokens.weight, "ln_final.w": m.norm.weight}
    for l, layer in enumerate(m.layers):
        p, a = f"blocks.{l}.", layer.self_attn
        for name, proj, heads in (("Q", a.q_proj, H), ("K", a.k_proj, G), ("V", a.v_proj, G)):
            out[p + f"attn.W_{name}"] = proj.weight.view(heads, K, D).permute(0, 2, 1)
            if proj.bias is not None:
                out[p + f"attn.b_{name}"] = proj.bias.view(heads, K)
        out[p + "attn.W_O"] = a.o_proj.weight.view(D, H, K).permute(1, 2, 0)
        if a.o_proj.bias is not None:
            out[p + "attn.b_O"] = a.o_proj.bias
        mlp = layer.mlp
        for ours, proj in (("gate", mlp.gate_proj), ("in", mlp.up_proj)):
            out[p + f"mlp.W_{ours}"] = proj.weight.T
            if proj.bias is not None:
                out[p + f"mlp.b_{ours}"] = proj.bias
        out[p + "mlp.W_out"] = mlp.down_proj.weight.T
        if mlp.down_proj.bias is not None:
            out[p + "mlp.b_out"] = mlp.down_proj.bias
        out[p + "ln1.w"], out[p + "ln2.w"] = layer.input_layernorm.weight, layer.post_attention_layernorm.weight
    return out


# ----------------------------------------------------------------------------------------------
# Real checkpoints by hub id (needs internet and, for 7B models, a large GPU)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubModel:
    """A checkpoint the book knows how to load.

    Attributes:
        kind: ``"arm"`` or ``"mdm"``.
        loader: ``"causal-lm"`` (plain ``AutoModelForCausalLM``), ``"diffugpt"`` (renamed GPT-2
            keys) or ``"dream"`` (Qwen2 weights under a custom config).
        base: the ARM it was post-trained from (for MDMs) or its own id.
        mask_token_id: the ``[MASK]`` id an MDM was trained with (None for ARMs).
    """

    kind: str
    loader: str
    base: str
    mask_token_id: int | None = None

    @property
    def attention(self) -> AttentionMode:
        return "bidirectional" if self.kind == "mdm" else "causal"


HUB_MODELS: dict[str, HubModel] = {
    "gpt2": HubModel("arm", "causal-lm", "gpt2"),
    "gpt2-medium": HubModel("arm", "causal-lm", "gpt2-medium"),
    "diffusionfamily/diffugpt-s": HubModel("mdm", "diffugpt", "gpt2", mask_token_id=10541),
    "diffusionfamily/diffugpt-m": HubModel("mdm", "diffugpt", "gpt2-medium", mask_token_id=50257),
    "Qwen/Qwen2.5-0.5B": HubModel("arm", "causal-lm", "Qwen/Qwen2.5-0.5B"),
    "Qwen/Qwen2.5-7B": HubModel("arm", "causal-lm", "Qwen/Qwen2.5-7B"),
    "Dream-org/Dream-v0-Base-7B": HubModel("mdm", "dream", "Qwen/Qwen2.5-7B", mask_token_id=151666),
    "meta-llama/Llama-2-7b-hf": HubModel("arm", "causal-lm", "meta-llama/Llama-2-7b-hf"),
    "diffusionfamily/diffullama": HubModel("mdm", "causal-lm", "meta-llama/Llama-2-7b-hf", mask_token_id=811),
}


def load_pretrained(hub_id: str, dtype: torch.dtype = torch.bfloat16, device: str | None = None, **hf_kwargs) -> Transformer:
    """Download a known checkpoint (or read a local folder laid out like it) and wrap it.

    Args:
        hub_id: a key of :data:`HUB_MODELS`, e.g. ``"gpt2"`` / ``"diffusionfamily/diffugpt-s"``.
            A local folder works too when passed with ``hub_id=<known id>`` and
            ``path=<folder>`` in ``hf_kwargs``.
        dtype, device: passed to HuggingFace (``device="auto"`` spreads layers over GPUs).
    """
    if hub_id not in HUB_MODELS:
        raise KeyError(f"unknown checkpoint {hub_id!r}; known: {', '.join(HUB_MODELS)}")
    spec = HUB_MODELS[hub_id]
    source = hf_kwargs.pop("path", hub_id)
    device_kwargs = {"device_map": device} if device else {}
    hf_model = _LOADERS[spec.loader](source, spec, dtype=dtype, **device_kwargs, **hf_kwargs)
    return from_hf(hf_model.eval(), attention=spec.attention)


def _dtype_keyword() -> str:
    """``from_pretrained`` takes ``dtype=`` from transformers 4.56 on, ``torch_dtype=`` before."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _from_pretrained(cls, source: str, dtype: torch.dtype, **kwargs) -> nn.Module:
    return cls.from_pretrained(source, **{_dtype_keyword(): dtype}, **kwargs)


def _load_causal_lm(source: str, spec: HubModel, dtype: torch.dtype, **kwargs) -> nn.Module:
    from transformers import AutoModelForCausalLM

    return _from_pretrained(AutoModelForCausalLM, source, dtype, **kwargs)


def _load_dream(source: str, spec: HubModel, dtype: torch.dtype, **kwargs) -> nn.Module:
    """Dream ships custom code, but its weights are Qwen2's under the same key names, so we read
    its ``config.json`` into a ``Qwen2Config`` and load the weights without running remote code."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**_drop_model_type(_read_config(source)))
    return _from_pretrained(Qwen2ForCausalLM, source, dtype, config=config, **kwargs)


def _load_diffugpt(source: str, spec: HubModel, dtype: torch.dtype = torch.float32, device_map=None, **kwargs) -> nn.Module:
    """DiffuGPT is a ``DiscreteDiffusionModel`` (not an AutoModel): GPT-2 weights stored as
    ``embed_tokens.weight`` and ``denoise_model.*``; rename them into a ``GPT2LMHeadModel``."""
    from safetensors.torch import load_file
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = Path(source)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors"]))
    state = diffugpt_to_gpt2_keys(load_file(str(folder / "model.safetensors")))
    config = GPT2Config.from_pretrained(folder) if (folder / "config.json").exists() else GPT2Config.from_pretrained(spec.base)
    config.vocab_size = state["transformer.wte.weight"].shape[0]
    model = GPT2LMHeadModel(config)
    model.load_state_dict(state, strict=False)   # lm_head is tied to wte
    model.tie_weights()
    return model.to(dtype=dtype, device=device_map if isinstance(device_map, str) and device_map != "auto" else None)


def diffugpt_to_gpt2_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename DiffuGPT checkpoint keys to ``GPT2LMHeadModel`` keys.

    ``embed_tokens.weight`` -> ``transformer.wte.weight`` (and the tied ``lm_head.weight``);
    ``denoise_model.X`` -> ``transformer.X``. Unknown keys are an error.
    """
    renamed = {}
    for key, value in state.items():
        if key == "embed_tokens.weight":
            renamed["transformer.wte.weight"] = value
            renamed["lm_head.weight"] = value
        elif key.startswith("denoise_model."):
            renamed["transformer." + key.removeprefix("denoise_model.")] = value
        else:
            raise KeyError(f"unexpected key {key!r} in a DiffuGPT checkpoint (expected embed_tokens.* / denoise_model.*)")
    return renamed


def _read_config(source: str) -> dict:
    folder = Path(source)
    if folder.is_dir():
        return json.loads((folder / "config.json").read_text())
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(source, "config.json")).read_text())


def _drop_model_type(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("model_type", "architectures", "auto_map", "transformers_version")}


_LOADERS: dict[str, Callable[..., nn.Module]] = {
    "causal-lm": _load_causal_lm,
    "dream": _load_dream,
    "diffugpt": _load_diffugpt,
}
