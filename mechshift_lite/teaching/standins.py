"""Offline stand-ins for the real checkpoints: a tiny BPE tokenizer and tiny random HF models.

The book's chapter 10 and the tests run the real-checkpoint code path on these, so nothing is
downloaded; readers with a GPU swap in the hub models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..real_tasks import countdown_prompt
from ..tasks import countdown, ioi

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

MASK_TOKEN = "<|mask|>"
END_TOKEN = "<|endoftext|>"
TINY_ARCHITECTURES = ("gpt2", "qwen2", "llama")


def tiny_tokenizer(vocab_size: int = 400, n_names: int = 16, seed: int = 0) -> PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer (GPT-2's scheme), trained in memory on the two tasks' text.

    Only the first ``n_names`` of :data:`tasks.ioi.NAMES` appear in the training text, so the
    others are split into several tokens (what :func:`single_token_names` filters out). Digits stay
    single tokens, as in Qwen's and LLaMA's tokenizers. Special tokens: ``<|endoftext|>`` (BOS,
    EOS and padding, not added automatically) and ``<|mask|>`` (the stand-in MDM's mask).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    names = ioi.NAMES[:n_names]
    sentences = [f"{ex.prompt} {ex.answer}" for ex in ioi.generate(200, seed, "train", names=names)]
    shots = countdown.generate(50, seed, "train")
    text = sentences + [f"{countdown_prompt(ex.meta['numbers'], ex.meta['target'], shots[:2])} {ex.answer}" for ex in shots]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_TOKEN, MASK_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(text, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=END_TOKEN, eos_token=END_TOKEN,
                                   pad_token=END_TOKEN, mask_token=MASK_TOKEN)


def tiny_hf_model(arch: str, vocab_size: int, seed: int = 0, n_layers: int = 4) -> PreTrainedModel:
    """A tiny HuggingFace causal LM with random weights, of the architecture of a real pair.

    ``"gpt2"`` (GPT-2 / DiffuGPT: LayerNorm, learned positions, tied embeddings), ``"qwen2"``
    (Qwen2.5 / Dream: RMSNorm, rotary, SwiGLU, q/k/v biases, grouped-query attention with 2 key/value
    heads for 4 query heads, untied) or ``"llama"`` (LLaMA-2 / DiffuLLaMA: as Qwen2 without biases,
    4 key/value heads). The weights are drawn from ``seed`` without touching the global generator.
    """
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    no_special = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)   # no generation-config warnings
    shared = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers,
                  num_attention_heads=4, max_position_embeddings=512, tie_word_embeddings=False, **no_special)
    builders = {
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=512, n_embd=32, n_layer=n_layers,
                                                   n_head=4, **no_special)),
        "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(num_key_value_heads=2, **shared)),
        "llama": lambda: LlamaForCausalLM(LlamaConfig(num_key_value_heads=4, **shared)),
    }
    if arch not in builders:
        raise ValueError(f"arch must be one of {TINY_ARCHITECTURES}; got {arch!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builders[arch]().eval()
