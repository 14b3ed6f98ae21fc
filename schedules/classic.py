"""GPipe, 1F1B (PipeDream-Flush) and Megatron-LM's interleaved 1F1B.

All three share one shape per rank: a warm-up of forwards, a steady phase that alternates one forward with
one backward, and a cool-down of backwards. They differ only in the order of forwards/backwards (which
(chunk, microbatch) comes k-th) and in the length of the warm-up:

* GPipe: warm-up = all m forwards, no steady phase (Huang et al. 2019);
* 1F1B: warm-up = min(p - r - 1, m) forwards on rank r (Narayanan et al., SC21, Section 2.2.1);
* interleaved: warm-up = min((p - r - 1) * 2 + (v - 1) * p, v * m) (Megatron-LM
  ``forward_backward_pipelining_with_interleaving``), k-th forward runs chunk (k mod pv) // p on microbatch
  (k // pv) * p + k mod p, and the k-th backward the mirrored chunk v - 1 - (k mod pv) // p.

Programs are built as packed integer codes (see :func:`schedules.ir.encode`) so that schedules with a million
actions take a fraction of a second.
"""

from __future__ import annotations

from array import array

from schedules.ir import NUM_OPS, Op, Schedule, ScheduleError, interleaved_placement
from schedules.periodic import woven

__all__ = ["gpipe", "one_f_one_b", "interleaved_one_f_one_b"]

_F, _B = int(Op.F), int(Op.B)


def _check_sizes(name: str, num_ranks: int, num_microbatches: int) -> None:
    if num_ranks < 1:
        raise ScheduleError(f"{name}: pp={num_ranks} must be >= 1")
    if num_microbatches < 1:
        raise ScheduleError(f"{name}: microbatches={num_microbatches} must be >= 1")


def _program(forwards: list[int], backwards: list[int], warmup: int) -> array:
    """Interleave forward and backward codes: ``warmup`` forwards, then F/B pairs, then the remaining Bs."""
    n = len(forwards)
    warmup = min(warmup, n)
    out = array("q", forwards[:warmup])
    steady = n - warmup
    pairs: list[int] = [0] * (2 * steady)
    pairs[0::2] = forwards[warmup:]  # steady phase: one forward ...
    pairs[1::2] = backwards[:steady]  # ... then one backward
    out.extend(pairs)
    out.extend(backwards[steady:])  # cool-down
    return out


def _flat(num_ranks: int, num_microbatches: int, name: str, warmup_of: str) -> Schedule:
    programs = []
    s_count = num_ranks
    for r in range(num_ranks):
        base = r * NUM_OPS  # code = (mb * S + stage) * NUM_OPS + op with stage = r
        step = s_count * NUM_OPS
        fwd = list(range(base + _F, base + _F + step * num_microbatches, step))
        bwd = list(range(base + _B, base + _B + step * num_microbatches, step))
        warmup = num_microbatches if warmup_of == "all" else num_ranks - r - 1
        programs.append(_program(fwd, bwd, warmup))
    return Schedule(name, num_ranks, num_ranks, num_microbatches, tuple(range(num_ranks)), tuple(programs))


def gpipe(num_ranks: int, num_microbatches: int) -> Schedule:
    """GPipe: every rank runs all m forwards, then all m backwards (Huang et al., 2019).

    Bubble (p-1)/(m+p-1) of the step; every rank holds all m microbatches' activations at its peak.
    """
    _check_sizes("gpipe", num_ranks, num_microbatches)
    return _flat(num_ranks, num_microbatches, "gpipe", "all")


def one_f_one_b(num_ranks: int, num_microbatches: int) -> Schedule:
    """1F1B (PipeDream-Flush): rank r warms up with p-r-1 forwards, then alternates F and B.

    Same bubble as GPipe, (p-1)/(m+p-1), but at most min(m, p-r) microbatches in flight on rank r
    (Narayanan et al., SC21, Section 2.2.1).
    """
    _check_sizes("1f1b", num_ranks, num_microbatches)
    return _flat(num_ranks, num_microbatches, "1f1b", "rank")


def interleaved_microbatch_rule(num_ranks: int, num_microbatches: int, chunks: int) -> str | None:
    """Why the interleaved schedule cannot take these sizes, or None if it can."""
    if chunks < 2:
        return f"interleaved-1f1b needs vpp >= 2 (got vpp={chunks}; vpp=1 is plain 1f1b)"
    if num_microbatches % num_ranks:
        lower = (num_microbatches // num_ranks) * num_ranks
        options = [n for n in (lower, lower + num_ranks) if n >= num_ranks]
        return (
            f"interleaved-1f1b needs microbatches to be a multiple of pp={num_ranks} (as Megatron-LM does), "
            f"got {num_microbatches}; valid nearby: {', '.join(map(str, options))}"
        )
    return None


def interleaved_one_f_one_b(num_ranks: int, num_microbatches: int, chunks: int) -> Schedule:
    """Megatron-LM's interleaved 1F1B with ``chunks`` (v) model chunks per rank; stage s lives on rank s mod p.

    Bubble (p-1)/(v*m+p-1) of the step, (1/v)(p-1)/m of ideal compute (SC21, Section 2.2.2); rank 0 holds
    p * (1 + (p-1)/(p*v)) stage-microbatches of activations at its peak (Korthikanti et al. 2022, 4.2.3).
    Requires m to be a multiple of p, as Megatron-LM does.
    """
    _check_sizes("interleaved-1f1b", num_ranks, num_microbatches)
    problem = interleaved_microbatch_rule(num_ranks, num_microbatches, chunks)
    if problem:
        raise ScheduleError(problem)
    p, v, m = num_ranks, chunks, num_microbatches
    num_stages = p * v
    # k-th forward (k = g pv + c p + j): chunk c of microbatch g p + j; the k-th backward runs the mirrored
    # chunk v - 1 - c. For a fixed (c, j) the codes over groups g step by p microbatches, so each rank's order
    # is pv woven progressions: code = ((g p + j) S + c p + r) NUM_OPS + op.
    group_step = p * num_stages * NUM_OPS
    programs = []
    for r in range(p):
        fwd = woven(
            m // p,
            [((j * num_stages + c * p + r) * NUM_OPS + _F, group_step) for c in range(v) for j in range(p)],
        )
        bwd = woven(
            m // p,
            [
                ((j * num_stages + (v - 1 - c) * p + r) * NUM_OPS + _B, group_step)
                for c in range(v)
                for j in range(p)
            ],
        )
        warmup = (p - r - 1) * 2 + (v - 1) * p
        programs.append(_program(fwd, bwd, warmup))
    return Schedule(
        "interleaved-1f1b", p, num_stages, m, interleaved_placement(p, num_stages), tuple(programs)
    )
