"""V-shape schedules under the memory bounds of "Pipeline Parallelism with Controllable Memory" (Qi, Wan, Amar,
Lin, NeurIPS 2024, arXiv:2405.15362): ``zb-v-half`` and ``zb-v-min``.

The paper places two chunks per rank in a V (rank r holds stages r and 2p-1-r, as ZB-V does) and shows that
a schedule's peak activation memory is set by the lifespan of its repeating building block; its V-Half and
V-Min blocks bring the peak down to ``(p + 2) // 2`` and ``(p + 4) // 3`` microbatches of a whole stage (1F1B:
p), at a bubble of about p/(2m) and 2p/(3m) of the step when T_F = T_B = T_W (its Table 1; sail-sg's
``pipeline-parallelism-with-controllable-memory`` summary). The paper derives the blocks by hand and then
reorders the warm-up and cool-down greedily.

pipesim builds the orders with a list scheduler in simulated time under exactly those peaks (it does not
reproduce the paper's block offsets): whenever a rank becomes free it runs, in this order of preference, the
I (backward for inputs) of its oldest microbatch whose gradient has arrived; the forward of chunk 1, then of
chunk 0, whose input has arrived and which fits; a pending W (backward for weights) when memory blocks a
forward, when the wait for the next input is at least T_W long, or (knob) always when idle; else it waits.
Two more knobs: whether a ready forward goes before a ready I, and whether chunk 0's forward goes first.
A new microbatch enters a rank's chunk 0 only if the room for its chunk-1 forward stays reserved, so the cap
can never deadlock the V. Memory is charged per pass as in :mod:`schedules.zb_auto` (F +1 chunk, I frees all
but the weight stash, W frees the stash). As in :func:`schedules.zb_auto.auto_zero_bubble`, every knob
setting is timed with :func:`schedules.timing.time_order` and the best order on the chosen objective is kept.
For many microbatches the orders are extended from builds at a few (:mod:`schedules.periodic`). Measured with
the registry's times: they repeat every 2 (zb-v-min) or 4 (zb-v-half) microbatches at p 4, 5 or 36 at p 8, 4
for zb-v-min at p 16; zb-v-half at p 16 and both at p 64 do not settle within the sampling budget at a million
actions, and are built directly. Large builds run the compiled twins of the list scheduler and of the timer
(:mod:`schedules.compiled`, numba), which give the same orders: 6-8 M actions/s for a direct build at a million
actions, where the pure-Python loops ran 0.04-0.07 M.
"""

from __future__ import annotations

import heapq
import itertools
import math
from array import array
from collections import deque
from concurrent.futures import Future
from typing import TypeAlias

from schedules.compiled import run_v_list, timer_thread, worth_compiling
from schedules.ir import NUM_OPS, Op, Schedule, ScheduleError, v_shape_placement
from schedules.knob_runs import KnobRuns
from schedules.periodic import exact_times, extend, memo_for
from schedules.timing import StageTimes
from schedules.zb_auto import AutoTimes, schedule_cost

__all__ = ["V_MEMORY_FAMILIES", "v_memory_limit", "v_memory_schedule"]

V_MEMORY_FAMILIES = ("zb-v-half", "zb-v-min")
_EPS = 1e-9


