"""Pipeline metrics computed from a simulated timeline.

Definitions (also printed by ``pipesim compare --help``):

* **step time**: end of the last span (compute, transfer, gradient reduction or optimizer step).
* **pipeline time**: end of the last forward/backward action.
* **bubble ratio** (fraction of the pipeline time): 1 - (sum of compute busy time over ranks) /
  (ranks x pipeline time). For GPipe and 1F1B with uniform stages and free transfers this is
  (p-1)/(m+p-1); for interleaved 1F1B (p-1)/(v*m+p-1).
* **bubble over ideal** (Megatron-LM's form, SC21 Section 2.2.1): idle time / busy time
  = (ranks x pipeline time - busy) / busy; (p-1)/m for GPipe and 1F1B, (p-1)/(v*m) interleaved.
* **peak activation** per rank: walking the rank's actions in order, F adds its stage's activations, B frees
  them, I frees all but the weight stash, W frees the stash. In *microbatches*: one microbatch's activations of
  a whole pipeline stage = 1, so a chunk of an interleaved schedule counts 1/v (a rank's chunks of one model
  copy share its stage; bidirectional DualPipe's two chunks per rank are two copies, each a whole stage); in
  *bytes*: from the per-stage activation bytes.
* **p2p time**: the sum of all transfer durations; **exposed p2p**: the idle time of receiving ranks that
  only the transfer caused (the rank was free and the producer had finished, but the data was still on the
  wire).
* **DP communication**: the sum of all gradient-reduction spans; **hidden**: the part of them that ran while
  their rank was still computing (before its last forward/backward ended), summed over ranks; **exposed**: how
  far the reductions extend the step past the pipeline phase (last reduction end minus pipeline time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipesim.sim.engine import OpCosts, SpanKind, Stream, Timeline
from schedules.ir import HELD_DELTA, Schedule

__all__ = ["PipelineMetrics", "pipeline_metrics"]


@dataclass(frozen=True)
class PipelineMetrics:
    """Metrics of one simulated step; see the module docstring for the definitions."""

    schedule: str
    pp: int
    vpp: int
    microbatches: int
    num_actions: int
    step_time_s: float
    pipeline_time_s: float
    compute_busy_s_per_rank: tuple[float, ...]
    bubble_ratio: float
    bubble_over_ideal: float
    peak_activation_microbatches_per_rank: tuple[float, ...]
    peak_activation_bytes_per_rank: tuple[float, ...]
    p2p_time_s: float
    p2p_exposed_s: float
    tp_comm_s: float
    recompute_s: float
    dp_comm_s: float
    dp_hidden_s: float
    dp_exposed_s: float
    optimizer_s: float

    @property
    def peak_activation_microbatches(self) -> float:
        """Largest per-rank peak, in stage-microbatches."""
        return max(self.peak_activation_microbatches_per_rank, default=0.0)

    @property
    def peak_activation_bytes(self) -> float:
        """Largest per-rank peak, in bytes."""
        return max(self.peak_activation_bytes_per_rank, default=0.0)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict (the shape ``pipesim compare --json`` prints)."""
        return {
            "schedule": self.schedule,
            "pp": self.pp,
            "vpp": self.vpp,
            "microbatches": self.microbatches,
            "num_actions": self.num_actions,
            "step_time_s": self.step_time_s,
            "pipeline_time_s": self.pipeline_time_s,
            "bubble_ratio": self.bubble_ratio,
            "bubble_over_ideal": self.bubble_over_ideal,
            "peak_activation_microbatches": self.peak_activation_microbatches,
            "peak_activation_microbatches_per_rank": list(self.peak_activation_microbatches_per_rank),
            "peak_activation_bytes": self.peak_activation_bytes,
            "peak_activation_bytes_per_rank": list(self.peak_activation_bytes_per_rank),
            "p2p_time_s": self.p2p_time_s,
            "p2p_exposed_s": self.p2p_exposed_s,
            "tp_comm_s": self.tp_comm_s,
            "recompute_s": self.recompute_s,
            "dp_comm_s": self.dp_comm_s,
            "dp_hidden_s": self.dp_hidden_s,
            "dp_exposed_s": self.dp_exposed_s,
            "optimizer_s": self.optimizer_s,
        }


_HELD = np.asarray(HELD_DELTA, dtype=np.float64)


