"""Handcrafted zero-bubble schedules: ZB-H1, ZB-H2 and ZB-V (Qi et al., "Zero Bubble Pipeline Parallelism",
ICLR 2024, arXiv:2401.10241).

All three split the backward into I (gradient of the inputs, on the critical path between stages) and W
(gradient of the weights, needed only by the optimizer), and move the W passes into what would otherwise be
pipeline bubbles. Notation: the paper's "B" is our I; our B is the full backward I + W.

With uniform stages and free transfers the generators reproduce the paper's Table 2 (absolute idle time per
device, T_F, T_B = our T_I and T_W per microbatch per stage):

* ZB-H1: (p-1)(T_F + T_I - T_W) idle per device, peak p microbatches of activations on the first rank, like
  1F1B (a third of 1F1B's (p-1)(T_F + T_I + T_W) when the three are equal);
* ZB-H2: (p-1)(T_F + T_I - 2 T_W), zero when the three are equal, peak 2p-1 microbatches. This bubble is the
  *steady-state* one: ZB-H2's timeline is a parallelogram (rank r runs from r T_F to r T_F + its work) that only
  tiles with the next iteration once the optimizer's global synchronisation is bypassed (paper Section 4), so
  a single synchronous step still shows the (p-1) T_F fill of rank p-1;
* ZB-V (paper Section 6): V-shape placement (rank r holds stages r and 2p-1-r), each rank holding p
  microbatches of its two chunks at its peak (p whole-stage microbatches, like 1F1B), and zero steady-state
  bubble when T_F = T_I = T_W.

Programs are built in the paper's three phases (warm-up forwards, a steady phase, a cool-down that drains the
deferred W passes); each phase is commented where it is built.
"""

from __future__ import annotations

from array import array

from schedules.ir import NUM_OPS, Op, Schedule, ScheduleError, v_shape_placement
from schedules.periodic import woven

__all__ = ["zb_h1", "zb_h2", "zb_v"]

_F, _I, _W = int(Op.F), int(Op.I), int(Op.W)


def _check_sizes(name: str, num_ranks: int, num_microbatches: int) -> None:
    if num_ranks < 1:
        raise ScheduleError(f"{name}: pp={num_ranks} must be >= 1")
    if num_microbatches < 1:
        raise ScheduleError(f"{name}: microbatches={num_microbatches} must be >= 1")


def _flat_zero_bubble(name: str, num_ranks: int, num_microbatches: int, warmup_step: int) -> Schedule:
    """One stage per rank. Rank r runs ``warmup_step * (p-1-r)`` warm-up forwards, then repeats "F, I, W"
    while holding back ``warmup_step * r`` W passes, which it drains at the end.

    Holding back W passes on the later ranks lets their I passes (and so the gradient flowing back to earlier
    ranks) run earlier; the held-back W passes then fill the cool-down, where 1F1B idles.
    """
    p, m = num_ranks, num_microbatches
    step = p * NUM_OPS  # one microbatch further: code + (num_stages * NUM_OPS), num_stages = p
    programs: list[array] = []
    for r in range(p):
        warmup = min(warmup_step * (p - 1 - r), m)
        held_back = warmup_step * r
        f0, i0, w0 = r * NUM_OPS + _F, r * NUM_OPS + _I, r * NUM_OPS + _W  # codes of microbatch 0
        # Warm-up: forwards only, as many as the first backward's arrival allows without idling.
        prog = array("q", range(f0, f0 + step * warmup, step))
        # Steady phase, step k = 0 .. m-1: F of microbatch warmup + k (while any remain), I of microbatch k,
        # then W of microbatch k - held_back once more than held_back W passes wait. Once forwards run out this
        # is the cool-down: I, W, I, W, ... Steps with the same passes form one woven run.
        forwards_end, weights_from = m - warmup, min(held_back, m)
        cuts = sorted({0, min(forwards_end, weights_from), max(forwards_end, weights_from), m})
        for lo, hi in zip(cuts, cuts[1:], strict=False):
            columns = [(f0 + step * (warmup + lo), step)] if lo < forwards_end else []
            columns.append((i0 + step * lo, step))
            if lo >= held_back:
                columns.append((w0 + step * (lo - held_back), step))
            prog.extend(woven(hi - lo, columns))
        # Drain: the held-back W passes fill the tail of the step.
        prog.extend(range(w0 + step * max(m - held_back, 0), w0 + step * m, step))
        programs.append(prog)
    return Schedule(name, p, p, m, tuple(range(p)), tuple(programs))


def zb_h1(num_ranks: int, num_microbatches: int) -> Schedule:
    """ZB-H1 (Qi et al. 2024, Figure 3 / Table 2): 1F1B's warm-up (p-1-r forwards on rank r) and memory, with
    the backward split into I and W and rank r holding back r W passes to the cool-down.

    Idle time per device (p-1)(T_F + T_I - T_W); peak activations p microbatches on rank 0, p-r on rank r.
    """
    _check_sizes("zb-h1", num_ranks, num_microbatches)
    return _flat_zero_bubble("zb-h1", num_ranks, num_microbatches, warmup_step=1)


