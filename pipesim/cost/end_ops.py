"""Operators of the two ends of the model: the input embedding on the first stage and the output head
(final norm, logits, loss) on the last, and the glue of each multi-token-prediction module (its two norms and
2h -> h projection), per microbatch and TP rank, in the op model of :mod:`pipesim.cost.flops`."""

from __future__ import annotations

from pipesim.cost.ops import ACT_BYTES, LayerOps, Op, backward_gemms, tp_in, tp_out
from pipesim.cost.ops import comm as _comm
from pipesim.cost.ops import elementwise as _ew
from pipesim.cost.ops import gemm as _gemm
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec

__all__ = ["embedding_ops", "head_ops", "mtp_ops"]


def embedding_ops(model: ModelSpec, layout: Layout) -> LayerOps:
    """Operators of the input embedding on the first stage, per microbatch and TP rank.

    Vocabulary-parallel lookup (each rank gathers its shard's rows: read + write 2 bytes per element), then an
    all-reduce over TP (SP: reduce-scatter), then position add + dropout (7 bytes/element) when the model has
    learned positions or dropout. Backward: dropout backward, [SP all-gather], and the embedding gradient
    scatter-add into the fp32 gradient (read 2, read-modify-write 4 + 4 bytes/element; phase W).
    """
    b, s, t = layout.micro_batch_size, layout.seq(model) // layout.cp, layout.tp  # s: tokens per CP rank
    sp = layout.sequence_parallel
    h = model.hidden_size
    tokens = b * s
    rep = tokens / t if sp else float(tokens)
    fwd: list[Op] = [_ew("embed.lookup", "F", tokens * h, 4)]
    fwd += tp_out("embed.tp", "F", t, sp, tokens, h)
    if model.learned_positions or model.dropout:
        fwd.append(_ew("embed.pos_dropout", "F", rep * h, 7 if model.dropout else 6))
    bwd: list[Op] = []
    if model.dropout:
        bwd.append(_ew("embed.dropout.bwd", "I", rep * h, 5))
    if t > 1 and sp:
        bwd.append(_comm("embed.tp.bwd", "I", "all-gather", ACT_BYTES * tokens * h))
    bwd.append(_ew("embed.dw", "W", tokens * h, 10))
    return LayerOps(tuple(fwd), tuple(bwd))


def head_ops(model: ModelSpec, layout: Layout) -> LayerOps:
    """Operators of the final norm, output layer and loss on the last stage, per microbatch and TP rank.

    Final norm (4 / 6 bytes per element), [SP all-gather], the vocabulary-parallel logit GEMM
    (M, N, K) = (b s, V/t, h) i.e. 2 b s h V / t FLOPs forward, and the vocabulary-parallel cross entropy:
    10 bytes per logit forward (read 2-byte logits, write and re-read the fp32 copy Korthikanti et al. 4.3
    keep) plus three small all-reduces of b s fp32 values over TP; 6 bytes per logit backward. The backward of
    the logit GEMM's input is an all-reduce over TP (SP: reduce-scatter). The logit layer is never recomputed
    (SC21 eq. 3 counts it 3x).
    """
    b, s, t = layout.micro_batch_size, layout.seq(model) // layout.cp, layout.tp  # s: tokens per CP rank
    sp = layout.sequence_parallel
    h, v_t = model.hidden_size, -(-model.vocab_size // t)
    tokens = b * s
    rep = tokens / t if sp else float(tokens)
    logits = float(tokens * v_t)
    fwd: list[Op] = [_ew("final_norm", "F", rep * h, 4)]
    fwd += tp_in("head.ag", "F", t, sp, tokens, h)
    fwd.append(_gemm("logits", "F", tokens, v_t, h))
    fwd.append(_ew("cross_entropy", "F", logits, 10))
    if t > 1:
        fwd += [_comm(f"cross_entropy.tp{i}", "F", "all-reduce", 4.0 * tokens) for i in range(3)]
    bwd: list[Op] = [_ew("cross_entropy.bwd", "I", logits, 6), _gemm("logits.dx", "I", tokens, h, v_t)]
    if t > 1:
        bwd.append(
            _comm(
                "head.tp.bwd",
                "I",
                "reduce-scatter" if sp else "all-reduce",
                ACT_BYTES * tokens * h,
                "logits.dw" if layout.tp_comm_overlap else None,
            )
        )
    bwd.append(_ew("final_norm.bwd", "I", rep * h, 6))
    bwd.append(_gemm("logits.dw", "W", h, v_t, tokens))
    return LayerOps(tuple(fwd), tuple(bwd))


def mtp_ops(model: ModelSpec, layout: Layout) -> LayerOps:
    """Operators of one multi-token-prediction module beyond its transformer layer and the shared output head,
    per microbatch and TP rank (DeepSeek-V3 report, arXiv:2412.19437, Section 2.2: h'_k = M_k [RMSNorm(h);
    RMSNorm(Emb(t))] with M_k in R^(h x 2h)), as Megatron-Core's ``MultiTokenPredictionLayer`` runs it: the two
    norms (``enorm``, ``hnorm``: 4 bytes per element forward, 6 backward, as the final norm), the projection
    ``eh_proj`` column-parallel (gather_output=False): [SP all-gather of its b s x 2h input], the GEMM
    (M, N, K) = (b s, h / t, 2h) = 4 b s h^2 / t FLOPs, and its output all-gathered over TP back to b s x h for
    the layer (with SP scattered to the sequence shard again, a local split). Backward: the gather's
    reduce-scatter, the GEMM's input and weight gradients, the column-parallel input gradient's all-reduce (SP:
    reduce-scatter) of b s x 2h, the norms' backward. The shared embedding lookup of the shifted tokens is
    not counted (a gather of b s rows, small against the GEMM)."""
    b, s, t = layout.micro_batch_size, layout.seq(model) // layout.cp, layout.tp  # s: tokens per CP rank
    sp = layout.sequence_parallel
    h = model.hidden_size
    tokens = b * s
    rep = tokens / t if sp else float(tokens)
    fwd: list[Op] = [_ew("mtp.enorm", "F", rep * h, 4), _ew("mtp.hnorm", "F", rep * h, 4)]
    fwd += tp_in("mtp.eh_proj.ag", "F", t, sp, tokens, 2 * h)
    proj = _gemm("mtp.eh_proj", "F", tokens, -(-h // t), 2 * h)
    fwd.append(proj)
    if t > 1:
        fwd.append(_comm("mtp.gather", "F", "all-gather", ACT_BYTES * tokens * h))
    dx, dw = backward_gemms(proj)
    assert dx is not None
    bwd: list[Op] = []
    if t > 1:
        bwd.append(_comm("mtp.gather.bwd", "I", "reduce-scatter", ACT_BYTES * tokens * h))
    bwd.append(dx)
    bwd += tp_out("mtp.eh_proj.bwd", "I", t, sp, tokens, 2 * h)
    bwd += [_ew("mtp.enorm.bwd", "I", rep * h, 6), _ew("mtp.hnorm.bwd", "I", rep * h, 6), dw]
    return LayerOps(tuple(fwd), tuple(bwd))
