"""Gradient reduction and the optimizer step at the end of a simulated step: the spans on the data-parallel
and optimizer streams, from when each stage's last gradient pass finished (one model, used by both of the
engine's evaluations, :mod:`pipesim.sim.wavefront` and :mod:`pipesim.sim.compiled`).

Model (Megatron-LM's and PyTorch DDP's bucketed reductions, Li et al., "PyTorch Distributed", VLDB 2020,
Section 3.2.3): a stage's gradients are reduced in ``dp_buckets`` equal buckets; with ``dp_overlap`` bucket k of
K is ready (k+1)/K of the way through the stage's last gradient pass (the B or W that finishes last; layers
produce their gradients in turn), otherwise when the rank's last compute action finishes. Each rank's DP
stream reduces one bucket at a time, in order of readiness (ties: stage, then bucket). The optimizer step
lasts ``optimizer_s`` on each rank and starts (:func:`update_starts`):

* ``sync``: on every rank once every rank has finished computing and reducing (gradient clipping and the
  NaN/Inf check need the global state: a global barrier);
* ``post-validation`` (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, arXiv:2401.10241, Section 4,
  "Bypassing optimizer synchronizations"): no barrier. Before its optimizer step each stage receives the
  partially reduced global state (gradient norm, NaN/Inf flag) from the previous stage, combines it with its
  own and passes it on; the step runs on that partial state, and the fully reduced state travels back from
  the last stage during the next iteration's warm-up, where each stage validates its step (rolling back in
  the rare case it fails). So rank r's step starts once its own passes and reductions are done and the state
  of rank r - 1 has arrived, one ``validation_hop_s`` after rank r - 1's step started. The backward
  propagation of the full state is a few bytes riding along the warm-up that no pass waits for (a rollback
  is the rare case the paper leaves out of its timings), so it is not a span.
"""

from __future__ import annotations

import numpy as np

from pipesim.sim.timeline import FloatArray, IntArray, OpCosts
from schedules.ir import Schedule

__all__ = ["GradientSpans", "gradient_spans", "update_starts"]

GradientSpans = tuple[IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray]


def update_starts(rank_ready_s: FloatArray, hop_s: float, optimizer: str) -> FloatArray:
    """When each rank's optimizer step starts, from when each rank has finished computing and reducing
    (``rank_ready_s``): the latest of them on every rank under ``sync``; under ``post-validation``
    ``start[r] = max(ready[r], start[r-1] + hop_s)``, the partially reduced state passed from rank to rank
    (see the module docstring)."""
    if optimizer == "sync":
        return np.full(rank_ready_s.size, rank_ready_s.max() if rank_ready_s.size else 0.0)
    out = np.empty(rank_ready_s.size)
    prev = -np.inf
    for r in range(rank_ready_s.size):  # one per pipeline rank
        prev = out[r] = max(float(rank_ready_s[r]), prev + hop_s)
    return out


def gradient_spans(
    schedule: Schedule,
    costs: OpCosts,
    last_grad_end_s: FloatArray,
    last_grad_duration_s: FloatArray,
    rank_compute_end_s: FloatArray,
    optimizer: str = "sync",
    dp_free_s: FloatArray | None = None,
) -> GradientSpans:
    """The reduction spans (rank, stage, start, end; one per bucket of every stage with a non-zero
    ``dp_reduce_s``) and the optimizer spans (start, end; one per rank when ``optimizer_s`` > 0).

    ``last_grad_end_s`` / ``last_grad_duration_s`` are, per stage, the end and duration of its last gradient
    pass; ``rank_compute_end_s`` the end of each rank's last compute action; ``optimizer`` the mode
    (:func:`update_starts`); ``dp_free_s`` when each rank's reduction stream is free (None: at 0). See the
    module docstring.
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
    free = np.zeros(schedule.num_ranks) if dp_free_s is None else np.array(dp_free_s, dtype=np.float64)
    for pos in np.lexsort((bucket, s_stage, ready, s_rank)):  # one per bucket: thousands at most
        r = s_rank[pos]
        t0 = max(ready[pos], free[r])
        out_start[pos] = t0
        out_end[pos] = free[r] = t0 + length[pos]
    rank_end = rank_compute_end_s.copy()
    if out_end.size:
        np.maximum.at(rank_end, s_rank, out_end)
    o_count = schedule.num_ranks if costs.optimizer_s > 0 else 0
    o_start = update_starts(rank_end, costs.validation_hop_s, optimizer)[:o_count]
    return s_rank, s_stage, out_start, out_end, o_start, o_start + costs.optimizer_s
