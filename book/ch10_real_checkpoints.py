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
# # 10. Scaling up to real checkpoints
#
# The earlier chapters trained small models on a laptop. The paper studied two real 7B pairs of an
# autoregressive model (ARM) and the masked diffusion model (MDM) post-trained from it: Qwen2.5-7B
# and Dream-v0-Base-7B {cite:p}`ye2025dream`, LLaMA-2-7B and DiffuLLaMA {cite:p}`gong2024scaling`.
# This chapter adds a third, small pair that the paper did not study, GPT-2 and DiffuGPT-S (from the
# same work as DiffuLLaMA), because it fits a free Colab GPU. It runs the same analysis on all
# three, with the same calls: load both models, build clean/corrupted pairs for
# their tokenizer, attribute with EAP-IG, compare the top edges, look at where in depth the
# attribution lives, and read the components with the logit lens.
#
# By the end of this chapter you will be able to:
#
# - build IOI and Countdown pairs for any HuggingFace tokenizer: single-token names, pairs that
#   align token by token, and the right token to read the answer at;
# - give an MDM its masked answer slots with its own mask token, without moving the readout;
# - attribute an ARM and its MDM with EAP-IG and compare their top-1000 edges with chance;
# - estimate the memory a 7B pair needs and choose a batch size.
#
# :::{note}
# **What runs where.** The book is built offline, so the cells that download checkpoints are
# marked *not executed* and come after a short note on their runtime and memory. Every other
# cell runs when the book is built, on **tiny models with random weights** that have the
# architectures of the real ones (GPT-2; Qwen2 with grouped-query attention; LLaMA), and on a
# small tokenizer trained in memory. Their numbers mean nothing: the point is that the exact
# code path you will run on a GPU is executed, and checked, every time the book is built.
# GPT-2 and DiffuGPT-S fit a free Colab GPU; the 7B pairs need one large GPU (80 GB).
# :::

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
from mechshift_lite import compare, lens, real_tasks, viz
from mechshift_lite.teaching import checks, standins
from mechshift_lite.hf import HUB_MODELS

# %% [markdown]
# ## The three pairs, and what they cost
#
# Each MDM keeps its ARM's architecture and tokenizer; only the attention (bidirectional) and the
# objective changed. `HUB_MODELS` records how to load each checkpoint and the mask token each MDM
# was trained with. The sizes below come from the checkpoints' `config.json`; the graph is ours
# (one node per head and MLP, with separate q/k/v inputs, as in the EAP-IG reference), so it only
# depends on the number of layers and of query heads.
#
# Two numbers decide the memory of EAP-IG. The weights: `ml.from_hf` wraps a HuggingFace model
# with *views* of its tensors, so the ARM and the MDM cost what HuggingFace loaded, nothing more.
# And the node outputs: `ml.attribute` keeps every node's output for the clean and the corrupted
# run, `[n_src, batch, pos, d_model]` each, before it subtracts them. That buffer grows with
# `batch x positions`, which is why the analysis below sets a **token budget** per batch.

# %%
PAIRS = {  # name: (ARM, MDM)
    "GPT-2 / DiffuGPT-S": ("gpt2", "diffusionfamily/diffugpt-s"),
    "Qwen2.5-7B / Dream-7B": ("Qwen/Qwen2.5-7B", "Dream-org/Dream-v0-Base-7B"),
    "LLaMA-2-7B / DiffuLLaMA": ("meta-llama/Llama-2-7b-hf", "diffusionfamily/diffullama"),
}
SIZES = {  # layers, query heads, d_model, parameters, bytes per number as loaded below
    "GPT-2 / DiffuGPT-S": (12, 12, 768, 0.124e9, 4),
    "Qwen2.5-7B / Dream-7B": (28, 28, 3584, 7.6e9, 2),
    "LLaMA-2-7B / DiffuLLaMA": (32, 32, 4096, 6.7e9, 2),
}
rows = ["| pair | MDM mask id | graph | edges | chance Jaccard, top-1000 | weights, one model | node outputs per token |",
        "| --- | --- | --- | --- | --- | --- | --- |"]
