"""What a built schedule tells the planner's estimator without simulating it: its placement and each rank's
held-memory states along its program (:class:`Profile`), and at which microbatch count to profile."""

from __future__ import annotations

from dataclasses import dataclass

from schedules import Schedule
from schedules.ir import HELD_DELTA

__all__ = ["Profile", "pareto", "profile_microbatches", "profile_schedule"]


def profile_microbatches(pp: int, m: int) -> int:
    """Microbatches at which a profiled family's bubble is measured: m itself up to 2p, else 3p (by then
    warm-up and cool-down are fixed and each further microbatch adds one steady-state period, so the
    absolute bubble no longer changes)."""
    return m if m <= 2 * pp else 3 * pp


@dataclass(frozen=True)
class Profile:
    """What a built schedule tells the estimator: its placement and, per rank, its local stages (in stage
    order) and the non-dominated state vectors (A_1..A_c, S_1..S_c): per local stage, microbatches whose
    activations are held (forward done, B or I not) and whose weight-gradient stash is held (I done, W not)."""

    placement: tuple[int, ...]
    local: tuple[tuple[int, ...], ...]
    states: tuple[tuple[tuple[int, ...], ...], ...]


def pareto(points: set[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    """The points no other point dominates (>= in every coordinate, > in one)."""
    pts = sorted(points, key=lambda q: -sum(q))
    front: list[tuple[int, ...]] = []
    for q in pts:
        if not any(all(x >= y for x, y in zip(f, q, strict=True)) for f in front):
            front.append(q)
    return tuple(sorted(front))


def profile_schedule(schedule: Schedule) -> Profile:
    """The :class:`Profile` of a built schedule: its placement, local stages and held-memory states."""
    placement = schedule.stage_to_rank
    local = tuple(
        tuple(s for s in range(schedule.num_stages) if placement[s] == r) for r in range(schedule.num_ranks)
    )
    states = []
    for r in range(schedule.num_ranks):
        index = {s: i for i, s in enumerate(local[r])}
        c = len(local[r])
        vec = [0] * (2 * c)
        seen: set[tuple[int, ...]] = set()
        for action in schedule.actions(r):
            # The one activation-memory rule (schedules.ir.HELD_DELTA), in microbatch counts.
            i = index[action.stage]
            d_act, d_stash = HELD_DELTA[action.op]
            vec[i] += d_act
            vec[c + i] += d_stash
            seen.add(tuple(vec))
        states.append(pareto(seen))
    return Profile(placement, local, tuple(states))
