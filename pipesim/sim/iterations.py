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

Under ``post-validation`` each rank's data-parallel gradient reduction and optimizer step of iteration k sit on
that rank between its own iterations k and k+1, with no global barrier: the step starts once the rank's
passes and reductions are done and the previous rank's partially reduced global state has arrived (the
paper's Section 4; :func:`pipesim.sim.gradients.update_starts`), and the rank's next iteration starts after
it. Iteration k+1 is simulated with every rank's streams busy until then (:class:`pipesim.sim.engine.RankStart`):
a rank's actions of iteration k+1 all follow its own of iteration k and depend only on passes of iteration
k+1, so this is the back-to-back run, iteration by iteration. T(k) is then the end of iteration k's last span
(pass, reduction or optimizer step); the exposed DP reduction per iteration is, averaged over iterations, the
longest time a rank's reductions run past its own last pass, and the pipeline phase is the steady step less
that and the optimizer step (so the time breakdown still adds up to the step).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipesim.sim.engine import OpCosts, RankStart, Stream, Timeline, simulate
from pipesim.sim.gradients import update_starts
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


def _stack(timelines: list[Timeline], microbatches: int) -> Timeline:
    """One timeline of consecutive iterations (timeline k simulates iteration k, its microbatches renumbered
    by k * ``microbatches``); rows stay grouped as :class:`Timeline` requires (compute actions rank by rank,
    iteration after iteration, then every other span)."""
    first = timelines[0]
    k = len(timelines)
    n = first.num_actions
    parts: list[tuple[Timeline, int, np.ndarray]] = []
    for r in range(first.num_ranks):
        lo, hi = int(first.rank_offsets[r]), int(first.rank_offsets[r + 1])
        parts += [(tl, it, np.arange(lo, hi)) for it, tl in enumerate(timelines)]
    parts += [(tl, it, np.arange(n, tl.num_spans)) for it, tl in enumerate(timelines)]
    offsets = np.zeros(first.num_ranks + 1, dtype=np.int64)
    np.cumsum(np.diff(first.rank_offsets) * k, out=offsets[1:])

    def cat(name: str, rows_only: bool = False) -> np.ndarray:
        used = parts[: first.num_ranks * k] if rows_only else parts
        return np.concatenate([getattr(tl, name)[idx] for tl, _, idx in used])

    mb = np.concatenate([tl.microbatch[idx].astype(np.int64) for tl, _, idx in parts])
    shift = np.concatenate([np.full(idx.size, it, dtype=np.int64) for _, it, idx in parts])
    return Timeline(
        num_ranks=first.num_ranks,
        num_actions=n * k,
        rank_offsets=offsets,
        rank=cat("rank"),
        stream=cat("stream"),
        kind=cat("kind"),
        stage=cat("stage"),
        microbatch=np.where(mb >= 0, mb + shift * microbatches, mb).astype(np.int32),
        peer=cat("peer"),
        start_s=cat("start_s"),
        end_s=cat("end_s"),
        wait_on_transfer_s=cat("wait_on_transfer_s", rows_only=True),
    )


def _shifted(timeline: Timeline, by_s: float) -> Timeline:
    """``timeline`` with every span ``by_s`` seconds later."""
    return replace(timeline, start_s=timeline.start_s + by_s, end_s=timeline.end_s + by_s)


def _per_rank_max(timeline: Timeline, mask: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Per rank, the latest end of the rows in ``mask`` (``floor`` where a rank has none later)."""
    out = floor.copy()
    np.maximum.at(out, timeline.rank[mask].astype(np.int64), timeline.end_s[mask])
    return out


def _next_start(timeline: Timeline, costs: OpCosts, start: RankStart) -> tuple[RankStart, float, float]:
    """Where ``timeline``'s iteration leaves each rank under post-validation (its compute stream free after
    its own optimizer step, :func:`update_starts`, its send stream after its last transfer); the longest time
    a rank's reductions ran past its own last pass; and the reduction time hidden before each rank's own
    last pass, summed over ranks."""
    n = timeline.num_actions
    stream = timeline.stream
    t0 = np.asarray(start.compute_s, dtype=np.float64)
    compute_end = _per_rank_max(timeline, np.arange(timeline.num_spans) < n, t0)
    sends = _per_rank_max(timeline, stream == Stream.P2P, np.asarray(start.send_s, dtype=np.float64))
    if costs.p2p_blocking:  # the compute stream is held until the rank's own last send is done
        compute_end = np.maximum(compute_end, sends)
    dp = stream == Stream.DP
    ready = _per_rank_max(timeline, dp, compute_end)
    updated = update_starts(ready, costs.validation_hop_s, "post-validation") + costs.optimizer_s
    exposed = float((ready - compute_end).max()) if ready.size else 0.0
    dp_rank = timeline.rank[dp].astype(np.int64)
    inside = np.minimum(timeline.end_s[dp], compute_end[dp_rank]) - timeline.start_s[dp]
    hidden = float(np.maximum(inside, 0.0).sum())
    return RankStart(tuple(float(x) for x in updated), tuple(float(x) for x in sends)), exposed, hidden


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
    m = schedule.num_microbatches
    if optimizer == "sync":
        one = simulate(schedule, costs)
        metrics = pipeline_metrics(schedule, costs, one)
        if iterations is None or iterations == 1:
            return IterationRun(schedule, one, metrics, 1)
        period = one.step_time_s
        tiled = _stack([_shifted(one, k * period) for k in range(iterations)], m)
        return IterationRun(repeat_iterations(schedule, iterations), tiled, metrics, iterations)
    n = max(iterations or DEFAULT_ITERATIONS, 2)
    zeros = (0.0,) * schedule.num_ranks
    start = RankStart(zeros, zeros)
    runs: list[Timeline] = []
    exposed = hidden = 0.0
    for _ in range(n):
        tl = simulate(schedule, costs, start=start, optimizer="post-validation")
        runs.append(tl)
        start, dp_past, dp_inside = _next_start(tl, costs, start)
        exposed += dp_past / n
        hidden += dp_inside / n
    rep = repeat_iterations(schedule, n)
    timeline = _stack(runs, m)
    full = pipeline_metrics(rep, costs, timeline)
    step = steady_state_step([tl.step_time_s for tl in runs])
    pipeline = max(step - exposed - costs.optimizer_s, 0.0)
    busy = tuple(b / n for b in full.compute_busy_s_per_rank)
    total = sum(busy)
    ranks = schedule.num_ranks
    dp_total = full.dp_comm_s / n
    metrics = replace(
        full,
        microbatches=m,
        num_actions=full.num_actions // n,
        step_time_s=step,
        pipeline_time_s=pipeline,
        compute_busy_s_per_rank=busy,
        bubble_ratio=1.0 - total / (ranks * pipeline) if pipeline > 0 else 0.0,
        bubble_over_ideal=(ranks * pipeline - total) / total if total > 0 else 0.0,
        p2p_time_s=full.p2p_time_s / n,
        p2p_exposed_s=full.p2p_exposed_s / n,
        tp_comm_s=full.tp_comm_s / n,
        recompute_s=full.recompute_s / n,
        dp_comm_s=dp_total,
        dp_hidden_s=hidden,
        dp_exposed_s=exposed,
    )
    return IterationRun(rep, timeline, metrics, n)
