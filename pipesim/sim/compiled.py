"""The engine's fast evaluation: one compiled pass over the schedule (numba), the same model and the same floating
point operations as the numpy reference (:mod:`pipesim.sim.wavefront`), so the timelines are bit-identical
(a differential test holds them together).

Why compiled, not another numpy formulation: the timeline is a longest path over a dependency graph whose
critical path hops between ranks every few actions, so any vectorized evaluation needs a round of numpy calls
per level of the schedule (about actions / ranks of them, 15 to 40 us each); with 4 ranks that is 0.25 M
actions/s. A compiled loop visits each action once: each rank runs its program in order until its next action
waits for a signal not yet produced, then the next rank takes over; a sweep over all ranks without progress is
a deadlock. Dependencies come from tables built by :func:`schedules.ir.depends_on` and
:func:`schedules.ir.produces` (the one dependency rule), not from a second copy of it.

numba is imported only when this module is (the engine does so for timelines large enough to need it), and
compiled functions are cached on disk (numba's ``cache=True``: next to this file, or in the user's cache
directory when that is read-only); where no cache location is writable they are compiled in memory.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from pipesim.sim.gradients import GradientSpans, gradient_spans
from pipesim.sim.timeline import IntArray, OpCosts, RankStart, SpanKind, Stream, Timeline
from schedules.ir import (
    NUM_OPS,
    NUM_SIGNALS,
    Action,
    Op,
    Schedule,
    ScheduleError,
    consumer_stages,
    depends_on,
    produces,
)
from schedules.validate import check_complete, deadlock_error

__all__ = ["simulate_compiled", "MAX_ROWS"]

MAX_ROWS = 2**31 - 2  # row indices are int32 in the kernels' signal tables

_OK, _INCOMPLETE, _DEADLOCK = 0, 1, 2


def _check_and_count(codes, offsets, placement, num_stages, num_microbatches, send_to, flags, chains):  # type: ignore[no-untyped-def]
    """Decode every action, check that it is on its stage's rank and that each (stage, microbatch) has one F
    and either one B or one I and one W (``flags``, stage-major: one bit per op), or with several ``chains``
    nothing (each microbatch's chain is checked after); return (status, transfers)."""
    sends = 0
    inverse = 1.0 / num_stages
    for r in range(offsets.size - 1):
        for i in range(offsets[r], offsets[r + 1]):
            code = codes[i]
            if code < 0:
                return 1, 0
            op = code % NUM_OPS
            rest = code // NUM_OPS
            m = np.int64(rest * inverse)  # rest // num_stages without a 64-bit division (corrected below)
            if m * num_stages > rest:
                m -= 1
            elif (m + 1) * num_stages <= rest:
                m += 1
            s = rest - m * num_stages
            if m >= num_microbatches or s < 0 or s >= num_stages or placement[s] != r:
                return 1, 0
            key = s * num_microbatches + m
            bit = np.uint8(1 << op)
            if flags[key] & bit:
                return 1, 0
            flags[key] |= bit
            if send_to[op, s] >= 0:
                sends += 1
    for key in range(flags.size):
        if flags[key] != 3 and flags[key] != 13 and (chains == 1 or flags[key] != 0):  # F+B, or F+I+W
            return 1, 0
    return 0, sends


def _run(  # type: ignore[no-untyped-def]
    codes,
    offsets,
    num_stages,
    num_microbatches,
    durations,
    makes,
    cross_sig,
    cross_stage,
    own_sig,
    own_stage,
    send_to,
    xfer,
    finish_row,
    arrive_row,
    rank,
    stream,
    kind,
    stage,
    microbatch,
    peer,
    start,
    end,
    wait,
    head,
    last_grad,
    blocking,
    t_free,
    send_free,
    last_en,
):
    """Fill the compute rows (0 .. n-1) and transfer rows (n ..) of the timeline; return the status.

    ``finish_row[key]`` / ``arrive_row[key]`` are the rows whose end is when signal ``key`` is produced /
    available to its cross-stage consumer (the transfer's row when it travels). Keys are stage-major,
    (stage * microbatches + microbatch) * NUM_SIGNALS + signal, not :func:`schedules.ir.signal_index`'s
    microbatch-major order: a rank walks each of its stages' microbatches in turn, so consecutive actions
    touch neighbouring keys (with many stages the other order puts every access on a new cache line). ``head`` ends at each rank's first action not run (for the deadlock grid); ``last_grad`` per
    stage is the row of the gradient pass (B or W) that finished last (ties: the later row); ``t_free`` per
    rank when its compute stream is free after its last action (after that action's send when ``blocking``),
    ``send_free`` when its send stream is free and ``last_en`` when its last compute action ended: they come in
    as where each rank stands before its first action and are updated in place.
    """
    inf = np.inf
    n_ranks = offsets.size - 1
    n = offsets[n_ranks]
    # Pass 1: decode into the timeline's rows; transfer rows follow the compute rows in action order.
    inverse = 1.0 / num_stages
    t = n
    for r in range(n_ranks):
        for i in range(offsets[r], offsets[r + 1]):
            code = codes[i]
            op = code % NUM_OPS
            rest = code // NUM_OPS
            m = np.int64(rest * inverse)  # rest // num_stages without a 64-bit division (corrected below)
            if m * num_stages > rest:
                m -= 1
            elif (m + 1) * num_stages <= rest:
                m += 1
            s = rest - m * num_stages
            rank[i] = r
            stream[i] = 0
            kind[i] = op
            stage[i] = s
            microbatch[i] = m
            peer[i] = -1
            end[i] = inf
            sig = makes[op]
            if sig >= 0:
                key = (s * num_microbatches + m) * NUM_SIGNALS + sig
                finish_row[key] = i
                arrive_row[key] = i
                if send_to[op, s] >= 0:
                    rank[t] = r
                    stream[t] = 1
                    kind[t] = 4 + sig  # SEND_ACTIVATION, SEND_GRAD
                    stage[t] = s
                    microbatch[t] = m
                    peer[t] = send_to[op, s]
                    end[t] = inf
                    arrive_row[key] = t
                    t += 1
    # Pass 2: each rank runs until its next action waits for a signal not yet produced.
    last_end = np.full(num_stages, -1.0)
    for r in range(n_ranks):
        head[r] = offsets[r]
    remaining = n
    while remaining > 0:
        progress = 0
        for r in range(n_ranks):
            h = head[r]
            stop = offsets[r + 1]
            tf = t_free[r]
            pe = last_en[r]
            while h < stop:
                op = kind[h]
                s = stage[h]
                m = microbatch[h]
                st = tf
                f_cross = 0.0
                cs = cross_sig[op, s]
                if cs >= 0:
                    key = (cross_stage[op, s] * num_microbatches + m) * NUM_SIGNALS + cs
                    arrival = end[arrive_row[key]]
                    if arrival == inf:
                        break
                    f_cross = end[finish_row[key]]
                    st = max(st, arrival)
                f_own = 0.0
                sg = own_sig[op, s]
                if sg >= 0:
                    f_own = end[finish_row[(own_stage[op, s] * num_microbatches + m) * NUM_SIGNALS + sg]]
                    if f_own == inf:
                        break
                    st = max(st, f_own)
                en = st + durations[op, s]
                start[h] = st
                end[h] = en
                # Idle only because a transfer was still travelling: the input, or (blocking) the rank's own
                # previous send.
                w = st - max(max(pe, f_cross), f_own)
                wait[h] = w if w > 0.0 else 0.0
                tf = en
                if send_to[op, s] >= 0:  # the output leaves on the send stream once that is free
                    leave = max(en, send_free[r])
                    arrival = leave + xfer[op, s]
                    row = arrive_row[(s * num_microbatches + m) * NUM_SIGNALS + makes[op]]
                    end[row] = arrival
                    start[row] = arrival - xfer[op, s]
                    send_free[r] = arrival
                    if blocking:  # the compute stream waits for the send to complete
                        tf = arrival
                if (op == 1 or op == 3) and (en > last_end[s] or (en == last_end[s] and h > last_grad[s])):
                    last_end[s] = en
                    last_grad[s] = h
                pe = en
                h += 1
                progress += 1
            head[r] = h
            t_free[r] = tf
            last_en[r] = pe
        if progress == 0:
            return 2
        remaining -= progress
    return 0


@functools.cache
def _kernels() -> tuple[Any, Any]:
    """The two kernels, compiled (or loaded from numba's on-disk cache) on first use."""
    import numba  # imported here only: for timelines that need it

    def jit(fn: Any) -> Any:
        try:
            return numba.njit(cache=True, nogil=True)(fn)
        except RuntimeError:  # no writable cache location: compile in memory
            return numba.njit(cache=False, nogil=True)(fn)

    return jit(_check_and_count), jit(_run)


@functools.lru_cache(maxsize=256)
def _static_tables(
    num_stages: int, placement: tuple[int, ...], chain_starts: tuple[int, ...] = (0,)
) -> dict[str, np.ndarray]:
    """Per (op, stage) tables for the kernels, from :func:`depends_on`, :func:`produces` and
    :func:`consumer_stages` (its inverse): the cross-stage and own-stage dependency (signal, stage; -1 for
    none), the rank an action's output is sent to (-1: no consumer, or one on the same rank) and the stage
    boundary it crosses; per op the signal it makes (-1: none). Cached: they depend only on the placement."""
    shape = (NUM_OPS, num_stages)
    tables = {
        name: np.full(shape, -1, dtype=np.int64)
        for name in ("cross_sig", "cross_stage", "own_sig", "own_stage", "send_to", "boundary")
    }
    tables["makes"] = np.array([-1 if (g := produces(o)) is None else int(g) for o in Op], dtype=np.int64)
    consumers = consumer_stages(num_stages, chain_starts)
    for o in Op:
        for s in range(num_stages):
            for dep in depends_on(Action(s, o, 0), num_stages, chain_starts):
                kind = "cross" if dep.cross_stage else "own"
                tables[f"{kind}_sig"][o, s], tables[f"{kind}_stage"][o, s] = int(dep.signal), dep.stage
            c = consumers[o][s]
            if c >= 0 and placement[c] != placement[s]:
                tables["send_to"][o, s] = placement[c]
                tables["boundary"][o, s] = min(s, c)
    for table in tables.values():
        table.setflags(write=False)
    return tables


def _tables(schedule: Schedule, costs: OpCosts) -> dict[str, np.ndarray]:
    """:func:`_static_tables` plus ``xfer``, the seconds of each (op, stage)'s transfer (0 where none)."""
    tables = dict(_static_tables(schedule.num_stages, schedule.stage_to_rank, schedule.chain_starts))
    p2p = np.asarray(costs.p2p_s + (0.0,), dtype=np.float64)  # index -1 (no transfer): 0 s
    tables["xfer"] = p2p[tables["boundary"]]
    return tables


def simulate_compiled(
    schedule: Schedule, costs: OpCosts, begin: RankStart | None = None, optimizer: str = "sync"
) -> Timeline:
    """Simulate one training step of ``schedule`` with ``costs`` in one compiled pass (see the module
    docstring); the same timeline as :func:`pipesim.sim.wavefront.simulate_wavefront`, bit for bit.
    ``costs`` must cover the schedule's stages; ``begin`` is when each rank's streams are free (None: at 0),
    ``optimizer`` the optimizer mode.

    Raises :class:`ScheduleError` if the schedule is incomplete or deadlocks (with the rank x step grid).
    """
    check_and_count, run = _kernels()
    s_count, m_count, r_count = schedule.num_stages, schedule.num_microbatches, schedule.num_ranks
    lengths = np.fromiter((len(p) for p in schedule.programs), dtype=np.int64, count=r_count)
    offsets = np.zeros(r_count + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    n = int(offsets[-1])
    codes = (
        np.concatenate([np.frombuffer(p, dtype=np.int64) for p in schedule.programs if len(p)])
        if n
        else np.zeros(0, dtype=np.int64)
    )
    tables = _tables(schedule, costs)
    placement = np.asarray(schedule.stage_to_rank, dtype=np.int64)
    flags = np.zeros(m_count * s_count, dtype=np.uint8)
    chains = len(schedule.chain_starts)
    status, sends = check_and_count(
        codes, offsets, placement, s_count, m_count, tables["send_to"], flags, chains
    )
    if status == _OK and chains > 1:  # each microbatch on every stage of exactly one chain
        used = (flags.reshape(chains, s_count // chains, m_count) != 0).all(axis=1)
        unused = (flags.reshape(chains, s_count // chains, m_count) == 0).all(axis=1)
        if not ((used | unused).all(axis=0) & (used.sum(axis=0) == 1)).all():
            status = _INCOMPLETE
    del flags
    if status != _OK:
        check_complete(schedule)  # raises with the precise problem
        raise ScheduleError(f"schedule {schedule.name!r} is incomplete")  # pragma: no cover
    dp_rows = int(np.count_nonzero(np.asarray(costs.dp_reduce_s) > 0)) * costs.dp_buckets
    o_count = r_count if costs.optimizer_s > 0 else 0
    rows = n + sends + dp_rows + o_count
    if rows > MAX_ROWS:
        raise ScheduleError(f"schedule {schedule.name!r}: {rows} timeline rows exceed {MAX_ROWS}")
    rank = np.empty(rows, dtype=np.int32)
    stream = np.empty(rows, dtype=np.int8)
    kind = np.empty(rows, dtype=np.int8)
    stage = np.empty(rows, dtype=np.int32)
    microbatch = np.empty(rows, dtype=np.int32)
    peer = np.empty(rows, dtype=np.int32)
    start = np.empty(rows)
    end = np.empty(rows)
    wait = np.empty(n)
    head = np.zeros(r_count, dtype=np.int64)
    last_grad = np.full(s_count, -1, dtype=np.int64)
    durations = costs.duration_table()
    keys = m_count * s_count * NUM_SIGNALS
    finish_row = np.empty(keys, dtype=np.int32)
    arrive_row = np.empty(keys, dtype=np.int32)
    t0 = np.zeros(r_count) if begin is None else np.array(begin.compute_s, dtype=np.float64)
    send_free = np.zeros(r_count) if begin is None else np.array(begin.send_s, dtype=np.float64)
    rank_free, last_en = t0.copy(), t0.copy()
    status = run(
        codes,
        offsets,
        s_count,
        m_count,
        durations,
        tables["makes"],
        tables["cross_sig"],
        tables["cross_stage"],
        tables["own_sig"],
        tables["own_stage"],
        tables["send_to"],
        tables["xfer"],
        finish_row,
        arrive_row,
        rank,
        stream,
        kind,
        stage,
        microbatch,
        peer,
        start,
        end,
        wait,
        head,
        last_grad,
        bool(costs.p2p_blocking),
        rank_free,
        send_free,
        last_en,
    )
    del codes, finish_row, arrive_row
    if status == _DEADLOCK:
        raise deadlock_error(schedule, [int(h - o) for h, o in zip(head, offsets[:-1], strict=True)])
    tail = slice(n + sends, rows)
    d_rank, d_stage, d_start, d_end, o_start, o_end = _gradient_rows(
        schedule, costs, rank_free, durations, last_grad, kind, stage, end, t0, optimizer
    )
    microbatch[tail] = -1
    peer[tail] = -1
    k = d_rank.size
    first = n + sends
    rank[first : first + k] = d_rank
    stream[first : first + k] = Stream.DP
    kind[first : first + k] = SpanKind.DP_REDUCE
    stage[first : first + k] = d_stage
    start[first : first + k] = d_start
    end[first : first + k] = d_end
    rank[first + k :] = np.arange(o_count)
    stream[first + k :] = Stream.OPTIMIZER
    kind[first + k :] = SpanKind.OPTIMIZER
    stage[first + k :] = -1
    start[first + k :] = o_start
    end[first + k :] = o_end
    return Timeline(
        num_ranks=r_count,
        num_actions=n,
        rank_offsets=offsets,
        rank=rank,
        stream=stream,
        kind=kind,
        stage=stage,
        microbatch=microbatch,
        peer=peer,
        start_s=start,
        end_s=end,
        wait_on_transfer_s=wait,
    )


def _gradient_rows(
    schedule: Schedule,
    costs: OpCosts,
    rank_end: np.ndarray,
    durations: np.ndarray,
    last_grad: IntArray,
    kind: np.ndarray,
    stage: np.ndarray,
    end: np.ndarray,
    t0: np.ndarray,
    optimizer: str,
) -> GradientSpans:
    """The reduction and optimizer spans (:func:`gradient_spans`) from the compute rows: each rank's compute
    stream is free at ``rank_end`` (after its last action, and that action's send when sends block), each
    stage's last gradient pass is ``last_grad``; ``t0`` when each rank's reduction stream is free, ``optimizer``
    the optimizer mode."""
    last = np.maximum(last_grad, 0)
    return gradient_spans(
        schedule, costs, end[last], durations[kind[last], stage[last]], rank_end, optimizer, t0
    )
