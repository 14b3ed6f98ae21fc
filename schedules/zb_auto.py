"""The Zero Bubble automatic scheduler, ZB-1p and ZB-2p (Qi et al., "Zero Bubble Pipeline Parallelism",
ICLR 2024, arXiv:2401.10241, Section 3.1, "Heuristic algorithm"), for one stage per rank.

The paper's heuristic (:mod:`schedules.zb_heuristic`) builds the order in rounds, one microbatch per round,
from per-stage times of F, I (backward for inputs) and W (backward for weights), the transfer time and a
memory limit, with three binary knobs.

The paper grid-searches the binary knobs and keeps the best order (and then refines it with an ILP, not
implemented here). pipesim does the same search, and times every candidate with :func:`schedules.timing.
time_order` (the engine's own rules: send streams, transfers only between ranks), so the choice is made on the
figure the user will see: the synchronous step (``objective="sync"``) or the steady-state step of back-to-back
iterations (``objective="post-validation"``, see :mod:`schedules.iterations`). The candidate pool also holds
pipesim's earlier list-scheduling heuristic (:mod:`schedules.greedy`) and the handcrafted ZB-H1 and ZB-H2
orders where they fit the memory limit: both are feasible orders under the same limit that the paper's ILP
refinement would find or improve on, so with them ``zb-1p`` is never worse than ``zb-h1`` and ``zb-2p`` never
worse than ``zb-h2`` on pipesim's own clock.

For many microbatches (m >= 64 p, times exact in floating point) every candidate and its step and peak are
extended from the builds at a few microbatches (:mod:`schedules.periodic`) and the choice is made on the
extended figures, which gives the direct build's order without running the search at m.
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Callable

from schedules.greedy import GreedyTimes, greedy_passes
from schedules.ir import NUM_OPS, Schedule, ScheduleError
from schedules.iterations import check_optimizer_mode, repeat_iterations
from schedules.knob_runs import KnobRuns
from schedules.periodic import exact_times, extend, memo_for
from schedules.timing import StageTimes, time_order
from schedules.zb_heuristic import AutoTimes, heuristic_order, heuristic_run
from schedules.zero_bubble import zb_h1, zb_h2

__all__ = ["AutoTimes", "auto_zero_bubble", "heuristic_order", "schedule_cost"]

_EPS = 1e-9


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
            if pick.plausible_at(m, p * NUM_OPS, 3 * m):
                return Schedule(name, p, p, m, tuple(range(p)), pick.programs_at(m))
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
    runs: KnobRuns[Schedule | None] = KnobRuns()
    for knobs in itertools.product((False, True), repeat=3):
        bits = sum(bit for bit, on in zip((1, 2, 4), knobs, strict=True) if on)
        order = runs.get(bits, heuristic_run, p, m, memory_limit, t, *knobs)
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
