"""The greedy zero-bubble scheduler under a memory limit (ZB-1p / ZB-2p style; Qi et al., "Zero Bubble
Pipeline Parallelism", ICLR 2024, arXiv:2401.10241, Section 3.1 "automatic scheduling", heuristic part).

Given per-microbatch times of F, I (backward for inputs) and W (backward for weights) per stage, the transfer
time between stages and a cap on the activations a rank may hold, it builds a one-stage-per-rank order by
list scheduling in simulated time. Whenever a rank becomes free it takes, in this order of preference:

1. the I pass of its oldest microbatch whose output gradient has arrived (I is on the critical path);
2. the next forward, if its input has arrived and one more microbatch of activations fits under the cap;
3. a W pass, if one is pending and either the rank would otherwise idle at least T_W before (1) or (2)
   could start, or the cap blocks the next forward (W frees the memory it keeps; paper: "we also insert W
   to recycle some memory when the memory limit is hit");
4. otherwise it waits. When forwards and I passes run out it drains its W passes.

Memory is counted in microbatches of one stage's activations: a forward adds 1, I frees all but
``stash_fraction`` (what W still needs; ZB paper Table 1: W needs 32*s*b*h of the s*b*(34h + 5as) bytes per
layer that I needs), W frees the rest. The cap holds at every point of the order: the simulated timeline's
peak, walked the same way, never exceeds it. With a cap of p microbatches (ZB-1p, 1F1B's memory) the result
settles into the 1F-1I-1W pattern of ZB-H1; with 2p (ZB-2p) into ZB-H2's. The paper refines this heuristic
with an ILP. This list scheduler is one of the candidates of :func:`schedules.zb_auto.auto_zero_bubble`, which
implements the paper's own round-based heuristic and builds the registered ``zb-1p`` / ``zb-2p``. Transfers are timed as pipesim's engine times them: a rank
sends one output at a time, each taking ``p2p_s``.

Any cap of at least one microbatch is feasible (one forward's activations must be held until its backward
frees them); a smaller cap is an error that names that minimum.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import deque
from dataclasses import dataclass

from schedules.compiled import run_greedy, worth_compiling
from schedules.ir import NUM_OPS, Op, Schedule, ScheduleError
from schedules.knob_runs import KnobRuns

__all__ = [
    "GREEDY_FAMILIES",
    "GreedyTimes",
    "MIN_MEMORY_LIMIT",
    "default_memory_limit",
    "greedy_passes",
    "greedy_zero_bubble",
]

MIN_MEMORY_LIMIT = 1.0  # microbatches: one forward's activations, held until its backward


@dataclass(frozen=True)
class GreedyTimes:
    """Seconds per microbatch per stage of F, I (= B - W) and W, and per transfer between stages.

    The defaults (all passes equal, free transfers) are the ZB paper's handcrafted-schedule assumption
    T_F = T_B = T_W (Section 3)."""

    forward_s: float = 1.0
    input_s: float = 1.0
    weight_s: float = 1.0
    p2p_s: float = 0.0

    def check(self, name: str) -> None:
        """Raise :class:`ScheduleError` unless F and I are > 0 and W, P2P >= 0."""
        for label, value in (("forward", self.forward_s), ("input-gradient (I = B - W)", self.input_s)):
            if not value > 0:
                raise ScheduleError(f"{name}: {label} time {value} must be > 0 for the greedy scheduler")
        for label, value in (("weight-gradient (W)", self.weight_s), ("p2p", self.p2p_s)):
            if not value >= 0:
                raise ScheduleError(f"{name}: {label} time {value} must be >= 0")


def default_memory_limit(name: str, num_ranks: int) -> float:
    """The cap of the registered variants: ZB-1p p microbatches (1F1B's peak), ZB-2p 2p (ZB paper 3.1)."""
    return float(num_ranks * (2 if name == "zb-2p" else 1))


class _Rank:
    """One rank's state while the order is built."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.free_s = 0.0  # when the compute stream is free
        self.send_free_s = 0.0  # when the send stream is free
        self.next_f = 0
        self.next_i = 0
        self.pending_w: deque[int] = deque()
        self.memory = 0.0
        self.actions: list[int] = []  # packed codes (schedules.ir.encode; one stage per rank)


def greedy_zero_bubble(
    num_ranks: int,
    num_microbatches: int,
    memory_limit: float,
    times: GreedyTimes | None = None,
    stash_fraction: float = 0.0,
    name: str = "zb-greedy",
) -> Schedule:
    """Build a one-stage-per-rank zero-bubble order whose activations never exceed ``memory_limit``
    microbatches per rank (see the module docstring for the heuristic and its source).

    Like the paper, which grid-searches the heuristic's binary hyperparameters, it builds the order with each
    setting of two knobs (whether a pending W may start in a gap shorter than T_W; whether a ready forward goes
    before a ready I) and keeps the one whose simulated step is shortest (first on ties).

    Raises :class:`ScheduleError` for sizes below 1, times out of range, a ``stash_fraction`` outside [0, 1],
    or a cap below :data:`MIN_MEMORY_LIMIT`.
    """
    best: tuple[float, tuple[array, ...]] | None = None
    for makespan, programs in greedy_passes(
        num_ranks, num_microbatches, memory_limit, times, stash_fraction, name
    ):
        if best is None or makespan < best[0] - 1e-12:
            best = (makespan, programs)
    assert best is not None
    return Schedule(name, num_ranks, num_ranks, num_microbatches, tuple(range(num_ranks)), best[1])


def greedy_passes(
    num_ranks: int,
    num_microbatches: int,
    memory_limit: float,
    times: GreedyTimes | None = None,
    stash_fraction: float = 0.0,
    name: str = "zb-greedy",
    knobs: tuple[bool, bool] | None = None,
) -> list[tuple[float, tuple[array, ...]]]:
    """The list scheduler's (simulated step time, per-rank programs) for each of its four knob settings
    (fill_short_gaps, forward_first), in the order :func:`greedy_zero_bubble` compares them (it keeps the first
    shortest); with ``knobs``, for that setting only.

    A setting that differs from one already built only in knobs that never decided a step of it (a knob decides
    where its value is read and the rest of the state leaves the choice open) takes every step the same way:
    that run is reused instead of built again."""
    settings = [(a, b) for a in (False, True) for b in (False, True)] if knobs is None else [knobs]
    runs: KnobRuns[tuple[float, tuple[array, ...]]] = KnobRuns()

    def build(fill_short_gaps: bool, forward_first: bool) -> tuple[tuple[float, tuple[array, ...]], int]:
        makespan, programs, decisive = _greedy_pass(
            num_ranks,
            num_microbatches,
            memory_limit,
            times or GreedyTimes(),
            stash_fraction,
            name,
            fill_short_gaps,
            forward_first,
        )
        return (makespan, programs), decisive

    return [runs.get(_FILL_SHORT_GAPS * a | _FORWARD_FIRST * b, build, a, b) for a, b in settings]


_FILL_SHORT_GAPS, _FORWARD_FIRST = 1, 2  # the knobs' bits in _greedy_pass's decisive result


def _greedy_pass(
    num_ranks: int,
    num_microbatches: int,
    memory_limit: float,
    times: GreedyTimes,
    stash_fraction: float,
    name: str,
    fill_short_gaps: bool,
    forward_first: bool,
) -> tuple[float, tuple[array, ...], int]:
    """One run of the heuristic with the given knobs: (simulated step time, per-rank programs, the knobs that
    decided a step as bits)."""
    times.check(name)
    p, m = num_ranks, num_microbatches
    if p < 1:
        raise ScheduleError(f"{name}: pp={p} must be >= 1")
    if m < 1:
        raise ScheduleError(f"{name}: microbatches={m} must be >= 1")
    if not 0.0 <= stash_fraction <= 1.0:
        raise ScheduleError(f"{name}: stash fraction {stash_fraction} must be within [0, 1]")
    if not memory_limit >= MIN_MEMORY_LIMIT:
        raise ScheduleError(
            f"{name}: memory limit {memory_limit:g} microbatches is below the minimum any order needs, "
            f"{MIN_MEMORY_LIMIT:g} (a forward's activations are held until its backward)"
        )
    if worth_compiling(3 * p * m):
        return _greedy_compiled(
            p, m, memory_limit, times, stash_fraction, name, fill_short_gaps, forward_first
        )
    eps = 1e-9
    inf = math.inf
    tf, ti, tw, tp = times.forward_s, times.input_s, times.weight_s, times.p2p_s
    ranks = [_Rank(r) for r in range(p)]
    # When each output is available to its consumer on the neighbouring rank (inf: not yet scheduled).
    act_at = [[inf] * m for _ in range(p)]  # F(r, mb) output at rank r+1
    grad_at = [[inf] * m for _ in range(p)]  # I(r, mb) output at rank r-1
    f_end = [[inf] * m for _ in range(p)]

    def emit(st: _Rank, op: Op, mb: int, duration: float, sends: bool) -> float:
        start = st.free_s
        end = start + duration
        st.free_s = end
        st.actions.append((mb * p + st.rank) * NUM_OPS + op)
        if not sends:
            return end
        leave = max(end, st.send_free_s)
        st.send_free_s = leave + tp
        return leave + tp

    remaining = 3 * p * m
    # The rank that is free earliest decides next (ties: lowest rank), so every input it could see has already
    # been scheduled or will arrive later than any lower bound computed below. Only the chosen rank's time
    # changes in a step, so a heap of (free time, rank) finds it in O(log p).
    heap = [(x.free_s, x.rank) for x in ranks]
    heapq.heapify(heap)
    current: _Rank | None = None
    decisive = 0
    while remaining:
        if current is not None and len(current.actions) < 3 * m:
            heapq.heappush(heap, (current.free_s, current.rank))
        st = current = ranks[heapq.heappop(heap)[1]]
        r, now = st.rank, st.free_s
        # Earliest start of the next I and the next F (inf if unknown or impossible).
        i_ready = inf
        i_bound = inf  # lower bound when the producer has not scheduled it yet
        if st.next_i < st.next_f:
            mb = st.next_i
            if r == p - 1:
                i_ready = f_end[r][mb]
            elif grad_at[r + 1][mb] < inf:
                i_ready = grad_at[r + 1][mb]
            else:
                i_bound = max(ranks[r + 1].free_s, now) + ti + tp
        f_ready = inf
        f_bound = inf
        fits = st.memory + 1.0 <= memory_limit + eps
        if st.next_f < m and fits:
            mb = st.next_f
            if r == 0:
                f_ready = 0.0
            elif act_at[r - 1][mb] < inf:
                f_ready = act_at[r - 1][mb]
            else:
                f_bound = max(ranks[r - 1].free_s, now) + tf + tp
        run_i = i_ready <= now + eps
        run_f = f_ready <= now + eps
        if run_i and run_f:
            decisive |= _FORWARD_FIRST
        if run_i and not (forward_first and run_f):
            mb = st.next_i
            st.next_i += 1
            end = emit(st, Op.I, mb, ti, sends=r > 0)
            if r > 0:
                grad_at[r][mb] = end
            st.memory -= 1.0 - stash_fraction
            st.pending_w.append(mb)
            remaining -= 1
            continue
        if run_f:
            mb = st.next_f
            st.next_f += 1
            end = emit(st, Op.F, mb, tf, sends=r < p - 1)
            f_end[r][mb] = st.free_s
            if r < p - 1:
                act_at[r][mb] = end
            st.memory += 1.0
            remaining -= 1
            continue
        next_event = min(i_ready, i_bound, f_ready, f_bound)
        drained = st.next_i == m  # no forwards or I passes left: drain the W passes
        memory_blocked = st.next_f < m and not fits
        if st.pending_w and not (drained or memory_blocked or next_event - now >= tw - eps):
            decisive |= _FILL_SHORT_GAPS
        if st.pending_w and (drained or memory_blocked or fill_short_gaps or next_event - now >= tw - eps):
            mb = st.pending_w.popleft()
            emit(st, Op.W, mb, tw, sends=False)
            st.memory -= stash_fraction
            remaining -= 1
            continue
        if next_event == inf:  # pragma: no cover - a blocked F always has an I or a W ahead of it
            raise ScheduleError(f"{name}: internal error, rank {r} cannot make progress")
        st.free_s = max(next_event, now + eps)  # idle until something can start
    makespan = max(max(st.free_s, st.send_free_s) for st in ranks)
    return makespan, tuple(array("q", st.actions) for st in ranks), decisive


def _greedy_compiled(
    p: int,
    m: int,
    memory_limit: float,
    times: GreedyTimes,
    stash_fraction: float,
    name: str,
    fill_short_gaps: bool,
    forward_first: bool,
) -> tuple[float, tuple[array, ...], int]:
    """:func:`_greedy_pass` by its compiled twin (:mod:`schedules.compiled.greedy`), for sizes already checked."""
    makespan, decisive, programs = run_greedy(
        p, m, memory_limit, times.forward_s, times.input_s, times.weight_s, times.p2p_s, stash_fraction,
        fill_short_gaps, forward_first,
    )  # fmt: skip
    if makespan < 0:  # pragma: no cover - as in the reference, a blocked F always has an I or a W ahead
        raise ScheduleError(f"{name}: internal error, a rank cannot make progress")
    return makespan, programs, decisive


GREEDY_FAMILIES = ("zb-1p", "zb-2p")
