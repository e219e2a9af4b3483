# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. A transformer you can read
#
# Every analysis in this book (edge attribution, circuits, logit lens) rests on one fact about
# pre-norm transformers: **the residual stream is a sum of the outputs of its components**. This
# chapter builds the model that the rest of the book uses and checks that fact with numbers.
#
# By the end of this chapter you will be able to:
#
# - name the *nodes* of a transformer's computational graph (`input`, `a{layer}.h{head}`, `m{layer}`)
#   and the *destinations* that read from the residual stream (`a1.h0<q>`, `m0`, `logits`);
# - rebuild the residual stream from node outputs, and compute one head's output by hand;
# - switch the same weights between causal attention (an autoregressive model, ARM) and
#   bidirectional attention (a masked diffusion model, MDM);
# - load a HuggingFace model (GPT-2, Qwen2, LLaMA) into the same code and check it matches.

# %% tags=["skip-execution", "remove-cell"]
# Colab / fresh environments: install the companion package pinned to this book release.
import sys
if "google.colab" in sys.modules:
    %pip install -q "mechshift-lite @ git+https://github.com/mechshift-lite/mechshift-lite@v0.1.0"

# %%
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown

import mechshift_lite as ml
from mechshift_lite import viz
from mechshift_lite.teaching import checks

# %% [markdown]
# ## A small GPT-2-style model
#
# `ModelConfig` holds every size; `Transformer` is a few hundred readable lines
# (`mechshift_lite/model.py`). Weights are stored per head, in the shapes you would write on a
# whiteboard: `W_Q[head, d_model, d_head]`, `W_O[head, d_head, d_model]`.

# %%
cfg = ml.ModelConfig(family="gpt2", d_vocab=50, n_ctx=16, d_model=64, n_layers=2, n_heads=4, d_head=16, d_mlp=256)
model = ml.Transformer(cfg).init_weights(seed=0)
for name, p in list(model.named_parameters())[:8]:
    print(f"{name:22s} {tuple(p.shape)}")
print("...", sum(p.numel() for p in model.parameters()), "parameters")

# %% [markdown]
# ## Nodes and destinations
#
# The graph has one *source node* per attention head and per MLP, plus the token embedding
# `input`. Each head reads the residual stream three times (its query, key and value inputs are
# separate destinations, as in the EAP-IG reference {cite:p}`hanna2024faith`), each MLP once, and the unembedding once.

# %%
graph = model.graph
print("sources:     ", graph.src_names)
print("destinations:", graph.dst_names[:5], "...", graph.dst_names[-2:])
print("edges:", graph.n_edges, " e.g.", graph.edge_names[:3])

# %% [markdown]
# `run_with_nodes` records every node's output and every destination's input by name. The
# residual stream that the unembedding reads (`inputs["logits"]`) should equal the sum of all node
# outputs, plus the terms that belong to no node: the position embeddings and one output bias per
# attention layer. (A model without learned position embeddings has `W_pos = None`, and an
# attention layer without an output bias has `b_O = None`.)
#
# **1. Rebuild the residual stream.** *(difficulty ★☆☆, importance ★★★, about 10 minutes)*
#
# Write `residual_from_nodes(model, run) -> Tensor` that returns the final residual stream
# `[batch, pos, d_model]` from `run.outputs` (node name -> `[batch, pos, d_model]`) and the
# model's constant terms. It must work for both block families (LLaMA-style models have no
# position embeddings, and their attention may have no output bias).
#
# ```{dropdown} Hint 1
# `model.W_pos` is `[n_ctx, d_model]`: take its first `pos` rows; it broadcasts over the batch.
# ```
#
# ```{dropdown} Hint 2
# The output biases live in `model.blocks[layer].attn.b_O` (`[d_model]`), one per layer, or None.
# ```

# %% tags=["hide-input", "solution"]
def residual_from_nodes(model, run):
    """[batch, pos, d_model]: the sum of all node outputs plus position embeddings and output biases."""
    total = sum(run.outputs.values())
    if model.W_pos is not None:  # learned position embeddings (GPT-2); LLaMA-style models rotate q and k instead
        total = total + model.W_pos[: total.shape[1]]
    return total + sum(b.attn.b_O for b in model.blocks if b.attn.b_O is not None)


# %%
checks.residual_from_nodes(residual_from_nodes)

# %% [markdown]
# On a run of this chapter's model, the rebuilt stream matches what the unembedding reads:

