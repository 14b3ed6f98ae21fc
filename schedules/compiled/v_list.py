"""The compiled twin of :func:`schedules.v_memory._list_order_python` (see :mod:`schedules.compiled`)."""

from __future__ import annotations

from array import array

import numpy as np

from schedules.compiled import kernels
from schedules.compiled.common import rows_as_programs

__all__ = ["DE_BRUIJN", "LOWEST_BIT", "run"]

# The index of a 64-bit word's lowest set bit: LOWEST_BIT[(isolated bit * DE_BRUIJN mod 2^64) >> 58] (Leiserson,
# Prokop, Randall, "Using de Bruijn Sequences to Index a 1 in a Computer Word", 1998).
DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
LOWEST_BIT = np.zeros(64, np.int64)
for _k in range(64):
    LOWEST_BIT[((1 << _k) * 0x03F79D71B4CB0A89 % 2**64) >> 58] = _k
assert sorted(LOWEST_BIT.tolist()) == list(range(64))


def run(
    p: int, m: int, cap: float, tf: float, ti: float, tw: float, tp: float, keep: float, *knobs: bool
) -> tuple[int, bool, int, tuple[array, ...]]:
    """One run of the compiled V list scheduler (:func:`_v_list`): (status, stalled, deciding knobs, programs;
    empty where status is 1)."""
    progs = np.zeros((p, 6 * m), np.int64)
    status, stalled, decisive = kernels().v_list(
        p, m, float(cap), tf, ti, tw, tp, keep, *knobs, progs, LOWEST_BIT, DE_BRUIJN
    )
    return int(status), bool(stalled), int(decisive), () if status else rows_as_programs(progs)


