"""The Zero Bubble automatic scheduler, ZB-1p and ZB-2p (Qi et al., "Zero Bubble Pipeline Parallelism",
ICLR 2024, arXiv:2401.10241, Section 3.1, "Heuristic algorithm"), for one stage per rank.

The paper's heuristic builds the order in rounds, one microbatch per round, from per-stage times of F, I (the
paper's B: backward for inputs) and W (backward for weights), the transfer time and a memory limit:

1. Warm-up (round 0): every stage runs the first forward; then, from the last stage up, stage j is given as
   many more forwards as fit in memory *and* finish before the first I (of microbatch 0) can arrive from stage
   j+1, that arrival being simulated stage by stage. A binary knob (``allow_short_bubble``) says whether one
   more forward may still start when it would end after that arrival (the paper: "a small bubble (less than
   T_F) before the first B ... we use a binary hyperparameter"). The counts are then made strictly
   decreasing with the stage index (stage j always holds at least one forward more than stage j+1; paper,
   point 3), and the round ends with microbatch 0's I passes from the last stage to the first.
2. Every later round gives each stage one F (unless the stage is out of forwards) and one I, so the pattern
   settles into 1F-1I-1W. Before a pass, pending W passes are inserted (a) while memory would overflow (W
   frees the weight stash), (b) while a whole W fits in the wait for the pass's input, and (c) for a wait
   shorter than T_W when leaving it idle would make this stage's cumulative bubble the largest of all
   stages (or always, with the knob ``fill_short_gaps``).
3. A stage j holding two or more forwards more than stage j+1 may skip this round's F (knob
   ``prioritize_input_grad``) when that F (with any W needed to make room for it) would not finish before the
   next I can come back from stage j+1, or when the wait it leaves does not make this stage's bubble the
   largest. A stage never runs an F in a round in which the next stage does not.
4. When F and I passes run out, the remaining W passes follow one by one. Stage 0, whose I passes nobody
   waits for, runs its pending W passes before each I once its forwards are done.

The paper grid-searches the binary knobs and keeps the best order (and then refines it with an ILP, not
implemented here). pipesim does the same search, and times every candidate with :func:`schedules.timing.
time_order` (the engine's own rules: send streams, transfers only between ranks), so the choice is made on the
figure the user will see: the synchronous step (``objective="sync"``) or the steady-state step of back-to-back
iterations (``objective="post-validation"``, see :mod:`schedules.iterations`). The candidate pool also holds
pipesim's earlier list-scheduling heuristic (:mod:`schedules.greedy`) and the handcrafted ZB-H1 and ZB-H2
orders where they fit the memory limit: both are feasible orders under the same limit that the paper's ILP
refinement would find or improve on, so with them ``zb-1p`` is never worse than ``zb-h1`` and ``zb-2p`` never
worse than ``zb-h2`` on pipesim's own clock.

Memory is charged per pass as the paper charges it (Table 1; its scheduler's ``mem_f``, ``mem_b``, ``mem_w``):
F adds one microbatch of the stage's activations, I frees all but ``stash_fraction`` of it (what W still needs:
the inputs of the linear layers, 32sbh of the sb(34h + 5as) bytes per layer, Korthikanti et al. 2022), W frees
the rest. The limits of the registered variants are the paper's: p microbatches (ZB-1p, 1F1B's peak) and 2p
(ZB-2p).

For many microbatches (m >= 64 p, times exact in floating point) every candidate and its step and peak are
extended from the builds at a few microbatches (:mod:`schedules.periodic`) and the choice is made on the
extended figures, which gives the direct build's order without running the search at m.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from schedules.greedy import GreedyTimes, greedy_passes
from schedules.ir import NUM_OPS, Op, Schedule, ScheduleError
from schedules.iterations import check_optimizer_mode, repeat_iterations
from schedules.periodic import exact_times, extend, memo_for, plausible
from schedules.timing import StageTimes, time_order
from schedules.zero_bubble import zb_h1, zb_h2

__all__ = ["AutoTimes", "auto_zero_bubble", "heuristic_order", "schedule_cost"]

_EPS = 1e-9


@dataclass(frozen=True)
class AutoTimes:
    """Seconds per microbatch of one stage's F, I (= B - W) and W, and per transfer; ``stash_fraction`` of a
    microbatch's activations stays stashed from I until W."""

    forward_s: float = 1.0
    input_s: float = 1.0
    weight_s: float = 1.0
    p2p_s: float = 0.0
    stash_fraction: float = 0.0

    def stage_times(self, num_stages: int) -> StageTimes:
        """The same times on every stage, for :func:`schedules.timing.time_order`."""
        return StageTimes.uniform(
            num_stages,
            self.forward_s,
            self.input_s,
            self.weight_s,
            self.p2p_s,
            stash_fraction=self.stash_fraction,
        )


