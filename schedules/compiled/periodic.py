"""The compiled twins of :func:`schedules.periodic.runs` and of :func:`schedules.periodic.period_seen`'s search
on one program (see :mod:`schedules.compiled`)."""

from __future__ import annotations

from array import array
from collections.abc import Sequence

import numpy as np

from schedules.compiled import kernels

__all__ = ["runs", "first_period"]


def _runs(codes, unit, max_block, out):  # type: ignore[no-untyped-def]
    """:func:`schedules.periodic.runs` over ``codes``: writes each run's (start, block length k, repetitions t)
    into ``out`` (n x 3) and returns how many there are."""
    n = codes.shape[0]
    i = 0
    count = 0
    while i < n:
        best_k = 1
        best_t = 1
        for k in range(1, min(max_block, (n - i) // 2) + 1):
            first = codes[i + k] - codes[i]
            if first <= 0 or first % unit:
                continue
            steps_ok = True
            for x in range(k):
                d = codes[i + k + x] - codes[i + x]
                if d <= 0 or d % unit:
                    steps_ok = False
                    break
            if not steps_ok:
                continue
            # periodic._stretch: the positions from i + k on that continue the columns of period k
            x = i + k
            limit = n - k
            while x < limit and codes[x + k] - codes[x] == codes[x] - codes[x - k]:
                x += 1
            t = (2 * k + (x - i - k)) // k
            if t * k > best_k * best_t:
                best_k = k
                best_t = t
        out[count, 0] = i
        out[count, 1] = best_k
        out[count, 2] = best_t
        count += 1
        i += best_k * best_t
    return count


def _first_period(prog, unit, longest_block):  # type: ignore[no-untyped-def]
    """:func:`schedules.periodic.period_seen` on one program: the largest column step (in microbatches) of the
    shortest block (up to ``longest_block`` codes) that repeats over the program's middle half, or -1."""
    n = prog.shape[0]
    a = n // 4
    b = (3 * n) // 4
    for k in range(1, min(longest_block, (b - a) // 3) + 1):
        ok = True
        top = 0
        for x in range(k):
            d = prog[a + k + x] - prog[a + x]
            if not (d > 0 and d % unit == 0):
                ok = False
                break
            if d > top:
                top = d
        if not ok:
            continue
        for x in range(a + k, b):
            if prog[x + k] - prog[x] != prog[x] - prog[x - k]:
                ok = False
                break
        if ok:
            return top // unit
    return -1


def _codes(prog: Sequence[int]) -> np.ndarray:
    """``prog`` as an int64 array (an ``array("q")`` without a copy)."""
    if isinstance(prog, array) and prog.typecode == "q":
        return np.frombuffer(prog, np.int64)
    return np.asarray(prog, np.int64)


def runs(prog: Sequence[int], unit: int, max_block: int) -> list[tuple[int, int, int]]:
    """(start, k, t) of each run of ``prog`` by the compiled :func:`_runs`."""
    codes = _codes(prog)
    out = np.zeros((max(len(codes), 1), 3), np.int64)
    count = kernels().runs(codes, unit, max_block, out)
    return [tuple(row) for row in out[:count].tolist()]


def first_period(prog: Sequence[int], unit: int, longest_block: int) -> int:
    """The compiled :func:`_first_period` of ``prog``."""
    return int(kernels().first_period(_codes(prog), unit, longest_block))
