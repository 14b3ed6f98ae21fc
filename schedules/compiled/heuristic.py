"""The compiled twin of :func:`schedules.zb_heuristic.heuristic_run` (see :mod:`schedules.compiled`): the
reference's builder methods (``ready``, ``put``, ``make_room``, ``fill_wait``, ``_skip_forward``) are inner
functions over the same state, its running scalars (the largest bubble, the deciding knobs) one-element
arrays."""

from __future__ import annotations

from array import array

import numpy as np

from schedules.compiled import kernels
from schedules.compiled.common import rows_as_programs

__all__ = ["run"]


def run(
    p: int, m: int, limit: float, tf: float, ti: float, tw: float, tp: float, keep: float, *knobs: bool
) -> tuple[int, int, tuple[array, ...]]:
    """One compiled run of the paper's heuristic (:func:`_heuristic`): (status, deciding knobs, programs; empty
    unless status is 0)."""
    progs = np.zeros((p, 3 * m), np.int64)
    status, decisive = kernels().heuristic(p, m, float(limit), tf, ti, tw, tp, float(keep), *knobs, progs)
    return int(status), int(decisive), () if status else rows_as_programs(progs)


def _heuristic(  # type: ignore[no-untyped-def]
    p, m, limit, tf, ti, tw, comm, keep, allow_short_bubble, prioritize_input_grad, fill_short_gaps, progs
):
    """One run of the paper's heuristic, writing each rank's packed codes into ``progs`` (p x 3m); returns
    (status: 0 built, 1 the memory limit cannot be met (the reference's None), 2 internal error; decisive knob
    bits: 1 short bubble, 2 input-gradient first, 4 fill short gaps)."""
    eps = 1e-9
    # per op (F 0, I 2, W 3; row 1 unused): the next microbatch of each stage
    cnt = np.zeros((4, p), np.int64)
    f = cnt[0]
    i = cnt[2]
    w = cnt[3]
    end = np.zeros(p)
    mem = np.zeros(p)
    bubble = np.zeros(p)
    f_end = np.zeros((p, m))
    i_end = np.zeros((p, m))
    count = np.zeros(p, np.int64)
    cost = np.array([tf, 0.0, ti, tw])
    charge = np.array([1.0, 0.0, -(1.0 - keep), -keep])
    top = np.zeros(1)  # the largest bubble so far
    dec = np.zeros(1, np.int64)
    err = np.zeros(1, np.int64)

    def ready(j, op):  # type: ignore[no-untyped-def]
        if op == 0:
            return f_end[j - 1, f[j]] + comm if j > 0 else 0.0
        if op == 2 and j < p - 1:
            return i_end[j + 1, i[j]] + comm
        return 0.0

    def put(j, op):  # type: ignore[no-untyped-def]
        mb = cnt[op, j]
        new_mem = mem[j] + charge[op]
        if new_mem > limit + eps:
            err[0] = 1
        old_end = end[j]
        start = max(old_end, ready(j, op))
        if f[j] > 0:
            bubble[j] = bubble[j] + (start - old_end)
            if bubble[j] > top[0]:
                top[0] = bubble[j]
        end[j] = start + cost[op]
        mem[j] = new_mem
        if op == 0:
            f_end[j, mb] = end[j]
        elif op == 2:
            i_end[j, mb] = end[j]
        cnt[op, j] = mb + 1
        progs[j, count[j]] = (mb * p + j) * 4 + op
        count[j] += 1

    def make_room(j, op):  # type: ignore[no-untyped-def]
        while mem[j] + charge[op] > limit + eps:
            if w[j] >= i[j]:
                return False
            put(j, 3)
        return True

    def fill_wait(j, op):  # type: ignore[no-untyped-def]
        arrival = ready(j, op)
        while w[j] < i[j] and end[j] + tw <= arrival + eps:
            put(j, 3)
        if w[j] < i[j] and end[j] < arrival - eps:
            gap = arrival - end[j]
            if gap > top[0] - bubble[j] + eps:
                put(j, 3)
            else:
                dec[0] |= 4
                if fill_short_gaps:
                    put(j, 3)

    def skip_forward(j):  # type: ignore[no-untyped-def]
        nxt = end[j + 1] + cost[0] + cost[2] + comm
        if end[j] >= nxt:
            return True
        need = 0.0
        room = mem[j] + 1.0
        ws = w[j]
        while room > limit + eps and ws < i[j]:
            need += cost[3]
            room -= keep
            ws += 1
        if end[j] + cost[0] + need <= nxt + eps:
            return False
        return nxt - end[j] <= top[0] - bubble[j] + eps

    for j in range(p):
        if not make_room(j, 0):
            return 1, dec[0]
        put(j, 0)
    extra = np.zeros(p, np.int64)
    back = f_end[p - 1, 0] + ti
    for j in range(p - 2, -1, -1):
        room = mem[j]
        clock = end[j]
        while f[j] + extra[j] < m and room + 1.0 <= limit + eps:
            ends_late = clock + tf > back + comm + eps
            starts_late = clock >= back + comm - eps
            if ends_late != starts_late:
                dec[0] |= 1
            if ends_late if allow_short_bubble else starts_late:
                break
            room += 1.0
            clock += tf
            extra[j] += 1
        back = max(clock, back + comm) + ti
    for j in range(1, p):
        while extra[j] > 0 and extra[j] >= extra[j - 1] and f[j] + extra[j] < m:
            extra[j] -= 1
    for j in range(p):
        for _ in range(extra[j]):
            put(j, 0)
    for j in range(p - 1, -1, -1):
        put(j, 2)
    want = np.zeros(p, np.bool_)
    for rnd in range(1, m):
        for j in range(p):
            want[j] = f[j] < m
        if prioritize_input_grad or not dec[0] & 2:
            for j in range(p - 1):
                if want[j] and f[j] >= f[j + 1] + 2 and skip_forward(j):
                    dec[0] |= 2
                    if not prioritize_input_grad:
                        break
                    want[j] = False
        for j in range(p - 2, -1, -1):
            want[j] = want[j] and want[j + 1]
        for j in range(p):
            if not want[j]:
                continue
            if not make_room(j, 0):
                return 1, dec[0]
            if j > 0:
                fill_wait(j, 0)
            put(j, 0)
        for j in range(p - 1, -1, -1):
            if i[j] != rnd or f[j] <= rnd:
                return 2, dec[0]
            if not make_room(j, 2):
                return 1, dec[0]
            if j < p - 1:
                fill_wait(j, 2)
            if j == 0 and f[0] == m:
                while w[0] < i[0]:
                    put(0, 3)
            put(j, 2)
    for j in range(p):
        while w[j] < m:
            put(j, 3)
    return 2 if err[0] else 0, dec[0]
