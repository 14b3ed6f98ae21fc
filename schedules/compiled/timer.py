"""The compiled twin of :func:`schedules.timing.time_order`'s loop (see :mod:`schedules.compiled`)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any

import numpy as np

from schedules.compiled import kernels

__all__ = ["run"]

_CACHED = 64  # tables whose arrays are kept (by identity: schedules.timing keeps the tables per placement and times)
_ARRAYS: dict[int, tuple[Any, ...]] = {}  # id(table) -> (table, its rows as arrays)


def run(
    programs: Sequence[array], table: Sequence[tuple[Any, ...]], num_stages: int
) -> tuple[int, tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """The compiled timing (:func:`_time`) of ``programs`` with :func:`schedules.timing._table`'s rows
    ``table``: (status 0 or 2 for a deadlock; first starts, last ends, peaks per rank)."""
    arrays = _ARRAYS.get(id(table))
    if arrays is None or arrays[0] is not table:
        arrays = (table, *_table_arrays(table))
        if len(_ARRAYS) >= _CACHED:
            _ARRAYS.clear()
        _ARRAYS[id(table)] = arrays
    cross, n_cross, local, n_local, dur, produced, p2p, has_p2p, delta, is_fwd = arrays[1:]
    progs = [np.frombuffer(prog, np.int64) if len(prog) else np.zeros(0, np.int64) for prog in programs]
    codes = np.concatenate(progs) if progs else np.zeros(0, np.int64)
    offsets = np.zeros(len(progs) + 1, np.int64)
    np.cumsum([len(prog) for prog in progs], out=offsets[1:])
    per_mb = num_stages * 4
    n_keys = (int(codes.max()) // per_mb + 1) * num_stages * 2 if len(codes) else 0
    status, first, last, peak = kernels().time(
        codes,
        offsets,
        per_mb,
        n_keys,
        cross,
        n_cross,
        local,
        n_local,
        dur,
        produced,
        p2p,
        has_p2p,
        delta,
        is_fwd,
    )
    return int(status), tuple(first.tolist()), tuple(last.tolist()), tuple(peak.tolist())


def _table_arrays(table: Sequence[tuple[Any, ...]]) -> tuple[np.ndarray, ...]:
    """``table``'s rows as the compiled timer's arrays: up to two cross-rank and two local dependency offsets
    with their counts, duration, produced signal, transfer time and whether there is one, memory change,
    whether a forward."""
    n_rows = len(table)
    cross = np.zeros((n_rows, 2), np.int64)
    local = np.zeros((n_rows, 2), np.int64)
    n_cross = np.zeros(n_rows, np.int64)
    n_local = np.zeros(n_rows, np.int64)
    dur, p2p, delta = np.zeros(n_rows), np.zeros(n_rows), np.zeros(n_rows)
    produced = np.zeros(n_rows, np.int64)
    has_p2p, is_fwd = np.zeros(n_rows, np.bool_), np.zeros(n_rows, np.bool_)
    for i, (cross_deps, local_deps, d, signal, send, change, forward) in enumerate(table):
        n_cross[i], n_local[i] = len(cross_deps), len(local_deps)
        cross[i, : len(cross_deps)] = cross_deps
        local[i, : len(local_deps)] = local_deps
        dur[i], produced[i], delta[i], is_fwd[i] = d, signal, change, forward
        if send is not None:
            has_p2p[i], p2p[i] = True, send
    return cross, n_cross, local, n_local, dur, produced, p2p, has_p2p, delta, is_fwd


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
