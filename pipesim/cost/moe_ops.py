"""Operators of a mixture-of-experts block and of context-parallel attention, for :func:`pipesim.cost.flops.layer_ops`.

Mixture of experts as Megatron-Core runs it with its all-to-all token dispatcher (``MoEAlltoAllTokenDispatcher``;
Megatron-Core MoE documentation): each GPU routes its own tokens (T0 = tokens / tp: the sequence-parallel
shard, or without sequence parallelism its 1/tp share of the replicated tokens), gathers them over the
expert-tensor-parallel group when etp > 1 (T = etp x T0), computes router logits (a T x E GEMM), permutes the
T x k token copies by expert, sends them to the expert-parallel ranks owning those experts (all-to-all over
ep), runs its E / ep local experts as grouped GEMMs (each expert's width / etp), sends the results back
(all-to-all), un-permutes and sums the k copies weighted by the router, reduce-scatters the partial sums
over etp, and without sequence parallelism all-gathers the tokens over tp again. Balanced routing gives
every GPU T x k rows (T k ep / E per local expert); the busiest GPU gets ``moe_imbalance`` times that,
capped by the capacity factor when tokens are dropped. Group-limited routing (``moe_router_num_groups`` /
``moe_router_group_topk``, DeepSeek-V3's node-limited routing) does not change these bytes: this dispatcher
sends every routed copy on its own, and the groups a token may use are, by symmetry, any M of the G, so each
copy still lands on a uniformly random expert and k (n - 1) / n of a token's copies leave its GPU's node on
average (n: servers the EP group spans). The saving DeepSeek-V3 reports (Section 3.2.2: each token crosses
InfiniBand once per target node, at most M = 4, then NVLink forwards it) needs a dispatcher that sends a token
once per node (DeepEP, Megatron-Core's ``flex`` dispatcher), not modelled. Shared experts are a dense MLP on all tokens, split
over tp like the dense MLP. The all-to-alls are not overlapped with compute (Megatron-LM's 1F1B runs them on
the compute stream; DualPipe-style overlap of one microbatch's all-to-all with another's compute is not
modelled).

Context parallelism (Megatron-Core ``--context-parallel-size``; Liu et al., "Ring Attention with Blockwise
Transformers", arXiv:2310.01889): each GPU holds s / cp tokens (2 chunks of s / (2 cp), i and 2cp-1-i, so the
causal work is even). Ring: cp - 1 rounds in which every GPU passes the key/value block it holds to its ring
successor while computing attention on the block at hand, b (s/cp) (k + v widths) x 2 bytes per round
forward; the backward passes the key/value blocks and their gradients, twice the bytes. All-gather (Llama 3,
arXiv:2407.21783 Section 3.3.2): keys and values are all-gathered before the attention (b s (k + v) x 2
bytes gathered) and their gradients reduce-scattered in the backward, not overlapped.
"""

from __future__ import annotations

import math

from pipesim.cost.ops import ACT_BYTES, Op, backward_gemms, comm, elementwise, gemm
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec

__all__ = ["moe_block", "expert_rows", "cp_attention_comm"]


def expert_rows(model: ModelSpec, layout: Layout, tokens: int) -> tuple[float, float]:
    """(tokens this GPU dispatches T, expert rows it computes on the busiest GPU) for ``tokens`` tokens of
    one context-parallel rank's microbatch: T = tokens x etp / tp and rows = T x k x min(imbalance, capacity
    factor) (no cap when dropless). The imbalance is across expert-parallel ranks, so at most ep (every routed
    token on one rank) and none at ep 1, where each GPU holds every expert."""
    t_disp = tokens * layout.etp / layout.tp
    load = min(layout.moe_imbalance, layout.ep)
    if model.moe_capacity_factor is not None:
        load = min(load, model.moe_capacity_factor)
    return t_disp, t_disp * model.moe_top_k * load