for name, (arm_id, mdm_id) in PAIRS.items():
    layers, heads, d_model, params, nbytes = SIZES[name]
    graph = ml.Graph(layers, heads)
    chance = compare.chance_jaccard(graph.n_edges, 1000, 1000)
    per_token = 2 * graph.n_src * d_model * nbytes   # clean + corrupted outputs of every node
    rows.append(f"| {name} | {HUB_MODELS[mdm_id].mask_token_id} | {layers} x {heads} | {graph.n_edges:,} | "
                f"{chance:.4f} | {params * nbytes / 1e9:.1f} GB | {per_token / 1e6:.1f} MB |")
Markdown("\n".join(rows))

# %% [markdown]
# So a Countdown prompt of about 330 tokens (eight worked examples, digits as single tokens, as
# Qwen's and LLaMA's tokenizers write them) costs about 3.9 GB of node outputs per example for
# Qwen2.5-7B and 5.7 GB for LLaMA-2-7B, on top of 2 x 15 GB of weights and the activations of the
# backward pass. A budget of about 2,000 tokens per batch for Qwen (six Countdown prompts, or a
# hundred IOI prompts) and 1,500 for LLaMA fits an 80 GB GPU with both 7B models loaded. These are our estimates from the sizes,
# not measurements: watch `torch.cuda.max_memory_allocated()` on your first batch.

# %% [markdown]
# ## Prompts for a real tokenizer
#
# The toy tasks used a word-level tokenizer. Real tokenizers cut words into pieces, which raises
# three problems, each handled by `mechshift_lite.real_tasks`:
#
# 1. **Names must be single tokens.** The IOI metric compares two logits, `" Mary"` against
#    `" John"`, so only names written as one token after a word are used
#    (`single_token_names`; the EAP-IG reference filters its names the same way).
# 2. **Clean and corrupted prompts must align token by token.** A pair whose two prompts have
#    different token lengths is dropped, and counted in `pairs.dropped`.
# 3. **The readout must sit just before the first visible answer token.** Qwen's and LLaMA's
#    tokenizers write each digit as a token, and the space before a number as a token of its
#    own; GPT-2 writes `" 44"` as one token. `split_continuation` encodes prompt and answer
#    together and moves a leading white-space token into the prompt, so the readout predicts
#    the first digit (Qwen, LLaMA) or the first number (GPT-2). The same rule copes with
#    LLaMA-2's SentencePiece tokenizer, for which `encode(" Mary")` alone is `["▁", "▁Mary"]`.
#
# The tokenizer below is the offline stand-in: a byte-level BPE (GPT-2's scheme) trained in a
# fraction of a second on the tasks' own sentences. Only 16 of the 24 names appear in its training
# text, and its vocabulary is small, so several names come out in pieces.

# %%
tok = standins.tiny_tokenizer()
names = real_tasks.single_token_names(tok)
print(f"{len(tok)} tokens; single-token names: {sorted(names)}")
print("split into pieces:", {n: tok.tokenize(" " + n) for n in ml.tasks.ioi.NAMES if n not in names})

# %% [markdown]
# With internet, the real tokenizer works the same way. The MDMs use their ARM's tokenizer, so one
# tokenizer serves each pair. The cells that download or need a GPU run only when you set
# `USE_HUB = True` (in Colab, with a GPU runtime for the models); otherwise, as in the build and in
# a plain "Run all", they say what they would do and the chapter goes on with the stand-ins.

# %%
USE_HUB = False   # True: download the real tokenizers and checkpoints (internet; a GPU for the models)

if USE_HUB:
    from transformers import AutoTokenizer

    hub_tok = AutoTokenizer.from_pretrained("gpt2")   # or "Qwen/Qwen2.5-7B", "meta-llama/Llama-2-7b-hf"
    print(sorted(real_tasks.single_token_names(hub_tok)))
else:
    print("USE_HUB is False: the real GPT-2 tokenizer is not downloaded (the stand-in above plays its part)")

# %% [markdown]
# An IOI pair: the corrupted prompt replaces the second mention of the subject by a third name
# (ABC), so the cue "the repeated name is not the answer" is gone. Only that token differs, and the
# metric is `logit[" IO"] - logit[" S"]` at the last prompt position.

