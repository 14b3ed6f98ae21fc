"""FLOPs and HBM bytes of a transformer, per operator and per model.

Two views of the same arithmetic:

* closed-form model totals from the papers: SC21 eq. (2) (parameters) and eq. (3) (FLOPs per iteration with
  recomputation), Korthikanti et al. Appendix A eq. (7) (model FLOPs) and eq. (8) (hardware FLOPs with
  selective recomputation);
* an operator list of one transformer layer (and of the embedding and the output head) as one tensor-parallel
  rank executes it for one microbatch: every GEMM with its (M, N, K), every memory-bound kernel with the bytes
  it moves, every tensor-parallel collective with its size. :mod:`pipesim.cost.times` turns each operator into
  seconds; the roofline view reuses the same list.

Conventions: ``b`` microbatch size, ``s`` sequence length, ``h`` hidden size, ``a`` attention heads, ``t``
tensor-parallel size, ``V`` vocabulary; activations are 2-byte (bf16/fp16), dropout masks 1 byte
(Korthikanti et al. Section 4). A GEMM of shape (M, N, K) costs 2MNK FLOPs and moves at least
2(MK + KN + MN) bytes. Attention FLOPs count the full s x s score matrix (the Megatron-LM convention used by
eq. 3 and eq. 7); causal FlashAttention executes only half of it (``ATTENTION_CAUSAL_FRACTION``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec

__all__ = [
    "Op",
    "LayerOps",
    "KINDS",
    "PHASES",
    "ACT_BYTES",
    "ELEMENT_BYTES",
    "at_precision",
    "ATTENTION_CAUSAL_FRACTION",
    "FLASH_BACKWARD_FACTOR",
    "sc21_params",
    "sc21_iteration_flops",
    "model_flops_eq7",
    "hardware_flops_eq8",
    "model_flops_per_token",
    "model_flops_per_step",
    "hardware_flops_per_step",
    "layer_ops",
    "embedding_ops",
    "head_ops",
]

KINDS = ("gemm", "attention", "elementwise", "comm")
PHASES = ("F", "I", "W")  # forward; backward for inputs (incl. recompute); backward for weights
ACT_BYTES = 2  # bf16 / fp16 activations
# Bytes per element by precision: (GEMM operands, activations). fp8 as in Transformer Engine: GEMM inputs and
# weights are cast to 1-byte fp8, GEMM outputs and every other kernel stay in 2-byte bf16; tf32 / fp32 keep
# every tensor in 4-byte fp32 (TF32 is a tensor-core mode over fp32 storage). The operator lists are built
# with 2-byte tensors and rescaled by :func:`at_precision`.
ELEMENT_BYTES: dict[str, tuple[int, int]] = {
    "bf16": (2, 2),
    "fp16": (2, 2),
    "fp8": (1, 2),
    "tf32": (4, 4),
    "fp32": (4, 4),
}
# Causal FlashAttention skips the masked upper triangle: it executes half of the s x s score FLOPs.
ATTENTION_CAUSAL_FRACTION = 0.5
# FlashAttention-2's backward runs five s x s matmuls (it recomputes QK^T) against the forward's two:
# 2.5x the forward FLOPs (Dao 2023, FlashAttention-2, Section 3.1.2 / 4.1 FLOP counting).
FLASH_BACKWARD_FACTOR = 2.5


@dataclass(frozen=True)
class Op:
    """One operator as one TP rank runs it on one microbatch.

    ``kind``: gemm | attention | elementwise | comm. ``phase``: F (forward), I (backward for inputs), W
    (backward for weights). ``flops`` are executed FLOPs; ``hbm_bytes`` the bytes read and written in HBM
    (a lower bound for GEMMs). GEMMs carry ``shape`` = (M, N, K) and ``batch`` (batched GEMMs of the unfused
    attention). Communication ops carry ``collective`` (a :data:`pipesim.comm.base.COLLECTIVES` name) and
    ``comm_bytes`` (the nccl-tests buffer size); they run over the tensor-parallel group. ``recompute`` marks a
    forward operator re-run in the backward pass. ``hidden_by`` names the operator a collective runs
    concurrently with when the layout overlaps TP communication (only the excess is exposed).
    ``vector_flops``: nominal arithmetic of a memory-bound kernel (norm, activation, softmax, ...), which
    places it on the roofline; it is not part of ``flops`` (the matmul FLOPs the papers count) and does not
    enter its time.
    """

    name: str
    kind: str
    phase: str
    flops: float = 0.0
    hbm_bytes: float = 0.0
    shape: tuple[int, int, int] | None = None
    batch: int = 1
    collective: str | None = None
    comm_bytes: float = 0.0
    recompute: bool = False
    hidden_by: str | None = None
    vector_flops: float = 0.0

    def as_recompute(self) -> Op:
        """This forward op re-run during the backward (phase I, flagged recompute, never overlapped)."""
        return replace(self, name="recompute." + self.name, phase="I", recompute=True, hidden_by=None)


@dataclass(frozen=True)
class LayerOps:
    """The operators of one transformer layer: ``forward``, and ``backward`` = recompute ops (if any), the
    input-gradient ops (phase I) and the weight-gradient GEMMs (phase W)."""

    forward: tuple[Op, ...]
    backward: tuple[Op, ...]

    @property
    def all(self) -> tuple[Op, ...]:
        """Forward then backward operators."""
        return self.forward + self.backward


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


def _layer_forward_flops_per_token(model: ModelSpec, seq: int) -> float:
    """Forward FLOPs of one layer per token: 2 x GEMM weights + 4 s h (QK^T and attention over values, full
    s x s as in eq. 7)."""
    return 2 * model.layer_matrix_params() + 4 * seq * model.hidden_size


def model_flops_per_token(model: ModelSpec, seq: int | None = None) -> float:
    """Model FLOPs per trained token (forward + backward = 3 x forward, no recomputation), generalising
    eq. (7) to GQA and SwiGLU: 3 x (L x (2 x layer GEMM weights + 4 s h) + 2 h V). For GPT this equals
    eq. (7) / (B s) exactly."""
    s = model.seq_length if seq is None else seq
    per_layer = _layer_forward_flops_per_token(model, s)
    logits = 2 * model.hidden_size * model.vocab_size
    return 3 * (model.num_layers * per_layer + logits)


def model_flops_per_step(model: ModelSpec, layout: Layout) -> float:
    """Model FLOPs of one optimizer step: tokens per step x :func:`model_flops_per_token`."""
    s = layout.seq(model)
    return layout.global_batch_size * s * model_flops_per_token(model, s)


def hardware_flops_per_step(model: ModelSpec, layout: Layout) -> float:
    """Hardware FLOPs of one step: model FLOPs plus the recomputed forward (full: every layer's forward,
    which for GPT gives SC21 eq. (3) exactly; selective: the attention core, 4 s h per token per layer)."""
    s = layout.seq(model)
    tokens = layout.global_batch_size * s
    extra = 0.0
    if layout.recompute == "full":
        extra = model.num_layers * _layer_forward_flops_per_token(model, s)
    elif layout.recompute == "selective":
        extra = model.num_layers * 4 * s * model.hidden_size
    return model_flops_per_step(model, layout) + tokens * extra


# --------------------------------------------------------------------------- operator lists
def _gemm(name: str, phase: str, m: int, n: int, k: int, batch: int = 1) -> Op:
    flops = 2.0 * m * n * k * batch
    hbm = ACT_BYTES * (m * k + k * n + m * n) * batch
    return Op(name, "gemm", phase, flops, float(hbm), (m, n, k), batch)


def _ew(
    name: str, phase: str, elements: float, bytes_per_element: float, flops_per_element: float = 0.0
) -> Op:
    return Op(
        name,
        "elementwise",
        phase,
        0.0,
        elements * bytes_per_element,
        vector_flops=elements * flops_per_element,
    )


def _comm(name: str, phase: str, collective: str, size_bytes: float, hidden_by: str | None = None) -> Op:
    return Op(name, "comm", phase, collective=collective, comm_bytes=size_bytes, hidden_by=hidden_by)


def _tp_in(
    name: str, phase: str, t: int, sp: bool, tokens: int, h: int, hidden_by: str | None = None
) -> list[Op]:
    """Entering a column-parallel region: SP all-gathers the sequence-sharded input (forward); without SP
    the forward is the identity (Megatron's f operator)."""
    if t == 1 or not sp:
        return []
    return [_comm(name, phase, "all-gather", ACT_BYTES * tokens * h, hidden_by)]


def _tp_out(
    name: str, phase: str, t: int, sp: bool, tokens: int, h: int, hidden_by: str | None = None
) -> list[Op]:
    """Leaving a row-parallel region: all-reduce (Megatron's g operator) or, with SP, reduce-scatter."""
    if t == 1:
        return []
    return [_comm(name, phase, "reduce-scatter" if sp else "all-reduce", ACT_BYTES * tokens * h, hidden_by)]


def at_precision(ops: LayerOps, precision: str) -> LayerOps:
    """``ops`` (built with 2-byte tensors) with the bytes of ``precision`` (:data:`ELEMENT_BYTES`): a GEMM moves
    operand bytes x (MK + KN) + activation bytes x MN per batch; every other kernel and every collective
    scales with the activation bytes (1-byte dropout masks included: an approximation for tf32 / fp32).
    bf16 and fp16 return ``ops`` unchanged."""
    operand, act = ELEMENT_BYTES[precision]
    if (operand, act) == (ACT_BYTES, ACT_BYTES):
        return ops
    k = act / ACT_BYTES

    def conv(op: Op) -> Op:
        if op.kind == "gemm" and op.shape is not None:
            m, n, kk = op.shape
            hbm = float((operand * (m * kk + kk * n) + act * m * n) * op.batch)
            return replace(op, hbm_bytes=hbm)
        return replace(op, hbm_bytes=op.hbm_bytes * k, comm_bytes=op.comm_bytes * k)

    return LayerOps(tuple(map(conv, ops.forward)), tuple(map(conv, ops.backward)))


def layer_ops(model: ModelSpec, layout: Layout, precision: str | None = None) -> LayerOps:
    """Operators of one transformer layer for one microbatch on one TP rank.

    Forward (Megatron-LM block, Shoeybi et al. 2019 / SC21 Section 3.2): norm, [SP all-gather], QKV GEMM,
    attention core, projection GEMM, all-reduce (SP: reduce-scatter), bias-dropout-add, norm, [all-gather],
    MLP GEMM 1, activation, MLP GEMM 2, all-reduce / reduce-scatter, bias-dropout-add. Two TP all-reduces
    forward and two backward per layer (SC21 Section 3.2); with sequence parallelism each becomes a
    reduce-scatter plus an all-gather (Korthikanti et al. Section 4.2.2).

    Backward: for every GEMM y = xW the input gradient dX (phase I) and the weight gradient dW (phase W) each
    cost the forward FLOPs. With ``layout.tp_comm_overlap`` (Megatron-LM's asynchronous tensor-parallel
    all-reduce) the input-gradient collective of QKV / MLP-1 runs during that layer's dW GEMM, and with SP the
    re-all-gather for dW during the dX GEMM; memory-bound kernels move about 1.5x their forward bytes. Recomputation prepends
    the whole forward (``full``) or the attention core (``selective``) to the backward.

    Memory-bound bytes per element (2-byte activations, 1-byte masks): norm 4 forward (read x, write y),
    6 backward; bias-dropout-add 7 forward (x, residual, out, mask), 11 backward (dropout backward 5 plus the
    residual-gradient add 6), residual add without dropout 6 / 6; GeLU 4 / 6; SwiGLU 6 / 10 (per output
    element); fused scale-mask-softmax 4 / 6 and attention dropout 5 / 5 per score element.

    Nominal FLOPs per element of those kernels (the arithmetic of each formula, exp / tanh counted as one):
    RMSNorm 4 forward (square, sum, scale, weight), LayerNorm 7 (mean, centre, square, sum, scale, weight,
    bias), backward twice that; residual add 1 / 1; bias-dropout-add 4 / 3; SwiGLU 5 / 10 (sigmoid 3, times
    x, times up); bias-GeLU (tanh form) 8 / 16; softmax 5 / 4; attention dropout 2 / 2 (``Op.vector_flops``). They only place the
    kernels on the roofline (:mod:`pipesim.cost.roofline`): a memory-bound kernel's time depends on its bytes.

    ``precision`` (default the layout's) sets the bytes per element (:func:`at_precision`).
    """
    b, s, t = layout.micro_batch_size, layout.seq(model), layout.tp
    sp = layout.sequence_parallel
    ov = layout.tp_comm_overlap
    h, a, hd = model.hidden_size, model.num_attention_heads, model.head_dim
    tokens = b * s
    rep = tokens / t if sp else float(tokens)  # elements/h of the norm/dropout regions on one rank
    a_t = a // t
    kv_t = max(1, model.num_kv_heads // t) * hd  # KV heads per rank (replicated when t > kv heads)
    qkv_n = h // t + 2 * kv_t
    f_t = model.ffn_hidden_size // t
    mlp_in_t = model.mlp_in_width // t
    drop = model.dropout
    bda_f, bda_b = (7, 11) if drop else (6, 6)
    act_f, act_b = (6, 10) if model.gated_mlp else (4, 6)
    # Nominal FLOPs per element (docstring): norm, residual / bias-dropout-add, activation.
    norm_fl = 4.0 if model.norm == "rmsnorm" else 7.0
    bda_fl_f, bda_fl_b = (4.0, 3.0) if drop else (1.0, 1.0)
    act_fl_f, act_fl_b = (5.0, 10.0) if model.gated_mlp else (8.0, 16.0)
    scores = float(b * a_t * s * s)

    def attention_core(phase: str) -> list[Op]:
        if layout.attention == "flash":
            fl = 4.0 * b * a_t * s * s * hd * ATTENTION_CAUSAL_FRACTION
            io = ACT_BYTES * tokens * (2 * a_t * hd + 2 * kv_t)  # read Q, K, V; write O
            return [Op("attn.flash", "attention", phase, fl, float(io), (s, s, hd), b * a_t)]
        ops = [_gemm("attn.qk", phase, s, s, hd, b * a_t), _ew("attn.softmax", phase, scores, 4, 5)]
        if drop:
            ops.append(_ew("attn.dropout", phase, scores, 5, 2))
        ops.append(_gemm("attn.av", phase, s, hd, s, b * a_t))
        return ops

    fwd: list[Op] = [_ew("norm1", "F", rep * h, 4, norm_fl)]
    ovf = layout.tp_comm_overlap_forward
    fwd += _tp_in("tp.ag1", "F", t, sp, tokens, h, "qkv" if ovf else None)
    fwd.append(_gemm("qkv", "F", tokens, qkv_n, h))
    fwd += attention_core("F")
    fwd.append(_gemm("proj", "F", tokens, h, h // t))
    fwd += _tp_out("tp.out1", "F", t, sp, tokens, h, "proj" if ovf else None)
    fwd.append(_ew("bias_dropout_add1" if drop else "residual_add1", "F", rep * h, bda_f, bda_fl_f))
    fwd.append(_ew("norm2", "F", rep * h, 4, norm_fl))
    fwd += _tp_in("tp.ag2", "F", t, sp, tokens, h, "fc1" if ovf else None)
    fwd.append(_gemm("fc1", "F", tokens, mlp_in_t, h))
    fwd.append(_ew("swiglu" if model.gated_mlp else "bias_gelu", "F", tokens * f_t, act_f, act_fl_f))
    fwd.append(_gemm("fc2", "F", tokens, h, f_t))
    fwd += _tp_out("tp.out2", "F", t, sp, tokens, h, "fc2" if ovf else None)
    fwd.append(_ew("bias_dropout_add2" if drop else "residual_add2", "F", rep * h, bda_f, bda_fl_f))

    bwd: list[Op] = []
    if layout.recompute == "full":
        bwd += [op.as_recompute() for op in fwd]
    elif layout.recompute == "selective":
        bwd += [op.as_recompute() for op in attention_core("F")]

    # Input-gradient pass, in reverse layer order. The g operator's backward is the identity (SP: all-gather);
    # the f operator's backward is an all-reduce (SP: reduce-scatter).
    bwd.append(_ew("bias_dropout_add2.bwd" if drop else "residual_add2.bwd", "I", rep * h, bda_b, bda_fl_b))
    if t > 1 and sp:
        bwd.append(_comm("tp.out2.bwd", "I", "all-gather", ACT_BYTES * tokens * h))
    bwd.append(_gemm("fc2.dx", "I", tokens, f_t, h))
    bwd.append(_ew("swiglu.bwd" if model.gated_mlp else "bias_gelu.bwd", "I", tokens * f_t, act_b, act_fl_b))
    bwd.append(_gemm("fc1.dx", "I", tokens, h, mlp_in_t))
    if t > 1:
        coll = "reduce-scatter" if sp else "all-reduce"
        bwd.append(_comm("tp.in2.bwd", "I", coll, ACT_BYTES * tokens * h, "fc1.dw" if ov else None))
    bwd.append(_ew("norm2.bwd", "I", rep * h, 6, 2 * norm_fl))
    bwd.append(_ew("bias_dropout_add1.bwd" if drop else "residual_add1.bwd", "I", rep * h, bda_b, bda_fl_b))
    if t > 1 and sp:
        bwd.append(_comm("tp.out1.bwd", "I", "all-gather", ACT_BYTES * tokens * h))
    bwd.append(_gemm("proj.dx", "I", tokens, h // t, h))
    if layout.attention == "flash":
        core = attention_core("I")[0]
        bwd.append(
            Op(
                "attn.flash.bwd",
                "attention",
                "I",
                core.flops * FLASH_BACKWARD_FACTOR,
                core.hbm_bytes * 2,  # read Q, K, V, O, dO; write dQ, dK, dV
                core.shape,
                core.batch,
            )
        )
    else:
        bwd.append(_gemm("attn.av.dp", "I", s, s, hd, b * a_t))  # dP = dO V^T
        bwd.append(_gemm("attn.av.dv", "I", s, hd, s, b * a_t))  # dV = P^T dO
        if drop:
            bwd.append(_ew("attn.dropout.bwd", "I", scores, 5, 2))
        bwd.append(_ew("attn.softmax.bwd", "I", scores, 6, 4))
        bwd.append(_gemm("attn.qk.dq", "I", s, hd, s, b * a_t))  # dQ = dS K
        bwd.append(_gemm("attn.qk.dk", "I", s, hd, s, b * a_t))  # dK = dS^T Q
    bwd.append(_gemm("qkv.dx", "I", tokens, h, qkv_n))
    if t > 1:
        coll = "reduce-scatter" if sp else "all-reduce"
        bwd.append(_comm("tp.in1.bwd", "I", coll, ACT_BYTES * tokens * h, "qkv.dw" if ov else None))
    bwd.append(_ew("norm1.bwd", "I", rep * h, 6, 2 * norm_fl))
    # Weight-gradient GEMMs dW = x^T dY: (M, N, K) = (in, out, tokens). With sequence parallelism the
    # gathered inputs of QKV and MLP-1 are not kept, so they are all-gathered again for dW (Korthikanti et al.
    # Section 4.2.2; Megatron-LM overlaps this with the dX GEMM, which the model does not).
    if t > 1 and sp:
        bwd.append(_comm("tp.ag2.dw", "W", "all-gather", ACT_BYTES * tokens * h, "fc1.dx" if ov else None))
    bwd.append(_gemm("fc2.dw", "W", f_t, h, tokens))
    bwd.append(_gemm("fc1.dw", "W", h, mlp_in_t, tokens))
    bwd.append(_gemm("proj.dw", "W", h // t, h, tokens))
    if t > 1 and sp:
        bwd.append(_comm("tp.ag1.dw", "W", "all-gather", ACT_BYTES * tokens * h, "qkv.dx" if ov else None))
    bwd.append(_gemm("qkv.dw", "W", h, qkv_n, tokens))
    return at_precision(LayerOps(tuple(fwd), tuple(bwd)), precision or layout.precision)


def embedding_ops(model: ModelSpec, layout: Layout) -> LayerOps:
    """Operators of the input embedding on the first stage, per microbatch and TP rank.

    Vocabulary-parallel lookup (each rank gathers its shard's rows: read + write 2 bytes per element), then an
    all-reduce over TP (SP: reduce-scatter), then position add + dropout (7 bytes/element) when the model has
    learned positions or dropout. Backward: dropout backward, [SP all-gather], and the embedding gradient
    scatter-add into the fp32 gradient (read 2, read-modify-write 4 + 4 bytes/element; phase W).
    """
    b, s, t = layout.micro_batch_size, layout.seq(model), layout.tp
    sp = layout.sequence_parallel
    h = model.hidden_size
    tokens = b * s
    rep = tokens / t if sp else float(tokens)
    fwd: list[Op] = [_ew("embed.lookup", "F", tokens * h, 4)]
    fwd += _tp_out("embed.tp", "F", t, sp, tokens, h)
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
    b, s, t = layout.micro_batch_size, layout.seq(model), layout.tp
    sp = layout.sequence_parallel
    h, v_t = model.hidden_size, -(-model.vocab_size // t)
    tokens = b * s
    rep = tokens / t if sp else float(tokens)
    logits = float(tokens * v_t)
    fwd: list[Op] = [_ew("final_norm", "F", rep * h, 4)]
    fwd += _tp_in("head.ag", "F", t, sp, tokens, h)
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
