"""What a built schedule tells the planner's estimator without simulating it: its placement and each rank's
held-memory states along its program (:class:`Profile`), and at which microbatch count to profile."""

from __future__ import annotations

import itertools
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


# State rows up to which a memory walk sums each row with numpy.add.accumulate rather than column by column:
# measured on the GPT-3 plan's 6,336 walks, 1.5-6 us against 3-32 us for 2-16 rows of up to 96 columns, and no
# faster from about 64 rows (where the column loop's per-column cost is spread over many rows).
ACCUMULATE_UP_TO_ROWS = 64


@dataclass(frozen=True, eq=False)
class Profile:
    """What a built schedule tells the estimator: its placement and, per rank, its local stages (in stage
    order) and the non-dominated state vectors (A_1..A_c, S_1..S_c): per local stage, microbatches whose
    activations are held (forward done, B or I not) and whose weight-gradient stash is held (I done, W not).

    The vectors are kept as arrays (``counts[r]`` vectors of rank r, of 2 x its local stages each, every rank's
    one after another in ``vectors``), the form the memory walk reads and the facts cache stores (read back
    far faster than as tuples); :attr:`states` gives them as tuples."""

    placement: tuple[int, ...]
    local: tuple[tuple[int, ...], ...]
    counts: tuple[int, ...]
    vectors: np.ndarray

    @classmethod
    def of(
        cls,
        placement: tuple[int, ...],
        local: tuple[tuple[int, ...], ...],
        states: tuple[tuple[tuple[int, ...], ...], ...],
    ) -> Profile:
        """The profile with ``states[r]`` rank r's state vectors."""
        flat = itertools.chain.from_iterable(itertools.chain.from_iterable(states))
        vectors = np.fromiter(flat, dtype=np.int64)
        if vectors.size and vectors.min() >= -(2**15) and vectors.max() < 2**15:
            vectors = vectors.astype(np.int16)  # microbatch counts: small, and the cache file a quarter
        vectors.setflags(write=False)
        return cls(placement, local, tuple(len(vecs) for vecs in states), vectors)

    @cached_property
    def states(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """Per rank, its non-dominated state vectors as tuples, sorted."""
        flat = self.vectors.tolist()
        out = []
        at = 0
        for stages, n in zip(self.local, self.counts, strict=True):
            width = 2 * len(stages)
            out.append(tuple(tuple(flat[at + i * width : at + (i + 1) * width]) for i in range(n)))
            at += n * width
        return tuple(out)

    @cached_property
    def _stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Every rank's states as rows of one array, each row's rank and each rank's first row; None unless
        every rank holds the same number of local stages and at least one state."""
        widths = {len(stages) for stages in self.local}
        if len(widths) != 1 or 0 in self.counts:
            return None
        counts = list(self.counts)
        rows = self.vectors.astype(np.float64).reshape(sum(counts), 2 * widths.pop())
        rank = np.repeat(np.arange(len(counts)), counts)
        starts = np.cumsum([0] + counts[:-1])
        return rows, rank, starts

    def held_peaks(self, weights: np.ndarray) -> np.ndarray:
        """Per rank r, the most bytes its states hold: max over its state vectors of sum_j vec_j weights[r, j]
        (``weights``: one row per rank, activation bytes then weight-stash bytes of its local stages), each
        sum taken left to right as the scalar walk does, so the figures are identical to it."""
        stacked = self._stacked
        if stacked is None or weights.shape != (len(self.local), stacked[0].shape[1]):
            return np.array(
                [
                    max((sum(x * w for x, w in zip(vec, ws, strict=True)) for vec in vecs), default=0.0)
                    for vecs, ws in zip(self.states, weights.tolist(), strict=True)
                ]
            )
        rows, rank, starts = stacked
        # One state per rank: the rows align with the ranks, and there is no maximum to take.
        one = rows.shape[0] == weights.shape[0]
        prod = rows * (weights if one else weights[rank])
        if rows.shape[0] <= ACCUMULATE_UP_TO_ROWS:
            held = np.add.accumulate(prod, axis=1)[:, -1]  # each row's running sum, left to right
        else:  # the columns added left to right one at a time (the same sums, faster for many rows)
            cols = prod.T
            held = cols[0] + cols[1] if len(cols) > 1 else cols[0].copy()
            for j in range(2, len(cols)):
                held += cols[j]
        return held if one else np.maximum.reduceat(held, starts)


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
    return Profile.of(placement, local, tuple(states))
