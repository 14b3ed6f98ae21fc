"""The check of overlapped F&B pairs (DualPipe's "F&B", :attr:`schedules.ir.Schedule.overlapped`) on a rank's
packed program, at C speed for the generators' million-pair programs (``map`` and ``itemgetter`` over the codes,
no Python call per pair). Standard library only; op codes are :class:`schedules.ir.Op`'s values (F 0, B 1,
I 2)."""

from __future__ import annotations

import operator
from collections.abc import Sequence

__all__ = ["first_bad_pair"]

_F, _B, _I = 0, 1, 2


def first_bad_pair(pairs: Sequence[int], prog: Sequence[int], per_mb: int, num_ops: int) -> int | None:
    """The first position k of ``pairs`` where ``prog[k], prog[k + 1]`` is not an F followed by a B or I of
    another microbatch, or that overlaps the previous pair (k < previous + 2) or leaves the program; None when
    every pair is one. Codes are ``(mb * S + stage) * num_ops + op`` and ``per_mb`` = S * num_ops."""
    if not pairs:
        return None
    if pairs[0] >= 0 and pairs[-1] + 1 < len(prog):
        op_of, mb_of = num_ops.__rmod__, per_mb.__rfloordiv__  # c % num_ops, c // per_mb, run in C by map
        one = len(pairs) < 2
        fs = [prog[k] for k in pairs] if one else list(operator.itemgetter(*pairs)(prog))
        bs = (
            [prog[k + 1] for k in pairs] if one else list(operator.itemgetter(*map((1).__add__, pairs))(prog))
        )
        if (
            all(map(operator.ge, pairs[1:], map((2).__add__, pairs)))
            and set(map(op_of, fs)) == {_F}
            and set(map(op_of, bs)) <= {_B, _I}
            # the pair's backward must not wait on its own forward: another microbatch
            and not any(map(operator.eq, map(mb_of, fs), map(mb_of, bs)))
        ):
            return None
    last = -2  # something failed: find where, one pair at a time
    for k in pairs:
        if k < last + 2 or k < 0 or k + 1 >= len(prog):
            return k
        f, b = prog[k], prog[k + 1]
        if f % num_ops != _F or b % num_ops not in (_B, _I) or f // per_mb == b // per_mb:
            return k
        last = k
    return None  # pragma: no cover - the fast check failed, so some pair does
