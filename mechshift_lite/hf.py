"""Load HuggingFace models into :class:`~mechshift_lite.model.Transformer`.

``from_hf`` reads a loaded ``GPT2LMHeadModel``, ``Qwen2ForCausalLM`` or ``LlamaForCausalLM``
and builds our transformer whose parameters are *reshaped views* of the HF tensors: no copy is
made, the dtype and device are kept, so a 7B model in bfloat16 fits one 80 GB GPU with room left
for EAP-IG. Several GPUs: load the HF model with ``device_map="auto"`` (layers spread over the
GPUs); our forward moves the residual stream to each block's device as it goes.

``load_pretrained`` fetches the real checkpoints by hub id for readers with internet (ARMs
GPT-2 / Qwen2.5 / LLaMA-2, and their MDMs DiffuGPT / Dream / DiffuLLaMA), applying the key
renames those checkpoints need (see ``shared/notes/masked-diffusion.md`` section 3). Nothing in
the book or the tests calls it: they run the same code on tiny random configs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .model import AttentionMode, Transformer

SUPPORTED = ("GPT2LMHeadModel", "Qwen2ForCausalLM", "LlamaForCausalLM")


def from_hf(hf_model: nn.Module, attention: AttentionMode = "causal") -> Transformer:
    """Our :class:`Transformer` sharing the weights of a HuggingFace causal LM.

    Args:
        hf_model: a ``GPT2LMHeadModel``, ``Qwen2ForCausalLM`` or ``LlamaForCausalLM``.
        attention: ``"causal"`` for an ARM, ``"bidirectional"`` for an MDM (DiffuGPT, Dream,
            DiffuLLaMA run the same architecture with full attention).

    The parameters do not require gradients (attribution needs gradients of activations only).
    """
    name = type(hf_model).__name__
    if name not in SUPPORTED:
        raise TypeError(
            f"unsupported HuggingFace model {name}; supported: {', '.join(SUPPORTED)} "
            "(Dream loads as Qwen2 and DiffuLLaMA as LLaMA through load_pretrained)"
        )
    cfg = config_from_hf(hf_model.config, name)
    with torch.device("meta"):
        model = Transformer(cfg, attention=attention)
    weights = _gpt2_weights(hf_model, cfg) if name == "GPT2LMHeadModel" else _llama_weights(hf_model, cfg)
    for path, tensor in weights.items():
        module_path, _, attr = path.rpartition(".")
        module = model.get_submodule(module_path) if module_path else model
        setattr(module, attr, nn.Parameter(tensor.detach(), requires_grad=False))
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:  # a programming error in the key map, never a user error
        raise RuntimeError(f"weights not loaded: {missing}")
    return model.eval()


def config_from_hf(hf_config, class_name: str) -> ModelConfig:
    """Translate a HuggingFace config into a :class:`ModelConfig`."""
    if class_name == "GPT2LMHeadModel":
        c = hf_config
        return ModelConfig(
            family="gpt2", d_vocab=c.vocab_size, n_ctx=c.n_positions, d_model=c.n_embd,
            n_layers=c.n_layer, n_heads=c.n_head, d_head=c.n_embd // c.n_head,
            d_mlp=c.n_inner or 4 * c.n_embd, act=c.activation_function, norm_eps=c.layer_norm_epsilon,
            tied_embeddings=True,
        )
    c = hf_config
    rope = getattr(c, "rope_parameters", None) or {"rope_type": "default", "rope_theta": getattr(c, "rope_theta", 10000.0)}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rotary scaling {rope.get('rope_type')!r} is not supported; only the default rotary positions")
    qwen = class_name == "Qwen2ForCausalLM"
    return ModelConfig(
        family="llama", d_vocab=c.vocab_size, n_ctx=c.max_position_embeddings, d_model=c.hidden_size,
        n_layers=c.num_hidden_layers, n_heads=c.num_attention_heads,
        d_head=getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads,
        d_mlp=c.intermediate_size, n_kv_heads=c.num_key_value_heads or c.num_attention_heads,
        act=c.hidden_act, norm_eps=c.rms_norm_eps, rope_theta=float(rope["rope_theta"]),
        qkv_bias=qwen or bool(getattr(c, "attention_bias", False)),
        out_bias=not qwen and bool(getattr(c, "attention_bias", False)),
        mlp_bias=bool(getattr(c, "mlp_bias", False)),
        tied_embeddings=bool(c.tie_word_embeddings),
    )


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
    if not cfg.tied_embeddings:
        out["W_U"] = hf.lm_head.weight.T
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


def _load_causal_lm(source: str, spec: HubModel, **kwargs) -> nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(source, **kwargs)


def _load_dream(source: str, spec: HubModel, **kwargs) -> nn.Module:
    """Dream ships custom code, but its weights are Qwen2's under the same key names, so we read
    its ``config.json`` into a ``Qwen2Config`` and load the weights without running remote code."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**_drop_model_type(_read_config(source)))
    return Qwen2ForCausalLM.from_pretrained(source, config=config, **kwargs)


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
