"""Shared helpers for the zero-bubble / DualPipe / greedy tests: uniform-cost simulation and bubble measures."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipesim.sim.engine import OpCosts, Timeline, simulate
from pipesim.sim.metrics import PipelineMetrics, pipeline_metrics
from schedules import Schedule


@dataclass(frozen=True)
class Run:
    """A simulated schedule with its metrics and two bubble measures (idle time per device)."""

    schedule: Schedule
    timeline: Timeline
    metrics: PipelineMetrics

    @property
    def step_bubble(self) -> float:
        """Largest per-rank idle time within one synchronous step: step - busy (ZB paper Table 2's measure
        for 1F1B and ZB-H1)."""
        return self.metrics.pipeline_time_s - min(self.metrics.compute_busy_s_per_rank)

    @property
    def steady_bubble(self) -> float:
        """Largest per-rank idle time between the rank's own first start and last end: what is left when
        consecutive steps tile (the parallelogram of ZB-H2 / ZB-V, ZB paper Section 3.1 and 6)."""
        tl, out = self.timeline, 0.0
        for r in range(tl.num_ranks):
            lo, hi = tl.rank_offsets[r], tl.rank_offsets[r + 1]
            span = float(tl.end_s[lo:hi].max() - tl.start_s[lo:hi].min())
            out = max(out, span - float(np.sum(tl.end_s[lo:hi] - tl.start_s[lo:hi])))
        return out


def run(
    schedule: Schedule,
    tf: float,
    ti: float,
    tw: float,
    p2p: float = 0.0,
    act: float = 1.0,
    stash: float = 0.0,
    dp_reduce: float = 0.0,
    dp_overlap: bool = True,
) -> Run:
    """Simulate with uniform per-*chunk* costs: F = tf, I = ti, W = tw (so B = ti + tw)."""
    n = schedule.num_stages
    uniform = OpCosts.uniform(n, tf, ti + tw, tw, p2p, act, stash)
    costs = replace(uniform, dp_reduce_s=(float(dp_reduce),) * n, dp_overlap=dp_overlap)
    tl = simulate(schedule, costs)
    return Run(schedule, tl, pipeline_metrics(schedule, costs, tl))
