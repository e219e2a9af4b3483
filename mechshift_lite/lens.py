"""Direct logit attribution of components, and the residual-stream logit lens.

Two readouts (issue 11 names them for what they are):

* :func:`direct_logit_attribution` (formerly the "component logit lens", :func:`component_lens`,
  kept as an alias): what each node's *output* adds to the logits at the readout, through the
  final norm linearised at the real residual stream (below).
* :func:`residual_lens` (the logit lens proper): what the model would say if it stopped after
  layer ``l``: the final norm *and* unembedding applied to the residual stream itself after each
  layer (``[n_layers + 1]`` readings, the first after the embedding; the last is the model's logits).

**How the final norm is handled (our choice; the paper does not say).** A component's output
``o`` at the readout position is projected as the full model would project it, *linearised at
the real residual stream* ``r``: the final norm's scale is taken from ``r`` (not from ``o``), so

* LayerNorm (gpt2 family): ``lens(o) = ((o - mean(o)) / std(r)) * w @ W_U``
* RMSNorm (llama family):  ``lens(o) = (o / rms(r)) * w @ W_U``

Because the norm is then linear in its input, the component logits of all nodes plus the
constant terms (positions, attention output biases, the norm's bias) add up exactly to the
model's logits. This is "direct logit attribution"; it differs from projecting ``o`` through a
norm of its own, which would exaggerate components with small outputs.

Statistics over components (defined here, quoted in the book):

* **answer rank**: 0 = the answer is the component's top token.
* **entropy** of ``softmax(lens(o))`` in nats: low = sharp, token-specific alignment;
  high = flat, distributed alignment. Because ``lens(o)`` scales with ``|o|``, a component with a
  small output reads flat; and over the whole vocabulary, words the task never answers count.
  **Flatness at matched scale** (:meth:`DirectLogitAttribution.entropy` with ``vocab`` and
  ``matched``) removes both: the entropy over the task's **answer vocabulary** only
  (:func:`answer_vocabulary`: every token that is a clean answer or a distractor in the pool),
  of each component's output rescaled to the norm of the residual stream it is read from
  (``o * |c(r)| / |c(o)|``, ``c`` the norm's centring, identity for RMSNorm).
* **winner** of an example: the component whose lens gives the largest
  ``logit[answer] - logit[distractor]``. The number of distinct winners over a set of examples
  and the variance of the winners' counts are our precise version of the paper's "unique
  explanatory components" and "variance" figures (sharp specialisation = few winners with a
  high count variance).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .inputs import ModelInputs, clean_input
from .model import Transformer


@dataclass
class DirectLogitAttribution:
    """Direct logit attribution of every component at one position per example.

    Attributes:
        names: component names in graph (forward) order, ``input`` first.
        logits: ``[n_components, batch, vocab]`` each component's contribution to the logits.
        constant: ``[batch, vocab]`` what belongs to no component (positions, biases).
        model_logits: ``[batch, vocab]`` the model's own logits at the readout position.
        output_norms: ``[n_components, batch]`` norm of each (centred) component output; None if unknown.
        resid_norm: ``[batch]`` norm of the (centred) residual stream read; None if unknown.
    """

    names: list[str]
    logits: Tensor
    constant: Tensor
    model_logits: Tensor
    output_norms: Tensor | None = None
    resid_norm: Tensor | None = None

    def matched_logits(self) -> Tensor:
        """``[n_components, batch, vocab]`` each component's logits with its output rescaled to the
        residual stream's norm (the lens is linear in the output, so the logits scale with it)."""
        if self.output_norms is None or self.resid_norm is None:
            raise ValueError("matched scale needs output_norms and resid_norm (build with direct_logit_attribution)")
        return self.logits * (self.resid_norm[None, :] / self.output_norms.clamp_min(1e-12))[..., None]

    def entropy(self, vocab: Tensor | None = None, matched: bool = False) -> Tensor:
        """``[n_components, batch]`` entropy (nats) of each component's token distribution, over the
        token ids ``vocab`` only (None: the whole vocabulary), at matched scale if ``matched``."""
        logits = self.matched_logits() if matched else self.logits
        if vocab is not None:
            if vocab.dim() != 1 or len(vocab) < 2:
                raise ValueError(f"vocab must be a 1-D tensor of at least 2 token ids; got shape {tuple(vocab.shape)}")
            logits = logits[..., vocab]
        logp = logits.log_softmax(-1)
        return -(logp.exp() * logp).sum(-1)

    def rank_of(self, tokens: Tensor) -> Tensor:
        """``[n_components, batch]`` rank of ``tokens [batch]`` in each component's lens (0 = top)."""
        chosen = self.logits.gather(-1, tokens[None, :, None].expand(len(self.names), -1, 1))
        return (self.logits > chosen).sum(-1)

    def logit_diff(self, good: Tensor, bad: Tensor) -> Tensor:
        """``[n_components, batch]`` each component's ``logit[good] - logit[bad]``."""
        idx = torch.arange(len(good))
        return self.logits[:, idx, good] - self.logits[:, idx, bad]

    def top_tokens(self, component: str, example: int = 0, k: int = 5) -> list[tuple[int, float]]:
        """The ``k`` highest (token id, logit) pairs of one component on one example."""
        values, ids = self.logits[self.names.index(component), example].topk(k)
        return list(zip(ids.tolist(), values.tolist()))


