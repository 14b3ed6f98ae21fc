"""Fitting a GPU profile's per-op constants to a PyTorch profiler (Kineto) trace of one training step.

The trace is the Chrome-trace JSON of ``torch.profiler.profile(...).export_chrome_trace(path)``: a
``traceEvents`` list whose GPU kernels are complete events (``"ph": "X"``) with ``"cat": "kernel"``, a
``name`` and a duration ``dur`` in microseconds (PyTorch profiler documentation, "Use profiler to record
execution events"; Kineto's Chrome trace format). Every other event (CPU operators, runtime calls, flows,
memcpy) is ignored.

Kernels are matched to pipesim's operator kinds (:mod:`pipesim.cost.ops`) by name:

* ``comm``: NCCL kernels (``nccl...AllReduce``, ``AllGather``, ``ReduceScatter``, ``SendRecv``, ``AllToAll``);
* ``attention``: fused attention (FlashAttention ``flash_fwd`` / ``flash_bwd``, cuDNN ``sdpa`` and TE ``fmha``);
* ``gemm``: cuBLAS / CUTLASS GEMMs (``gemm``, ``cutlass``, ``cublas``, ``xmma``, ``nvjet``, ``wgmma``);
* ``elementwise``: every other kernel (element-wise, norms, softmax, dropout, reductions, copies).

The same step is then costed with pipesim's op model on the traced GPU (the first pipeline rank: its stages'
layers, the embedding, and the head when pp = 1, for every microbatch), as kernel-time totals per kind, and
each kind's constant is moved until its total matches the trace: ``gemm_max`` (GEMMs), ``attention``,
``hbm`` (element-wise kernels' fraction of HBM bandwidth) and ``nccl`` (collectives' fraction of the
communication model's rate), each by bisection within :data:`pipesim.calib.fit.FIT_BOUNDS`, for a few
coordinate rounds (a memory-bound GEMM also depends on ``hbm``). Collectives count their whole duration,
overlapped or not, as a trace shows it; the rank's data-parallel reduction and pipeline transfers are NCCL
kernels too and are added as pipesim times them (``nccl`` scales only the in-layer collectives). An NCCL
kernel's duration includes waiting for its peers: profile a rank with little pipeline idle time (or pp = 1)
for a clean ``nccl``.

Limits (refused in one line): 16-bit runs only (fp8 / fp4 casts are separate kernels in a trace but part of
the GEMM in pipesim's op model), no context or expert parallelism. Also refused: a kernel whose duration is not
a finite number >= 0, a trace with no kernels of a kind the run has (no GEMMs: not a step of this run), and a
fit that leaves a kind's kernel time more than :data:`pipesim.calib.fit.FIT_RESIDUAL_LIMIT` from the trace's
(its constant stuck at a bound: e.g. far more kernel time than the measured step). A constant that moves none
of its kind's time (``nccl`` with no in-layer collectives) keeps its value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pipesim.calib.fit import FIT_BOUNDS, FIT_RESIDUAL_LIMIT, at_bounds
from pipesim.comm.base import CommModel
from pipesim.cost.end_ops import embedding_ops, head_ops
from pipesim.cost.flops import layer_ops
from pipesim.cost.ops import LayerOps
from pipesim.cost.times import time_ops
from pipesim.errors import InputError
from pipesim.specs.efficiency import Efficiency
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec
from schedules import build_schedule, get_family

__all__ = ["KINDS", "TRACE_KEYS", "classify_kernel", "read_kineto_trace", "step_kernel_times", "fit_trace"]

KINDS = ("gemm", "attention", "elementwise", "comm")
# The profile key each operator kind's total time fits.
TRACE_KEYS = {"gemm": "gemm_max", "attention": "attention", "elementwise": "hbm", "comm": "nccl"}
# How reports name each kind, and which kernel names count as it.
_KIND_NAMES = {
    "gemm": ("GEMM", "names with gemm, cutlass, cublas, xmma, nvjet, wgmma or matmul"),
    "attention": ("fused-attention", "names with flash, fmha, sdpa, attention or attn"),
    "elementwise": ("element-wise", "every kernel not GEMM, attention or NCCL"),
    "comm": ("NCCL", "names with nccl, allreduce, allgather, reducescatter, sendrecv or alltoall"),
}
_COMM = re.compile(r"nccl|allreduce|allgather|reducescatter|sendrecv|alltoall")
_ATTN = re.compile(r"flash|fmha|sdpa|attention|attn")
_GEMM = re.compile(r"gemm|cutlass|cublas|xmma|nvjet|wgmma|s16816|s1688|matmul")


def classify_kernel(name: str) -> str:
    """The operator kind (:data:`KINDS`) of a GPU kernel, from its name (module docstring)."""
    low = name.lower()
    if _COMM.search(low):
        return "comm"
    if _ATTN.search(low):
        return "attention"
    if _GEMM.search(low):
        return "gemm"
    return "elementwise"


def read_kineto_trace(path: str) -> dict[str, float]:
    """Seconds of GPU kernel time per operator kind in the Chrome trace at ``path`` (module docstring)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InputError(f"{path}: not a JSON Chrome trace (torch.profiler's export_chrome_trace)") from None
    events = data.get("traceEvents") if isinstance(data, dict) else None
    if not isinstance(events, list):
        raise InputError(f"{path}: no 'traceEvents' list (torch.profiler's export_chrome_trace format)")
    totals = dict.fromkeys(KINDS, 0.0)
    found = 0
    for i, ev in enumerate(events):
        if not isinstance(ev, dict) or ev.get("cat") != "kernel" or ev.get("ph", "X") != "X":
            continue
        name, dur = ev.get("name"), ev.get("dur")
        if not isinstance(name, str) or isinstance(dur, bool) or not isinstance(dur, (int, float)):
            raise InputError(
                f"{path}: traceEvents[{i}] is a kernel without a name and a duration 'dur' >= 0 (us)"
            )
        if not (math.isfinite(dur) and dur >= 0):
            short = name if len(name) <= 60 else name[:57] + "..."
            raise InputError(
                f"{path}: traceEvents[{i}] (kernel {short!r}) has duration dur={dur!r}; valid: a finite "
                "number of microseconds >= 0"
            )
        totals[classify_kernel(name)] += dur * 1e-6
        found += 1
    if not found:
        raise InputError(f"{path}: no GPU kernel events (cat 'kernel'); profile with ProfilerActivity.CUDA")
    return totals


