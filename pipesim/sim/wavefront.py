"""The engine's reference evaluation: a numpy wavefront.

Each round advances every rank whose next action has all its inputs, so the Python loop runs once per "level"
of the schedule (about the actions per rank), not once per action: fast for many ranks, slow for few (one
round of numpy calls per level). Results are exact (the same as an event-by-event simulation, which
:mod:`tests` checks against a brute-force reference) and deterministic. :mod:`pipesim.sim.compiled` computes
the same timeline in one compiled pass; a differential test holds the two to identical start and end times.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipesim.sim.gradients import gradient_spans
from pipesim.sim.overlap import overlapped_pairs
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
from schedules.validate import deadlock_error

__all__ = ["simulate_wavefront", "decode_actions", "action_codes"]


def action_codes(schedule: Schedule) -> tuple[IntArray, IntArray]:
    """The schedule's action codes (:mod:`schedules.ir`'s int64 encoding), rank after rank, and rank_offsets
    (int64, rank r's actions are offsets[r] .. offsets[r+1]-1)."""
    lengths = np.fromiter((len(p) for p in schedule.programs), dtype=np.int64, count=schedule.num_ranks)
    offsets = np.zeros(schedule.num_ranks + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    codes = (
        np.concatenate([np.frombuffer(p, dtype=np.int64) for p in schedule.programs if len(p)])
        if offsets[-1]
        else np.zeros(0, dtype=np.int64)
    )
    return codes, offsets


def decode_actions(schedule: Schedule) -> tuple[npt.NDArray, npt.NDArray, npt.NDArray, npt.NDArray, IntArray]:
    """Flatten a schedule into numpy arrays: rank (int32), op (int8), stage (int32), microbatch (int32) and
    rank_offsets (int64, rank r's actions are offsets[r] .. offsets[r+1]-1)."""
    codes, offsets = action_codes(schedule)
    rank = np.repeat(np.arange(schedule.num_ranks, dtype=np.int32), np.diff(offsets))
    rest, op = np.divmod(codes, NUM_OPS)
    del codes
    mb, stage = np.divmod(rest, schedule.num_stages)
    del rest
    return rank, op.astype(np.int8), stage.astype(np.int32), mb.astype(np.int32), offsets


def _check_complete_fast(
    schedule: Schedule, op: IntArray, stage: IntArray, mb: IntArray, rank: IntArray
) -> None:
    """Vectorized completeness check; on failure defer to the validator for a precise message."""
    s_count, m_count = schedule.num_stages, schedule.num_microbatches
    placement = np.asarray(schedule.stage_to_rank, dtype=np.int64)
    ok = bool(np.all(mb < m_count)) and bool(np.all(placement[stage] == rank))
    if ok:
        counts = np.bincount(
            (mb.astype(np.int64) * s_count + stage) * NUM_OPS + op, minlength=m_count * s_count * NUM_OPS
        ).reshape(m_count * s_count, NUM_OPS)
        f, b, i, w = counts.T
        whole = (f == 1) & (((b == 1) & (i == 0) & (w == 0)) | ((b == 0) & (i == 1) & (w == 1)))
        if len(schedule.chain_starts) == 1:
            ok = bool(np.all(whole))
        else:  # each microbatch: every stage of one chain complete, no action on the others
            chains = len(schedule.chain_starts)
            done = whole.reshape(m_count, chains, s_count // chains).all(axis=2)
            empty = (counts.sum(axis=1) == 0).reshape(m_count, chains, s_count // chains).all(axis=2)
            ok = bool(np.all((done | empty).all(axis=1) & (done.sum(axis=1) == 1)))
    if not ok:
        from schedules.validate import check_complete

        check_complete(schedule)
        raise ScheduleError(
            f"schedule {schedule.name!r} is incomplete"
        )  # pragma: no cover - check_complete raises


def _dependency_tables(
    num_stages: int, chain_starts: tuple[int, ...] = (0,)
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """From :func:`depends_on`, per (op, stage): the cross-stage dependency (signal, stage) and the same-stage
    dependency (signal, stage); -1 where there is none. Dependencies never change the microbatch."""
    cross_sig = np.full((NUM_OPS, num_stages), -1, dtype=np.int64)
    cross_stage = np.full((NUM_OPS, num_stages), -1, dtype=np.int64)
    own_sig = np.full((NUM_OPS, num_stages), -1, dtype=np.int64)
    own_stage = np.full((NUM_OPS, num_stages), -1, dtype=np.int64)
    for o in Op:
        for s in range(num_stages):
            for dep in depends_on(Action(s, o, 0), num_stages, chain_starts):
                if dep.cross_stage:
                    cross_sig[o, s], cross_stage[o, s] = int(dep.signal), dep.stage
                else:
                    own_sig[o, s], own_stage[o, s] = int(dep.signal), dep.stage
    return cross_sig, cross_stage, own_sig, own_stage


def simulate_wavefront(
    schedule: Schedule, costs: OpCosts, begin: RankStart | None = None, optimizer: str = "sync"
) -> Timeline:
    """Simulate one training step of ``schedule`` with ``costs`` by numpy wavefront rounds (the reference
    evaluation; the model is :mod:`pipesim.sim.engine`'s). ``costs`` must cover the schedule's stages;
    ``begin`` is when each rank's streams are free (None: at 0), ``optimizer`` the optimizer mode.

    Raises :class:`ScheduleError` if the schedule is incomplete or deadlocks (with the rank x step grid).
    """
    s_count, m_count, r_count = schedule.num_stages, schedule.num_microbatches, schedule.num_ranks
    rank, op, stage, mb, offsets = decode_actions(schedule)
    n = int(offsets[-1])
    _check_complete_fast(schedule, op, stage, mb, rank)
    mb_key = mb.astype(np.int64) * s_count

    # Producer of every signal, at schedules.ir.signal_index: F makes ACTIVATION, B and I INPUT_GRAD.
    producer = np.full(m_count * s_count * NUM_SIGNALS + 1, n, dtype=np.int64)  # last entry: "no dependency"
    makes = np.array([-1 if (g := produces(o)) is None else int(g) for o in Op], dtype=np.int64)[op]
    has = makes >= 0
    producer[((mb_key + stage) * NUM_SIGNALS + makes)[has]] = np.nonzero(has)[0]
    none_key = m_count * s_count * NUM_SIGNALS

    chains = schedule.chain_starts
    cross_sig, cross_stage, own_sig, own_stage = _dependency_tables(s_count, chains)
    cs, cst = cross_sig[op, stage], cross_stage[op, stage]
    dep_cross = producer[np.where(cs >= 0, (mb_key + cst) * NUM_SIGNALS + cs, none_key)]
    os_, ost = own_sig[op, stage], own_stage[op, stage]
    dep_own = producer[np.where(os_ >= 0, (mb_key + ost) * NUM_SIGNALS + os_, none_key)]
    del cs, cst, os_, ost, makes, has, producer, mb_key
    if n < 2**31 - 1:
        dep_cross, dep_own = dep_cross.astype(np.int32), dep_own.astype(np.int32)

    placement = np.asarray(schedule.stage_to_rank, dtype=np.int64)
    durations = costs.duration_table()[op, stage]
    dep_pair = overlapped_pairs(schedule, costs, offsets, durations, dep_cross, stage)
    # A producer sends when its cross-stage consumer lives on another rank: F(s) -> F(s+1), B/I(s) -> B/I(s-1).
    consumer_stage = np.asarray(consumer_stages(s_count, chains), dtype=np.int64).reshape(NUM_OPS, s_count)[
        op, stage
    ]
    valid_consumer = (consumer_stage >= 0) & (consumer_stage < s_count)
    consumer_rank = np.where(valid_consumer, placement[np.clip(consumer_stage, 0, s_count - 1)], -1)
    sends = valid_consumer & (consumer_rank != rank)
    p2p = np.asarray(costs.p2p_s + (0.0,), dtype=np.float64)
    boundary = np.where(op == 0, stage, stage - 1)  # boundary crossed by the send
    xfer = (
        np.where(sends, p2p[np.clip(boundary, 0, max(s_count - 2, 0))], 0.0) if s_count > 1 else np.zeros(n)
    )
    del boundary, consumer_stage, valid_consumer

    inf = np.inf
    start = np.zeros(n)
    finish = np.full(n + 1, inf)  # +inf until the action has run; entry n is "no dependency"
    finish[n] = 0.0
    arrive = finish.copy()  # when the output is available to its cross-stage consumer
    is_send = sends
    blocking = bool(costs.p2p_blocking)
    t0 = np.zeros(r_count) if begin is None else np.array(begin.compute_s, dtype=np.float64)
    t_free = t0.copy()
    send_free = np.zeros(r_count) if begin is None else np.array(begin.send_s, dtype=np.float64)
    head = offsets[:-1].copy()
    stop = offsets[1:]
    everyone = np.arange(r_count)
    active = np.nonzero(head < stop)[0]
    while active.size:
        full = active.size == r_count
        idx = head if full else head[active]
        d1, d2 = dep_cross[idx], dep_own[idx]
        tf = t_free if full else t_free[active]
        st = np.maximum(np.maximum(tf, arrive[d1]), finish[d2])
        if dep_pair is not None:  # an F&B pair's forward also waits for its backward's input
            st = np.maximum(st, arrive[dep_pair[idx]])
        if st.max() == inf:  # some ranks wait for a signal not yet produced
            ready = st < inf
            if not ready.any():
                stuck = [int(h - o) for h, o in zip(head, offsets[:-1], strict=True)]
                raise deadlock_error(schedule, stuck)
            active = (everyone if full else active)[ready]
            idx, st, full = idx[ready], st[ready], False
        en = st + durations[idx]
        start[idx] = st
        finish[idx] = en
        # A sender's output leaves on its send stream once that is free; others are available at once.
        snd = is_send[idx]
        sf = send_free if full else send_free[active]
        leave = np.where(snd, np.maximum(en, sf), en)
        arr = leave + xfer[idx]
        arrive[idx] = arr
        free = np.where(snd, arr, en) if blocking else en  # blocking: compute waits for its own send
        if full:
            t_free[:] = free
            send_free[:] = np.where(snd, arr, sf)
            head += 1
        else:
            t_free[active] = free
            send_free[active] = np.where(snd, arr, sf)
            head[active] += 1
        active = np.nonzero(head < stop)[0]
    send_start = arrive[:n] - xfer

    start_a, finish_a = start[:n], finish[:n]
    # Idle time caused only by a transfer: start minus when it could have started had the input been local
    # and (blocking) the rank's own previous send instant.
    prev_end = np.zeros(n)
    prev_end[1:] = finish_a[:-1]
    firsts = offsets[:-1] < offsets[1:]
    prev_end[offsets[:-1][firsts]] = t0[firsts]
    local_ready = np.maximum(np.maximum(prev_end, finish[dep_cross]), finish[dep_own])
    wait = np.maximum(start_a - local_ready, 0.0)
    if not blocking:  # only an input in flight can hold an action back
        wait = np.where(dep_cross < n, wait, 0.0)
    del prev_end, local_ready, dep_own

    # Transfers on the send streams.
    js = np.nonzero(sends)[0]
    t_rank = rank[js].astype(np.int32)
    t_kind = np.where(op[js] == 0, int(SpanKind.SEND_ACTIVATION), int(SpanKind.SEND_GRAD)).astype(np.int8)
    t_start = send_start[js]
    t_end = arrive[js]

    # Gradient reduction per stage on the DP stream, then the optimizer step.
    last = _last_gradient_pass(schedule.num_stages, op, stage, finish_a)
    rank_end = t_free  # each rank's compute stream is free after its last action (and its send, blocking)
    d_rank, d_stage, d_start, d_end, o_start, o_end = gradient_spans(
        schedule,
        costs,
        finish_a[last],
        costs.duration_table()[op[last], stage[last]],
        rank_end,
        optimizer,
        t0,
    )
    o_count = o_start.size

    def cat(*parts: npt.ArrayLike, dtype: npt.DTypeLike) -> npt.NDArray:
        return np.concatenate([np.asarray(p, dtype=dtype) for p in parts])

    k = d_rank.size
    return Timeline(
        num_ranks=r_count,
        num_actions=n,
        rank_offsets=offsets,
        rank=cat(rank, t_rank, d_rank, np.arange(o_count), dtype=np.int32),
        stream=cat(
            np.full(n, Stream.COMPUTE),
            np.full(js.size, Stream.P2P),
            np.full(k, Stream.DP),
            np.full(o_count, Stream.OPTIMIZER),
            dtype=np.int8,
        ),
        kind=cat(
            op, t_kind, np.full(k, SpanKind.DP_REDUCE), np.full(o_count, SpanKind.OPTIMIZER), dtype=np.int8
        ),
        stage=cat(stage, stage[js], d_stage, np.full(o_count, -1), dtype=np.int32),
        microbatch=cat(mb, mb[js], np.full(k, -1), np.full(o_count, -1), dtype=np.int32),
        peer=cat(np.full(n, -1), consumer_rank[js], np.full(k, -1), np.full(o_count, -1), dtype=np.int32),
        start_s=cat(start_a, t_start, d_start, o_start, dtype=np.float64),
        end_s=cat(finish_a, t_end, d_end, o_end, dtype=np.float64),
        wait_on_transfer_s=wait,
    )


def _last_gradient_pass(
    num_stages: int, op: npt.NDArray, stage: npt.NDArray, finish: npt.NDArray
) -> IntArray:
    """Per stage, the row of its gradient pass (B or W) that finishes last (ties: the later row)."""
    is_grad = np.nonzero((op == 1) | (op == 3))[0]
    order = is_grad[np.lexsort((finish[is_grad], stage[is_grad]))]
    last_of_stage = np.zeros(num_stages, dtype=np.int64)
    last_of_stage[stage[order]] = order
    return last_of_stage