class _Builder:
    """One run of the paper's heuristic: per-stage counters, end times and bubbles."""

    def __init__(self, p: int, m: int, times: AutoTimes, limit: float) -> None:
        self.p, self.m, self.t, self.limit = p, m, times, limit
        self.f = [0] * p
        self.i = [0] * p
        self.w = [0] * p
        self.end = [0.0] * p
        self.mem = [0.0] * p
        self.bubble = [0.0] * p
        self.f_end = [[0.0] * m for _ in range(p)]
        self.i_end = [[0.0] * m for _ in range(p)]
        self.orders: list[list[int]] = [[] for _ in range(p)]  # packed codes (schedules.ir.encode)
        keep = times.stash_fraction
        # Indexed by Op (F 0, B 1 unused, I 2, W 3).
        self.cost = [times.forward_s, 0.0, times.input_s, times.weight_s]
        self.charge = [1.0, 0.0, -(1.0 - keep), -keep]
        self.counters = [self.f, self.f, self.i, self.w]

    def ready(self, j: int, op: Op) -> float:
        """When the input of stage j's next ``op`` pass is available on its rank (0 if local)."""
        comm = self.t.p2p_s
        if op is Op.F and j > 0:
            return self.f_end[j - 1][self.f[j]] + comm
        if op is Op.I and j < self.p - 1:
            return self.i_end[j + 1][self.i[j]] + comm
        return 0.0

    def put(self, j: int, op: Op) -> None:
        """Append stage j's next ``op`` pass and advance its clock."""
        mb = self.counters[op][j]
        if self.mem[j] + self.charge[op] > self.limit + _EPS:  # pragma: no cover - callers make room first
            raise ScheduleError("zero-bubble heuristic: internal error, memory limit exceeded")
        start = max(self.end[j], self.ready(j, op))
        if self.f[j] > 0:
            self.bubble[j] += start - self.end[j]
        self.end[j] = start + self.cost[op]
        self.mem[j] += self.charge[op]
        if op is Op.F:
            self.f_end[j][mb] = self.end[j]
            self.f[j] += 1
        elif op is Op.I:
            self.i_end[j][mb] = self.end[j]
            self.i[j] += 1
        else:
            self.w[j] += 1
        self.orders[j].append((mb * self.p + j) * NUM_OPS + op)

    def make_room(self, j: int, op: Op) -> bool:
        """Insert W passes until ``op`` fits in memory; False if no W is left to free enough."""
        while self.mem[j] + self.charge[op] > self.limit + _EPS:
            if self.w[j] >= self.i[j]:
                return False
            self.put(j, Op.W)
        return True

    def fill_wait(self, j: int, op: Op, fill_short_gaps: bool) -> None:
        """Insert pending W passes into the wait before stage j's next ``op`` (rules 2b and 2c)."""
        arrival = self.ready(j, op)
        tw = self.cost[Op.W]
        while self.w[j] < self.i[j] and self.end[j] + tw <= arrival + _EPS:
            self.put(j, Op.W)
        if self.w[j] < self.i[j] and self.end[j] < arrival - _EPS:
            gap = arrival - self.end[j]
            would_be_largest = gap > max(self.bubble) - self.bubble[j] + _EPS
            if would_be_largest or fill_short_gaps:
                self.put(j, Op.W)