def activation_deltas(
    op: npt.NDArray[np.int64], stage: npt.NDArray[np.int64], act: npt.ArrayLike, stash: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Change in held activation memory of every action (``op``, ``stage`` per action; ``act`` and ``stash``
    per stage, stash <= act) by the one rule :data:`schedules.ir.HELD_DELTA`: F +act, B -act, I -(act -
    stash), W -stash. Running sums over a rank's program give its held memory (program order is time order on
    a rank's one compute stream)."""
    a = np.asarray(act, dtype=np.float64)
    s = np.minimum(np.asarray(stash, dtype=np.float64), a)
    if op.size == 0:
        return np.zeros(0)
    return _HELD[op, 0] * a[stage] + _HELD[op, 1] * s[stage]


def _rank_peaks(delta: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-rank maximum of the running sum of ``delta`` (rank r's entries are offsets[r]..offsets[r+1]-1),
    never below 0 (the empty start)."""
    r_count = offsets.size - 1
    out = np.zeros(r_count)
    if delta.size == 0:
        return out
    running = np.cumsum(delta)
    base = np.concatenate(([0.0], running))[offsets[:-1]]
    nonempty = offsets[1:] > offsets[:-1]
    peaks = np.maximum.reduceat(running, np.minimum(offsets[:-1], delta.size - 1))
    out[nonempty] = peaks[nonempty] - base[nonempty]
    return np.maximum(out, 0.0)


def pipeline_metrics(schedule: Schedule, costs: OpCosts, timeline: Timeline) -> PipelineMetrics:
    """Compute :class:`PipelineMetrics` for ``timeline`` (the result of ``simulate(schedule, costs)``)."""
    n = timeline.num_actions
    r_count = schedule.num_ranks
    op = timeline.kind[:n].astype(np.int64)
    stage = timeline.stage[:n].astype(np.int64)
    rank = timeline.rank[:n].astype(np.int64)
    dur = timeline.end_s[:n] - timeline.start_s[:n]
    busy = np.bincount(rank, weights=dur, minlength=r_count)
    pipe_t = timeline.pipeline_time_s
    total_busy = float(busy.sum())
    bubble_ratio = 1.0 - total_busy / (r_count * pipe_t) if pipe_t > 0 else 0.0
    bubble_over_ideal = (r_count * pipe_t - total_busy) / total_busy if total_busy > 0 else 0.0

    # Activation bookkeeping in program order (= time order on a rank).
    act = np.asarray(costs.activation_bytes)
    stash = np.minimum(np.asarray(costs.weight_stash_bytes), act)
    placement = np.asarray(schedule.stage_to_rank)
    chunks_on_rank = np.bincount(placement, minlength=r_count)[placement].astype(np.float64)
    unit = len(schedule.chain_starts) / chunks_on_rank  # one stage-chunk = 1/v of a whole rank stage
    unit_stash = np.divide(stash, act, out=np.zeros_like(act), where=act > 0) * unit
    delta_bytes = activation_deltas(op, stage, act, stash)
    delta_units = activation_deltas(op, stage, unit, unit_stash)
    offsets = timeline.rank_offsets
    peak_units = _rank_peaks(delta_units, offsets)
    peak_bytes = _rank_peaks(delta_bytes, offsets)

    streams = timeline.stream
    span = timeline.end_s - timeline.start_s
    p2p_total = float(span[streams == Stream.P2P].sum())
    p2p_exposed = float(timeline.wait_on_transfer_s.sum())
    tp_f = np.asarray(costs.tp_comm_forward_s)
    tp_b = np.asarray(costs.tp_comm_backward_s)
    rec = np.asarray(costs.recompute_s)
    tp_total = float(np.where(op == 0, tp_f[stage], np.where((op == 1) | (op == 2), tp_b[stage], 0.0)).sum())
    rec_total = float(np.where((op == 1) | (op == 2), rec[stage], 0.0).sum())
    dp_mask = timeline.kind == SpanKind.DP_REDUCE
    dp_total = float(span[dp_mask].sum())
    rank_compute_end = np.zeros(r_count)
    np.maximum.at(rank_compute_end, rank, timeline.end_s[:n])
    dp_exposed = 0.0
    dp_hidden = 0.0
    if dp_mask.any():
        dp_rank = timeline.rank[dp_mask].astype(np.int64)
        inside = np.minimum(timeline.end_s[dp_mask], rank_compute_end[dp_rank]) - timeline.start_s[dp_mask]
        dp_hidden = float(np.maximum(inside, 0.0).sum())
        rank_dp_end = np.zeros(r_count)
        np.maximum.at(rank_dp_end, timeline.rank[dp_mask].astype(np.int64), timeline.end_s[dp_mask])
        dp_exposed = float(max(rank_dp_end.max() - pipe_t, 0.0))
    return PipelineMetrics(
        schedule=schedule.name,
        pp=r_count,
        vpp=schedule.chunks_per_rank,
        microbatches=schedule.num_microbatches,
        num_actions=n,
        step_time_s=timeline.step_time_s,
        pipeline_time_s=pipe_t,
        compute_busy_s_per_rank=tuple(float(b) for b in busy),
        bubble_ratio=bubble_ratio,
        bubble_over_ideal=bubble_over_ideal,
        peak_activation_microbatches_per_rank=tuple(float(x) for x in peak_units),
        peak_activation_bytes_per_rank=tuple(float(x) for x in peak_bytes),
        p2p_time_s=p2p_total,
        p2p_exposed_s=p2p_exposed,
        tp_comm_s=tp_total,
        recompute_s=rec_total,
        dp_comm_s=dp_total,
        dp_hidden_s=dp_hidden,
        dp_exposed_s=dp_exposed,
        optimizer_s=float(costs.optimizer_s),
    )
