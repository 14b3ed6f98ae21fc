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

This module builds the kernels' tables and the timeline around them; the kernels themselves, and numba (loaded
on their first use, which the engine makes only for timelines large enough to need it), are in
:mod:`pipesim.sim.compiled_kernels`.
"""

from __future__ import annotations

import functools

import numpy as np

from pipesim.sim.compiled_kernels import DEADLOCK, INCOMPLETE, OK, kernels
from pipesim.sim.gradients import GradientSpans, gradient_spans
from pipesim.sim.timeline import IntArray, OpCosts, RankStart, SpanKind, Stream, Timeline
from pipesim.sim.wavefront import action_codes
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
    check_and_count, run = kernels()
    s_count, m_count, r_count = schedule.num_stages, schedule.num_microbatches, schedule.num_ranks
    codes, offsets = action_codes(schedule)
    n = int(offsets[-1])
    tables = _tables(schedule, costs)
    placement = np.asarray(schedule.stage_to_rank, dtype=np.int64)
    flags = np.zeros(m_count * s_count, dtype=np.uint8)
    chains = len(schedule.chain_starts)
    status, sends = check_and_count(
        codes, offsets, placement, s_count, m_count, tables["send_to"], flags, chains
    )
    if status == OK and chains > 1:  # each microbatch on every stage of exactly one chain
        used = (flags.reshape(chains, s_count // chains, m_count) != 0).all(axis=1)
        unused = (flags.reshape(chains, s_count // chains, m_count) == 0).all(axis=1)
        if not ((used | unused).all(axis=0) & (used.sum(axis=0) == 1)).all():
            status = INCOMPLETE
    del flags
    if status != OK:
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
    if status == DEADLOCK:
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
