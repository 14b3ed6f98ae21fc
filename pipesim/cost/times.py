"""Seconds for operators, layers and pipeline stages.

Every operator of :mod:`pipesim.cost.flops` becomes a time with the kernel models of :mod:`pipesim.cost.kernels`
(GEMMs with tile and wave quantization over the SMs, fp8 input casts, fused attention, memory-bound kernels at
a fraction of HBM bandwidth); tensor-parallel collectives take ``comm.collective_s(op, size, tp_group)`` of
the :class:`pipesim.comm.base.CommModel`, exposed unless the layout overlaps them with a GEMM (``hidden_by``).

The constants are the GPU's calibrated :class:`pipesim.specs.efficiency.Efficiency` profile (shipped per preset
in ``pipesim/data/gpus/``, fitted by ``benchmarks/accuracy.py``); :data:`DEFAULT_EFFICIENCY` serves a GPU
without one.

Communication ops run over their group (tensor-, context-, expert- or expert-tensor-parallel) on the compute
stream; a ``ring-p2p`` op (ring attention) takes its rounds x the slowest ring neighbour's ``comm.p2p_s``;
grouped expert GEMMs take the GEMM rule on one expert's shape (M = that expert's tokens), ``batch`` = the
local experts.

Pipeline-level costs: the point-to-point activation transfer between stages (SC21 Section 4.1, b s h / t
with scatter/gather), the data-parallel gradient reduction (bucketed ring all-reduce or, with the distributed
optimizer, reduce-scatter), the tied-embedding gradient all-reduce between first and last stage, and the Adam
step (memory-bound over the rank's parameter shard).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipesim.comm.base import CommModel
from pipesim.cost.end_ops import embedding_ops, head_ops, mtp_ops
from pipesim.cost.flops import ACT_BYTES, LayerOps, Op, layer_ops
from pipesim.cost.kernels import (
    LOW_PRECISIONS,
    attention_time_s,
    fp8_cast_bytes,
    gemm_efficiency,
    gemm_time_s,
    memory_time_s,
)
from pipesim.cost.launch import launch_bound
from pipesim.specs.efficiency import DEFAULT_EFFICIENCY, Efficiency
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import LayerKind, ModelSpec

Groups = Mapping[str, Sequence[int]]

__all__ = [
    "Efficiency",
    "DEFAULT_EFFICIENCY",
    "TimedOp",
    "PassTimes",
    "gemm_efficiency",
    "compute_precision",
    "op_time",
    "time_ops",
    "layer_detail",
    "pass_times",
    "layer_pass_times",
    "embedding_pass_times",
    "head_pass_times",
    "p2p_bytes",
    "OPTIMIZER_BYTES_PER_PARAM",
    "DP_BUCKET_PARAMS",
    "bucketed_collective_s",
    "optimizer_step_s",
    "param_gather_exposed_s",
]

# Adam step over fp32 master weights, memory-bound: read grad 4, master 4, m 4, v 4; write master 4, m 4, v 4
# and the 16-bit model weight 2 (30 bytes), plus the gradient-norm read for clipping (4 bytes).
OPTIMIZER_BYTES_PER_PARAM = 34.0
# Gradient bucket size: Megatron-Core's DistributedDataParallelConfig default bucket_size =
# max(40,000,000, 1,000,000 x dp) parameters (megatron/core/distributed; value as recalled, unconfirmed in
# published.md). Only the per-bucket latency depends on it.
DP_BUCKET_PARAMS = 40_000_000


@dataclass(frozen=True)
class TimedOp:
    """An operator with its time; ``bound`` is compute, memory or comm (what limits it)."""

    op: Op
    time_s: float
    bound: str
    full_s: float | None = None  # a partly hidden collective's whole duration (time_s is its exposed part)

    @property
    def name(self) -> str:
        """The operator's name."""
        return self.op.name

    @property
    def kind(self) -> str:
        """gemm | attention | elementwise | comm."""
        return self.op.kind

    @property
    def flops(self) -> float:
        """Executed FLOPs."""
        return self.op.flops

    @property
    def hbm_bytes(self) -> float:
        """HBM bytes read and written."""
        return self.op.hbm_bytes


def _group_ranks(op: Op, tp_ranks: Sequence[int], groups: Groups | None) -> Sequence[int]:
    if op.group == "tp":
        return tp_ranks
    if groups is None or op.group not in groups:
        raise ValueError(f"operator {op.name} runs over the {op.group} group, which the caller did not give")
    return groups[op.group]


