"""Extending an order built for a few microbatches to many, for the generators that build their orders by
simulated-time search (:mod:`schedules.zb_auto`, :mod:`schedules.greedy`, :mod:`schedules.v_memory`).

Those searches take Python time per action (tens of microseconds), minutes for a million actions. Once the
warm-up is over their orders settle into a steady state that repeats with the microbatch index, and their
cool-down is the same whatever m is, shifted. A rank's program is then a fixed number of *runs*, each a block of
k codes repeated t times with every repetition one microbatch later (code + S * NUM_OPS, S stages), where
each t and each block code is an affine function of m (the steady run grows by one repetition per microbatch,
the cool-down's I passes move one microbatch later, a drain of W passes that starts at microbatch 0 grows by
one). The same holds for the figures a search compares (step times, peaks), which grow by the same amount per
microbatch.

:func:`fit` reads that structure off the reference builds at three consecutive microbatch counts m0, m0 + 1,
m0 + 2: it splits each program into runs (:func:`runs`), requires the same runs at the three sizes, and fits
the counts, codes and figures from the first two, keeping the model only when it reproduces the third
exactly. :meth:`Model.programs_at` then writes the programs for any larger m at C speed (:func:`woven`).
The callers use it only when every time is a multiple of a power of two (:func:`exact_times`), so that the
search's floating-point sums are exact and its decisions are the ones of exact arithmetic; a differential test
holds the extension to the reference builds over many sizes. What the small builds showed (the period seen,
the fitted models) is kept per caller in the process (:func:`memo_for`), so building the same family with the
same times again, at any large m, writes the programs without searching. Standard library only.
"""

from __future__ import annotations

import math
import operator
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from schedules.compiled import run_first_period, run_runs, worth_compiling


def woven(count: int, columns: Sequence[tuple[int, int]], into: array | None = None) -> list[int]:
    """``count`` rows of one code per column, flattened row by row: row i holds ``first + i * step`` for each
    column's ``(first, step)``. Generators build their repeating phases with it (a phase "F, I, W" of
    consecutive microbatches is three columns whose codes step by one microbatch, ``num_stages * NUM_OPS``),
    at C speed instead of one Python call per action. With ``into`` (an ``array("q")``) the rows are appended
    to it instead, without a list of Python ints in between, and an empty list is returned."""
    k = len(columns)
    if into is not None:
        start = len(into)
        into.frombytes(bytes(8 * count * k))
        for j, (first, step) in enumerate(columns):
            into[start + j :: k] = array("q", range(first, first + step * count, step))
        return []
    out = [0] * (count * k)
    for j, (first, step) in enumerate(columns):
        out[j::k] = range(first, first + step * count, step)
    return out


__all__ = ["Model", "woven", "runs", "fit", "extend", "memo_for", "exact_times", "period_seen", "plausible"]

LONGEST_PERIOD = 64  # microbatches: the longest repetition looked for (the V list scheduler's at p 8: 36)
SHORT_PERIODS = (1, 2, 4)  # tried when the middle of the first build does not repeat yet (p 3-4 V orders)
BUDGET = 8  # the builds sampled add up to at most m / BUDGET microbatches
_QUANTUM = (
    2.0**-20
)  # times must be multiples of this to be exact (and far above the searches' 1e-9 tolerance)
_BOUND = 2.0**24  # ... and their sums below this, so that every partial sum is exact in a double


def exact_times(values: Sequence[float], total: float) -> bool:
    """Whether sums of ``values`` up to ``total`` are exact in floating point with comparisons at 1e-9 tolerance
    unchanged by shifts: every value is a multiple of 2^-20 and ``total`` (a bound on any time or memory sum the
    search forms) is below 2^24."""
    return total < _BOUND and all(abs(v) < _BOUND and (v / _QUANTUM).is_integer() for v in values)


Run = tuple[tuple[int, ...], tuple[int, ...], int]  # (block of codes, each column's step, repetitions)