def _v_list(p, m, cap, tf, ti, tw, tp2p, keep, fill_idle, chunk1_first, forward_first, progs, lowest, magic):  # type: ignore[no-untyped-def]
    """:func:`schedules.v_memory._list_order` on ``p`` ranks and ``m`` microbatches (times per chunk, ``cap`` in
    chunks), writing each rank's packed codes into ``progs`` (p x 6m); ``lowest`` and ``magic`` find a word's
    lowest set bit (:data:`LOWEST_BIT`); returns (status, stalled, decisive):
    status 0 done, 1 the cap stops every rank."""
    s_count = 2 * p
    last = s_count - 1
    eps = 1e-9
    inf = np.inf
    f_comm = np.zeros(s_count)
    i_comm = np.zeros(s_count)
    for s in range(s_count):
        rs = s if s < p else last - s
        if s > 0 and (s - 1 if s - 1 < p else last - s + 1) != rs:
            f_comm[s] = tp2p
        if s < last and (s + 1 if s + 1 < p else last - s - 1) != rs:
            i_comm[s] = tp2p
    f_end = np.full((m, s_count), inf)
    i_end = np.full((m, s_count), inf)
    free = np.zeros(p)
    mem = np.zeros(p)
    next_f = np.zeros((p, 2), np.int64)
    next_i = np.zeros((p, 2), np.int64)
    pend_s = np.zeros((p, 2 * m), np.int64)
    pend_mb = np.zeros((p, 2 * m), np.int64)
    pend_head = np.zeros(p, np.int64)
    pend_tail = np.zeros(p, np.int64)
    count = np.zeros(p, np.int64)
    bumped = np.zeros(p, np.bool_)
    # The ranks waiting to run, as buckets of equal time in increasing order (bt[lo:hi]), each with a bit per
    # rank (bm): the next to run is the lowest rank of the first bucket, as the reference's heap of (time,
    # rank) pops it; the first time after lim is found by skipping the few buckets up to lim.
    words = (p + 63) // 64
    cap_b = 2 * p + 2
    bt = np.zeros(cap_b)
    bm = np.zeros((cap_b, words), np.uint64)
    for q in range(p):
        bm[0, q // 64] |= np.uint64(1) << np.uint64(q % 64)
    lo = 0
    hi = 1
    zero = np.uint64(0)
    one = np.uint64(1)
    done_t = np.zeros(p)  # the finished ranks' ends, sorted; done_t[done_at:n_done] are after lim
    done_at = 0
    n_done = 0
    remaining = 3 * s_count * m
    stalls = 0
    stalled = False
    decisive = 0
    full = 6 * m
    while remaining:
        now = bt[lo]
        w = 0
        while bm[lo, w] == zero:
            w += 1
        bits = bm[lo, w]
        low = bits & (~bits + one)
        r = w * 64 + lowest[(low * magic) >> np.uint64(58)]
        bm[lo, w] = bits ^ low
        empty = True
        for w2 in range(w, words):
            if bm[lo, w2] != zero:
                empty = False
                break
        if empty:
            lo += 1
        s0 = r
        s1 = last - r
        i0 = inf
        i1 = inf
        f0 = inf
        f1 = inf
        mb = next_i[r, 0]
        if mb < next_f[r, 0]:
            i0 = f_end[mb, s0] if s0 == last else max(f_end[mb, s0], i_end[mb, s0 + 1] + i_comm[s0])
        mb = next_i[r, 1]
        if mb < next_f[r, 1]:
            i1 = f_end[mb, s1] if s1 == last else max(f_end[mb, s1], i_end[mb, s1 + 1] + i_comm[s1])
        mb = next_f[r, 0]
        if mb < m:
            f0 = 0.0 if s0 == 0 else f_end[mb, s0 - 1] + f_comm[s0]
        mb = next_f[r, 1]
        if mb < m:
            f1 = 0.0 if s1 == 0 else f_end[mb, s1 - 1] + f_comm[s1]
        reserved = next_f[r, 0] - next_f[r, 1]
        fits0 = mem[r] + 2.0 + reserved <= cap + eps
        fits1 = mem[r] + 1.0 <= cap + eps
        lim = now + eps
        ready_i = i0 <= lim or i1 <= lim
        rf0 = f0 <= lim and fits0
        rf1 = f1 <= lim and fits1
        if rf0 and rf1:
            decisive |= 2
        if ready_i and (rf0 or rf1):
            decisive |= 4
        ch = -1
        op = -1
        if ready_i and not (forward_first and (rf0 or rf1)):
            if i0 <= lim and i1 <= lim:
                ch = 0 if next_i[r, 0] < next_i[r, 1] else 1
            else:
                ch = 0 if i0 <= lim else 1
            op = 2
        elif rf0 or rf1:
            ch = (1 if rf1 else 0) if chunk1_first else (0 if rf0 else 1)
            op = 0
        else:
            # When the next other rank becomes free after lim (the reference scans every other rank): the first
            # bucket after lim, or the first finished rank after it (those up to lim never count again, as lim
            # never decreases).
            k = lo
            while k < hi and bt[k] <= lim:
                k += 1
            first_other = bt[k] if k < hi else inf
            while done_at < n_done and done_t[done_at] <= lim:
                done_at += 1
            if done_at < n_done and done_t[done_at] < first_other:
                first_other = done_t[done_at]
            if pend_tail[r] > pend_head[r]:
                upcoming = min(i0, i1, f0 if fits0 else inf, f1 if fits1 else inf)
                if upcoming < inf:
                    bound = upcoming
                elif first_other < inf:
                    bound = first_other
                else:
                    bound = now
                blocked = (f0 <= lim and not fits0) or (f1 <= lim and not fits1)
                if blocked or bound - now >= tw - eps or upcoming == inf and first_other == inf:
                    op = 3
                else:
                    decisive |= 1
                    if fill_idle:
                        op = 3
        if op < 0:
            later = first_other
            for x in (i0, i1, f0, f1):
                if lim < x < inf and x < later:
                    later = x
            if later == inf:
                stalls += 1
                if stalls > 4 * p:
                    return 1, True, decisive
                free[r] = now + eps
                bumped[r] = True
            else:
                free[r] = later
                bumped[r] = False
        else:
            stalls = 0
            stalled = stalled or bumped[r]
            bumped[r] = False
            if op == 0:
                end = now + tf
            elif op == 2:
                end = now + ti
            else:
                end = now + tw
            if op == 3:
                h = pend_head[r]
                s = pend_s[r, h]
                mb = pend_mb[r, h]
                pend_head[r] = h + 1
                mem[r] -= keep
            elif op == 0:
                s = s1 if ch else s0
                mb = next_f[r, ch]
                next_f[r, ch] = mb + 1
                mem[r] += 1.0
                f_end[mb, s] = end
            else:
                s = s1 if ch else s0
                mb = next_i[r, ch]
                next_i[r, ch] = mb + 1
                mem[r] -= 1.0 - keep
                t = pend_tail[r]
                pend_s[r, t] = s
                pend_mb[r, t] = mb
                pend_tail[r] = t + 1
                i_end[mb, s] = end
            progs[r, count[r]] = (mb * s_count + s) * 4 + op
            count[r] += 1
            free[r] = end
            remaining -= 1
            if count[r] >= full:  # finished: into the sorted ends after lim
                if end > lim:
                    j = n_done
                    while j > done_at and done_t[j - 1] > end:
                        done_t[j] = done_t[j - 1]
                        j -= 1
                    done_t[j] = end
                    n_done += 1
                continue
        # into the bucket of time free[r] (a new one where there is none)
        xt = free[r]
        at = lo
        z = hi
        while at < z:
            mid = (at + z) // 2
            if bt[mid] < xt:
                at = mid + 1
            else:
                z = mid
        if at == hi or bt[at] != xt:
            if hi == cap_b:  # move the buckets to the front
                for k in range(lo, hi):
                    bt[k - lo] = bt[k]
                    for w in range(words):
                        bm[k - lo, w] = bm[k, w]
                at -= lo
                hi -= lo
                lo = 0
            for k in range(hi, at, -1):
                bt[k] = bt[k - 1]
                for w in range(words):
                    bm[k, w] = bm[k - 1, w]
            bt[at] = xt
            for w in range(words):
                bm[at, w] = zero
            hi += 1
        bm[at, r // 64] |= one << np.uint64(r % 64)
    return 0, stalled, decisive