def comm_op_s(op: Op, comm: CommModel, ranks: Sequence[int]) -> float:
    """Seconds of communication op ``op`` over ``ranks``: the collective's time, or for ``ring-p2p`` its rounds
    x the slowest send from a ring member to its successor."""
    assert op.collective is not None
    if op.collective == "ring-p2p":
        n = len(ranks)
        if n <= 1:
            return 0.0
        step = max(comm.p2p_s(op.comm_bytes, ranks[i], ranks[(i + 1) % n]) for i in range(n))
        return op.batch * step
    return comm.collective_s(op.collective, op.comm_bytes, ranks)


def comm_signature(
    ops: Sequence[Op], comm: CommModel, tp_ranks: Sequence[int], groups: Groups | None = None
) -> tuple[float, ...]:
    """Seconds of each communication operator of ``ops`` over its group (:func:`comm_op_s`), in order. A unit's
    pass times depend on where its ranks sit only through these (compute operators do not see the ranks), so
    two placements of the same unit with equal signatures time alike: the cost caches key units by it."""
    return tuple(comm_op_s(op, comm, _group_ranks(op, tp_ranks, groups)) for op in ops if op.kind == "comm")


def op_time(
    op: Op,
    gpu: GPUSpec,
    precision: str,
    eff: Efficiency,
    comm: CommModel,
    tp_ranks: Sequence[int],
    fp8_recipe: str = "delayed",
    groups: Groups | None = None,
) -> TimedOp:
    """Seconds for one operator (formulas in :mod:`pipesim.cost.kernels`). GEMMs run at ``precision``'s peak
    (an fp8 GEMM also pays its input casts under ``fp8_recipe``); attention at bf16/fp16 (fp8 training keeps
    attention in 16-bit, as Transformer Engine does). ``groups`` gives the ranks of the cp / ep / etp groups a
    communication op may name."""
    if op.kind == "comm":
        return TimedOp(op, comm_op_s(op, comm, _group_ranks(op, tp_ranks, groups)) / eff.nccl, "comm")
    if op.kind == "elementwise":
        return TimedOp(op, memory_time_s(op.hbm_bytes, gpu, eff) + eff.kernel_overhead_s, "memory")
    prec = compute_precision(op, gpu, precision)
    peak = gpu.peak(prec)
    if op.kind == "attention":
        t, bound = attention_time_s(op.flops, op.hbm_bytes, peak, gpu, eff)
        return TimedOp(op, t, bound)
    assert op.shape is not None
    t, bound = gemm_time_s(op.shape, op.batch, op.hbm_bytes, peak, prec, gpu, eff)
    if prec in LOW_PRECISIONS:
        cast = fp8_cast_bytes(op.shape, op.batch, op.phase, fp8_recipe, prec)
        t += memory_time_s(cast, gpu, eff) + eff.kernel_overhead_s
    return TimedOp(op, t, bound)


def _sixteen_bit(gpu: GPUSpec) -> str:
    return "bf16" if "bf16" in gpu.peak_flops else "fp16"


def compute_precision(op: Op, gpu: GPUSpec, precision: str) -> str:
    """The precision whose peak bounds ``op`` in :func:`op_time`: ``precision`` for GEMMs (and memory-bound
    kernels, whose roof it is on a roofline); fused attention runs in 16-bit (bf16, or fp16 where the GPU
    lacks bf16), since FlashAttention and Transformer Engine's fp8 recipe keep it there."""
    if op.kind == "attention" and not (precision in ("bf16", "fp16") and precision in gpu.peak_flops):
        return _sixteen_bit(gpu)
    return precision


def time_ops(
    ops: Sequence[Op],
    gpu: GPUSpec,
    precision: str,
    eff: Efficiency,
    comm: CommModel,
    tp_ranks: Sequence[int],
    fp8_recipe: str = "delayed",
    groups: Groups | None = None,
) -> tuple[TimedOp, ...]:
    """:func:`op_time` of every operator, in order. A tensor-parallel collective with ``hidden_by`` runs
    concurrently with that operator, which hides up to ``eff.tp_overlap`` x its own duration of it: only
    ``max(0, collective - tp_overlap x partner)`` is counted (bound ``comm-overlapped``); a context-parallel
    ring exchange hides behind the whole attention it overlaps."""
    timed = [op_time(op, gpu, precision, eff, comm, tp_ranks, fp8_recipe, groups) for op in ops]
    by_name = {t.op.name: t.time_s for t in timed}
    for i, t in enumerate(timed):
        partner = t.op.hidden_by
        if partner is not None and partner in by_name:
            share = eff.tp_overlap if t.op.group in ("tp", "etp") else 1.0
            hidden = share * by_name[partner]
            timed[i] = TimedOp(t.op, max(0.0, t.time_s - hidden), "comm-overlapped", t.time_s)
    return tuple(timed)