def runs(prog: Sequence[int], unit: int, max_block: int) -> list[Run]:
    """Split ``prog`` into runs: greedily from the left, the block of k <= ``max_block`` codes repeated
    t >= 2 times, each column stepping by a constant positive number of microbatches (``unit`` codes each) from
    one repetition to the next, that covers the most codes (the smaller k on a tie); or a single code when
    nothing repeats. The comparisons along a run are made in C (``map`` over slices of the codes)."""
    codes = list(prog)
    if worth_compiling(8 * len(codes)):  # the compiled twin finds the same (start, k, t) of each run
        return [_run_of(codes, i, k, t) for i, k, t in run_runs(prog, unit, max_block)]
    n = len(codes)
    out: list[Run] = []
    i = 0
    while i < n:
        best = (1, 1)  # (k, t)
        for k in range(1, min(max_block, (n - i) // 2) + 1):
            first = codes[i + k] - codes[i]
            if first <= 0 or first % unit:
                continue
            if any(d <= 0 or d % unit for d in map(operator.sub, codes[i + k : i + 2 * k], codes[i : i + k])):
                continue
            t = (2 * k + _stretch(codes, i + k, k)) // k
            if t * k > best[0] * best[1]:
                best = (k, t)
        k, t = best
        out.append(_run_of(codes, i, k, t))
        i += k * t
    return out


def _run_of(codes: list[int], i: int, k: int, t: int) -> Run:
    """The run of the block of k codes from ``i`` repeated t times: its codes, each column's step, t."""
    block = tuple(codes[i : i + k])
    steps = tuple(map(operator.sub, codes[i + k : i + 2 * k], block)) if t > 1 else (0,) * k
    return block, steps, t


def _stretch(codes: list[int], start: int, k: int) -> int:
    """How many consecutive positions x from ``start`` (x < len - k) continue the columns of period k:
    codes[x + k] - codes[x] == codes[x] - codes[x - k]. Compared in doubling chunks, so a short stretch costs
    little and a long one is scanned once."""
    limit = len(codes) - k
    x, chunk = start, 16
    while x < limit:
        hi = min(limit, x + chunk)
        ahead = map(operator.sub, codes[x + k : hi + k], codes[x:hi])
        behind = map(operator.sub, codes[x:hi], codes[x - k : hi - k])
        stop = bytes(map(operator.eq, ahead, behind)).find(0)
        if stop >= 0:
            return x + stop - start
        x, chunk = hi, 2 * chunk
    return max(limit - start, 0)


@dataclass(frozen=True)
class Model:
    """Programs and figures as affine functions of the microbatch count m = m0 + n * period: per rank, per run,
    the block's codes ``code0 + n * dcode``, each column's step from one repetition to the next, and the
    repetitions ``t0 + n * dt``; figures ``v0 + n * dv``."""

    m0: int
    period: int
    ranks: tuple[tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int, int], ...], ...]
    values: tuple[tuple[float, float], ...]

    def _n(self, m: int) -> int:
        n, rest = divmod(m - self.m0, self.period)
        return -1 if rest else n

    def fits(self, m: int) -> bool:
        """Whether the model covers ``m``: m0 + n * period for n >= 0, every run left with a repetition."""
        n = self._n(m)
        return n >= 0 and all(t0 + n * dt >= 1 for rank in self.ranks for *_, t0, dt in rank)

    def values_at(self, m: int) -> tuple[float, ...]:
        """The figures for ``m`` microbatches (:meth:`fits` must hold)."""
        n = self._n(m)
        return tuple(v0 + n * dv for v0, dv in self.values)

    def programs_at(self, m: int) -> tuple[array, ...]:
        """The programs for ``m`` microbatches (:meth:`fits` must hold)."""
        n = self._n(m)
        programs = []
        for rank in self.ranks:
            prog = array("q")
            for code0, dcode, steps, t0, dt in rank:
                t = t0 + n * dt
                block = [c + n * d for c, d in zip(code0, dcode, strict=True)]
                if t == 1:
                    prog.extend(block)
                else:
                    woven(t, list(zip(block, steps, strict=True)), prog)
            programs.append(prog)
        return tuple(programs)

    def plausible_at(self, m: int, unit: int, per_rank: int) -> bool:
        """:func:`plausible` of :meth:`programs_at` (``m``), read off the runs without writing the programs: a
        run's codes grow along its columns (each step is positive), so its least and largest codes are those
        of its first and last repetition."""
        n = self._n(m)
        for rank in self.ranks:
            count, lo, hi = 0, math.inf, -math.inf
            for code0, dcode, steps, t0, dt in rank:
                t = t0 + n * dt
                block = [c + n * d for c, d in zip(code0, dcode, strict=True)]
                count += t * len(block)
                lo = min(lo, *block)
                hi = max(hi, *(c + (t - 1) * s for c, s in zip(block, steps, strict=True)))
            if count != per_rank or lo < 0 or hi >= m * unit:
                return False
        return True


Entry = tuple[Sequence[Sequence[int]], Sequence[float]]  # programs, figures