def zb_h2(num_ranks: int, num_microbatches: int) -> Schedule:
    """ZB-H2 (Qi et al. 2024, Figure 3 / Table 2): rank r runs 2(p-1-r) warm-up forwards (so that with
    T_F = T_I = T_W its first I arrives exactly when it runs out of work) and holds back 2r W passes.

    Steady-state idle per device (p-1)(T_F + T_I - 2 T_W), zero when the three are equal (the parallelogram
    needs the optimizer step's synchronisation bypassed to tile); peak 2p-1 microbatches on rank 0,
    2(p-r)-1 on rank r.
    """
    _check_sizes("zb-h2", num_ranks, num_microbatches)
    return _flat_zero_bubble("zb-h2", num_ranks, num_microbatches, warmup_step=2)


def zb_v(num_ranks: int, num_microbatches: int) -> Schedule:
    """ZB-V (Qi et al. 2024, Section 6), the same phase structure as PyTorch's ``ScheduleZBVZeroBubble``.

    Rank r holds chunk 0 = stage r and chunk 1 = stage 2p-1-r (V-shape). Phases on rank r:

    1. 2(p-r)-1 forwards of chunk 0;
    2. r pairs (F chunk 1, F chunk 0);
    3. p-r triples (F, I, W) of chunk 1;
    4. steady: (F, I, W) of chunk 0 then (F, I, W) of chunk 1 until every forward has run;
    5. cool-down: r pairs (I chunk 0, I chunk 1), p-r pairs (I, W) of chunk 0, then the remaining W passes of
       chunk 1, then of chunk 0.

    Peak: 2p chunk-microbatches per rank = p whole-stage microbatches (like 1F1B); zero steady-state bubble
    when T_F = T_I = T_W. For m < 2p-1 the order is built for 2p-1 microbatches and the extra ones are
    dropped (as PyTorch does); dropping every action of a microbatch keeps the order deadlock-free because
    dependencies never cross microbatches.
    """
    _check_sizes("zb-v", num_ranks, num_microbatches)
    p, m = num_ranks, num_microbatches
    n = max(m, 2 * p - 1)
    programs: list[array] = []
    f, i, w = Op.F, Op.I, Op.W
    for r in range(p):
        rank = _TwoChunkProgram(r, 2 * p - 1 - r, 2 * p)
        rank.repeat(2 * (p - r) - 1, (0, f))  # 1. warm-up, chunk 0
        rank.repeat(r, (1, f), (0, f))  # 2. both chunks
        rank.repeat(p - r, (1, f), (1, i), (1, w))  # 3. first backwards of chunk 1
        # 4. steady: (F, I, W) of chunk 0 then of chunk 1 until every forward has run; the F of chunk 0 drops
        # out once its n forwards are in, and the phase goes on until chunk 1 has caught up.
        with_forward = max(n - rank.count(0, f), 0)
        rank.repeat(with_forward, (0, f), (0, i), (0, w), (1, f), (1, i), (1, w))
        rank.repeat(max(n - rank.count(1, f), 0), (0, i), (0, w), (1, f), (1, i), (1, w))
        rank.repeat(r, (0, i), (1, i))  # 5. cool-down
        rank.repeat(p - r, (0, i), (0, w))
        rank.repeat(rank.count(1, i) - rank.count(1, w), (1, w))
        rank.repeat(rank.count(0, i) - rank.count(0, w), (0, w))
        limit = m * 2 * p * NUM_OPS  # codes of microbatches >= m start here
        codes = rank.codes if n == m else [c for c in rank.codes if c < limit]
        programs.append(array("q", codes))
    return Schedule("zb-v", p, 2 * p, m, v_shape_placement(p), tuple(programs))


class _TwoChunkProgram:
    """A rank's program under construction for a two-chunk (V-shape) schedule, as packed codes: each
    (chunk, op) pass takes the next microbatch in order."""

    def __init__(self, stage0: int, stage1: int, num_stages: int) -> None:
        self.stages = (stage0, stage1)
        self.num_stages = num_stages
        self.counters: dict[tuple[int, Op], int] = {}
        self.codes: list[int] = []

    def count(self, chunk: int, op: Op) -> int:
        """How many ``op`` passes of ``chunk`` have been added."""
        return self.counters.get((chunk, op), 0)

    def repeat(self, times: int, *passes: tuple[int, Op]) -> None:
        """Append ``times`` rounds of ``passes`` ((chunk, op) pairs, each at most once), each round taking
        the next microbatch of every pass."""
        if times <= 0:
            return
        step = self.num_stages * NUM_OPS
        columns = []
        for chunk, op in passes:
            mb = self.count(chunk, op)
            columns.append(((mb * self.num_stages + self.stages[chunk]) * NUM_OPS + int(op), step))
            self.counters[(chunk, op)] = mb + times
        self.codes.extend(woven(times, columns))
