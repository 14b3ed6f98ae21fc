"""The roofline view of one transformer layer: every operator with its FLOPs, HBM bytes, arithmetic intensity,
attainable and predicted FLOP/s, time, what bounds it and its share of the layer's time.

Roofline model (Williams, Waterman & Patterson, "Roofline: an insightful visual performance model for
multicore architectures", CACM 2009): an operator that does ``F`` FLOPs and moves ``Q`` bytes of HBM traffic
has arithmetic intensity ``I = F / Q`` (FLOPs per byte) and can reach at most
``attainable = min(peak(precision), I x hbm_Bps)`` FLOP/s. The ridge point ``peak / hbm_Bps`` is the intensity
above which the compute roof binds.

One source of truth: every time here is :func:`pipesim.cost.times.layer_detail`'s, the same per-operator times
whose phase sums are the simulator's forward and backward times (:func:`pipesim.cost.times.layer_pass_times`);
``predicted FLOP/s = flops / predicted time``. The roof an operator sits under is the peak of the precision
:func:`pipesim.cost.times.compute_precision` gives it (attention stays 16-bit under fp8). Tensor-parallel
collectives have no FLOPs and move their bytes over NVLink or the network, not HBM: they are listed (bound
``comm``) with their time and share, but have no intensity; one the layout overlaps with a GEMM keeps only its exposed excess (bound
``comm-overlapped``), exactly as the simulator counts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipesim.comm.base import CommModel
from pipesim.comm.factory import build_comm, server_cluster
from pipesim.cost.times import Efficiency, compute_precision, layer_detail
from pipesim.errors import InputError
from pipesim.results import Result
from pipesim.specs.efficiency import GPU_PROFILE, resolve_efficiency
from pipesim.specs.gpu import PRECISIONS, GPUSpec, presets_with
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec

__all__ = [
    "RooflineRow",
    "RooflineTable",
    "check_precision",
    "ridge_point",
    "attainable_flops",
    "roofline",
]


def check_precision(gpu: GPUSpec, precision: str) -> None:
    """Raise :class:`InputError` unless ``gpu`` has a peak for ``precision``; the message lists what this GPU
    supports and which presets have that precision."""
    if precision not in PRECISIONS:
        raise InputError(f"precision={precision!r} is not a number format; valid: {', '.join(PRECISIONS)}")
    if precision not in gpu.peak_flops:
        having = presets_with(precision)
        raise InputError(
            f"gpu {gpu.name!r} has no {precision} peak (it supports {', '.join(gpu.peak_flops)}); "
            f"GPUs with {precision}: {', '.join(having)}"
        )


def ridge_point(gpu: GPUSpec, precision: str) -> float:
    """Intensity (FLOPs per byte) where the memory slope meets the compute roof: peak / HBM bandwidth."""
    return gpu.peak(precision) / gpu.hbm_Bps


def attainable_flops(peak_flops: float, hbm_Bps: float, intensity: float) -> float:
    """The roofline bound ``min(peak, intensity x bandwidth)`` in FLOP/s (Williams et al. 2009)."""
    return min(peak_flops, intensity * hbm_Bps)


@dataclass(frozen=True)
class RooflineRow:
    """One operator on the roofline. ``intensity_flops_per_byte``, ``attainable_flops_per_s`` and
    ``predicted_flops_per_s`` are None for collectives (no FLOPs, no HBM traffic counted). ``share`` is the
    fraction of the layer's forward + backward time."""

    name: str
    kind: str
    phase: str
    recompute: bool
    flops: float
    hbm_bytes: float
    comm_bytes: float
    roof_precision: str | None
    peak_flops_per_s: float | None
    intensity_flops_per_byte: float | None
    attainable_flops_per_s: float | None
    predicted_flops_per_s: float | None
    predicted_time_s: float
    bound: str
    share: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (SI units; names carry them)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "phase": self.phase,
            "recompute": self.recompute,
            "flops": self.flops,
            "bytes": self.hbm_bytes,
            "comm_bytes": self.comm_bytes,
            "roof_precision": self.roof_precision,
            "peak_flops_per_s": self.peak_flops_per_s,
            "intensity_flops_per_byte": self.intensity_flops_per_byte,
            "attainable_flops_per_s": self.attainable_flops_per_s,
            "predicted_flops_per_s": self.predicted_flops_per_s,
            "predicted_time_s": self.predicted_time_s,
            "bound": self.bound,
            "share": self.share,
        }