def plausible(programs: Sequence[Sequence[int]], m: int, unit: int, per_rank: int) -> bool:
    """A check of extended programs at C speed: ``per_rank`` codes per rank and every code one of m
    microbatches' (0 <= code < m * unit). Callers build directly when it fails."""
    return all(len(prog) == per_rank and min(prog) >= 0 and max(prog) < m * unit for prog in programs)


def fit(
    samples: Sequence[Entry],
    m0: int,
    period: int,
    unit: int,
    max_block: int,
    seen: dict[tuple[int, int, int], tuple[_RankModel, ...] | None] | None = None,
) -> Model | None:
    """The :class:`Model` of three builds ``samples`` (programs and figures at m0, m0 + period, m0 + 2 period;
    ``unit`` = S * NUM_OPS, one microbatch in codes), fitted on the first two and kept only if it reproduces the
    third exactly; None when the runs (blocks of at most ``max_block`` codes) differ in number or block length
    between the sizes, a code moves by other than whole microbatches, or a figure is not affine. ``seen`` keeps
    the fitted programs by the identity of the three program tuples, for candidates that share their orders
    (the caller keeps those tuples alive while it uses ``seen``)."""
    if len(samples) != 3:
        raise ValueError("fit needs builds at m0, m0 + period and m0 + 2 period")
    (p0, v0), (p1, v1), (p2, v2) = samples
    if not len(p0) == len(p1) == len(p2) or not len(v0) == len(v1) == len(v2):
        return None
    values = []
    for a, b, c in zip(v0, v1, v2, strict=True):
        if c - b != b - a or b + (b - a) != c:
            return None
        values.append((a, b - a))
    key = (id(p0), id(p1), id(p2))
    if seen is None or key not in seen:
        ranks = _fit_programs(p0, p1, p2, unit, max_block)
        if seen is not None:
            seen[key] = ranks
    else:
        ranks = seen[key]
    return None if ranks is None else Model(m0, period, ranks, tuple(values))


_RankModel = tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int, int], ...]


def _fit_programs(
    p0: Sequence[Sequence[int]],
    p1: Sequence[Sequence[int]],
    p2: Sequence[Sequence[int]],
    unit: int,
    max_block: int,
) -> tuple[_RankModel, ...] | None:
    """:func:`fit`'s per-rank runs of three builds' programs, or None where they are not affine."""
    ranks = []
    for r0, r1, r2 in zip(p0, p1, p2, strict=True):
        x0, x1, x2 = (runs(r, unit, max_block) for r in (r0, r1, r2))
        if not len(x0) == len(x1) == len(x2):
            return None
        rank = []
        for (b0, s0, t0), (b1, s1, t1), (b2, s2, t2) in zip(x0, x1, x2, strict=True):
            if not len(b0) == len(b1) == len(b2) or not s0 == s1 == s2 or t2 - t1 != t1 - t0:
                return None
            dcode = tuple(y - x for x, y in zip(b0, b1, strict=True))
            if any(d % unit for d in dcode) or any(z != y + d for y, z, d in zip(b1, b2, dcode, strict=True)):
                return None
            rank.append((b0, dcode, s0, t0, t1 - t0))
        ranks.append(tuple(rank))
    return tuple(ranks)


def period_seen(entries: Sequence[Entry], unit: int, per_microbatch: int, longest: int) -> int | None:
    """The microbatches after which every program of ``entries`` repeats in its middle half: on each rank, the
    shortest block (up to ``per_microbatch * longest`` codes) whose columns step by constant positive numbers of
    microbatches over that half repeats every (largest column step) microbatches; the least common multiple of
    those, or None when a program shows no such block or the multiple exceeds ``longest``."""
    period = 1
    for programs, _ in entries:
        for prog in programs:
            if worth_compiling(8 * len(prog)):  # the compiled twin of _first_period (-1: none)
                found = run_first_period(prog, unit, per_microbatch * longest)
            else:
                found = _first_period(prog, unit, per_microbatch * longest) or -1
            if found < 0:
                return None
            period = math.lcm(period, found)
            if period > longest:
                return None
    return period


