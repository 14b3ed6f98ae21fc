"""Model FLOPs: the closed forms of the papers and the per-token count of any :class:`ModelSpec`.

SC21 eq. (2) (parameters) and eq. (3) (FLOPs per iteration with recomputation), Korthikanti et al. Appendix A
eq. (7) (model FLOPs) and eq. (8) (hardware FLOPs with selective recomputation), and their generalisation to
GQA, gated MLPs, multi-head latent attention, sliding windows, mixture of experts (active parameters, as
Megatron-LM's ``num_floating_point_operations`` counts them) and multi-token prediction. Attention FLOPs count
the full s x w score matrix (the Megatron-LM convention); the operator lists of :mod:`pipesim.cost.flops`
execute only the causal part (:func:`attention_pairs`).
"""

from __future__ import annotations

from pipesim.specs.layout import Layout
from pipesim.specs.model import LayerKind, ModelSpec

__all__ = [
    "sc21_params",
    "sc21_iteration_flops",
    "model_flops_eq7",
    "hardware_flops_eq8",
    "attention_pairs",
    "model_flops_per_token",
    "model_flops_per_step",
    "hardware_flops_per_step",
]


# --------------------------------------------------------------------------- closed forms from the papers
def sc21_params(layers: int, hidden: int, vocab: int, seq: int) -> float:
    """SC21 eq. (2): P = 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h)) (GPT, ffn = 4h, learned positions)."""
    lh = layers * hidden
    return 12 * layers * hidden**2 * (1 + 13 / (12 * hidden) + (vocab + seq) / (12 * lh))


def sc21_iteration_flops(batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """SC21 eq. (3): F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h)); counts the recompute forward (full
    activation recomputation), i.e. 4 forward passes of the layers and 3 of the logit layer."""
    return 96 * batch * seq * layers * hidden**2 * (1 + seq / (6 * hidden) + vocab / (16 * layers * hidden))


def model_flops_eq7(batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """Korthikanti et al. Appendix A eq. (7): 72 B L s h^2 (1 + s/(6h) + V/(12 h L)): forward + backward,
    no recomputation (the FLOPs behind MFU)."""
    return 72 * batch * layers * seq * hidden**2 * (1 + seq / (6 * hidden) + vocab / (12 * hidden * layers))


def hardware_flops_eq8(batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """Korthikanti et al. Appendix A eq. (8): 72 B L s h^2 (1 + s/(3h) + V/(12 h L)): hardware FLOPs with
    selective recomputation as the paper states it. Note: re-running the attention core adds 4 B s^2 h per
    layer, i.e. 72 B L s h^2 (1 + 2s/(9h) + ...); eq. (8) is the paper's rounder upper figure."""
    return 72 * batch * layers * seq * hidden**2 * (1 + seq / (3 * hidden) + vocab / (12 * hidden * layers))


def attention_pairs(model: ModelSpec, kind: LayerKind, seq: int) -> float:
    """Query-key pairs causal attention executes over one sequence: s w - w^2 / 2 with w = the keys a query
    may see (s, or the sliding window): s^2 / 2 for full causal attention."""
    w = model.attention_window(kind, seq)
    return seq * w - w * w / 2


def _attention_flops_per_token(model: ModelSpec, kind: LayerKind, seq: int) -> float:
    """Forward attention-core FLOPs per token in the Megatron-LM convention (the full s x w score matrix,
    not halved for causality): 2 a w (d_qk + d_v); 4 s h for standard attention (eq. 7's 4 s h term)."""
    w = model.attention_window(kind, seq)
    return 2.0 * model.num_attention_heads * w * (model.qk_head_dim + model.head_dim)


def _layer_forward_flops_per_token(model: ModelSpec, seq: int, kind: LayerKind) -> float:
    """Forward FLOPs of one layer per token: 2 x the GEMM weights the token passes through (active experts
    only) + the attention core (:func:`_attention_flops_per_token`)."""
    return 2 * model.layer_matrix_params(kind) + _attention_flops_per_token(model, kind, seq)


def _mtp_forward_flops_per_token(model: ModelSpec, seq: int) -> float:
    """Forward FLOPs per token of the multi-token-prediction modules: per module its layer, the 2h x h
    projection and one more output layer (2 h V) (DeepSeek-V3 report Section 2.2; Megatron-LM counts them)."""
    h = model.hidden_size
    per = (
        _layer_forward_flops_per_token(model, seq, model.main_kind())
        + 2 * 2 * h * h
        + 2 * h * model.vocab_size
    )
    return model.mtp_layers * per


def model_flops_per_token(model: ModelSpec, seq: int | None = None) -> float:
    """Model FLOPs per trained token (forward + backward = 3 x forward, no recomputation), generalising
    eq. (7) to GQA, gated MLPs, MLA and mixture of experts: 3 x (sum over layers of (2 x active GEMM weights +
    attention core) + 2 h V + MTP modules). Mixture-of-experts layers count the top-k routed experts, the
    shared experts and the router, as Megatron-LM's ``num_floating_point_operations`` counts active
    parameters. For GPT this equals eq. (7) / (B s) exactly; for a dense model without MTP it is 6 N_matrix
    + attention."""
    s = model.seq_length if seq is None else seq
    layers = sum(n * _layer_forward_flops_per_token(model, s, k) for k, n in model.kind_counts().items())
    logits = 2 * model.hidden_size * model.vocab_size
    return 3 * (layers + logits + _mtp_forward_flops_per_token(model, s))


def model_flops_per_step(model: ModelSpec, layout: Layout) -> float:
    """Model FLOPs of one optimizer step: tokens per step x :func:`model_flops_per_token`."""
    s = layout.seq(model)
    return layout.global_batch_size * s * model_flops_per_token(model, s)


def hardware_flops_per_step(model: ModelSpec, layout: Layout) -> float:
    """Hardware FLOPs of one step: model FLOPs plus the recomputed forward (full: every layer's forward,
    which for GPT gives SC21 eq. (3) exactly; selective: the attention core)."""
    s = layout.seq(model)
    tokens = layout.global_batch_size * s
    extra = 0.0
    for kind, n in model.kind_counts().items():
        if layout.recompute == "full":
            extra += n * _layer_forward_flops_per_token(model, s, kind)
        elif layout.recompute == "selective":
            extra += n * _attention_flops_per_token(model, kind, s)
    return model_flops_per_step(model, layout) + tokens * extra