# %%
ioi_pairs = real_tasks.ioi_pairs(tok, n=16, seed=0)
i, end = 0, int(ioi_pairs.readout_pos[0]) + 1
clean, corrupted = (tok.convert_ids_to_tokens(ids[i, :end]) for ids in (ioi_pairs.clean_ids, ioi_pairs.corrupted_ids))
print(ioi_pairs.examples[i].prompt)
print("differs at:", [(pos, a, b) for pos, (a, b) in enumerate(zip(clean, corrupted)) if a != b])
print("readout token:", repr(clean[-1]), "| answer:", tok.convert_ids_to_tokens([int(ioi_pairs.answer_ids[i]),
                                                                                   int(ioi_pairs.distractor_ids[i])]))
print(f"{len(ioi_pairs)} pairs, shape {tuple(ioi_pairs.clean_ids.shape)}, dropped: {ioi_pairs.dropped}")

# %% [markdown]
# Countdown is asked the way Dream's evaluation asked pretrained models: an instruction, solved
# examples (`n_shots`, eight by default, drawn from the training split), then the query. The
# corrupted prompt changes only the query's target, chosen so that the canonical solution starts
# with a different number; the metric contrasts the first answer tokens of the two solutions.

# %%
cd_pairs = real_tasks.countdown_pairs(tok, n=16, seed=0)
print(cd_pairs.examples[0].prompt[-160:])
print("...clean answer:", cd_pairs.examples[0].answer, "| corrupted answer:", cd_pairs.corrupted_examples[0].answer)
print("readout token:", repr(tok.convert_ids_to_tokens(int(cd_pairs.clean_ids[0, cd_pairs.readout_pos[0]]))),
      "| answer vs distractor:", tok.convert_ids_to_tokens([int(cd_pairs.answer_ids[0]), int(cd_pairs.distractor_ids[0])]))
print(f"{len(cd_pairs)} pairs of {cd_pairs.clean_ids.shape[1]} tokens; dropped: {cd_pairs.dropped}")

# %% [markdown]
# The MDM reads the same prompt followed by mask tokens, with bidirectional attention. With the
# shift (position `i` predicts token `i + 1`, as in DiffuGPT, Dream and DiffuLLaMA) the readout
# stays at the last prompt position, which now predicts the first masked slot.

# %%
canvas = real_tasks.mdm_view(ioi_pairs, tok.mask_token_id, n_mask=4)
print(tok.convert_ids_to_tokens(canvas.clean_ids[0, end - 3 : end + 4]))

# %% [markdown]
# ## The analysis, in one function
#
# For one pair and both tasks: EAP-IG with interpolated inputs (`ig_steps=5`, the EAP-IG
# reference's setting; the paper does not say which it used) on the ARM (causal, prompt only) and on the MDM (bidirectional, prompt then masks);
# the Jaccard index of their top-N edges, next to the chance level for N random edges of the same
# graph; and the component logit lens on a few examples. The paper keeps N = 1000 edges of
# graphs with about a million; the stand-ins' graphs have 479 edges, so N is capped at 5% of the
# graph. The batch size follows from the token budget. The stand-ins also see two solved Countdown
# examples instead of eight, which keeps the build fast (attention costs grow with the square of
# the prompt length).
#
# With real models you would first keep the pairs both models answer correctly (the paper's
# fifth version uses 500 of them, according to a third-party note on it): run both, and pass the common rows to `pairs.select(rows)`.

# %%
N_EDGES, N_MASK = 1000, {"IOI": 4, "Countdown": 24}   # mask slots: about the answer's length


