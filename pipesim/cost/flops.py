"""FLOPs and HBM bytes of a transformer, per operator and per model.

Two views of the same arithmetic:

* closed-form model totals from the papers and the model FLOPs per token (defined in
  :mod:`pipesim.cost.model_flops`, re-exported here);
* an operator list of one transformer layer (and of the embedding and the output head) as one tensor-parallel
  rank executes it for one microbatch: every GEMM with its (M, N, K), every memory-bound kernel with the bytes
  it moves, every tensor-parallel collective with its size (bytes per element of other precisions:
  :mod:`pipesim.cost.precision`). :mod:`pipesim.cost.times` turns each operator into
  seconds; the roofline view reuses the same list.

Conventions: ``b`` microbatch size, ``s`` sequence length, ``h`` hidden size, ``a`` attention heads, ``t``
tensor-parallel size, ``V`` vocabulary; activations are 2-byte (bf16/fp16), dropout masks 1 byte
(Korthikanti et al. Section 4). A GEMM of shape (M, N, K) costs 2MNK FLOPs and moves at least
2(MK + KN + MN) bytes. Attention FLOPs count the full s x s score matrix (the Megatron-LM convention used by
eq. 3 and eq. 7); causal FlashAttention executes only half of it (``ATTENTION_CAUSAL_FRACTION``).
"""

from __future__ import annotations

from pipesim.cost.model_flops import (
    attention_pairs,
    hardware_flops_eq8,
    hardware_flops_per_step,
    model_flops_eq7,
    model_flops_per_step,
    model_flops_per_token,
    sc21_iteration_flops,
    sc21_params,
)
from pipesim.cost.moe_ops import cp_attention_comm, moe_block
from pipesim.cost.ops import ACT_BYTES, LayerOps, Op, backward_gemms, tp_in, tp_out
from pipesim.cost.ops import comm as _comm
from pipesim.cost.ops import elementwise as _ew
from pipesim.cost.ops import gemm as _gemm
from pipesim.cost.parallel_block import shared_collectives
from pipesim.cost.precision import at_precision
from pipesim.errors import InputError
from pipesim.specs.layout import Layout
from pipesim.specs.model import LayerKind, ModelSpec

__all__ = [
    "Op",
    "LayerOps",
    "KINDS",
    "PHASES",
    "ACT_BYTES",
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
]

KINDS = ("gemm", "attention", "elementwise", "comm")
PHASES = ("F", "I", "W")  # forward; backward for inputs (incl. recompute); backward for weights
# Causal FlashAttention skips the masked upper triangle: it executes half of the s x s score FLOPs.
ATTENTION_CAUSAL_FRACTION = 0.5
# FlashAttention-2's backward runs five s x s matmuls (it recomputes QK^T) against the forward's two:
# 2.5x the forward FLOPs (Dao 2023, FlashAttention-2, Section 3.1.2 / 4.1 FLOP counting).
FLASH_BACKWARD_FACTOR = 2.5


# --------------------------------------------------------------------------- operator lists
def _activation(model: ModelSpec) -> tuple[str, float, float, float, float]:
    """(kernel name, bytes per output element forward / backward, nominal FLOPs forward / backward) of the
    MLP activation: SwiGLU / GeGLU 6 / 10 bytes, 5 / 10 FLOPs; bias-GeLU 4 / 6 bytes, 8 / 16 FLOPs (tanh form);
    squared ReLU 4 / 6 bytes, 2 / 2 FLOPs."""
    if model.gated_mlp:
        return (model.activation, 6.0, 10.0, 5.0, 10.0)
    if model.activation == "squared_relu":
        return ("squared_relu", 4.0, 6.0, 2.0, 2.0)
    return ("bias_gelu", 4.0, 6.0, 8.0, 16.0)


def _check_attention(model: ModelSpec, layout: Layout, kind: LayerKind) -> None:
    if layout.attention == "unfused" and (kind.sliding or layout.cp > 1):
        what = "a sliding window" if kind.sliding else f"cp={layout.cp}"
        raise InputError(f"attention=unfused with {what} is not modelled; use --attention flash")


# layer_ops results by (model, the layout fields they depend on, precision, kind): the planner asks for the
# same layer under thousands of layouts that differ only in dp / pp / batch. Cleared when it grows large.
_LAYER_CACHE: dict[tuple[object, ...], LayerOps] = {}
_LAYER_CACHE_MAX = 4096