def layer_detail(
    model: ModelSpec,
    layout: Layout,
    gpu: GPUSpec,
    eff: Efficiency,
    comm: CommModel,
    tp_ranks: Sequence[int],
    precision: str | None = None,
    groups: Groups | None = None,
    kind: LayerKind | None = None,
) -> tuple[TimedOp, ...]:
    """Every operator of one transformer layer (forward then backward, recompute included) with its time:
    the per-op view a roofline plot reuses. Summing phase F gives the layer's forward time, phases I and W its
    backward time (see :func:`pass_times`). ``precision`` (default the layout's) may be any precision the GPU
    has, tf32 / fp32 included (the roofline's what-if; training layouts take bf16, fp16 or fp8)."""
    prec = precision or layout.precision
    return time_ops(
        layer_ops(model, layout, prec, kind).all, gpu, prec, eff, comm, tp_ranks, layout.fp8_recipe, groups
    )


@dataclass(frozen=True)
class PassTimes:
    """Seconds of one unit (layer, embedding or head) for one microbatch.

    ``forward_s`` F; ``backward_s`` the full backward B (recompute + I + W); ``weight_s`` its W part;
    ``recompute_s`` its recomputed-forward part; ``tp_forward_s`` / ``tp_backward_s`` the TP collectives inside
    F / B. ``flops_forward`` / ``flops_backward`` executed FLOPs. ``ep_comm_s`` the expert all-to-alls of F and
    B (``ep_forward_s`` those of F); ``cp_comm_s`` the exposed part of the context-parallel key/value
    exchanges of F and B (``cp_forward_s`` of F), ``cp_comm_full_s`` / ``cp_forward_full_s`` their whole
    duration, hidden part included. The backward's exchanges all run in its input-gradient phase I.
    """

    forward_s: float = 0.0
    backward_s: float = 0.0
    weight_s: float = 0.0
    recompute_s: float = 0.0
    tp_forward_s: float = 0.0
    tp_backward_s: float = 0.0
    flops_forward: float = 0.0
    flops_backward: float = 0.0
    ep_comm_s: float = 0.0
    cp_comm_s: float = 0.0
    cp_comm_full_s: float = 0.0
    ep_forward_s: float = 0.0
    cp_forward_s: float = 0.0
    cp_forward_full_s: float = 0.0

    def scaled(self, k: float) -> PassTimes:
        """All fields times ``k`` (``k`` identical layers)."""
        return PassTimes(*(k * getattr(self, f) for f in _PASS_FIELDS))

    def __add__(self, other: PassTimes) -> PassTimes:
        return PassTimes(*(getattr(self, f) + getattr(other, f) for f in _PASS_FIELDS))


_PASS_FIELDS = (
    "forward_s",
    "backward_s",
    "weight_s",
    "recompute_s",
    "tp_forward_s",
    "tp_backward_s",
    "flops_forward",
    "flops_backward",
    "ep_comm_s",
    "cp_comm_s",
    "cp_comm_full_s",
    "ep_forward_s",
    "cp_forward_s",
    "cp_forward_full_s",
)


def pass_times(timed: Sequence[TimedOp]) -> PassTimes:
    """Sum timed operators into F, B (= I + W, recompute included), W, recompute, TP-comm (tensor- and
    expert-tensor-parallel collectives, per pass), expert all-to-all and context-parallel parts (exposed;
    the CP exchange also in full), each also for F alone."""
    f = b = w = r = tpf = tpb = ff = fb = ep = cp = cp_full = ep_f = cp_f = cp_full_f = 0.0
    for t in timed:
        op = t.op
        tp_like = op.kind == "comm" and op.group in ("tp", "etp")
        forward = op.phase == "F"
        if op.kind == "comm" and op.group == "ep":
            ep += t.time_s
            ep_f += t.time_s if forward else 0.0
        elif op.kind == "comm" and op.group == "cp":
            full = t.time_s if t.full_s is None else t.full_s
            cp += t.time_s
            cp_full += full
            if forward:
                cp_f += t.time_s
                cp_full_f += full
        if op.phase == "F":
            f += t.time_s
            ff += op.flops
            if tp_like:
                tpf += t.time_s
        else:
            b += t.time_s
            fb += op.flops
            if op.phase == "W":
                w += t.time_s
            if op.recompute:
                r += t.time_s
            if tp_like:
                tpb += t.time_s
    return PassTimes(f, b, w, r, tpf, tpb, ff, fb, ep, cp, cp_full, ep_f, cp_f, cp_full_f)


def _unit_times(
    ops: LayerOps,
    layout: Layout,
    gpu: GPUSpec,
    eff: Efficiency,
    comm: CommModel,
    tp_ranks: Sequence[int],
    groups: Groups | None = None,
) -> PassTimes:
    timed = time_ops(ops.all, gpu, layout.precision, eff, comm, tp_ranks, layout.fp8_recipe, groups)
    pt = pass_times(timed)
    if layout.cuda_graphs:  # one graph launch per pass instead of one per kernel
        return pt
    cast = layout.precision in LOW_PRECISIONS and layout.precision in gpu.peak_flops
    return launch_bound(pt, timed, eff.launch_s, cast)