# %%
ids = torch.randint(0, cfg.d_vocab, (3, 12), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    run = model.run_with_nodes(ids)
    gap = (run.inputs["logits"] - residual_from_nodes(model, run)).abs().max()
assert gap < 1e-4
print(f"max |residual - (sum of nodes + constants)| = {gap:.2e}")

# %%
last = {name: out[:, -1].norm(dim=-1).mean().item() for name, out in run.outputs.items()}
fig, ax = plt.subplots(figsize=(8, 3))
ax.bar(list(last), list(last.values()), color=viz.ARM_COLOR)
ax.set_title("What each node writes into the residual stream (random weights, last position)")
ax.set_xlabel("node")
ax.set_ylabel("mean L2 norm of its output")
ax.tick_params(axis="x", rotation=45)
fig.tight_layout()

# %% [markdown]
# ## One head, by hand
#
# A head mixes the value vectors of the positions it attends to, then projects them with its own
# slice of the output matrix: `out_h = pattern_h @ v_h @ W_O[h]`. `run.patterns[layer]` holds the
# attention probabilities `[batch, head, query, key]`. With grouped-query attention (LLaMA, Qwen2)
# several query heads share one key/value head: query head `h` reads the value weights of head
# `h // group_size` (`group_size` is 1 without grouping).
#
# **2. One head's output.** *(difficulty ★☆☆, importance ★★★, about 5 minutes)*
#
# Write `head_output(pattern, v, W_O) -> Tensor` for a single head: `pattern [batch, query, key]`
# (each row sums to 1), `v [batch, key, d_head]`, `W_O [d_head, d_model]`, returning
# `[batch, query, d_model]`.
#
# ```{dropdown} Hint
# Query `q` takes the `pattern[:, q]`-weighted sum of the value rows, then projects it:
# two matrix products, or one `torch.einsum`.
# ```

# %% tags=["hide-input", "solution"]
def head_output(pattern, v, W_O):
    """[batch, query, d_model]: the attention-weighted values, projected by this head's W_O."""
    return torch.einsum("bqs,bsk,kd->bqd", pattern, v, W_O)


# %%
checks.head_output(head_output)

# %% [markdown]
# Now with the model's own tensors: head 2 of layer 1 reads its value input, normalises it,
# projects it with its key/value head's value weights, and `head_output` does the rest. It must
# match what `run_with_nodes` recorded for that head.

# %%
layer, head = 1, 2
block = model.blocks[layer]
with torch.no_grad():
    x = block.ln1(run.inputs[f"a{layer}.h{head}<v>"])
    kv = head // block.attn.group_size  # the key/value head this query head reads
    v = x @ block.attn.W_V[kv] + (0 if block.attn.b_V is None else block.attn.b_V[kv])
    by_hand = head_output(run.patterns[layer][:, head], v, block.attn.W_O[head])
print(f"max |by hand - recorded| = {(by_hand - run.outputs[f'a{layer}.h{head}']).abs().max():.2e}")

# %% [markdown]
# `head_output` started from the pattern. The pattern itself is where a head decides where to
# look: each query is compared with every key, the scores are scaled by $1/\sqrt{d_\text{head}}$,
# keys a query may not see get $-\infty$, and a softmax over the keys turns the scores into
# probabilities:
#
# $$\text{pattern}[q, s] = \operatorname{softmax}_s\Big(\frac{q_q \cdot k_s}{\sqrt{d_\text{head}}} + \text{mask}[q, s]\Big).$$
#
# **3. One head's attention pattern.** *(difficulty ★★☆, importance ★★★, about 10 minutes)*
#
# Write `head_pattern(q, k, causal) -> Tensor` for a single head: `q`, `k` `[batch, pos, d_head]`
# (the head's queries and keys), `causal` a bool (True: a query sees only keys at or before its
# own position, as in an ARM; False: every key, as in an MDM), returning `[batch, query, key]`.
#
# ```{dropdown} Hint 1
# `q @ k.transpose(-1, -2)` gives every query-key dot product; divide by `q.shape[-1] ** 0.5`.
# ```
#
# ```{dropdown} Hint 2
# `torch.ones(P, P, dtype=torch.bool).tril()` is True where a query may see a key;
# `scores.masked_fill(~allowed, float("-inf"))` hides the rest, then `softmax(dim=-1)`.
# ```

# %% tags=["hide-input", "solution"]
def head_pattern(q, k, causal):
    """[batch, query, key] attention probabilities of one head from its queries and keys."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if causal:
        P = q.shape[1]
        scores = scores.masked_fill(~torch.ones(P, P, dtype=torch.bool).tril(), float("-inf"))
    return scores.softmax(dim=-1)


# %%
checks.head_pattern(head_pattern)

# %% [markdown]
# With both exercises, the whole head runs by hand: project its query, key and value inputs,
# take the pattern, mix and project the values. (LLaMA-style models rotate `q` and `k` by their
# positions first, `ml.model.apply_rotary`; GPT-2 adds learned positions to the stream instead.)

# %%
with torch.no_grad():
    q_in, k_in = block.ln1(run.inputs[f"a{layer}.h{head}<q>"]), block.ln1(run.inputs[f"a{layer}.h{head}<k>"])
    q = q_in @ block.attn.W_Q[head] + (0 if block.attn.b_Q is None else block.attn.b_Q[head])
    k = k_in @ block.attn.W_K[kv] + (0 if block.attn.b_K is None else block.attn.b_K[kv])
    rotary = model.rotary(ids.shape[1], ids.device)
    if rotary is not None:   # the apply_rotary of the model takes [batch, pos, heads, d_head]
        q, k = (ml.model.apply_rotary(t[:, :, None], *rotary)[:, :, 0] for t in (q, k))
    pattern = head_pattern(q, k, causal=model.attention == "causal")
    whole_head = head_output(pattern, v, block.attn.W_O[head])
print(f"max |pattern by hand - recorded| = {(pattern - run.patterns[layer][:, head]).abs().max():.2e}")
print(f"max |head by hand - recorded|    = {(whole_head - run.outputs[f'a{layer}.h{head}']).abs().max():.2e}")
assert torch.allclose(whole_head, run.outputs[f"a{layer}.h{head}"], atol=1e-4)

# %%
viz.attention_patterns([f"t{i}" for i in range(12)], run.patterns[1][0])

# %% [markdown]
# ## Same weights, two kinds of attention
#
# A masked diffusion model post-trained from an ARM keeps the ARM's weights and architecture; what
# changes is that every position may attend to every other one. Change the last token and watch
# the first position's logits: a causal model cannot see the change, a bidirectional one can.

# %%
changed = ids.clone()
changed[:, -1] = (changed[:, -1] + 1) % cfg.d_vocab
with torch.no_grad():
    for mode in ("causal", "bidirectional"):
        delta = (model(ids, attention=mode)[:, 0] - model(changed, attention=mode)[:, 0]).abs().max()
        print(f"{mode:13s}: change at position 0 = {delta:.2e}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(7, 3))
for ax, mode in zip(axes, ("causal", "bidirectional")):
    with torch.no_grad():
        pattern = model.run_with_nodes(ids, attention=mode).patterns[0][0, 0]
    ax.imshow(pattern, cmap="Blues", vmin=0)
    ax.set_title(f"{mode} (layer 0, head 0)")
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
fig.suptitle("Attention probabilities of the same weights")
fig.tight_layout()

# %% [markdown]
# ## Loading HuggingFace models
#
# `ml.from_hf` turns a `GPT2LMHeadModel`, `Qwen2ForCausalLM` or `LlamaForCausalLM` into the same
# `Transformer`. Its parameters are *views* of the HuggingFace tensors (no copy), so a 7B model
# costs no extra memory. The book cannot download weights, so here we build tiny models with
# random weights from HuggingFace configs and check that the logits agree.

# %%
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

torch.manual_seed(0)  # HuggingFace draws its random weights from the global generator
tiny_hf = {
    "GPT-2": GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                                             bos_token_id=None, eos_token_id=None)),
    "Qwen2 (GQA)": Qwen2ForCausalLM(Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16)),
}
for name, hf_model in tiny_hf.items():
    ours = ml.from_hf(hf_model.eval())
    with torch.no_grad():
        gap = (ours(ids) - hf_model(ids).logits).abs().max()
    print(f"{name:12s} max |logit difference| vs HuggingFace = {gap:.1e}")

# %% [markdown]
# With internet, the real checkpoints load the same way (the cell downloads only with
# `USE_HUB = True`):

# %%
USE_HUB = False   # True downloads GPT-2 and DiffuGPT-S (about 0.5 GB each; internet needed)
if USE_HUB:
    arm = ml.load_pretrained("gpt2", dtype=torch.float32)                        # causal
    mdm = ml.load_pretrained("diffusionfamily/diffugpt-s", dtype=torch.float32)  # bidirectional, same architecture
else:
    print("USE_HUB is False: nothing downloaded (set it to True to load the real pair)")

# %% [markdown]
# ## Exercises
#
# The checked exercises of this chapter sit where each idea is taught: the residual stream
# (exercise 1), one head's output (2) and its attention pattern (3).
#
# **4. (Open.)** *(difficulty ★★☆, importance ★☆☆, about 15 minutes)* Set `cfg` to the LLaMA family (`family="llama", act="silu", n_kv_heads=2`) and
# rerun the chapter (it runs unchanged). Which constant terms disappear from `residual_from_nodes`, and why? Which
# value weights does head 2 of layer 1 read now, and why does the by-hand check still agree?

# %%
Markdown(viz.versions_footer())