def layer_ops(
    model: ModelSpec, layout: Layout, precision: str | None = None, kind: LayerKind | None = None
) -> LayerOps:
    """Operators of one transformer layer of ``kind`` (cached :func:`build_layer_ops`)."""
    k = model.resolve_kind(kind)
    prec = precision or layout.precision
    key = (
        model,
        k,
        prec,
        layout.tp,
        layout.cp,
        layout.ep,
        layout.etp,
        layout.sequence_parallel,
        layout.micro_batch_size,
        layout.seq(model),
        layout.recompute,
        layout.attention,
        layout.tp_comm_overlap,
        layout.tp_comm_overlap_forward,
        layout.cp_comm,
        layout.moe_imbalance,
    )
    hit = _LAYER_CACHE.get(key)
    if hit is None:
        if len(_LAYER_CACHE) >= _LAYER_CACHE_MAX:
            _LAYER_CACHE.clear()
        hit = _LAYER_CACHE[key] = build_layer_ops(model, layout, prec, k)
    return hit


def build_layer_ops(
    model: ModelSpec, layout: Layout, precision: str | None = None, kind: LayerKind | None = None
) -> LayerOps:
    """Operators of one transformer layer of ``kind`` (default: the only kind of a uniform model) for one
    microbatch on one GPU.

    Forward (Megatron-LM block, Shoeybi et al. 2019 / SC21 Section 3.2): norm, [SP all-gather], QKV GEMM
    (MLA: the query and key/value down- and up-projections of DeepSeek-V2 Section 2.1, the down-projections
    replicated over tp as Megatron-Core runs them), [QK-norm], [context-parallel key/value exchange], attention
    core, projection GEMM, all-reduce (SP: reduce-scatter), bias-dropout-add, norm, [all-gather], MLP GEMM 1,
    activation, MLP GEMM 2, all-reduce / reduce-scatter, bias-dropout-add. A mixture-of-experts layer replaces
    the MLP with :func:`pipesim.cost.moe_ops.moe_block` plus its shared experts (a dense MLP). Two TP
    all-reduces forward and two backward per layer (SC21 Section 3.2); with sequence parallelism each becomes
    a reduce-scatter plus an all-gather (Korthikanti et al. Section 4.2.2). Gemma's post-norms
    (``norms_per_layer`` = 4) add two norms; a parallel block runs the same GEMMs one after the other and shares
    its TP collectives (:mod:`pipesim.cost.parallel_block`).

    Backward: for every GEMM y = xW the input gradient dX (phase I) and the weight gradient dW (phase W) each
    cost the forward FLOPs. With ``layout.tp_comm_overlap`` (Megatron-LM's asynchronous tensor-parallel
    all-reduce) the input-gradient collective of QKV / MLP-1 runs during that layer's dW GEMM, and with SP the
    re-all-gather for dW during the dX GEMM; memory-bound kernels move about 1.5x their forward bytes.
    Recomputation prepends the whole forward (``full``) or the attention core (``selective``) to the backward.

    Memory-bound bytes per element (2-byte activations, 1-byte masks): norm 4 forward (read x, write y),
    6 backward; bias-dropout-add 7 forward (x, residual, out, mask), 11 backward (dropout backward 5 plus the
    residual-gradient add 6), residual add without dropout 6 / 6; activation per :func:`_activation`; fused
    scale-mask-softmax 4 / 6 and attention dropout 5 / 5 per score element.

    Nominal FLOPs per element of those kernels (the arithmetic of each formula, exp / tanh counted as one):
    RMSNorm 4 forward (square, sum, scale, weight), LayerNorm 7 (mean, centre, square, sum, scale, weight,
    bias), backward twice that; residual add 1 / 1; bias-dropout-add 4 / 3; softmax 5 / 4; attention dropout
    2 / 2 (``Op.vector_flops``). They only place the kernels on the roofline (:mod:`pipesim.cost.roofline`).

    Attention executes :func:`attention_pairs` query-key pairs (causal; sliding window), divided over cp.
    ``precision`` (default the layout's) sets the bytes per element (:func:`pipesim.cost.precision.at_precision`).
    """
    k = model.resolve_kind(kind)
    _check_attention(model, layout, k)
    b, s, t, cp = layout.micro_batch_size, layout.seq(model), layout.tp, layout.cp
    sp = layout.sequence_parallel
    ov = layout.tp_comm_overlap
    h, a = model.hidden_size, model.num_attention_heads
    d_qk, d_v = model.qk_head_dim, model.head_dim
    s_loc = s // cp  # local queries per GPU
    tokens = b * s_loc
    rep = tokens / t if sp else float(tokens)  # elements/h of the norm/dropout regions on one rank
    a_t = a // t
    # KV heads per rank (replicated when t > kv heads); MLA decompresses a key and value for every head.
    kv_heads_t = a_t if model.mla else max(1, model.num_kv_heads // t)
    kv_width_t = kv_heads_t * (d_qk + d_v)
    drop = model.dropout
    bda_f, bda_b = (7, 11) if drop else (6, 6)
    norm_fl = 4.0 if model.norm == "rmsnorm" else 7.0
    bda_fl_f, bda_fl_b = (4.0, 3.0) if drop else (1.0, 1.0)
    keys = model.attention_window(k, s)
    pairs = attention_pairs(model, k, s) / cp  # query-key pairs of this GPU's 2 chunks
    scores = float(b * a_t * s * s)
    core_name = "attn.flash" if layout.attention == "flash" else "attn.av"

    def attention_core(phase: str) -> list[Op]:
        if layout.attention == "flash":
            fl = 2.0 * b * a_t * (d_qk + d_v) * pairs
            io = ACT_BYTES * tokens * (a_t * (d_qk + d_v) + kv_width_t)  # read Q, K, V; write O
            return [Op("attn.flash", "attention", phase, fl, float(io), (s_loc, keys, d_qk), b * a_t)]
        ops = [_gemm("attn.qk", phase, s, s, d_qk, b * a_t), _ew("attn.softmax", phase, scores, 4, 5)]
        if drop:
            ops.append(_ew("attn.dropout", phase, scores, 5, 2))
        ops.append(_gemm("attn.av", phase, s, d_v, s, b * a_t))
        return ops

    # ---- attention block: forward, input-gradient and weight-gradient lists
    fwd: list[Op] = [_ew("norm1", "F", rep * h, 4, norm_fl)]
    ovf = layout.tp_comm_overlap_forward  # Megatron --tp-comm-overlap: forward collectives beside their GEMM
    proj_in: list[Op] = []  # the GEMMs from the norm output to Q, K, V (first one's dX carries tp.in1.bwd)
    if model.mla:
        if model.q_lora_rank:
            proj_in.append(_gemm("q_down", "F", tokens, model.q_lora_rank, h))
        proj_in.append(_gemm("q_up", "F", tokens, a_t * d_qk, model.q_lora_rank or h))
        proj_in.append(_gemm("kv_down", "F", tokens, model.kv_lora_rank + model.qk_rope_head_dim, h))
        proj_in.append(_gemm("kv_up", "F", tokens, a_t * (model.qk_nope_head_dim + d_v), model.kv_lora_rank))
    else:
        proj_in.append(_gemm("qkv", "F", tokens, a_t * d_qk + kv_heads_t * (d_qk + d_v), h))
    fwd += tp_in("tp.ag1", "F", t, sp, tokens, h, proj_in[0].name if ovf else None)
    fwd += proj_in
    if model.mla:
        lat = tokens * (model.q_lora_rank + model.kv_lora_rank)
        fwd.append(_ew("mla.latent_norm", "F", lat, 4, norm_fl))
    if model.qk_norm:
        fwd.append(_ew("qk_norm", "F", tokens * (a_t + kv_heads_t) * d_qk, 4, norm_fl))
    cp_f, cp_b = cp_attention_comm(model, layout, tokens, kv_width_t, core_name)
    fwd += cp_f
    fwd += attention_core("F")
    proj = _gemm("proj", "F", tokens, h, a_t * d_v)
    fwd.append(proj)
    fwd += tp_out("tp.out1", "F", t, sp, tokens, h, "proj" if ovf else None)
    if model.norms_per_layer == 4:
        fwd.append(_ew("post_norm1", "F", rep * h, 4, norm_fl))
    fwd.append(_ew("bias_dropout_add1" if drop else "residual_add1", "F", rep * h, bda_f, bda_fl_f))

    attn_i: list[Op] = [
        _ew("bias_dropout_add1.bwd" if drop else "residual_add1.bwd", "I", rep * h, bda_b, bda_fl_b)
    ]
    if model.norms_per_layer == 4:
        attn_i.append(_ew("post_norm1.bwd", "I", rep * h, 6, 2 * norm_fl))
    if t > 1 and sp:
        attn_i.append(_comm("tp.out1.bwd", "I", "all-gather", ACT_BYTES * tokens * h))
    proj_dx, proj_dw = backward_gemms(proj)
    assert proj_dx is not None
    attn_i.append(proj_dx)
    if layout.attention == "flash":
        core = attention_core("I")[0]
        attn_i.append(
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
        attn_i.append(_gemm("attn.av.dp", "I", s, s, d_v, b * a_t))  # dP = dO V^T
        attn_i.append(_gemm("attn.av.dv", "I", s, d_v, s, b * a_t))  # dV = P^T dO
        if drop:
            attn_i.append(_ew("attn.dropout.bwd", "I", scores, 5, 2))
        attn_i.append(_ew("attn.softmax.bwd", "I", scores, 6, 4))
        attn_i.append(_gemm("attn.qk.dq", "I", s, d_qk, s, b * a_t))  # dQ = dS K
        attn_i.append(_gemm("attn.qk.dk", "I", s, d_qk, s, b * a_t))  # dK = dS^T Q
    attn_i += cp_b
    if model.qk_norm:
        attn_i.append(_ew("qk_norm.bwd", "I", tokens * (a_t + kv_heads_t) * d_qk, 6, 2 * norm_fl))
    if model.mla:
        attn_i.append(_ew("mla.latent_norm.bwd", "I", lat, 6, 2 * norm_fl))
    attn_w: list[Op] = [proj_dw]
    in_w: list[Op] = []
    for g in reversed(proj_in):
        dx, dw = backward_gemms(g)
        assert dx is not None
        attn_i.append(dx)
        in_w.insert(0, dw)
    first_w = in_w[0].name
    if t > 1:
        coll = "reduce-scatter" if sp else "all-reduce"
        attn_i.append(_comm("tp.in1.bwd", "I", coll, ACT_BYTES * tokens * h, first_w if ov else None))
    attn_i.append(_ew("norm1.bwd", "I", rep * h, 6, 2 * norm_fl))
    if t > 1 and sp:
        attn_w.append(
            _comm(
                "tp.ag1.dw",
                "W",
                "all-gather",
                ACT_BYTES * tokens * h,
                proj_in[0].name + ".dx" if ov else None,
            )
        )
    attn_w += in_w

    # ---- MLP block (dense, or MoE with shared experts)
    act = _activation(model)
    act_name, act_f, act_b, act_fl_f, act_fl_b = act
    mlp_f: list[Op] = []
    if model.norms_per_layer != 1:
        mlp_f.append(_ew("norm2", "F", rep * h, 4, norm_fl))
    mlp_i: list[Op] = [
        _ew("bias_dropout_add2.bwd" if drop else "residual_add2.bwd", "I", rep * h, bda_b, bda_fl_b)
    ]
    if model.norms_per_layer == 4:
        mlp_i.append(_ew("post_norm2.bwd", "I", rep * h, 6, 2 * norm_fl))
    mlp_w: list[Op] = []
    dense_width = model.ffn_hidden_size if not k.moe else model.shared_expert_ffn_hidden_size
    prefix = "shared." if k.moe else ""
    if k.moe:
        mf, mi, mw = moe_block(model, layout, tokens, act)
        mlp_f += mf
        mlp_i += mi
        mlp_w += mw
    if dense_width:
        f_t = dense_width // t
        mlp_in_t = (2 if model.gated_mlp else 1) * dense_width // t
        fc1 = _gemm(prefix + "fc1", "F", tokens, mlp_in_t, h)
        fc2 = _gemm(prefix + "fc2", "F", tokens, h, f_t)
        mlp_f += tp_in(prefix + "tp.ag2", "F", t, sp, tokens, h, prefix + "fc1" if ovf else None)
        mlp_f += [fc1, _ew(prefix + act_name, "F", tokens * f_t, act_f, act_fl_f), fc2]
        mlp_f += tp_out(prefix + "tp.out2", "F", t, sp, tokens, h, prefix + "fc2" if ovf else None)
        fc2_dx, fc2_dw = backward_gemms(fc2)
        fc1_dx, fc1_dw = backward_gemms(fc1)
        assert fc2_dx is not None and fc1_dx is not None
        if t > 1 and sp:
            mlp_i.append(_comm(prefix + "tp.out2.bwd", "I", "all-gather", ACT_BYTES * tokens * h))
        mlp_i += [fc2_dx, _ew(prefix + act_name + ".bwd", "I", tokens * f_t, act_b, act_fl_b), fc1_dx]
        if t > 1:
            coll = "reduce-scatter" if sp else "all-reduce"
            mlp_i.append(
                _comm(prefix + "tp.in2.bwd", "I", coll, ACT_BYTES * tokens * h, fc1_dw.name if ov else None)
            )
        if t > 1 and sp:
            mlp_w.append(
                _comm(
                    prefix + "tp.ag2.dw",
                    "W",
                    "all-gather",
                    ACT_BYTES * tokens * h,
                    fc1_dx.name if ov else None,
                )
            )
        mlp_w += [fc2_dw, fc1_dw]
    if model.norms_per_layer == 4:
        mlp_f.append(_ew("post_norm2", "F", rep * h, 4, norm_fl))
    mlp_f.append(_ew("bias_dropout_add2" if drop else "residual_add2", "F", rep * h, bda_f, bda_fl_f))
    if model.norms_per_layer != 1:
        mlp_i.append(_ew("norm2.bwd", "I", rep * h, 6, 2 * norm_fl))
    fwd += mlp_f

    bwd: list[Op] = []
    if layout.recompute == "full":
        bwd += [op.as_recompute() for op in fwd]
    elif layout.recompute == "selective":
        bwd += [op.as_recompute() for op in attention_core("F")]
    bwd += mlp_i + attn_i + mlp_w + attn_w
    ops = shared_collectives(LayerOps(tuple(fwd), tuple(bwd)), model, layout, k)
    return at_precision(ops, precision or layout.precision)
