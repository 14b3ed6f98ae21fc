"""Two multi-chunk orders of PyTorch's ``torch.distributed.pipelining``, generated here (no torch import):

* ``looped-bfs``: ``ScheduleLoopedBFS``, breadth-first pipeline parallelism (Lamy-Poirier, "Breadth-First
  Pipeline Parallelism", MLSys 2023, arXiv:2211.05953). Rank r holds stages r, r+p, ..., r+(v-1)p; it runs
  every microbatch's forward through its first chunk, then through its next chunk, and so on, then the full
  backwards chunk by chunk in reverse, each chunk's microbatches last-in first-out. Peak activations: all
  v*m chunk-microbatches (= m whole-stage microbatches), like GPipe, with a bubble shrunk by the looping.
* ``interleaved-zb``: ``ScheduleInterleavedZeroBubble``, PyTorch's interleaved ZB1P (Qi et al., "Zero Bubble
  Pipeline Parallelism", ICLR 2024, arXiv:2401.10241, with Megatron-LM's interleaved placement). Microbatches
  go in rounds of ``mpr = m / max(1, m // p)``; rank r warms up with ``min((v-1) mpr + (p-1-r), v m)``
  forwards, then each steady step runs one F and one I (backward for inputs) and, after its first r steps,
  also the W (backward for weights) of its oldest pending I; the cool-down runs the remaining I passes (with
  their W after the same lag), then the W passes left. The k-th forward of a rank runs chunk
  ``(k // mpr) mod v``, the k-th backward chunk ``v - 1 - ((k - warmup) // mpr) mod v``.

PyTorch pads its rows with idle slots for display; pipesim drops them (idle time is the simulator's to find).
``tests/data`` holds PyTorch's own CSVs of both orders, which these generators reproduce action for action.
"""

from __future__ import annotations

from array import array

from schedules.ir import NUM_OPS, Op, Schedule, ScheduleError, interleaved_placement
from schedules.periodic import woven

__all__ = ["looped_bfs", "interleaved_zero_bubble", "interleaved_zb_rule"]

_F, _B, _I, _W = int(Op.F), int(Op.B), int(Op.I), int(Op.W)


def _check(name: str, num_ranks: int, num_microbatches: int, chunks: int) -> None:
    for label, value in (("pp", num_ranks), ("microbatches", num_microbatches), ("vpp", chunks)):
        if value < 1:
            raise ScheduleError(f"{name}: {label}={value} must be >= 1")


def looped_bfs(num_ranks: int, num_microbatches: int, chunks: int) -> Schedule:
    """``ScheduleLoopedBFS`` on ``num_ranks`` ranks with ``chunks`` (v) stages per rank (see the module
    docstring). Each chunk's forwards (and, reversed, its backwards) are one arithmetic run of packed codes
    (:func:`schedules.ir.encode`: one microbatch further is ``num_stages * NUM_OPS`` further)."""
    _check("looped-bfs", num_ranks, num_microbatches, chunks)
    p, m, v = num_ranks, num_microbatches, chunks
    step = p * v * NUM_OPS
    programs = []
    for r in range(p):
        stages = [c * p + r for c in range(v)]
        prog = array("q")
        for s in stages:  # forwards chunk by chunk, microbatches in order
            prog.extend(range(s * NUM_OPS + _F, s * NUM_OPS + _F + step * m, step))
        for s in reversed(stages):  # backwards in reverse chunk order, each chunk last-in first-out
            last = (m - 1) * step + s * NUM_OPS + _B
            prog.extend(range(last, s * NUM_OPS + _B - step, -step))
        programs.append(prog)
    return Schedule("looped-bfs", p, p * v, m, interleaved_placement(p, p * v), tuple(programs))