@dataclass(frozen=True)
class RooflineTable(Result):
    """The roofline rows of one transformer layer on one TP rank for one microbatch, at one precision.

    ``forward_s`` / ``backward_s``: sums of the phase-F rows and of the others (recompute, I, W);
    ``roofs``: peak FLOP/s of every precision the GPU has (the chart draws them all).
    """

    model: ModelSpec
    gpu: GPUSpec
    layout: Layout
    precision: str
    rows: tuple[RooflineRow, ...]
    forward_s: float
    backward_s: float

    @property
    def layer_s(self) -> float:
        """Forward + backward seconds of the layer."""
        return self.forward_s + self.backward_s

    @property
    def roofs(self) -> dict[str, float]:
        """Peak FLOP/s per precision of the GPU, in :data:`pipesim.specs.gpu.PRECISIONS` order."""
        return {p: self.gpu.peak_flops[p] for p in PRECISIONS if p in self.gpu.peak_flops}

    @property
    def ridge_flops_per_byte(self) -> float:
        """Ridge point of the GEMM precision."""
        return ridge_point(self.gpu, self.precision)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the table."""
        return {
            "precision": self.precision,
            "peak_flops_per_s": self.gpu.peak(self.precision),
            "hbm_Bps": self.gpu.hbm_Bps,
            "ridge_flops_per_byte": self.ridge_flops_per_byte,
            "forward_s": self.forward_s,
            "backward_s": self.backward_s,
            "layer_s": self.layer_s,
            "ops": [r.as_dict() for r in self.rows],
        }

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per operator."""
        return [r.as_dict() for r in self.rows]


def roofline(
    model: ModelSpec,
    layout: Layout,
    gpu: GPUSpec,
    precision: str | None = None,
    eff: Efficiency = GPU_PROFILE,
    comm: CommModel | None = None,
    tp_ranks: Sequence[int] | None = None,
) -> RooflineTable:
    """The roofline table of one transformer layer of ``model`` under ``layout`` on ``gpu``.

    ``precision`` (default the layout's; any of :data:`pipesim.specs.gpu.PRECISIONS` the GPU has) sets the GEMM
    roof and the bytes per element. ``comm`` times the TP collectives over ``tp_ranks`` (default: the
    GPU's own server, :mod:`pipesim.specs.server`, and ranks 0..tp-1, i.e. the first TP group).
    Times come from :func:`pipesim.cost.times.layer_detail` (see the module docstring).
    """
    prec = precision or layout.precision
    eff = resolve_efficiency(eff, gpu.efficiency)
    check_precision(gpu, prec)
    layout.check_model(model, 1)
    comm_model = comm if comm is not None else build_comm(server_cluster(gpu.server), layout.tp)
    ranks = tuple(tp_ranks) if tp_ranks is not None else tuple(range(layout.tp))
    timed = layer_detail(model, layout, gpu, eff, comm_model, ranks, prec)
    total = sum(t.time_s for t in timed)
    rows: list[RooflineRow] = []
    for t in timed:
        op = t.op
        share = t.time_s / total if total > 0 else 0.0
        if op.kind == "comm":
            rows.append(
                RooflineRow(
                    op.name,
                    op.kind,
                    op.phase,
                    op.recompute,
                    0.0,
                    0.0,
                    op.comm_bytes,
                    None,
                    None,
                    None,
                    None,
                    None,
                    t.time_s,
                    t.bound,
                    share,
                )
            )
            continue
        flops = op.flops + op.vector_flops  # matmul FLOPs, or a memory-bound kernel's nominal arithmetic
        roof = compute_precision(op, gpu, prec)
        peak = gpu.peak(roof)
        intensity = flops / op.hbm_bytes if op.hbm_bytes > 0 else None
        attainable = attainable_flops(peak, gpu.hbm_Bps, intensity) if intensity is not None else peak
        predicted = flops / t.time_s if t.time_s > 0 else None
        rows.append(
            RooflineRow(
                op.name,
                op.kind,
                op.phase,
                op.recompute,
                flops,
                op.hbm_bytes,
                0.0,
                roof,
                peak,
                intensity,
                attainable,
                predicted,
                t.time_s,
                t.bound,
                share,
            )
        )
    fwd = sum(r.predicted_time_s for r in rows if r.phase == "F")
    bwd = sum(r.predicted_time_s for r in rows if r.phase != "F")
    return RooflineTable(model, gpu, layout, prec, tuple(rows), fwd, bwd)
