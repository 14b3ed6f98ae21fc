"""The compiled twin of :func:`schedules.timing.time_order`'s loop (see :mod:`schedules.compiled`)."""

from __future__ import annotations

import numpy as np

__all__: list[str] = []


def _time(  # type: ignore[no-untyped-def]
    codes, offsets, per_mb, n_keys, cross, n_cross, local, n_local, dur, produced, p2p, has_p2p, delta, is_fwd
):
    """:func:`schedules.timing.time_order` over the packed ``codes`` (rank r's program is ``codes[offsets[r]:
    offsets[r + 1]]``) with its table as arrays (per code modulo ``per_mb``: up to two cross-rank and two local
    dependency offsets, duration, produced signal or -1, transfer time where the signal leaves the rank, memory
    change, whether a forward); returns (status: 0 done, 2 deadlock; first starts, last ends, peaks)."""
    p = offsets.shape[0] - 1
    arrive = np.full(n_keys, np.nan)  # NaN: not produced yet (every time is finite)
    local_t = np.full(n_keys, np.nan)
    heads = offsets[:-1].copy()
    free = np.zeros(p)
    send_free = np.zeros(p)
    first = np.zeros(p)
    memory = np.zeros(p)
    peak = np.zeros(p)
    remaining = offsets[p] - offsets[0]
    forward = False
    while remaining:
        progressed = False
        forward = not forward
        for step in range(p):  # sweeps alternate directions: a signal chain in either direction goes in one
            r = step if forward else p - 1 - step
            h = heads[r]
            n = offsets[r + 1]
            clock = free[r]
            mem = memory[r]
            top = peak[r]
            while h < n:
                code = codes[h]
                row = code % per_mb
                base = (code // 4) * 2
                start = clock
                ok = True
                for k in range(n_cross[row]):
                    t = arrive[base + cross[row, k]]
                    if t != t:
                        ok = False
                        break
                    if t > start:
                        start = t
                if ok:
                    for k in range(n_local[row]):
                        t = local_t[base + local[row, k]]
                        if t != t:
                            ok = False
                            break
                        if t > start:
                            start = t
                if not ok:
                    break
                if h == offsets[r]:
                    first[r] = start
                clock = start + dur[row]
                sig = produced[row]
                if sig >= 0:
                    key = base + sig
                    local_t[key] = clock
                    if has_p2p[row]:
                        leave = clock if clock > send_free[r] else send_free[r]
                        send_free[r] = leave + p2p[row]
                        arrive[key] = send_free[r]
                mem += delta[row]
                if is_fwd[row] and mem > top:
                    top = mem
                h += 1
            free[r] = clock
            memory[r] = mem
            peak[r] = top
            if h != heads[r]:
                remaining -= h - heads[r]
                heads[r] = h
                progressed = True
        if not progressed:
            return 2, first, free, peak
    return 0, first, free, peak