def moe_block(
    model: ModelSpec, layout: Layout, tokens: int, activation: tuple[str, float, float, float, float]
) -> tuple[list[Op], list[Op], list[Op]]:
    """(forward, input-gradient, weight-gradient) operators of one MoE block on one GPU (module docstring).

    ``activation``: (kernel name, forward bytes, backward bytes, forward FLOPs, backward FLOPs) per output
    element of the MLP activation, as for the dense MLP."""
    h, e, k = model.hidden_size, model.num_experts, model.moe_top_k
    t, etp, ep = layout.tp, layout.etp, layout.ep
    sp = layout.sequence_parallel
    act_name, act_f, act_b, act_fl_f, act_fl_b = act_bytes = activation
    del act_bytes
    t_disp, rows = expert_rows(model, layout, tokens)
    local = e // ep
    rows_e = max(1, math.ceil(rows / local))
    width = model.expert_ffn // etp
    in_width = (2 if model.gated_mlp else 1) * width
    td = max(1, math.ceil(t_disp))
    a2a = ACT_BYTES * rows * h  # the send buffer: every routed copy of a token
    fwd: list[Op] = []
    bwd_i: list[Op] = []
    bwd_w: list[Op] = []
    if etp > 1:
        fwd.append(comm("moe.etp.ag", "F", "all-gather", ACT_BYTES * t_disp * h, group="etp"))
    router = gemm("moe.router", "F", td, e, h)
    fwd.append(router)
    fwd.append(elementwise("moe.topk", "F", t_disp * e, 8, 4))  # fp32 softmax/sigmoid + top-k over E logits
    fwd.append(elementwise("moe.permute", "F", t_disp * k * h, 4))
    if ep > 1:
        fwd.append(comm("moe.dispatch", "F", "all-to-all", a2a, group="ep"))
    fc1 = gemm("moe.fc1", "F", rows_e, in_width, h, local)
    fc2 = gemm("moe.fc2", "F", rows_e, h, width, local)
    fwd += [fc1, elementwise("moe." + act_name, "F", rows * width, act_f, act_fl_f), fc2]
    if ep > 1:
        fwd.append(comm("moe.combine", "F", "all-to-all", a2a, group="ep"))
    fwd.append(elementwise("moe.unpermute", "F", t_disp * k * h, 6, 2))  # read copy and weight, accumulate
    if etp > 1:
        fwd.append(comm("moe.etp.rs", "F", "reduce-scatter", ACT_BYTES * t_disp * h, group="etp"))
    if t > 1 and not sp and etp < t:
        fwd.append(comm("moe.tp.ag", "F", "all-gather", ACT_BYTES * tokens * h))

    if etp > 1:
        bwd_i.append(comm("moe.etp.rs.bwd", "I", "all-gather", ACT_BYTES * t_disp * h, group="etp"))
    bwd_i.append(elementwise("moe.unpermute.bwd", "I", t_disp * k * h, 6, 2))
    if ep > 1:
        bwd_i.append(comm("moe.combine.bwd", "I", "all-to-all", a2a, group="ep"))
    fc2_dx, fc2_dw = backward_gemms(fc2)
    fc1_dx, fc1_dw = backward_gemms(fc1)
    assert fc2_dx is not None and fc1_dx is not None
    bwd_i += [fc2_dx, elementwise("moe." + act_name + ".bwd", "I", rows * width, act_b, act_fl_b), fc1_dx]
    if ep > 1:
        bwd_i.append(comm("moe.dispatch.bwd", "I", "all-to-all", a2a, group="ep"))
    bwd_i.append(elementwise("moe.permute.bwd", "I", t_disp * k * h, 4))
    bwd_i.append(elementwise("moe.topk.bwd", "I", t_disp * e, 8, 4))
    r_dx, r_dw = backward_gemms(router)
    assert r_dx is not None
    bwd_i.append(r_dx)
    if etp > 1:
        bwd_i.append(comm("moe.etp.ag.bwd", "I", "reduce-scatter", ACT_BYTES * t_disp * h, group="etp"))
    bwd_w += [fc2_dw, fc1_dw, r_dw]
    return fwd, bwd_i, bwd_w


def cp_attention_comm(
    model: ModelSpec, layout: Layout, tokens: int, kv_width: int, core: str
) -> tuple[list[Op], list[Op]]:
    """(forward, backward) context-parallel key/value exchanges of one layer on one GPU (module docstring):
    ``tokens`` = b s / cp local tokens, ``kv_width`` = the key plus value widths one GPU's heads hold,
    ``core``: the name of the forward attention op the ring overlaps with (backward: ``core + '.bwd'``)."""
    cp = layout.cp
    if cp == 1:
        return [], []
    block = ACT_BYTES * tokens * kv_width
    if layout.cp_comm == "all-gather":
        f = comm("cp.kv.ag", "F", "all-gather", block * cp, group="cp")
        b = comm("cp.kv.rs", "I", "reduce-scatter", block * cp, group="cp")
        return [f], [comm("cp.kv.ag.bwd", "I", "all-gather", block * cp, group="cp"), b]
    f = comm("cp.kv.ring", "F", "ring-p2p", block, hidden_by=core, group="cp", rounds=cp - 1)
    b = comm("cp.kv.ring.bwd", "I", "ring-p2p", 2 * block, hidden_by=core + ".bwd", group="cp", rounds=cp - 1)
    return [f], [b]