ComponentLens = DirectLogitAttribution
"""The former name of :class:`DirectLogitAttribution` (chapters 7 and 10 use it)."""


def _readout(input_ids, readout_pos, attention_mask, attention, what: str):
    """``(ids, readout_pos, attention_mask, attention)`` of a lens call given arrays or a ModelInputs."""
    if isinstance(input_ids, ModelInputs) and readout_pos is None:
        readout_pos = input_ids.readout_pos
    input_ids, attention_mask, attention = clean_input(input_ids, attention_mask, attention)
    if readout_pos is None:
        raise ValueError(f"{what} needs readout_pos [batch] (or a ModelInputs that has one)")
    if readout_pos.shape != (input_ids.shape[0],):
        raise ValueError(f"readout_pos must have shape [batch] = ({input_ids.shape[0]},); got {tuple(readout_pos.shape)}")
    return input_ids, readout_pos, attention_mask, attention


@torch.no_grad()
def residual_lens(
    model: Transformer,
    input_ids: Tensor | ModelInputs,
    readout_pos: Tensor | None = None,
    attention_mask: Tensor | None = None,
    attention=None,
) -> Tensor:
    """Logit lens of the residual stream: ``[n_layers + 1, batch, vocab]`` logits at ``readout_pos``
    of the final norm and unembedding applied to the residual stream after the embedding (entry 0)
    and after each layer ``l`` (entry ``l + 1``); the last entry is the model's own logits."""
    ids, readout_pos, attention_mask, attention = _readout(input_ids, readout_pos, attention_mask, attention, "residual_lens")
    model._check_inputs(ids, attention_mask)
    attn_bias = model.attention_bias(ids, attention_mask, attention)
    rotary = model.rotary(ids.shape[1], ids.device)
    rows = torch.arange(ids.shape[0])
    readings = [resid[rows.to(resid.device), readout_pos.to(resid.device)]
                for resid in model.residual_streams(ids, attn_bias, rotary)]
    device = model.ln_final.w.device
    return torch.stack([model.ln_final(r.to(device)) @ model.unembed for r in readings])


def answer_vocabulary(answer_ids: Tensor, distractor_ids: Tensor | None = None) -> Tensor:
    """The task's answer vocabulary: sorted distinct token ids that are a clean answer or a distractor."""
    ids = answer_ids if distractor_ids is None else torch.cat([answer_ids, distractor_ids])
    return ids.unique(sorted=True)


