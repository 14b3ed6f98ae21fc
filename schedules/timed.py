"""The schedule families that are built for a scenario's own pass times, and the one hook that builds them.

``zb-1p`` / ``zb-2p`` (:mod:`schedules.zb_auto`) and ``zb-v-half`` / ``zb-v-min`` (:mod:`schedules.v_memory`)
choose their order from the F, I, W and transfer times and cap their memory with the weight stash, so pipesim
rebuilds them from the real per-stage costs instead of using the registry's defaults (equal times, no stash).
"""

from __future__ import annotations

from schedules.greedy import GREEDY_FAMILIES, GreedyTimes, default_memory_limit
from schedules.ir import Schedule, ScheduleError
from schedules.v_memory import V_MEMORY_FAMILIES, v_memory_schedule
from schedules.zb_auto import AutoTimes, auto_zero_bubble

__all__ = ["TIMED_FAMILIES", "build_timed"]

TIMED_FAMILIES = GREEDY_FAMILIES + V_MEMORY_FAMILIES


def build_timed(
    name: str,
    num_ranks: int,
    num_microbatches: int,
    times: GreedyTimes,
    memory_limit: float | None = None,
    stash_fraction: float = 0.0,
    objective: str = "sync",
) -> Schedule:
    """Build the timed family ``name`` for ``times`` (per stage of the built schedule: per chunk for the V
    families); ``memory_limit`` (whole-stage microbatches per rank) replaces the family's default cap when
    given; ``objective`` is the optimizer mode the order is chosen for."""
    if name not in TIMED_FAMILIES:
        raise ScheduleError(f"{name!r} is not a greedy schedule; valid: {', '.join(TIMED_FAMILIES)}")
    auto = AutoTimes(times.forward_s, times.input_s, times.weight_s, times.p2p_s, stash_fraction)
    if name in V_MEMORY_FAMILIES:
        return v_memory_schedule(name, num_ranks, num_microbatches, auto, objective, memory_limit)
    cap = default_memory_limit(name, num_ranks) if memory_limit is None else memory_limit
    return auto_zero_bubble(num_ranks, num_microbatches, cap, auto, objective, name=name)