def layer_pass_times(
    model: ModelSpec,
    layout: Layout,
    gpu: GPUSpec,
    eff: Efficiency,
    comm: CommModel,
    tp_ranks: Sequence[int],
    groups: Groups | None = None,
    kind: LayerKind | None = None,
) -> PassTimes:
    """F / B / W times of one transformer layer of ``kind`` (default: a uniform model's only kind) for one
    microbatch on one GPU; ``groups`` gives the cp / ep / etp ranks its communication runs over."""
    return _unit_times(layer_ops(model, layout, kind=kind), layout, gpu, eff, comm, tp_ranks, groups)


def embedding_pass_times(
    model: ModelSpec, layout: Layout, gpu: GPUSpec, eff: Efficiency, comm: CommModel, tp_ranks: Sequence[int]
) -> PassTimes:
    """F / B / W times of the input embedding (first stage)."""
    return _unit_times(embedding_ops(model, layout), layout, gpu, eff, comm, tp_ranks)


def head_pass_times(
    model: ModelSpec, layout: Layout, gpu: GPUSpec, eff: Efficiency, comm: CommModel, tp_ranks: Sequence[int]
) -> PassTimes:
    """F / B / W times of the final norm, output layer and loss (last stage)."""
    return _unit_times(head_ops(model, layout), layout, gpu, eff, comm, tp_ranks)


def mtp_pass_times(
    model: ModelSpec, layout: Layout, gpu: GPUSpec, eff: Efficiency, comm: CommModel, tp_ranks: Sequence[int]
) -> PassTimes:
    """F / B / W times of one multi-token-prediction module's norms and 2h -> h projection (last stage;
    :func:`pipesim.cost.end_ops.mtp_ops`), beyond its layer and the shared head."""
    return _unit_times(mtp_ops(model, layout), layout, gpu, eff, comm, tp_ranks)


def p2p_bytes(model: ModelSpec, layout: Layout) -> float:
    """Bytes one TP rank sends between consecutive pipeline stages per microbatch: the activation
    b x (s / cp) x h x 2 bytes, divided by tp with scatter/gather or sequence parallelism (SC21 Sections 3.2, 4.1)."""
    full = ACT_BYTES * layout.micro_batch_size * (layout.seq(model) // layout.cp) * model.hidden_size
    split = layout.tp > 1 and (layout.scatter_gather or layout.sequence_parallel)
    return full / layout.tp if split else full


def bucketed_collective_s(
    comm: CommModel, collective: str, total_bytes: float, bucket_bytes: float, ranks: Sequence[int]
) -> float:
    """Time of a collective issued in buckets of ``bucket_bytes``: full buckets plus the remainder, each paying
    its own latency (the gradient reduction of Megatron-LM / PyTorch DDP)."""
    if total_bytes <= 0 or len(ranks) <= 1:
        return 0.0
    full, rest = divmod(total_bytes, bucket_bytes)
    t = full * comm.collective_s(collective, bucket_bytes, ranks) if full else 0.0
    if rest > 0:
        t += comm.collective_s(collective, rest, ranks)
    return t


def optimizer_step_s(local_params: float, gpu: GPUSpec, eff: Efficiency) -> float:
    """Adam step over ``local_params`` parameters: memory-bound, :data:`OPTIMIZER_BYTES_PER_PARAM` bytes each
    at the effective HBM bandwidth, plus the profile's per-iteration fixed cost ``eff.step_overhead_s``
    (gradient clipping's norm, logging, the next batch's data loading), booked here since it also runs once per
    step after the pipeline."""
    return local_params * OPTIMIZER_BYTES_PER_PARAM / (gpu.hbm_Bps * eff.hbm) + eff.step_overhead_s


def param_gather_exposed_s(gather_s: float, bucket_s: float, first_forward_s: float, overlap: bool) -> float:
    """Exposed seconds of the distributed optimizer's all-gather of updated weights (``gather_s`` in all,
    ``bucket_s`` for one bucket). Without overlap it all follows the optimizer step; with Megatron-LM's
    ``--overlap-param-gather`` each bucket is gathered while the next step's first forward runs the layers
    before it, so ``max(one bucket, gather - first forward)`` stays exposed (the first microbatch's forward
    over the rank's stages, ``first_forward_s``)."""
    if not overlap or gather_s <= 0:
        return gather_s
    return max(min(bucket_s, gather_s), gather_s - first_forward_s)