@torch.no_grad()
def direct_logit_attribution(
    model: Transformer,
    input_ids: Tensor | ModelInputs,
    readout_pos: Tensor | None = None,
    attention_mask: Tensor | None = None,
    attention=None,
) -> DirectLogitAttribution:
    """Direct logit attribution of every node at ``readout_pos [batch]`` (see the module docstring).

    Heads are read individually (``a{l}.h{h}``), MLPs whole (``m{l}``), plus ``input``.
    ``input_ids`` may be a :class:`~mechshift_lite.inputs.ModelInputs`: its clean ids are read,
    at its own readout unless ``readout_pos`` is given.
    """
    input_ids, readout_pos, attention_mask, attention = _readout(input_ids, readout_pos, attention_mask, attention,
                                                                 "direct_logit_attribution")
    run = model.run_with_nodes(input_ids, attention_mask, attention=attention)
    rows = torch.arange(input_ids.shape[0])
    resid = run.inputs["logits"][rows, readout_pos]                     # [B, D]
    names = model.graph.src_names
    outputs = torch.stack([run.outputs[n][rows, readout_pos] for n in names])   # [C, B, D]
    constant = resid - outputs.sum(0)                                   # positions and b_O
    norm = model.ln_final
    linear = frozen_norm(norm, resid)
    project = lambda x: linear(x) @ model.unembed
    const_logits = project(constant) + (0 if norm.b is None else norm.b @ model.unembed)
    model_logits = run.logits[rows, readout_pos]
    return DirectLogitAttribution(names, project(outputs), const_logits, model_logits,
                                  centre(norm, outputs).norm(dim=-1), centre(norm, resid).norm(dim=-1))


component_lens = direct_logit_attribution
"""The former name of :func:`direct_logit_attribution` (chapters 7 and 10 and the tests call it)."""


def centre(norm, x: Tensor) -> Tensor:
    """``x [..., D]`` centred as the final norm centres it: minus its mean (LayerNorm), as is (RMSNorm)."""
    return x if norm.rms else x - x.mean(-1, keepdim=True)


def frozen_norm(norm, resid: Tensor) -> Callable[[Tensor], Tensor]:
    """The final norm linearised at the residual stream ``resid [B, D]`` (module docstring), bias left out:
    ``x [..., B, D] -> centre(x) * scale(resid) * w``, the scale frozen at ``resid``'s."""
    scale = _norm_scale(norm, resid)                                    # [B, 1]
    return lambda x: centre(norm, x) * scale * norm.w


def _norm_scale(norm, resid: Tensor) -> Tensor:
    """``1 / std(resid)`` (LayerNorm) or ``1 / rms(resid)`` (RMSNorm), shape ``[B, 1]``."""
    if norm.rms:
        return torch.rsqrt(resid.pow(2).mean(-1, keepdim=True) + norm.eps)
    return torch.rsqrt(resid.var(-1, unbiased=False, keepdim=True) + norm.eps)


@dataclass(frozen=True)
class WinnerStats:
    """How concentrated the "explanatory" components are over a set of examples."""

    counts: dict[str, int]

    @property
    def n_unique(self) -> int:
        """Number of distinct components that win at least one example."""
        return len(self.counts)

    @property
    def variance(self) -> float:
        """Population variance of the win counts of the components that win at least once."""
        values = torch.tensor(list(self.counts.values()), dtype=torch.float64)
        return float(values.var(unbiased=False)) if len(values) else 0.0


def winners(lens: ComponentLens, good: Tensor, bad: Tensor, exclude: tuple[str, ...] = ("input",)) -> WinnerStats:
    """Per example, the component with the largest ``logit[good] - logit[bad]``; their counts."""
    keep = [i for i, n in enumerate(lens.names) if n not in exclude]
    best = lens.logit_diff(good, bad)[keep].argmax(0)
    return WinnerStats(dict(Counter(lens.names[keep[i]] for i in best.tolist())))