def _first_period(prog: Sequence[int], unit: int, longest_block: int) -> int | None:  # the reference
    """:func:`period_seen` on one program: the largest column step (in microbatches) of the shortest block (up
    to ``longest_block`` codes) that repeats over the middle half of ``prog``, or None."""
    n = len(prog)
    a, b = n // 4, (3 * n) // 4
    for k in range(1, min(longest_block, (b - a) // 3) + 1):
        d = list(map(operator.sub, prog[a + k : b + k], prog[a:b]))
        if all(x > 0 and x % unit == 0 for x in d[:k]) and all(map(operator.eq, d[k:], d)):
            return max(d[:k]) // unit
    return None


@dataclass
class Memo:
    """What :func:`extend` learnt from one caller's builds: per size m0, the period seen in the build there
    (None: none seen; False: the build returned None), and per (first size, period) the models fitted on the
    three builds (None: a build returned None)."""

    seen: dict[int, int | None | bool] = field(default_factory=dict)
    models: dict[tuple[int, int], list[Model | None] | None] = field(default_factory=dict)


MEMO_KEYS = 32  # callers whose memos are kept (the least recently used is dropped)
_MEMOS: dict[object, Memo] = {}


def memo_for(key: object) -> Memo:
    """The memo of :func:`extend`'s findings for the builds identified by ``key`` (everything ``sample`` depends
    on besides the size: family, ranks, limit, times, objective), kept in this process for the
    :data:`MEMO_KEYS` most recently used keys."""
    memo = _MEMOS.pop(key, None)
    if memo is None:
        memo = Memo()
        while len(_MEMOS) >= MEMO_KEYS:
            del _MEMOS[next(iter(_MEMOS))]
    _MEMOS[key] = memo
    return memo


def extend(
    sample: Callable[[int], Sequence[Entry] | None],
    m: int,
    m0: int,
    unit: int,
    per_microbatch: int,
    periods: Sequence[int] | None = None,
    memo: Memo | None = None,
) -> list[Model] | None:
    """The models (:func:`fit`) of ``sample(m)``'s entries (programs and figures; ``per_microbatch`` codes per
    rank per microbatch) from ``sample`` at three sizes from about m0 spaced by a period: each of ``periods``
    in turn, or (None) the one seen in the build at m0 (:func:`period_seen`, up to :data:`LONGEST_PERIOD`
    microbatches; at the first m0, :data:`SHORT_PERIODS` when none is seen: the fit allows a longer warm-up
    than the middle half the search looks at). Then from twice m0, and so on, while the structure has not
    settled. Each model is checked to cover ``m``; None when no fit is found within the budget (the sampled
    sizes add up to at most m / :data:`BUDGET`, so that a failed attempt costs a fraction of the direct build)
    or ``sample`` returns None (no extension: build directly).

    ``memo`` (:func:`memo_for`) keeps what the builds showed (the period seen at a size, the models fitted at
    three sizes, or that a build returned None), none of which depends on m: a later call with the same
    ``sample`` takes the same steps, charging the same budget, and returns the same models without building
    again."""
    memo = Memo() if memo is None else memo
    cache: dict[int, Sequence[Entry] | None] = {}
    charged: set[int] = set()
    budget = m // BUDGET

    def charge(size: int) -> None:
        nonlocal budget
        if size not in charged:
            charged.add(size)
            budget -= size

    def build(size: int) -> Sequence[Entry] | None:  # only called with the budget still >= 0
        if size not in cache:
            cache[size] = sample(size)
        return cache[size]

    first_level = True
    while budget >= 0:
        tried: Sequence[int] = ()
        if periods is not None:
            tried = periods
        else:
            charge(m0)
            if budget < 0:
                return None
            if m0 not in memo.seen:
                seen = build(m0)
                memo.seen[m0] = (
                    False if seen is None else period_seen(seen, unit, per_microbatch, LONGEST_PERIOD)
                )
            found = memo.seen[m0]
            if found is False:
                return None
            tried = (found,) if isinstance(found, int) else SHORT_PERIODS if first_level else ()
            first_level = False
        for period in tried:
            first = m0 + (m - m0) % period
            sizes = (first, first + period, first + 2 * period)
            for size in sizes:
                charge(size)
            if budget < 0:
                return None
            if (first, period) not in memo.models:
                samples = [build(size) for size in sizes]
                shared: dict[tuple[int, int, int], tuple[_RankModel, ...] | None] = {}
                memo.models[first, period] = (
                    None
                    if any(x is None for x in samples)
                    else [
                        fit(column, first, period, unit, per_microbatch * period, shared)
                        for column in zip(*samples, strict=True)
                    ]
                )
            models = memo.models[first, period]
            if models is None:
                return None
            kept = [x for x in models if x is not None and x.fits(m)]
            if len(kept) == len(models):
                return kept
        m0 *= 2
    return None
