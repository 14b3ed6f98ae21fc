"""Consecutive training iterations under the two optimizer modes, and their steady-state metrics.

Definitions (also in ``pipesim compare --help`` and the README):

* ``--optimizer sync`` (the default): a global barrier after every iteration (the optimizer step needs every
  rank's gradients for norm clipping and the NaN/Inf check), so each iteration repeats the one-step timeline and
  the step time and bubble are those of one synchronous step, from t = 0.
* ``--optimizer post-validation``: the Zero Bubble paper's optimizer step without that barrier (Qi et al.,
  "Zero Bubble Pipeline Parallelism", ICLR 2024, arXiv:2401.10241, Section 4): the next iteration's warm-up on a
  rank starts as soon as the rank and its inputs are ready, while other ranks still run this iteration's tail.
  N iterations are simulated back to back (:func:`schedules.iterations.repeat_iterations`) and the reported
  step time is the steady-state period ``(T(N) - T(1)) / (N - 1)``, T(k) the end of iteration k's last pass;
  the bubble is ``1 - busy per iteration / (ranks x steady step)`` (the paper's Table 5 bubble rate, when all
  ranks are equally busy). Peak activations are those of the back-to-back run, which may exceed one step's
  because a rank's next warm-up overlaps its own weight-gradient tail.

Under ``post-validation`` pipesim times the pipeline phase only: a scenario with data-parallel gradient
reduction or an optimizer step is refused with a one-line error (their per-iteration placement without a
barrier is not modelled).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipesim.sim.engine import OpCosts, Timeline, simulate
from pipesim.sim.metrics import PipelineMetrics, pipeline_metrics
from schedules import Schedule, ScheduleError
from schedules.iterations import OPTIMIZER_MODES, check_optimizer_mode, repeat_iterations, steady_state_step

__all__ = ["DEFAULT_ITERATIONS", "OPTIMIZER_MODES", "IterationRun", "iteration_ends", "run_iterations"]

# Back-to-back iterations simulated for the steady state: the first is left out of the period, so N = 4 averages
# three periods (enough for every registered schedule, whose timelines repeat exactly from the second on).
DEFAULT_ITERATIONS = 4


@dataclass(frozen=True)
class IterationRun:
    """``schedule`` is the (possibly repeated) schedule that ``timeline`` simulates; ``metrics`` are per
    iteration (steady state under post-validation); ``iterations`` how many the timeline holds."""

    schedule: Schedule
    timeline: Timeline
    metrics: PipelineMetrics
    iterations: int


def iteration_ends(timeline: Timeline, microbatches: int, iterations: int) -> list[float]:
    """When the last compute pass of each iteration ends (iteration k holds microbatches k*m .. k*m + m - 1)."""
    n = timeline.num_actions
    it = timeline.microbatch[:n].astype(np.int64) // microbatches
    ends = np.full(iterations, -np.inf)
    np.maximum.at(ends, it, timeline.end_s[:n])
    return [float(x) for x in ends]


def _tile(schedule: Schedule, timeline: Timeline, iterations: int, period: float) -> Timeline:
    """``iterations`` copies of a one-step timeline, copy k shifted by k * ``period`` seconds and by k * m
    microbatches; rows stay grouped as :class:`Timeline` requires (compute actions rank by rank, then the rest)."""
    n, k, m = timeline.num_actions, iterations, schedule.num_microbatches
    lengths = np.diff(timeline.rank_offsets)
    order = []  # compute rows: rank r's actions of iteration 0, 1, ..., then rank r+1's
    for r in range(timeline.num_ranks):
        lo, hi = timeline.rank_offsets[r], timeline.rank_offsets[r + 1]
        for it in range(k):
            order.append((np.arange(lo, hi), it))
    rest = np.arange(n, timeline.num_spans)
    order += [(rest, it) for it in range(k)]
    rows = np.concatenate([idx for idx, _ in order])
    shift = np.concatenate([np.full(idx.size, it) for idx, it in order])
    offsets = np.zeros(timeline.num_ranks + 1, dtype=np.int64)
    np.cumsum(lengths * k, out=offsets[1:])
    mb = timeline.microbatch[rows]
    return Timeline(
        num_ranks=timeline.num_ranks,
        num_actions=n * k,
        rank_offsets=offsets,
        rank=timeline.rank[rows],
        stream=timeline.stream[rows],
        kind=timeline.kind[rows],
        stage=timeline.stage[rows],
        microbatch=np.where(mb >= 0, mb + shift * m, mb).astype(np.int32),
        peer=timeline.peer[rows],
        start_s=timeline.start_s[rows] + shift * period,
        end_s=timeline.end_s[rows] + shift * period,
        wait_on_transfer_s=timeline.wait_on_transfer_s[rows[: n * k]],
    )


def run_iterations(
    schedule: Schedule, costs: OpCosts, optimizer: str = "sync", iterations: int | None = None
) -> IterationRun:
    """Simulate ``schedule`` under ``optimizer`` (see the module docstring).

    ``iterations`` is how many iterations the returned timeline holds (for ``gantt --iterations``); None means
    1 under ``sync`` and :data:`DEFAULT_ITERATIONS` under ``post-validation``, which simulates and measures
    max(iterations, 2) (a steady state needs two).
    """
    check_optimizer_mode(optimizer)
    if iterations is not None and iterations < 1:
        raise ScheduleError(f"--iterations={iterations} must be >= 1")
    if optimizer == "sync":
        one = simulate(schedule, costs)
        metrics = pipeline_metrics(schedule, costs, one)
        if iterations is None or iterations == 1:
            return IterationRun(schedule, one, metrics, 1)
        tiled = _tile(schedule, one, iterations, one.step_time_s)
        return IterationRun(repeat_iterations(schedule, iterations), tiled, metrics, iterations)
    if any(d > 0 for d in costs.dp_reduce_s) or costs.optimizer_s > 0:
        raise ScheduleError(
            "--optimizer post-validation times back-to-back pipeline phases only; this scenario has "
            "data-parallel gradient reduction or an optimizer step, whose placement without a barrier is not "
            "modelled (use --optimizer sync)"
        )
    n = max(iterations or DEFAULT_ITERATIONS, 2)
    rep = repeat_iterations(schedule, n)
    timeline = simulate(rep, costs)
    full = pipeline_metrics(rep, costs, timeline)
    step = steady_state_step(iteration_ends(timeline, schedule.num_microbatches, n))
    busy = tuple(b / n for b in full.compute_busy_s_per_rank)
    total = sum(busy)
    ranks = schedule.num_ranks
    metrics = replace(
        full,
        microbatches=schedule.num_microbatches,
        num_actions=full.num_actions // n,
        step_time_s=step,
        pipeline_time_s=step,
        compute_busy_s_per_rank=busy,
        bubble_ratio=1.0 - total / (ranks * step) if step > 0 else 0.0,
        bubble_over_ideal=(ranks * step - total) / total if total > 0 else 0.0,
        p2p_time_s=full.p2p_time_s / n,
        p2p_exposed_s=full.p2p_exposed_s / n,
        tp_comm_s=full.tp_comm_s / n,
        recompute_s=full.recompute_s / n,
    )
    return IterationRun(rep, timeline, metrics, n)
