"""A small pure-Python timer for schedule orders, used by the schedule generators that search over orders.

It times a :class:`~schedules.ir.Schedule` the way pipesim's engine does (:mod:`pipesim.sim.engine`): each rank
runs its program in order on one compute stream; an action starts when the rank is free and every signal it
depends on (:func:`schedules.ir.depends_on`) has arrived; a signal crossing ranks leaves on the producer's send
stream (one send at a time, in program order) and takes the boundary's transfer time. Costs are per stage and
op (seconds of F, B, I, W per microbatch). A property test holds this timer and the engine together.

It also walks activation memory as the engine and the Zero Bubble paper charge it (Qi et al., ICLR 2024,
arXiv:2401.10241, Table 1 and Section 3.1): F stashes one microbatch of its stage's activations (1/v of a
rank's share for v chunks per rank, counted here as 1 per stage times ``activation``), I frees all but the
weight stash, W frees the stash, a full B frees it all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schedules.compiled import TIME_LOAD_FROM_ACTIONS, run_timer, worth_compiling
from schedules.ir import NUM_OPS, Action, Op, Schedule, ScheduleError, depends_on, produces

__all__ = ["StageTimes", "OrderTiming", "time_order"]


@dataclass(frozen=True)
class StageTimes:
    """Seconds per microbatch per stage: ``forward``, ``backward`` (full B = I + W) and ``weight`` (W) per stage,
    ``p2p`` per stage boundary; ``activation`` (per stage, in the caller's memory unit) and ``stash_fraction``
    (the share of it that W still needs after I) for the memory walk."""

    forward: Sequence[float]
    backward: Sequence[float]
    weight: Sequence[float]
    p2p: Sequence[float]
    activation: Sequence[float]
    stash_fraction: float = 0.0

    @classmethod
    def uniform(
        cls,
        num_stages: int,
        forward: float,
        inputs: float,
        weight: float,
        p2p: float = 0.0,
        activation: float = 1.0,
        stash_fraction: float = 0.0,
    ) -> StageTimes:
        """The same F, I, W times on every stage (B = I + W)."""
        n = num_stages
        return cls(
            (forward,) * n,
            (inputs + weight,) * n,
            (weight,) * n,
            (p2p,) * max(n - 1, 0),
            (activation,) * n,
            stash_fraction,
        )


@dataclass(frozen=True)
class OrderTiming:
    """When a timed order's ranks start and finish, and their activation peaks."""

    first_start: tuple[float, ...]
    last_end: tuple[float, ...]
    peak_memory: tuple[float, ...]

    @property
    def makespan(self) -> float:
        """End of the last compute pass: one synchronous step's pipeline time."""
        return max(self.last_end)

    @property
    def max_rank_span(self) -> float:
        """Largest (last end - first start) over ranks: the Zero Bubble paper's figure of merit for its
        automatic scheduler (each stage's own span; what back-to-back iterations pay per step when the
        optimizer synchronisation is bypassed and the pattern tiles)."""
        return max(e - s for s, e in zip(self.first_start, self.last_end, strict=True))


def time_order(schedule: Schedule, times: StageTimes, method: str = "auto") -> OrderTiming:
    """Time ``schedule`` with ``times``; raise :class:`ScheduleError` if it deadlocks.

    ``method``: ``"python"`` (this module's loop, the reference), ``"compiled"`` (its numba twin in
    :mod:`schedules.compiled`, identical figures) or ``"auto"`` (compiled for orders large enough to pay for
    it, :func:`schedules.compiled.worth_compiling`).
    """
    s_count = schedule.num_stages
    if len(times.forward) != s_count:
        raise ScheduleError(f"times cover {len(times.forward)} stages, schedule has {s_count}")
    if method not in ("auto", "python", "compiled"):
        raise ScheduleError(f"method={method!r} is not a timer; valid: auto, python, compiled")
    table = _cached_table(schedule, times)
    if (
        method == "compiled"
        or method == "auto"
        and worth_compiling(schedule.num_actions, TIME_LOAD_FROM_ACTIONS)
    ):
        return _time_compiled(schedule, table)
    arrive: dict[int, float] = {}  # (mb * S + stage) * 2 + signal -> when its consumer may use it
    local: dict[int, float] = {}  # same, on the producer's own rank
    programs = [list(p) for p in schedule.programs]
    heads = [0] * schedule.num_ranks
    free = [0.0] * schedule.num_ranks
    send_free = [0.0] * schedule.num_ranks
    first = [0.0] * schedule.num_ranks
    memory = [0.0] * schedule.num_ranks
    peak = [0.0] * schedule.num_ranks
    per_mb = s_count * NUM_OPS
    remaining = sum(len(p) for p in programs)
    while remaining:
        progressed = False
        for r, prog in enumerate(programs):
            h = heads[r]
            n = len(prog)
            clock, mem, top = free[r], memory[r], peak[r]
            while h < n:
                code = prog[h]
                cross_deps, local_deps, dur, produced, p2p, delta, is_forward = table[code % per_mb]
                base = (code // NUM_OPS) * 2
                start = clock
                ok = True
                for offset in cross_deps:
                    t = arrive.get(base + offset)
                    if t is None:
                        ok = False
                        break
                    if t > start:
                        start = t
                if ok:
                    for offset in local_deps:
                        t = local.get(base + offset)
                        if t is None:
                            ok = False
                            break
                        if t > start:
                            start = t
                if not ok:
                    break
                if h == 0:
                    first[r] = start
                clock = start + dur
                if produced >= 0:
                    key = base + produced
                    local[key] = clock
                    if p2p is not None:
                        leave = clock if clock > send_free[r] else send_free[r]
                        send_free[r] = arrive[key] = leave + p2p
                mem += delta
                if is_forward and mem > top:
                    top = mem
                h += 1
            free[r], memory[r], peak[r] = clock, mem, top
            if h != heads[r]:
                remaining -= h - heads[r]
                heads[r] = h
                progressed = True
        if not progressed:
            raise ScheduleError(f"schedule {schedule.name!r} deadlocks")
    return OrderTiming(tuple(first), tuple(free), tuple(peak))


def _time_compiled(schedule: Schedule, table: list[_Row]) -> OrderTiming:
    """:func:`time_order` by the compiled twin of its loop (:mod:`schedules.compiled.timer`)."""
    status, first, last, peak = run_timer(schedule.programs, table, schedule.num_stages)
    if status:
        raise ScheduleError(f"schedule {schedule.name!r} deadlocks")
    return OrderTiming(first, last, peak)


_Row = tuple[tuple[int, ...], tuple[int, ...], float, int, "float | None", float, bool]


_CACHED = 64  # tables kept: a search times many orders of one placement with the same times
_TABLES: dict[tuple[tuple[int, ...], StageTimes], list[_Row]] = {}


def _cached_table(schedule: Schedule, times: StageTimes) -> list[_Row]:
    """:func:`_table`, kept per (placement, times) where the times are hashable (tuples)."""
    try:
        key = (schedule.stage_to_rank, times)
        table = _TABLES.get(key)
    except TypeError:  # times given as lists
        return _table(schedule, times)
    if table is None:
        table = _table(schedule, times)
        if len(_TABLES) >= _CACHED:
            _TABLES.clear()
        _TABLES[key] = table
    return table


def _table(schedule: Schedule, times: StageTimes) -> list[_Row]:
    """Per ``stage * NUM_OPS + op`` (a code modulo one microbatch): its dependencies as offsets of the
    signal's key from twice the code's ``mb * S + stage``, those that cross ranks then those that do not; its
    duration, the signal it produces (-1: none), the transfer time when that signal leaves the rank (None: it
    stays), its change of activation memory and whether it is a forward (the only pass that can raise the
    peak)."""
    s_count = schedule.num_stages
    placement = schedule.stage_to_rank
    act, keep = times.activation, times.stash_fraction
    rows: list[_Row] = []
    for stage in range(s_count):
        rank = placement[stage]
        for o in range(NUM_OPS):
            op = Op(o)
            deps = tuple(
                (2 * (dep_stage - stage) + sig, cross and placement[dep_stage] != rank)
                for dep_stage, sig, cross in _deps(op, stage, s_count)
            )
            if op is Op.F:
                dur, delta = times.forward[stage], act[stage]
            elif op is Op.B:
                dur, delta = times.backward[stage], -act[stage]
            elif op is Op.I:
                dur, delta = times.backward[stage] - times.weight[stage], -(act[stage] * (1.0 - keep))
            else:
                dur, delta = times.weight[stage], -(act[stage] * keep)
            signal = produces(op)
            p2p = None
            if signal is not None:
                consumer = stage + 1 if op is Op.F else stage - 1
                if 0 <= consumer < s_count and placement[consumer] != rank:
                    p2p = times.p2p[min(stage, consumer)]
            cross_deps = tuple(offset for offset, cross in deps if cross)
            local_deps = tuple(offset for offset, cross in deps if not cross)
            signal_key = -1 if signal is None else int(signal)
            rows.append((cross_deps, local_deps, dur, signal_key, p2p, delta, op is Op.F))
    return rows


_DEPS: dict[tuple[int, int, int], tuple[tuple[int, int, bool], ...]] = {}


def _deps(op: Op, stage: int, num_stages: int) -> tuple[tuple[int, int, bool], ...]:
    """:func:`depends_on` of (op, stage) as (stage, signal, cross-stage) triples, memoised (it never depends on
    the microbatch)."""
    key = (int(op), stage, num_stages)
    out = _DEPS.get(key)
    if out is None:
        out = tuple(
            (d.stage, int(d.signal), d.cross_stage) for d in depends_on(Action(stage, op, 0), num_stages)
        )
        _DEPS[key] = out
    return out
