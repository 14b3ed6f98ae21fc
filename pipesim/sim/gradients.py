"""Gradient reduction and the optimizer step at the end of a simulated step: the spans on the data-parallel
and optimizer streams, from when each stage's last gradient pass finished (one model, used by both of the
engine's evaluations, :mod:`pipesim.sim.wavefront` and :mod:`pipesim.sim.compiled`).

Model (Megatron-LM's and PyTorch DDP's bucketed reductions, Li et al., "PyTorch Distributed", VLDB 2020,
Section 3.2.3): a stage's gradients are reduced in ``dp_buckets`` equal buckets; with ``dp_overlap`` bucket k of
K is ready (k+1)/K of the way through the stage's last gradient pass (the B or W that finishes last; layers
produce their gradients in turn), otherwise when the rank's last compute action finishes. Each rank's DP
stream reduces one bucket at a time, in order of readiness (ties: stage, then bucket). The optimizer step
starts on every rank once every rank has finished computing and reducing (gradient clipping needs the global
norm) and lasts ``optimizer_s``.
"""

from __future__ import annotations

import numpy as np

from pipesim.sim.timeline import FloatArray, IntArray, OpCosts
from schedules.ir import Schedule

__all__ = ["GradientSpans", "gradient_spans"]

GradientSpans = tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray]


def gradient_spans(
    schedule: Schedule,
    costs: OpCosts,
    last_grad_end_s: FloatArray,
    last_grad_duration_s: FloatArray,
    rank_compute_end_s: FloatArray,
) -> GradientSpans:
    """The reduction spans (rank, stage, start, end; one per bucket of every stage with a non-zero
    ``dp_reduce_s``) and the optimizer spans (start, end; one per rank when ``optimizer_s`` > 0).

    ``last_grad_end_s`` / ``last_grad_duration_s`` are, per stage, the end and duration of its last gradient
    pass; ``rank_compute_end_s`` the end of each rank's last compute action. See the module docstring.
    """
    dp = np.asarray(costs.dp_reduce_s, dtype=np.float64)
    stages = np.nonzero(dp > 0)[0]
    k_count = costs.dp_buckets
    placement = np.asarray(schedule.stage_to_rank, dtype=np.int64)
    s_rank = np.repeat(placement[stages], k_count)
    s_stage = np.repeat(stages, k_count)
    bucket = np.tile(np.arange(k_count), stages.size)
    if costs.dp_overlap:
        ready = last_grad_end_s[s_stage] - last_grad_duration_s[s_stage] * (k_count - 1 - bucket) / k_count
    else:
        ready = rank_compute_end_s[s_rank]
    length = dp[s_stage] / k_count
    out_start = np.zeros(s_stage.size)
    out_end = np.zeros(s_stage.size)
    free = np.zeros(schedule.num_ranks)
    for pos in np.lexsort((bucket, s_stage, ready, s_rank)):  # one per bucket: thousands at most
        r = s_rank[pos]
        t0 = max(ready[pos], free[r])
        out_start[pos] = t0
        out_end[pos] = free[r] = t0 + length[pos]
    rank_end = rank_compute_end_s.copy()
    if out_end.size:
        np.maximum.at(rank_end, s_rank, out_end)
    o_count = schedule.num_ranks if costs.optimizer_s > 0 else 0
    o_start = np.full(o_count, rank_end.max() if schedule.num_ranks else 0.0)
    return s_rank, s_stage, out_start, out_end, o_start, o_start + costs.optimizer_s