def _check(layout: Layout) -> None:
    if layout.precision not in ("bf16", "fp16"):
        raise InputError(
            f"calibrate --trace: precision={layout.precision!r} is not supported (fp8 / fp4 cast kernels are part "
            "of the GEMM in pipesim's op model); valid: bf16, fp16"
        )
    if layout.cp > 1 or layout.ep > 1:
        raise InputError(
            f"calibrate --trace: cp={layout.cp}, ep={layout.ep} not supported; valid: cp=1, ep=1"
        )


def _rank0_units(model: ModelSpec, layout: Layout) -> list[tuple[LayerOps, int]]:
    """(operators, count per microbatch) of the first pipeline rank: its layers by kind, the embedding and,
    with one pipeline rank, the head."""
    family = get_family(layout.schedule)
    chunks = family.chunks(layout.vpp)
    layout.check_model(model, layout.pp * chunks)
    schedule = build_schedule(layout.schedule, layout.pp, max(layout.num_microbatches, 1), chunks)
    placement = schedule.stage_to_rank
    layers = layout.layers_per_stage(model, len(placement))
    counts: dict[object, int] = {}
    start = 0
    for s, n in enumerate(layers):
        if placement[s] == 0:
            for kind, c in model.kind_counts(start, start + n).items():
                counts[kind] = counts.get(kind, 0) + c
        start += n
    units: list[tuple[LayerOps, int]] = [(layer_ops(model, layout, kind=k), c) for k, c in counts.items()]  # type: ignore[arg-type]
    units.append((embedding_ops(model, layout), 1))
    if placement[-1] == 0:
        units.append((head_ops(model, layout), 1))
    return units


def _pipeline_comm_s(
    model: ModelSpec, layout: Layout, gpu: GPUSpec, eff: Efficiency, comm: CommModel
) -> float:
    """NCCL time of the first pipeline rank outside the layers: its stages' data-parallel gradient reduction
    and, per microbatch, the transfers it sends and receives (each boundary it touches: an activation and a
    gradient), as pipesim's one cost model times them (not scaled by ``nccl``)."""
    if layout.dp == 1 and layout.pp == 1:
        return 0.0
    from pipesim.cost.stages import StageCostModel
    from pipesim.specs.placement import RankGrid

    chunks = get_family(layout.schedule).chunks(layout.vpp)
    placement = build_schedule(layout.schedule, layout.pp, layout.num_microbatches, chunks).stage_to_rank
    grid = RankGrid(layout.tp, layout.dp, layout.pp, cp=layout.cp, ep=layout.ep, etp=layout.etp)
    c = StageCostModel(model, gpu, comm, eff).stage_costs(layout, placement, grid).costs
    mine = [s for s in range(len(placement)) if placement[s] == 0]
    total = sum(c.dp_reduce_s[s] for s in mine)
    for s in mine:
        for b in (s - 1, s):
            if 0 <= b < len(c.p2p_s):
                total += 2 * c.p2p_s[b] * layout.num_microbatches
    return total


