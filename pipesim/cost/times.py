"""Seconds for operators, layers and pipeline stages.

Every operator of :mod:`pipesim.cost.flops` becomes a time:

* GEMM: ``max(flops / achieved, hbm_bytes / (hbm_Bps x hbm_eff)) + kernel_overhead``, with
  ``achieved = peak x gemm_max x sat(M) x sat(N) x sat(K)`` and ``sat(d) = d / (d + gemm_half_dim)``: a large
  GEMM reaches ``gemm_max`` of peak, and each dimension that is small compared to the tile sizes loses
  throughput (a dimension of ``gemm_half_dim`` halves it). Batched attention GEMMs use the same rule.
* FlashAttention: ``flops / (peak x attention_eff)`` (executed FLOPs: half the s x s scores when causal).
* memory-bound kernels (norms, dropout, residual, activation, softmax when not fused, cross entropy):
  ``hbm_bytes / (hbm_Bps x hbm_eff) + kernel_overhead``.
* tensor-parallel collectives: ``comm.collective_s(op, size, tp_group)`` of the :class:`pipesim.comm.base.CommModel`
  (run on the compute stream: Megatron-LM waits for them, so they are exposed).

The handful of efficiency constants live in :class:`Efficiency`; :data:`DEFAULT_EFFICIENCY` was calibrated
once against published.md (Korthikanti et al. Table 4 per-layer times and the SC21 Tables 1-2 PTD-P rows) by
``benchmarks/accuracy.py --calibrate``; the same constants serve every GPU (an assumption: the calibration
data are all A100).

Pipeline-level costs: the point-to-point activation transfer between stages (SC21 Section 4.1, b s h / t
with scatter/gather), the data-parallel gradient reduction (bucketed ring all-reduce or, with the distributed
optimizer, reduce-scatter), the tied-embedding gradient all-reduce between first and last stage, and the Adam
step (memory-bound over the rank's parameter shard).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipesim.comm.base import CommModel
from pipesim.cost.flops import ACT_BYTES, LayerOps, Op, embedding_ops, head_ops, layer_ops
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec

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
]

# Adam step over fp32 master weights, memory-bound: read grad 4, master 4, m 4, v 4; write master 4, m 4, v 4
# and the 16-bit model weight 2 (30 bytes), plus the gradient-norm read for clipping (4 bytes).
OPTIMIZER_BYTES_PER_PARAM = 34.0
# Gradient bucket size: Megatron-Core's DistributedDataParallelConfig default bucket_size =
# max(40,000,000, 1,000,000 x dp) parameters (megatron/core/distributed; value as recalled, unconfirmed in
# published.md). Only the per-bucket latency depends on it.
DP_BUCKET_PARAMS = 40_000_000


@dataclass(frozen=True)
class Efficiency:
    """Achieved fractions of hardware peaks (see the module docstring for where each one enters).

    ``gemm_max``: fraction of dense peak a large GEMM reaches; ``gemm_half_dim``: GEMM dimension at which
    that fraction halves; ``attention``: FlashAttention's fraction of peak (not calibrated: every published row
    predates it; FlashAttention-2 reports 50-73% of A100 peak, Dao 2023); ``hbm``: fraction of HBM bandwidth
    memory-bound kernels reach; ``kernel_overhead_s``: fixed cost per compute kernel (launch and tail).
    """

    # Calibrated once by ``benchmarks/accuracy.py --calibrate`` (grid search minimising the mean of the
    # end-to-end MAE over SC21 Tables 1-2 and the per-layer MAE over Korthikanti Table 4; result: 2.1% and 1.6%).
    gemm_max: float = 0.68
    gemm_half_dim: float = 64.0
    hbm: float = 0.90
    kernel_overhead_s: float = 0.0
    # Not calibrated (no published row uses FlashAttention): an assumption within FlashAttention-2's reported
    # 50-73% of A100 peak (Dao 2023; not in published.md, unconfirmed).
    attention: float = 0.55

    def __post_init__(self) -> None:
        for key in ("gemm_max", "attention", "hbm"):
            v = getattr(self, key)
            if not 0 < v <= 1:
                raise ValueError(f"efficiency {key}={v} must be in (0, 1]")
        if self.gemm_half_dim < 0 or self.kernel_overhead_s < 0:
            raise ValueError("gemm_half_dim and kernel_overhead_s must be >= 0")


DEFAULT_EFFICIENCY = Efficiency()


@dataclass(frozen=True)
class TimedOp:
    """An operator with its time; ``bound`` is compute, memory or comm (what limits it)."""

    op: Op
    time_s: float
    bound: str

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


def _sat(d: float, half: float) -> float:
    return d / (d + half) if half > 0 else 1.0


def gemm_efficiency(shape: tuple[int, int, int], eff: Efficiency) -> float:
    """Fraction of peak a GEMM of ``shape`` = (M, N, K) reaches: gemm_max x sat(M) x sat(N) x sat(K)."""
    m, n, k = shape
    h = eff.gemm_half_dim
    return eff.gemm_max * _sat(m, h) * _sat(n, h) * _sat(k, h)


def op_time(
    op: Op,
    gpu: GPUSpec,
    precision: str,
    eff: Efficiency,
    comm: CommModel,
    tp_ranks: Sequence[int],
) -> TimedOp:
    """Seconds for one operator (formulas in the module docstring). GEMMs run at ``precision``'s peak;
    attention at bf16/fp16 (fp8 training keeps attention in 16-bit, as Transformer Engine does)."""
    if op.kind == "comm":
        assert op.collective is not None
        return TimedOp(op, comm.collective_s(op.collective, op.comm_bytes, tp_ranks), "comm")
    mem_s = op.hbm_bytes / (gpu.hbm_Bps * eff.hbm)
    if op.kind == "elementwise":
        return TimedOp(op, mem_s + eff.kernel_overhead_s, "memory")
    peak = gpu.peak(compute_precision(op, gpu, precision))
    if op.kind == "gemm":
        assert op.shape is not None
        achieved = peak * gemm_efficiency(op.shape, eff)
    else:  # attention
        achieved = peak * eff.attention
    comp_s = op.flops / achieved
    bound = "compute" if comp_s >= mem_s else "memory"
    return TimedOp(op, max(comp_s, mem_s) + eff.kernel_overhead_s, bound)


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
) -> tuple[TimedOp, ...]:
    """:func:`op_time` of every operator, in order. A collective with ``hidden_by`` runs concurrently with that
    operator, so only ``max(0, collective - partner)`` is counted (bound ``comm-overlapped``)."""
    timed = [op_time(op, gpu, precision, eff, comm, tp_ranks) for op in ops]
    by_name = {t.op.name: t.time_s for t in timed}
    for i, t in enumerate(timed):
        partner = t.op.hidden_by
        if partner is not None and partner in by_name:
            timed[i] = TimedOp(t.op, max(0.0, t.time_s - by_name[partner]), "comm-overlapped")
    return tuple(timed)


def layer_detail(
    model: ModelSpec,
    layout: Layout,
    gpu: GPUSpec,
    eff: Efficiency,
    comm: CommModel,
    tp_ranks: Sequence[int],
    precision: str | None = None,
) -> tuple[TimedOp, ...]:
    """Every operator of one transformer layer (forward then backward, recompute included) with its time:
    the per-op view a roofline plot reuses. Summing phase F gives the layer's forward time, phases I and W its
    backward time (see :func:`pass_times`). ``precision`` (default the layout's) may be any precision the GPU
    has, tf32 / fp32 included (the roofline's what-if; training layouts take bf16, fp16 or fp8)."""
    prec = precision or layout.precision
    return time_ops(layer_ops(model, layout, prec).all, gpu, prec, eff, comm, tp_ranks)


@dataclass(frozen=True)
class PassTimes:
    """Seconds of one unit (layer, embedding or head) for one microbatch.

    ``forward_s`` F; ``backward_s`` the full backward B (recompute + I + W); ``weight_s`` its W part;
    ``recompute_s`` its recomputed-forward part; ``tp_forward_s`` / ``tp_backward_s`` the TP collectives inside
    F / B. ``flops_forward`` / ``flops_backward`` executed FLOPs.
    """

    forward_s: float = 0.0
    backward_s: float = 0.0
    weight_s: float = 0.0
    recompute_s: float = 0.0
    tp_forward_s: float = 0.0
    tp_backward_s: float = 0.0
    flops_forward: float = 0.0
    flops_backward: float = 0.0

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
)


def pass_times(timed: Sequence[TimedOp]) -> PassTimes:
    """Sum timed operators into F, B (= I + W, recompute included), W, recompute and TP-comm parts."""
    f = b = w = r = tpf = tpb = ff = fb = 0.0
    for t in timed:
        op = t.op
        if op.phase == "F":
            f += t.time_s
            ff += op.flops
            if op.kind == "comm":
                tpf += t.time_s
        else:
            b += t.time_s
            fb += op.flops
            if op.phase == "W":
                w += t.time_s
            if op.recompute:
                r += t.time_s
            if op.kind == "comm":
                tpb += t.time_s
    return PassTimes(f, b, w, r, tpf, tpb, ff, fb)


def _unit_times(
    ops: LayerOps, layout: Layout, gpu: GPUSpec, eff: Efficiency, comm: CommModel, tp_ranks: Sequence[int]
) -> PassTimes:
    return pass_times(time_ops(ops.all, gpu, layout.precision, eff, comm, tp_ranks))


def layer_pass_times(
    model: ModelSpec, layout: Layout, gpu: GPUSpec, eff: Efficiency, comm: CommModel, tp_ranks: Sequence[int]
) -> PassTimes:
    """F / B / W times of one transformer layer for one microbatch on one TP rank."""
    return _unit_times(layer_ops(model, layout), layout, gpu, eff, comm, tp_ranks)


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


def p2p_bytes(model: ModelSpec, layout: Layout) -> float:
    """Bytes one TP rank sends between consecutive pipeline stages per microbatch: the activation
    b x s x h x 2 bytes, divided by tp with scatter/gather or sequence parallelism (SC21 Sections 3.2, 4.1)."""
    full = ACT_BYTES * layout.micro_batch_size * layout.seq(model) * model.hidden_size
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
    at the effective HBM bandwidth."""
    return local_params * OPTIMIZER_BYTES_PER_PARAM / (gpu.hbm_Bps * eff.hbm)