def v_memory_limit(name: str, num_ranks: int) -> float:
    """The paper's peak, in microbatches of a whole stage: V-Half (p + 2) // 2, V-Min (p + 4) // 3."""
    if name == "zb-v-half":
        return float((num_ranks + 2) // 2)
    if name == "zb-v-min":
        return float((num_ranks + 4) // 3)
    raise ScheduleError(
        f"{name!r} is not a controllable-memory V schedule; valid: {', '.join(V_MEMORY_FAMILIES)}"
    )


def _list_schedule(
    p: int, m: int, cap_chunks: float, t: AutoTimes, fill_idle: bool, chunk1_first: bool, forward_first: bool
) -> Schedule | None:
    """One run of the list scheduler (module docstring); None if it cannot progress under the cap."""
    return _list_order(p, m, cap_chunks, t, fill_idle, chunk1_first, forward_first)[0]


FILL_IDLE, CHUNK1_FIRST, FORWARD_FIRST = 1, 2, 4  # the knobs' bits in _list_order's third result
_F, _I, _W = int(Op.F), int(Op.I), int(Op.W)


def _list_order(
    p: int, m: int, cap_chunks: float, t: AutoTimes, fill_idle: bool, chunk1_first: bool, forward_first: bool
) -> tuple[Schedule | None, bool, int]:
    """:func:`_list_order_python`'s result; large builds (:func:`schedules.compiled.worth_compiling` of the
    actions times the ranks) run its compiled twin (:func:`schedules.compiled.v_list._v_list`), which gives the same order."""
    # The reference spends O(p) per pass (each stall scans the other ranks' clocks): weigh its actions by p.
    run = _list_order_compiled if worth_compiling(6 * p * m * p) else _list_order_python
    return run(p, m, cap_chunks, t, fill_idle, chunk1_first, forward_first)


def _list_order_python(
    p: int, m: int, cap_chunks: float, t: AutoTimes, fill_idle: bool, chunk1_first: bool, forward_first: bool
) -> tuple[Schedule | None, bool, int]:
    """:func:`_list_schedule`'s order, whether a pass ever started after a stall (a rank that found nothing
    to do and nobody busy steps its clock by the 1e-9 tolerance; a pass started then is no longer timed by
    sums of the pass times), and the knobs that ever decided a step (bits :data:`FILL_IDLE`,
    :data:`CHUNK1_FIRST`, :data:`FORWARD_FIRST`: a knob decides where its value is read and the other inputs
    leave the choice open). A run with the others flipped takes every step the same way, so it is this run.
    The reference, in pure Python."""
    s_count = 2 * p
    last = s_count - 1
    place = v_shape_placement(p)
    keep, eps, cap = t.stash_fraction, _EPS, cap_chunks
    dur = [t.forward_s, 0.0, t.input_s, t.weight_s]  # per op code (F 0, I 2, W 3)
    tw = t.weight_s
    # Transfer time of the input of stage s's F (from s - 1) and I (from s + 1): p2p across ranks, else 0.
    f_comm = [t.p2p_s if s > 0 and place[s - 1] != place[s] else 0.0 for s in range(s_count)]
    i_comm = [t.p2p_s if s < last and place[s + 1] != place[s] else 0.0 for s in range(s_count)]
    inf = math.inf
    f_end = [[inf] * m for _ in range(s_count)]
    i_end = [[inf] * m for _ in range(s_count)]
    free = [0.0] * p
    mem = [0.0] * p
    next_f = [[0, 0] for _ in range(p)]
    next_i = [[0, 0] for _ in range(p)]
    pending: list[deque[tuple[int, int]]] = [deque() for _ in range(p)]
    progs: list[list[int]] = [[] for _ in range(p)]  # packed codes (schedules.ir.encode)
    remaining = 3 * s_count * m
    heap = [(0.0, r) for r in range(p)]
    stalls = 0
    stalled = False
    bumped = [False] * p  # the rank's clock was last stepped by a stall
    decisive = 0
    heappop, heappush = heapq.heappop, heapq.heappush

    def busy_until(r: int, after: float) -> list[float]:
        """When the other ranks that are busy past ``after`` become free."""
        return [free[q] for q in range(p) if q != r and free[q] > after]

    while remaining:
        now, r = heappop(heap)
        s0, s1 = r, last - r
        nf, ni = next_f[r], next_i[r]
        # Ready times of the next I and F of each chunk (inf: input not produced yet or no such pass).
        i0 = i1 = f0 = f1 = inf
        mb = ni[0]
        if mb < nf[0]:
            i0 = f_end[s0][mb] if s0 == last else max(f_end[s0][mb], i_end[s0 + 1][mb] + i_comm[s0])
        mb = ni[1]
        if mb < nf[1]:
            i1 = f_end[s1][mb] if s1 == last else max(f_end[s1][mb], i_end[s1 + 1][mb] + i_comm[s1])
        mb = nf[0]
        if mb < m:
            f0 = 0.0 if s0 == 0 else f_end[s0 - 1][mb] + f_comm[s0]
        mb = nf[1]
        if mb < m:
            f1 = 0.0 if s1 == 0 else f_end[s1 - 1][mb] + f_comm[s1]
        reserved = nf[0] - nf[1]  # microbatches whose chunk-1 forward is still to come here
        fits0 = mem[r] + 2.0 + reserved <= cap + eps
        fits1 = mem[r] + 1.0 <= cap + eps
        lim = now + eps
        ready_i = i0 <= lim or i1 <= lim
        rf0 = f0 <= lim and fits0
        rf1 = f1 <= lim and fits1
        if rf0 and rf1:
            decisive |= CHUNK1_FIRST
        if ready_i and (rf0 or rf1):
            decisive |= FORWARD_FIRST
        c, op = -1, -1
        if ready_i and not (forward_first and (rf0 or rf1)):
            # the oldest microbatch; on a tie chunk 1 (the later stage: s1 > s0)
            both = i0 <= lim and i1 <= lim
            c, op = (0 if ni[0] < ni[1] else 1) if both else (0 if i0 <= lim else 1), _I
        elif rf0 or rf1:
            c, op = (1 if rf1 else 0) if chunk1_first else (0 if rf0 else 1), _F
        elif pending[r]:
            upcoming = min(i0, i1, f0 if fits0 else inf, f1 if fits1 else inf)
            others = busy_until(r, lim) if upcoming == inf else []
            bound = upcoming if upcoming < inf else (min(others) if others else now)
            blocked = (f0 <= lim and not fits0) or (f1 <= lim and not fits1)
            if blocked or bound - now >= tw - eps or upcoming == inf and not others:
                op = _W
            else:
                decisive |= FILL_IDLE
                if fill_idle:
                    op = _W
        if op < 0:
            later = [x for x in (i0, i1, f0, f1) if lim < x < inf] + busy_until(r, lim)
            if not later:
                stalls += 1
                if stalls > 4 * p:
                    return None, True, decisive  # nobody can move: the cap is too small for these knobs
                free[r] = now + eps
                bumped[r] = True
            else:
                free[r] = min(later)
                bumped[r] = False
            heappush(heap, (free[r], r))
            continue
        stalls = 0
        stalled = stalled or bumped[r]
        bumped[r] = False
        end = now + dur[op]
        if op == _W:
            s, mb = pending[r].popleft()
            mem[r] -= keep
        elif op == _F:
            s = s1 if c else s0
            mb = nf[c]
            nf[c] = mb + 1
            mem[r] += 1.0
            f_end[s][mb] = end
        else:
            s = s1 if c else s0
            mb = ni[c]
            ni[c] = mb + 1
            mem[r] -= 1.0 - keep
            pending[r].append((s, mb))
            i_end[s][mb] = end
        progs[r].append((mb * s_count + s) * NUM_OPS + op)
        free[r] = end
        remaining -= 1
        if len(progs[r]) < 6 * m:
            heappush(heap, (end, r))
    order = Schedule("zb-v-memory", p, s_count, m, place, tuple(array("q", prog) for prog in progs))
    return order, stalled, decisive


def _list_order_compiled(
    p: int, m: int, cap_chunks: float, t: AutoTimes, fill_idle: bool, chunk1_first: bool, forward_first: bool
) -> tuple[Schedule | None, bool, int]:
    """:func:`_list_order` by its compiled twin (:mod:`schedules.compiled.v_list`)."""
    status, stalled, decisive, programs = run_v_list(
        p, m, cap_chunks, t.forward_s, t.input_s, t.weight_s, t.p2p_s, t.stash_fraction,
        fill_idle, chunk1_first, forward_first,
    )  # fmt: skip
    if status:
        return None, True, decisive
    return Schedule("zb-v-memory", p, 2 * p, m, v_shape_placement(p), programs), stalled, decisive


def v_memory_schedule(
    name: str,
    num_ranks: int,
    num_microbatches: int,
    times: AutoTimes | None = None,
    objective: str = "sync",
    memory_limit: float | None = None,
    fast: bool = True,
) -> Schedule:
    """``zb-v-half`` or ``zb-v-min`` on ``num_ranks`` ranks (2p chunks, V-shape) for ``num_microbatches``.

    ``times`` are per *chunk* (F, I, W, transfer, stash fraction; default all 1, no stash, free transfers);
    ``memory_limit`` (whole-stage microbatches per rank) replaces the paper's peak. Raises
    :class:`ScheduleError` for sizes below 1 or a limit below one whole-stage microbatch (2 chunks). With
    ``fast`` (the default), a large m whose times are exact in floating point is built by extending the builds
    at a few microbatches (:mod:`schedules.periodic`), identical to the direct build (``fast=False``, the
    reference); where the extension does not fit, the direct build runs.
    """
    cap = v_memory_limit(name, num_ranks) if memory_limit is None else memory_limit
    for label, value in (("pp", num_ranks), ("microbatches", num_microbatches)):
        if value < 1:
            raise ScheduleError(f"{name}: {label}={value} must be >= 1")
    if not cap >= 1.0:
        raise ScheduleError(
            f"{name}: memory limit {cap:g} microbatches is below the minimum a V order needs, 1 (both chunks "
            "of one microbatch)"
        )
    t = times or AutoTimes()
    p, m = num_ranks, num_microbatches
    values = (t.forward_s, t.input_s, t.weight_s, t.p2p_s, t.stash_fraction)
    if fast and m >= FAST_FROM * p and exact_times(values, 8.0 * m * p * (sum(values) + 1.0)):
        models = extend(
            lambda size: _pool(p, size, cap, t, objective, exact=True),
            m,
            2 * p + 2,
            2 * p * NUM_OPS,
            6,
            memo=memo_for(("v-memory", p, cap, t, objective)),
        )
        if models is not None:
            chosen = _choose([x.values_at(m) for x in models], cap, name)
            if models[chosen].plausible_at(m, 2 * p * NUM_OPS, 6 * m):
                return Schedule(name, p, 2 * p, m, v_shape_placement(p), models[chosen].programs_at(m))
    entries = _pool(p, m, cap, t, objective, exact=False)
    assert entries is not None
    return Schedule(
        name, p, 2 * p, m, v_shape_placement(p), entries[_choose([e[1] for e in entries], cap, name)][0]
    )


Figures: TypeAlias = "tuple[float, float] | Future[tuple[float, float]]"  # (step, peak), or their timing

FAST_FROM = 64  # microbatches per rank from which v_memory_schedule tries the extension


def _pool(
    p: int, m: int, cap: float, t: AutoTimes, objective: str, exact: bool
) -> list[tuple[tuple[array, ...], tuple[float, float]]] | None:
    """The order of every knob setting that fits, with its step on ``objective`` and its peak (whole-stage
    microbatches); with ``exact``, None when a setting fails or stalls (no extension: build directly)."""
    stage_times: StageTimes = t.stage_times(2 * p)
    entries: list[tuple[tuple[array, ...], Figures]] = []
    runs: KnobRuns[tuple[Schedule | None, bool, Figures]] = KnobRuns()
    # Large builds time each order on a second thread while the next setting is scheduled: both kernels
    # release the GIL (the next setting needs only this one's deciding knobs, known before its timing).
    # Measured on 2 cores, median of 5 direct builds: zb-v-min and zb-v-half at pp 64, m 512, 20% faster
    # than timing inline (0.034 vs 0.042 s, 0.027 vs 0.034 s); no difference at pp 16.
    background = worth_compiling(6 * p * m)

    def cost(order: Schedule) -> tuple[float, float]:
        step, peak = schedule_cost(order, stage_times, objective)
        return step, peak / 2.0  # peak: the largest per-rank one, in whole stages

    def build(knobs: tuple[bool, ...]) -> tuple[tuple[Schedule | None, bool, Figures], int]:
        order, stalled, decisive = _list_order(p, m, 2.0 * cap, t, *knobs)
        if order is None:
            return (None, stalled, (0.0, 0.0)), decisive
        return (order, stalled, timer_thread().submit(cost, order) if background else cost(order)), decisive

    for knobs in itertools.product((False, True), repeat=3):
        bits = FILL_IDLE * knobs[0] | CHUNK1_FIRST * knobs[1] | FORWARD_FIRST * knobs[2]
        order, stalled, figures = runs.get(bits, build, knobs)
        if exact and (order is None or stalled):
            return None
        if order is None:
            continue
        entries.append((order.programs, figures))
    return [(programs, f.result() if isinstance(f, Future) else f) for programs, f in entries]


def _choose(figures: list[tuple[float, ...]], cap: float, name: str) -> int:
    """The index of the first shortest step (figures: step, peak) within ``cap``."""
    best: tuple[float, int] | None = None
    for i, (step, peak) in enumerate(figures):
        if peak > cap + _EPS:  # pragma: no cover - the scheduler never admits past the cap
            continue
        if best is None or step < best[0] - _EPS:
            best = (step, i)
    if best is None:  # pragma: no cover - a cap of one whole microbatch always lets one flow through
        raise ScheduleError(f"{name}: no order fits {cap:g} microbatches per rank")
    return best[1]