def heuristic_order(
    num_ranks: int,
    num_microbatches: int,
    memory_limit: float,
    times: AutoTimes,
    allow_short_bubble: bool,
    prioritize_input_grad: bool,
    fill_short_gaps: bool,
) -> Schedule | None:
    """One run of the paper's heuristic with the given knobs (see the module docstring), or None when the
    memory limit cannot be met along the way."""
    p, m = num_ranks, num_microbatches
    b = _Builder(p, m, times, memory_limit)
    tf, ti, comm = times.forward_s, times.input_s, times.p2p_s
    # 1. Warm-up: microbatch 0's forward everywhere, then as many forwards as fit before the first I arrives.
    for j in range(p):
        if not b.make_room(j, Op.F):
            return None
        b.put(j, Op.F)
    extra = [0] * p
    back = b.f_end[p - 1][0] + ti  # when the last stage's first I ends
    for j in range(p - 2, -1, -1):
        mem, clock = b.mem[j], b.end[j]
        while b.f[j] + extra[j] < m and mem + 1.0 <= memory_limit + _EPS:
            if allow_short_bubble:
                if clock + tf > back + comm + _EPS:
                    break
            elif clock >= back + comm - _EPS:
                break
            mem += 1.0
            clock += tf
            extra[j] += 1
        back = max(clock, back + comm) + ti
    for j in range(1, p):  # strictly decreasing with the stage index, where forwards remain
        while extra[j] > 0 and extra[j] >= extra[j - 1] and b.f[j] + extra[j] < m:
            extra[j] -= 1
    for j in range(p):
        for _ in range(extra[j]):
            b.put(j, Op.F)
    for j in range(p - 1, -1, -1):
        b.put(j, Op.I)
    # 2./3. One F and one I per stage per round.
    for rnd in range(1, m):
        want = [b.f[j] < m for j in range(p)]
        if prioritize_input_grad:
            for j in range(p - 1):
                if want[j] and b.f[j] >= b.f[j + 1] + 2 and _skip_forward(b, j):
                    want[j] = False
        for j in range(p - 2, -1, -1):  # never an F in a round where the next stage has none
            want[j] = want[j] and want[j + 1]
        for j in range(p):
            if not want[j]:
                continue
            if not b.make_room(j, Op.F):
                return None
            if j > 0:
                b.fill_wait(j, Op.F, fill_short_gaps)
            b.put(j, Op.F)
        for j in range(p - 1, -1, -1):
            if b.i[j] != rnd or b.f[j] <= rnd:  # pragma: no cover - the rounds keep these in step
                raise ScheduleError("zero-bubble heuristic: internal error, rounds out of step")
            if not b.make_room(j, Op.I):
                return None
            if j < p - 1:
                b.fill_wait(j, Op.I, fill_short_gaps)
            if j == 0 and b.f[0] == m:  # nobody waits for stage 0's I: drain its W passes first
                while b.w[0] < b.i[0]:
                    b.put(0, Op.W)
            b.put(j, Op.I)
    # 4. The remaining W passes.
    for j in range(p):
        while b.w[j] < m:
            b.put(j, Op.W)
    return Schedule("zb-auto", p, p, m, tuple(range(p)), tuple(array("q", order) for order in b.orders))


def _skip_forward(b: _Builder, j: int) -> bool:
    """Rule 3: whether stage j (two or more forwards ahead of j+1) should skip this round's F."""
    nxt = b.end[j + 1] + b.cost[Op.F] + b.cost[Op.I] + b.t.p2p_s  # when j+1's next I could be back
    if b.end[j] >= nxt:
        return True
    need, mem, w = 0.0, b.mem[j] + 1.0, b.w[j]
    while mem > b.limit + _EPS and w < b.i[j]:  # W passes needed to make room for the F
        need += b.cost[Op.W]
        mem -= b.t.stash_fraction
        w += 1
    if b.end[j] + b.cost[Op.F] + need <= nxt + _EPS:
        return False
    return nxt - b.end[j] <= max(b.bubble) - b.bubble[j] + _EPS


def schedule_cost(schedule: Schedule, times: StageTimes, objective: str) -> tuple[float, float]:
    """(step time, largest per-rank activation peak) of ``schedule`` on pipesim's clock: the synchronous
    step's pipeline time, or for ``post-validation`` the steady-state step T(2) - T(1) of two back-to-back
    iterations (:func:`schedules.iterations.steady_state_step` with N = 2)."""
    one = time_order(schedule, times)
    if check_optimizer_mode(objective) == "sync":
        return one.makespan, max(one.peak_memory)
    two = time_order(repeat_iterations(schedule, 2), times)
    return two.makespan - one.makespan, max(one.peak_memory)


def auto_zero_bubble(
    num_ranks: int,
    num_microbatches: int,
    memory_limit: float,
    times: AutoTimes | None = None,
    objective: str = "sync",
    name: str = "zb-auto",
    fast: bool = True,
) -> Schedule:
    """The best order, on ``objective``, among the paper's heuristic over its 2^3 knob settings, pipesim's
    list scheduler over its four, and ZB-H1 / ZB-H2 where they fit ``memory_limit`` (microbatches per rank).

    Ties go to the first candidate in that order. With ``fast`` (the default), a large m whose times are exact
    in floating point is built by extending the builds at a few microbatches (:mod:`schedules.periodic`),
    identical to the direct build (``fast=False``, the reference); where the extension does not fit, the
    direct build runs. Raises :class:`ScheduleError` for sizes below 1 or a limit below one microbatch (as
    :func:`schedules.greedy.greedy_zero_bubble` does).
    """
    t = times or AutoTimes()
    check_optimizer_mode(objective)
    p, m = num_ranks, num_microbatches
    if fast and m >= FAST_FROM * p and exact_times(_values(t), 4.0 * m * p * (sum(_values(t)) + 1.0)):

        def sample(size: int) -> list[_Entry] | None:  # None: some knob setting fails, build directly
            entries = _pool(p, size, memory_limit, t, objective, name, timed=True)
            return None if None in entries else entries  # type: ignore[return-value]

        memo = memo_for(("zb-auto", p, memory_limit, t, objective, name))
        models = extend(sample, m, 2 * p + 2, p * NUM_OPS, 3, periods=(1,), memo=memo)  # a microbatch a round
        if models is not None:
            figures = [x.values_at(m) for x in models]
            pick = models[_choose(figures, memory_limit, lambda i: figures[i][-2:])]  # type: ignore[arg-type]
            programs = pick.programs_at(m)
            if plausible(programs, m, p * NUM_OPS, 3 * m):
                return Schedule(name, p, p, m, tuple(range(p)), programs)
    entries = _pool(p, m, memory_limit, t, objective, name, timed=False)
    stage_times = t.stage_times(p)
    timed: dict[tuple[bytes, ...], tuple[float, float]] = {}  # equal orders (often) are timed once

    def cost(i: int) -> tuple[float, float]:
        entry = entries[i]
        assert entry is not None
        key = tuple(prog.tobytes() for prog in entry[0])
        if key not in timed:
            timed[key] = schedule_cost(
                Schedule(name, p, p, m, tuple(range(p)), entry[0]), stage_times, objective
            )
        return timed[key]

    chosen = entries[_choose([None if e is None else e[1] for e in entries], memory_limit, cost)]
    assert chosen is not None
    return Schedule(name, p, p, m, tuple(range(p)), chosen[0])


