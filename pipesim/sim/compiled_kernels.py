"""The two kernels of the engine's compiled pass (:mod:`pipesim.sim.compiled`), written in the subset of Python
that numba compiles: a check that decodes every action and counts the transfers, and the pass that fills the
timeline's rows in one visit per action (each rank runs until its next action waits for a signal not yet
produced).

numba is imported only when :func:`kernels` is first called, and the compiled functions are cached on disk
(numba's ``cache=True``: next to this file, or in the user's cache directory when that is read-only); where no
cache location is writable they are compiled in memory.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from schedules.ir import NUM_OPS, NUM_SIGNALS

__all__ = ["kernels", "OK", "INCOMPLETE", "DEADLOCK"]

OK, INCOMPLETE, DEADLOCK = 0, 1, 2  # the kernels' status codes


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
def kernels() -> tuple[Any, Any]:
    """The two kernels (:func:`_check_and_count`, :func:`_run`), compiled (or loaded from numba's on-disk cache) on first use."""
    from schedules.compiled.common import njit_cached

    return njit_cached(_check_and_count), njit_cached(_run)