def shift_analysis(arm, mdm, tok, mask_token_id, n_pairs, n_shots, token_budget, seed=0):
    """EAP-IG of an ARM and its MDM on IOI and Countdown, with the paper's comparisons."""
    results = {}
    tasks = {"IOI": real_tasks.ioi_pairs(tok, n=n_pairs, seed=seed),
             "Countdown": real_tasks.countdown_pairs(tok, n=n_pairs, seed=seed, n_shots=n_shots)}
    for task, pairs in tasks.items():
        views = {"ARM": (arm, pairs), "MDM": (mdm, real_tasks.mdm_view(pairs, mask_token_id, n_mask=N_MASK[task]))}
        r = results[task] = {"scores": {}, "lens": {}, "n_edges": min(N_EDGES, arm.graph.n_edges // 20)}
        for kind, (model, inputs) in views.items():
            inputs = real_tasks.to_device(inputs, model.W_E.device)
            r["scores"][kind] = ml.attribute(model, inputs.clean_ids, inputs.corrupted_ids, inputs.metric(),
                                             method="EAP-IG-inputs", ig_steps=5, attention_mask=inputs.attention_mask,
                                             batch_size=max(1, token_budget // inputs.clean_ids.shape[1]))
            few = inputs.select(range(min(8, len(inputs))))       # the lens reads a few examples
            reading = lens.component_lens(model, few.clean_ids, few.readout_pos, few.attention_mask)
            r["lens"][kind] = (lens.winners(reading, few.answer_ids, few.distractor_ids), reading.entropy().mean().item())
        r["overlap"] = compare.edge_overlap(r["scores"]["ARM"], r["scores"]["MDM"], r["n_edges"])
        r["chance"] = compare.chance_jaccard(arm.graph.n_edges, r["n_edges"], r["n_edges"])
    return results


# %% [markdown]
# ## GPT-2 and DiffuGPT-S
#
# The stand-in: a tiny GPT-2 (4 layers of 4 heads) with random weights. Its "MDM" is the same
# weights read with bidirectional attention, the state of an MDM before any post-training.

# %%
results = {}
hf_gpt2 = standins.tiny_hf_model("gpt2", vocab_size=len(tok), seed=0)
arm, mdm = ml.from_hf(hf_gpt2, attention="causal"), ml.from_hf(hf_gpt2, attention="bidirectional")
mask_id, n_pairs, n_shots, token_budget = tok.mask_token_id, 16, 2, 4096   # 2 solved examples: a fast build

# %% [markdown]
# The real pair (not run in the build): about 0.5 GB per model in float32, a few minutes of
# downloads, then a few minutes of EAP-IG for 500 pairs on a free Colab T4 (16 GB). DiffuGPT is
# not an `AutoModel`; `load_pretrained` renames its keys into a GPT-2 (see `mechshift_lite/hf.py`).

# %%
if USE_HUB and torch.cuda.is_available():
    tok = AutoTokenizer.from_pretrained("gpt2")   # GPT-2's tokenizer has no mask token: DiffuGPT's comes from HUB_MODELS
    arm = ml.load_pretrained("gpt2", dtype=torch.float32, device="cuda")
    mdm = ml.load_pretrained("diffusionfamily/diffugpt-s", dtype=torch.float32, device="cuda")
    mask_id, n_pairs, n_shots, token_budget = HUB_MODELS["diffusionfamily/diffugpt-s"].mask_token_id, 500, 8, 4096
else:
    print("skipped (needs USE_HUB = True and a GPU): GPT-2 and DiffuGPT-S on 500 pairs per task; the stand-ins run instead")

# %%
results["GPT-2 / DiffuGPT-S"] = shift_analysis(arm, mdm, tok, mask_id, n_pairs, n_shots, token_budget)

# %% [markdown]
# ## Qwen2.5-7B and Dream-7B, LLaMA-2-7B and DiffuLLaMA
#
# The stand-ins have the same block types as the real models: Qwen2 has biases on q/k/v, untied
# embeddings and grouped-query attention (here 2 key/value heads for 4 query heads; Qwen2.5-7B has
# 4 for 28), LLaMA has neither biases nor grouping. Grouped-query heads still get one `<k>` and
# one `<v>` input each in the graph, so the graph depends only on layers and query heads.

# %%
for name, arch in (("Qwen2.5-7B / Dream-7B", "qwen2"), ("LLaMA-2-7B / DiffuLLaMA", "llama")):
    hf = standins.tiny_hf_model(arch, vocab_size=len(tok), seed=0)
    results[name] = shift_analysis(ml.from_hf(hf, "causal"), ml.from_hf(hf, "bidirectional"), tok, mask_id,
                                   n_pairs, n_shots, token_budget)

# %% [markdown]
# The real 7B pairs (not run in the build) need one GPU with 80 GB (A100 or H100). Each model is
# about 15 GB in bfloat16, downloaded once (tens of minutes); 500 pairs per task take tens of
# minutes of EAP-IG per model (our estimate). LLaMA-2 is gated: accept its licence on the Hub and
# log in first. Dream ships custom code, but its weights are Qwen2's: `load_pretrained` reads its
# `config.json` into a `Qwen2Config` and runs no remote code. If memory is short, attribute one
# model at a time (call `ml.attribute` on the ARM, delete it, then load the MDM).

# %%
BIG_GPU = torch.cuda.is_available() and torch.cuda.get_device_properties(0).total_memory > 70e9
if not (USE_HUB and BIG_GPU):
    print("skipped (needs USE_HUB = True and an 80 GB GPU): the two 7B pairs on 500 pairs per task")
for name, token_budget in (("Qwen2.5-7B / Dream-7B", 2048), ("LLaMA-2-7B / DiffuLLaMA", 1536)) if USE_HUB and BIG_GPU else ():
    arm_id, mdm_id = PAIRS[name]
    del arm, mdm
    torch.cuda.empty_cache()
    tok = AutoTokenizer.from_pretrained(arm_id)
    arm = ml.load_pretrained(arm_id, dtype=torch.bfloat16, device="cuda")
    mdm = ml.load_pretrained(mdm_id, dtype=torch.bfloat16, device="cuda")
    results[name] = shift_analysis(arm, mdm, tok, HUB_MODELS[mdm_id].mask_token_id, n_pairs=500, n_shots=8,
                                   token_budget=token_budget)
    print(name, "peak GPU memory:", torch.cuda.max_memory_allocated() / 1e9, "GB")

# %% [markdown]
# ## Do the ARM and the MDM use the same edges?
#
# The edge overlap of each pair and task, next to what two random edge sets of the same size
# would share. (Stand-ins: random weights, so any number here is an accident of initialisation.
# The ARM and the "MDM" share their weights, so their overlap is high.)

# %%
rows = ["| pair | task | pairs | top-N | edge Jaccard | chance | ratio |", "| --- | --- | --- | --- | --- | --- | --- |"]
for name, by_task in results.items():
    for task, r in by_task.items():
        rows.append(f"| {name} | {task} | {r['scores']['ARM'].n_examples} | {r['n_edges']} | {r['overlap']:.3f} | "
                    f"{r['chance']:.4f} | {r['overlap'] / r['chance']:.0f}x |")
Markdown("\n".join(rows))

# %% [markdown]
# For comparison, the paper's Table 1 (v1, EAP-IG, Jaccard of the top-1000 edges). We quote it
# from a machine-made summary of the paper, not from the table itself, so treat the digits with
# care. The chance levels are computed with `compare.chance_jaccard` for our graph of each model
# (q/k/v inputs separate, one `<k>`/`<v>` per query head; the cell below prints Qwen2.5-7B's edge
# count). The paper does not say how it counted Qwen's grouped heads, nor whether a head's query,
# key and value inputs are separate destinations; exercise 3 asks how much another count moves
# the chance level.
#
# | task | Qwen2.5-7B vs Dream-7B | LLaMA-2-7B vs DiffuLLaMA |
# | --- | --- | --- |
# | IOI | 0.193 | 0.088 |
# | Countdown | 0.008 | 0.032 |

# %%
paper = {"Qwen2.5-7B / Dream-7B": {"IOI": 0.193, "Countdown": 0.008},
         "LLaMA-2-7B / DiffuLLaMA": {"IOI": 0.088, "Countdown": 0.032}}
qwen_graph = ml.Graph(n_layers=28, n_heads=28)   # Qwen2.5-7B: 28 layers of 28 query heads
print(f"Qwen2.5-7B, our graph (q/k/v separate, one <k>/<v> per query head): {qwen_graph.n_edges:,} edges")
for name, table in paper.items():
    layers, heads = SIZES[name][:2]
    chance = compare.chance_jaccard(ml.Graph(layers, heads).n_edges, 1000, 1000)
    print(f"{name:24s} chance {chance:.4f}: " + ", ".join(f"{task} {j} = {j / chance:.0f}x chance" for task, j in table.items()))

# %% [markdown]
# Even Countdown's 0.008 is well above chance, so the two models still share some edges; but IOI
# (a local task) keeps far more of its circuit through post-training than Countdown (which needs
# planning), which is the paper's first finding.
#
# ## Where in depth does the attribution live?
#
# `compare.layer_distribution` spreads the |score| mass of the top-N edges over the layer of
# their source node (`input` first). The paper reports that on Countdown the MDM moves attribution
# towards early layers. On the stand-ins the bars only reflect random weights.

# %%
fig, axes = plt.subplots(2, len(results), figsize=(4 * len(results), 5), sharey=True, squeeze=False)
for col, (name, by_task) in enumerate(results.items()):
    for row, (task, r) in enumerate(by_task.items()):
        ax = axes[row, col]
        for offset, (kind, color) in enumerate((("ARM", viz.ARM_COLOR), ("MDM", viz.MDM_COLOR))):
            labels, shares = compare.layer_distribution(r["scores"][kind], r["n_edges"])
            ax.bar([x + 0.4 * offset for x in range(len(labels))], shares, width=0.4, color=color, label=kind)
        step = max(1, len(labels) // 8)                       # 33 layers of a 7B model: label every 4th
        ax.set_xticks([x + 0.2 for x in range(0, len(labels), step)], labels[::step], rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{name}\n{task}", fontsize=9)
        ax.set_ylabel("share of |score| mass" if col == 0 else "")
axes[0, 0].legend()
fig.suptitle(f"Attribution of the top-{r['n_edges']} edges by the layer of their source node")
fig.tight_layout()

# %% [markdown]
# ## Component logit lens
#
# `lens.component_lens` reads what each head and MLP writes at the readout position, projected to
# the vocabulary. Per example, the *winner* is the component that pushes the answer above the
# distractor the most; few distinct winners means sharp specialisation. The paper reports more
# distinct explanatory components for the MDM (426 against 266 in the same machine summary) and
# flatter token distributions. Random weights write almost uniform distributions: the entropies
# of the stand-ins sit near `ln(400) = 5.99` nats, the maximum for their 400 tokens.

# %%
for name, by_task in results.items():
    for task, r in by_task.items():
        print(f"{name:24s} {task:9s} " + " | ".join(
            f"{kind}: {won.n_unique} distinct winners, entropy {entropy:.2f} nats" for kind, (won, entropy) in r["lens"].items()))

# %% [markdown]
# The same tables and figure from the real checkpoints are what the paper's analysis section is
# made of; the chapters before this one showed why each number means what it means, on models
# small enough to train and probe exhaustively.
#
# ## Exercises
#
# **1. Single-token names.** *(difficulty ★☆☆, importance ★★☆, about 5 minutes)*
# Write `single_token_names(tokenizer, names)` for a byte-level BPE
# tokenizer (GPT-2's and Qwen's scheme): return `{name: token id}` for each name that
# `tokenizer.encode(" " + name, add_special_tokens=False)` writes as exactly one token.
#
# ```{dropdown} Hint
# The leading space matters: in byte-level BPE, " Mary" and "Mary" are different tokens, and the
# name follows a space in the prompt. Keep a name only when the list of ids has length 1.
# ```

# %% tags=["hide-input", "solution"]
def single_token_names(tokenizer, names):
    found = {}
    for name in names:
        ids = tokenizer.encode(" " + name, add_special_tokens=False)
        if len(ids) == 1:
            found[name] = ids[0]
    return found


# %%
checks.single_token_names(single_token_names)

# %% [markdown]
# **2. Edge overlap.** *(difficulty ★☆☆, importance ★★★, about 5 minutes)*
# Write `top_edges_jaccard(a, b, n)` for two score vectors `[n_edges]` (such
# as `scores.values`): keep the `n` edges with the largest `|score|` in each, and return
# `|A ∩ B| / |A ∪ B|`.
#
# ```{dropdown} Hint
# `tensor.abs().topk(n).indices` gives the positions of the `n` largest magnitudes; turn them into
# Python sets. Rank by magnitude, not by signed value: a strongly negative edge matters as much.
# ```

# %% tags=["hide-input", "solution"]
def top_edges_jaccard(a, b, n):
    top_a, top_b = set(a.abs().topk(n).indices.tolist()), set(b.abs().topk(n).indices.tolist())
    return len(top_a & top_b) / len(top_a | top_b)


# %%
checks.top_edges_jaccard(top_edges_jaccard)

# %% [markdown]
# **3. (Open.)** *(difficulty ★★☆, importance ★★☆, about 15 minutes)* For two random 1000-edge sets of a graph with `N` edges, the expected Jaccard index
# is close to `(10**6 / N) / (2000 - 10**6 / N)`. Compare it with `compare.chance_jaccard` for the
# three graphs in the first table. Then count Qwen2.5-7B's graph with one `<k>` and `<v>` per
# key/value head instead of per query head: how much does the chance level move, and does it change
# how you read Countdown's 0.008?

# %%
Markdown(viz.versions_footer())