def interleaved_zb_rule(num_ranks: int, num_microbatches: int) -> str | None:
    """Why ``interleaved-zb`` cannot take these sizes, or None: like PyTorch, m must be a multiple of its
    number of rounds, max(1, m // p)."""
    rounds = max(1, num_microbatches // num_ranks)
    if num_microbatches % rounds:
        return (
            f"interleaved-zb needs microbatches to be a multiple of its rounds max(1, m // pp) = {rounds} (as "
            f"PyTorch's ScheduleInterleavedZeroBubble does), got {num_microbatches}"
        )
    return None


def interleaved_zero_bubble(num_ranks: int, num_microbatches: int, chunks: int) -> Schedule:
    """``ScheduleInterleavedZeroBubble`` on ``num_ranks`` ranks with ``chunks`` (v) stages per rank, stage s
    on rank s mod p (see the module docstring for the phases)."""
    _check("interleaved-zb", num_ranks, num_microbatches, chunks)
    problem = interleaved_zb_rule(num_ranks, num_microbatches)
    if problem:
        raise ScheduleError(problem)
    p, m, v = num_ranks, num_microbatches, chunks
    s_count = p * v
    per_round = m // max(1, m // p)
    rounds = m // per_round
    # The k-th forward of a rank runs chunk (k // mpr) mod v on microbatch (k // (mpr v)) mpr + k mod mpr, and
    # the k-th I (and W) the mirrored chunk: packed codes built run by run (_chunk_rounds), no Action objects.
    programs = []
    for r in range(p):
        forwards = _chunk_rounds(per_round, rounds, s_count, [c * p + r for c in range(v)], _F)
        backward_stages = [(v - 1 - c) * p + r for c in range(v)]
        inputs = _chunk_rounds(per_round, rounds, s_count, backward_stages, _I)
        weights = _chunk_rounds(per_round, rounds, s_count, backward_stages, _W)  # W of the oldest pending I
        n = v * m
        warmup = min((v - 1) * per_round + (p - 1 - r), n)
        prog = array("q", forwards[:warmup])  # warm-up: forwards only
        # Backward step k = 0 .. n-1: F of forward warmup + k while forwards remain (steady phase), I of k, and
        # W of k - r once k >= r (r steps behind). Steps with the same passes form one interleaved run.
        forwards_end, weights_from = n - warmup, min(r, n)
        cuts = sorted({0, min(forwards_end, weights_from), max(forwards_end, weights_from), n})
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            columns = [forwards[warmup + lo : warmup + hi]] if lo < forwards_end else []
            columns.append(inputs[lo:hi])
            if lo >= r:
                columns.append(weights[lo - r : hi - r])
            prog.extend(_interleave(columns))
        prog.extend(weights[max(n - r, 0) :])  # the W passes left
        programs.append(prog)
    return Schedule("interleaved-zb", p, s_count, m, interleaved_placement(p, s_count), tuple(programs))


def _chunk_rounds(per_round: int, rounds: int, num_stages: int, stages: list[int], op: int) -> list[int]:
    """Codes of ``op`` for ``rounds`` rounds, each visiting ``stages`` in turn with ``per_round`` consecutive
    microbatches: as ``rounds * len(stages)`` runs of consecutive microbatches, or (fewer Python steps when
    rounds outnumber the microbatches per round) as ``per_round * len(stages)`` woven progressions."""
    step = num_stages * NUM_OPS
    if rounds <= per_round:
        out: list[int] = []
        for g in range(rounds):
            for s in stages:
                first = (g * per_round * num_stages + s) * NUM_OPS + op
                out.extend(range(first, first + step * per_round, step))
        return out
    columns = [
        ((j * num_stages + s) * NUM_OPS + op, per_round * step) for s in stages for j in range(per_round)
    ]
    return woven(rounds, columns)


def _interleave(columns: list[list[int]]) -> list[int]:
    """Equal-length code lists merged element by element: the first of each, then the second of each, ..."""
    k = len(columns)
    out = [0] * (len(columns[0]) * k)
    for j, column in enumerate(columns):
        out[j::k] = column
    return out