FAST_FROM = 64  # microbatches per rank from which auto_zero_bubble tries the extension


def _values(t: AutoTimes) -> tuple[float, ...]:
    return (t.forward_s, t.input_s, t.weight_s, t.p2p_s, t.stash_fraction)


_Entry = tuple[tuple[array, ...], tuple[float, ...]]
_GREEDY_PASSES = 4


def _pool(
    p: int, m: int, memory_limit: float, t: AutoTimes, objective: str, name: str, timed: bool
) -> list[_Entry | None]:
    """Every candidate of :func:`auto_zero_bubble` at m microbatches, with the figures it is chosen on: the list
    scheduler's four passes (its own step time, then with ``timed`` the step and peak on ``objective``), the
    paper's heuristic for its eight knob settings (None where the limit cannot be met), ZB-H1 and ZB-H2 (step
    and peak with ``timed``)."""
    greedy_times = GreedyTimes(t.forward_s, t.input_s, t.weight_s, t.p2p_s)
    # The list scheduler checks sizes, times and the limit and raises the user-facing errors.
    passes = greedy_passes(p, m, memory_limit, greedy_times, t.stash_fraction, name)
    if not 0.0 <= t.stash_fraction <= 1.0:  # pragma: no cover - rejected by greedy_zero_bubble above
        raise ScheduleError(f"{name}: stash fraction {t.stash_fraction} must be within [0, 1]")
    stage_times = t.stage_times(p)
    costs: dict[tuple[bytes, ...], tuple[float, float]] = {}

    def figures(programs: tuple[array, ...]) -> tuple[float, ...]:
        if not timed:
            return ()
        key = tuple(prog.tobytes() for prog in programs)
        if key not in costs:
            costs[key] = schedule_cost(
                Schedule(name, p, p, m, tuple(range(p)), programs), stage_times, objective
            )
        return costs[key]

    entries: list[_Entry | None] = []
    for makespan, programs in passes:
        entries.append((programs, (makespan, *figures(programs))))
    for knobs in itertools.product((False, True), repeat=3):
        order = heuristic_order(p, m, memory_limit, t, *knobs)
        entries.append(None if order is None else (order.programs, figures(order.programs)))
    for h in (zb_h1, zb_h2):
        programs = h(p, m).programs
        entries.append((programs, figures(programs)))
    return entries


def _choose(
    figures: list[tuple[float, ...] | None], memory_limit: float, cost: Callable[[int], tuple[float, ...]]
) -> int:
    """The index of the entry :func:`auto_zero_bubble` keeps, given each entry's ``figures`` (:func:`_pool`'s;
    the list scheduler's passes start with their own step time): the list scheduler's first shortest pass
    joins the heuristic's orders, ZB-H1 and ZB-H2, and the first of the shortest steps (``cost(index)`` ends
    with step, peak) within the limit wins."""
    makespans = [f[0] for f in figures[:_GREEDY_PASSES] if f is not None]
    greedy = 0
    for i in range(1, _GREEDY_PASSES):
        if makespans[i] < makespans[greedy] - 1e-12:
            greedy = i
    heuristics = [i for i in range(_GREEDY_PASSES, _GREEDY_PASSES + 8) if figures[i] is not None]
    best: tuple[float, int] | None = None
    for i in (*heuristics, greedy, len(figures) - 2, len(figures) - 1):
        step, peak = cost(i)[-2:]
        if peak > memory_limit + _EPS:
            continue
        if best is None or step < best[0] - _EPS:
            best = (step, i)
    assert best is not None  # the list scheduler's order always fits
    return best[1]
