"""The compiled twin of :func:`schedules.greedy._greedy_pass` (see :mod:`schedules.compiled`)."""

from __future__ import annotations

from array import array

import numpy as np

from schedules.compiled import kernels
from schedules.compiled.common import rows_as_programs

__all__ = ["run"]


def run(
    p: int, m: int, limit: float, tf: float, ti: float, tw: float, tp: float, keep: float, *knobs: bool
) -> tuple[float, int, tuple[array, ...]]:
    """One compiled greedy pass (:func:`_greedy`): (makespan, -1 on the reference's internal error; deciding
    knobs; programs)."""
    progs = np.zeros((p, 3 * m), np.int64)
    makespan, decisive = kernels().greedy(p, m, float(limit), tf, ti, tw, tp, float(keep), *knobs, progs)
    return float(makespan), int(decisive), rows_as_programs(progs)


def _greedy(p, m, limit, tf, ti, tw, tp, keep, fill_short_gaps, forward_first, progs):  # type: ignore[no-untyped-def]
    """One run of the greedy list scheduler on ``p`` ranks and ``m`` microbatches, writing each rank's packed
    codes into ``progs`` (p x 3m); returns (makespan, decisive knob bits: 1 fill_short_gaps, 2 forward_first)."""
    eps = 1e-9
    inf = np.inf
    free = np.zeros(p)
    send_free = np.zeros(p)
    next_f = np.zeros(p, np.int64)
    next_i = np.zeros(p, np.int64)
    memory = np.zeros(p)
    count = np.zeros(p, np.int64)
    pend = np.zeros((p, m), np.int64)  # each rank's pending W microbatches, a queue
    pend_head = np.zeros(p, np.int64)
    pend_tail = np.zeros(p, np.int64)
    act_at = np.full((p, m), inf)  # F(r, mb) output at rank r+1
    grad_at = np.full((p, m), inf)  # I(r, mb) output at rank r-1
    f_end = np.full((p, m), inf)
    # a binary heap of (free time, rank), smallest first (ties: lowest rank), as the reference's heapq
    heap_t = np.zeros(p)
    heap_r = np.arange(p)
    size = p
    remaining = 3 * p * m
    current = -1
    decisive = 0
    while remaining:
        if current >= 0 and count[current] < 3 * m:  # push (free[current], current) and sift it up
            xt = free[current]
            j = size
            size += 1
            while j > 0:
                up = (j - 1) // 2
                if xt < heap_t[up] or xt == heap_t[up] and current < heap_r[up]:
                    heap_t[j] = heap_t[up]
                    heap_r[j] = heap_r[up]
                    j = up
                else:
                    break
            heap_t[j] = xt
            heap_r[j] = current
        r = heap_r[0]
        size -= 1
        if size > 0:  # move the last entry to the root and sift it down
            xt = heap_t[size]
            xr = heap_r[size]
            j = 0
            while True:
                c = 2 * j + 1
                if c >= size:
                    break
                if c + 1 < size and (
                    heap_t[c + 1] < heap_t[c] or heap_t[c + 1] == heap_t[c] and heap_r[c + 1] < heap_r[c]
                ):
                    c += 1
                if heap_t[c] < xt or heap_t[c] == xt and heap_r[c] < xr:
                    heap_t[j] = heap_t[c]
                    heap_r[j] = heap_r[c]
                    j = c
                else:
                    break
            heap_t[j] = xt
            heap_r[j] = xr
        current = r
        now = free[r]
        i_ready = inf
        i_bound = inf
        if next_i[r] < next_f[r]:
            mb = next_i[r]
            if r == p - 1:
                i_ready = f_end[r, mb]
            elif grad_at[r + 1, mb] < inf:
                i_ready = grad_at[r + 1, mb]
            else:
                i_bound = max(free[r + 1], now) + ti + tp
        f_ready = inf
        f_bound = inf
        fits = memory[r] + 1.0 <= limit + eps
        if next_f[r] < m and fits:
            mb = next_f[r]
            if r == 0:
                f_ready = 0.0
            elif act_at[r - 1, mb] < inf:
                f_ready = act_at[r - 1, mb]
            else:
                f_bound = max(free[r - 1], now) + tf + tp
        run_i = i_ready <= now + eps
        run_f = f_ready <= now + eps
        if run_i and run_f:
            decisive |= 2
        if run_i and not (forward_first and run_f):
            mb = next_i[r]
            next_i[r] += 1
            end = free[r] + ti
            free[r] = end
            progs[r, count[r]] = (mb * p + r) * 4 + 2
            count[r] += 1
            if r > 0:
                leave = max(end, send_free[r])
                send_free[r] = leave + tp
                grad_at[r, mb] = leave + tp
            memory[r] -= 1.0 - keep
            pend[r, pend_tail[r]] = mb
            pend_tail[r] += 1
            remaining -= 1
            continue
        if run_f:
            mb = next_f[r]
            next_f[r] += 1
            end = free[r] + tf
            free[r] = end
            progs[r, count[r]] = (mb * p + r) * 4
            count[r] += 1
            f_end[r, mb] = end
            if r < p - 1:
                leave = max(end, send_free[r])
                send_free[r] = leave + tp
                act_at[r, mb] = leave + tp
            memory[r] += 1.0
            remaining -= 1
            continue
        next_event = min(i_ready, i_bound, f_ready, f_bound)
        drained = next_i[r] == m
        memory_blocked = next_f[r] < m and not fits
        pending = pend_tail[r] > pend_head[r]
        if pending and not (drained or memory_blocked or next_event - now >= tw - eps):
            decisive |= 1
        if pending and (drained or memory_blocked or fill_short_gaps or next_event - now >= tw - eps):
            mb = pend[r, pend_head[r]]
            pend_head[r] += 1
            free[r] = free[r] + tw
            progs[r, count[r]] = (mb * p + r) * 4 + 3
            count[r] += 1
            memory[r] -= keep
            remaining -= 1
            continue
        if next_event == inf:
            return -1.0, decisive  # the reference's internal error: a blocked F always has an I or a W ahead
        free[r] = max(next_event, now + eps)
    makespan = 0.0
    for q in range(p):
        x = max(free[q], send_free[q])
        if q == 0 or x > makespan:
            makespan = x
    return makespan, decisive