def step_kernel_times(
    model: ModelSpec, layout: Layout, gpu: GPUSpec, eff: Efficiency, comm: CommModel
) -> dict[str, float]:
    """Seconds of kernel time per operator kind pipesim predicts for the first pipeline rank over one step
    (every microbatch); collectives at their whole duration, the rank's gradient reduction and pipeline
    transfers included."""
    _check(layout)
    tp = list(range(layout.tp))
    totals = dict.fromkeys(KINDS, 0.0)
    for ops, count in _rank0_units(model, layout):
        for t in time_ops(ops.all, gpu, layout.precision, eff, comm, tp):
            full = t.full_s if t.full_s is not None else t.time_s
            totals[t.op.kind] += full * count * layout.num_microbatches
    totals["comm"] += _pipeline_comm_s(model, layout, gpu, eff, comm)
    return totals


def _with(eff: Efficiency, key: str, value: float) -> Efficiency:
    values: dict[str, Any] = {key: value}
    return replace(eff, **values)


def fit_trace(
    measured: Mapping[str, float],
    model: ModelSpec,
    layout: Layout,
    gpu: GPUSpec,
    base: Efficiency,
    comm: CommModel,
    note: str,
    rounds: int = 4,
    source: str = "the trace",
) -> tuple[Efficiency, list[tuple[str, str, float, float, float]]]:
    """``base`` with each kind's constant (:data:`TRACE_KEYS`) fitted so that pipesim's kernel time of that
    kind matches ``measured`` (module docstring), and per kind (kind, key, measured s, before s, after s).
    Kinds the model lacks, or whose time the constant does not move, keep their value. Refused in one line,
    naming ``source``: a kind the model has but the trace lacks (it is not a trace of this run), and a fit that
    leaves a kind's time further than :data:`pipesim.calib.fit.FIT_RESIDUAL_LIMIT` from the trace's."""
    eff = base
    before = step_kernel_times(model, layout, gpu, base, comm)
    for kind in KINDS:
        if before[kind] > 0 and measured.get(kind, 0.0) <= 0:
            label, names = _KIND_NAMES[kind]
            raise InputError(
                f"{source}: no {label} kernels ({names}), but pipesim's step of this run has "
                f"{before[kind]:.4g} s of them: trace one training step of the CSV's run"
            )

    def kind_s(kind: str, key: str, v: float, at: Efficiency) -> float:
        return step_kernel_times(model, layout, gpu, _with(at, key, v), comm)[kind]

    moved = [
        k
        for k in KINDS
        if measured.get(k, 0.0) > 0
        and before[k] > 0
        and not math.isclose(
            kind_s(k, TRACE_KEYS[k], FIT_BOUNDS[TRACE_KEYS[k]][0], base),
            kind_s(k, TRACE_KEYS[k], FIT_BOUNDS[TRACE_KEYS[k]][1], base),
            rel_tol=1e-12,
        )
    ]
    for _ in range(rounds):
        for kind in moved:
            key = TRACE_KEYS[kind]
            lo, hi = FIT_BOUNDS[key]

            def total(v: float, key: str = key, kind: str = kind, at: Efficiency = eff) -> float:
                return kind_s(kind, key, v, at)

            # Kernel time falls as the fraction rises: bisect for total(v) = measured.
            target = measured[kind]
            if total(hi) >= target:
                value = hi
            elif total(lo) <= target:
                value = lo
            else:
                for _ in range(50):
                    mid = 0.5 * (lo + hi)
                    lo, hi = (mid, hi) if total(mid) > target else (lo, mid)
                value = 0.5 * (lo + hi)
            eff = _with(eff, key, value)
    sources = dict(eff.sources)
    for kind in moved:
        sources[TRACE_KEYS[kind]] = note
    eff = replace(eff, sources=sources)
    after = step_kernel_times(model, layout, gpu, eff, comm)
    _check_reached(measured, after, eff, moved, source)
    rows = [(k, TRACE_KEYS[k], measured.get(k, 0.0), before[k], after[k]) for k in KINDS]
    return eff, rows


def _check_reached(
    measured: Mapping[str, float], after: Mapping[str, float], eff: Efficiency, moved: list[str], source: str
) -> None:
    """Refuse a trace fit that leaves a fitted kind's kernel time further than FIT_RESIDUAL_LIMIT from the
    trace's (its constant at a bound: the trace is outside what the model can fit)."""
    errs = {k: (after[k] - measured[k]) / measured[k] for k in moved}
    worst = max(errs, key=lambda k: abs(errs[k]), default=None)
    if worst is None or abs(errs[worst]) <= FIT_RESIDUAL_LIMIT:
        return
    key = TRACE_KEYS[worst]
    bound = at_bounds(eff, [key])
    kernels = sum(v for v in measured.values() if v > 0)
    raise InputError(
        f"{source}: {bound[0] if bound else key} leaves pipesim's {_KIND_NAMES[worst][0]} kernel time at "
        f"{after[worst]:.4g} s against the trace's {measured[worst]:.4g} s ({errs[worst]:+.1%}; a calibration "
        f"stays within {FIT_RESIDUAL_LIMIT:.0%}): the trace ({kernels:.4g} s of kernels) is outside what the "
        "model can fit; trace one training step of the CSV's run"
    )
