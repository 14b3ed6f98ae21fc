"""What a built schedule tells the planner's estimator without simulating it: its placement and each rank's
held-memory states along its program (:class:`Profile`), and at which microbatch count to profile."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from schedules import Schedule
from schedules.ir import HELD_DELTA, NUM_OPS

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

    @cached_property
    def _stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Every rank's states as rows of one array, each row's rank and each rank's first row; None unless
        every rank holds the same number of local stages and at least one state."""
        widths = {len(vecs[0]) if vecs else -1 for vecs in self.states}
        if len(widths) != 1 or -1 in widths:
            return None
        rows = np.array([vec for vecs in self.states for vec in vecs], dtype=np.float64)
        rank = np.repeat(np.arange(len(self.states)), [len(vecs) for vecs in self.states])
        starts = np.cumsum([0] + [len(vecs) for vecs in self.states[:-1]])
        return rows, rank, starts

    def held_peaks(self, weights: np.ndarray) -> np.ndarray:
        """Per rank r, the most bytes its states hold: max over its state vectors of sum_j vec_j weights[r, j]
        (``weights``: one row per rank, activation bytes then weight-stash bytes of its local stages), each
        sum taken left to right as the scalar walk does, so the figures are identical to it."""
        stacked = self._stacked
        if stacked is None or weights.shape != (len(self.states), stacked[0].shape[1]):
            return np.array(
                [
                    max((sum(x * w for x, w in zip(vec, ws, strict=True)) for vec in vecs), default=0.0)
                    for vecs, ws in zip(self.states, weights.tolist(), strict=True)
                ]
            )
        rows, rank, starts = stacked
        prod = rows * weights[rank]
        held = prod[:, 0].copy()
        for j in range(1, prod.shape[1]):  # left to right, column by column (faster than add.accumulate here)
            held += prod[:, j]
        return np.maximum.reduceat(held, starts)


def pareto(points: set[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    """The points no other point dominates (>= in every coordinate, > in one), sorted.

    Distinct points only dominate points of smaller coordinate sum, so the point of largest sum left is on the
    front; it is kept and every point it dominates dropped, until none is left (one vectorised pass per point
    of the front)."""
    if len(points) <= 1:
        return tuple(points)
    pts = np.array(sorted(points, key=lambda q: -sum(q)), dtype=np.int64)
    front: list[tuple[int, ...]] = []
    while len(pts):
        top = pts[0]
        front.append(tuple(int(x) for x in top))
        pts = pts[1:][~np.all(pts[1:] <= top, axis=1)]
    return tuple(sorted(front))


def profile_schedule(schedule: Schedule) -> Profile:
    """The :class:`Profile` of a built schedule: its placement, local stages and held-memory states.

    Only the states after which the rank's next action does not add to every count (an F only adds) can be
    non-dominated, so the walk keeps those and the last: the front is the same as of every state."""
    placement = schedule.stage_to_rank
    n_stages = schedule.num_stages
    local = tuple(tuple(s for s in range(n_stages) if placement[s] == r) for r in range(schedule.num_ranks))
    only_adds = [all(d >= 0 for d in delta) for delta in HELD_DELTA]
    states = []
    for r in range(schedule.num_ranks):
        index = {s: i for i, s in enumerate(local[r])}
        c = len(local[r])
        vec = [0] * (2 * c)
        seen: set[tuple[int, ...]] = set()
        prog = schedule.programs[r]
        for k, code in enumerate(prog):
            # The one activation-memory rule (schedules.ir.HELD_DELTA), in microbatch counts; codes are
            # (microbatch x stages + stage) x NUM_OPS + op (schedules.ir.encode).
            rest, op = divmod(code, NUM_OPS)
            i = index[rest % n_stages]
            d_act, d_stash = HELD_DELTA[op]
            vec[i] += d_act
            vec[c + i] += d_stash
            if k + 1 == len(prog) or not only_adds[prog[k + 1] % NUM_OPS]:
                seen.add(tuple(vec))
        states.append(pareto(seen))
    return Profile(placement, local, tuple(states))
