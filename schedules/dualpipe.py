"""DualPipe and DualPipeV (DeepSeek-V3 technical report, arXiv:2412.19437; deepseek-ai/DualPipe).

DualPipeV is DualPipe "cut in half": p ranks, 2p stages in the V-shape placement (rank r holds stages r and
2p-1-r), every microbatch going down the ranks through chunk 0 and back up through chunk 1. The order follows
the eight steps of deepseek-ai/DualPipe (and PyTorch's ``ScheduleDualPipeV``), commented where they are built.

What the engine models:

* DualPipe's steady phase runs *overlapped* forward-and-backward pairs ("F&B": the forward of one chunk and the
  backward of another, with each one's communication hidden behind the other's compute). The order records
  them in :attr:`Schedule.overlapped`, at the positions PyTorch's ``ScheduleDualPipeV`` writes its
  ``OVERLAP_F_B`` cells. Given the pair's duration (``OpCosts.fb_pair_s``; ``compare --fb-time``) the engine
  runs each pair as one span that starts once both passes' inputs are there; without it the pair's F and B run
  one after the other (an upper bound for an implementation with a working ``overlapped_forward_backward``).
* The published bubble (DualPipe README, "Pipeline Bubbles and Memory Usage Comparison") is
  (PP/2-1)(F&B + B - 3W) with F, B, W chunk times (B a *full* backward); activation memory PP+1 chunks per rank.
  With pairs as one span and T_F = T_I (the README's uniform case) the measured idle time per rank is exactly
  (p-1)(F&B + B - 3W) for DualPipeV on p ranks (PP = 2p); run one after the other it is (p-1)(F + B - 2W) when
  the I part of the backward is no longer than F (tests check both).

DualPipe itself is bidirectional (:func:`dualpipe`): PP ranks, two copies of the model's PP stages, one per
direction (hence 2x parameter memory), half the microbatches entering at rank 0 and half at rank PP-1. In the
IR the schedule has 2 PP stages in two chains (:attr:`Schedule.chain_starts` = (0, PP)): stages 0..PP-1 the
forward direction on ranks 0..PP-1, stages PP..2PP-1 the reverse direction on ranks PP-1..0 (the V-shape
placement: rank r holds stages r and 2PP-1-r); microbatches 0..m/2-1 run the first chain, m/2..m-1 the second.
Rank r runs deepseek-ai/DualPipe's eight steps with its "half rank" h = min(r, PP-1-r) on PP/2 half ranks and
m/2 microbatches per direction, phase 0 being the forward direction on the first half of the ranks and the
reverse direction on the second (DualPipe's ``step``): the same steps as DualPipeV's rank h, so every rank's
timeline with uniform costs mirrors DualPipeV's on PP/2 ranks; only the transfers between the middle ranks
PP/2-1 and PP/2 (local in DualPipeV) differ. The README's table gives DualPipe the bubble
(PP/2-1)(F&B + B - 3W) and activation memory PP + 1 (in stages of 1/PP of the model); tests check both.
"""

from __future__ import annotations

from array import array
from collections import deque

from schedules.ir import NUM_OPS, Op, Schedule, ScheduleError, v_shape_placement
from schedules.periodic import woven

__all__ = ["dualpipe_v", "dualpipe", "dualpipe_v_rule", "dualpipe_rule"]


def dualpipe_v_rule(num_ranks: int, num_microbatches: int) -> str | None:
    """Why DualPipeV cannot take these sizes, or None if it can: it needs m >= 2p (at least one microbatch
    per stage, as PyTorch's ``ScheduleDualPipeV`` requires), so that its main F&B phase runs at least once on
    every rank."""
    if num_ranks < 1:
        return f"dualpipe-v: pp={num_ranks} must be >= 1"
    if num_microbatches < 2 * num_ranks:
        return (
            f"dualpipe-v needs microbatches >= 2 * pp = {2 * num_ranks} (one per stage of its 2p-stage V), "
            f"got {num_microbatches}"
        )
    return None


def dualpipe_rule(num_ranks: int, num_microbatches: int) -> str | None:
    """Why DualPipe cannot take these sizes, or None: deepseek-ai/DualPipe asserts an even number of ranks
    and an even number of microbatches m >= 2 * pp (m/2 per direction, at least pp each)."""
    if num_ranks < 2 or num_ranks % 2:
        return f"dualpipe needs an even pp >= 2 (two directions over mirrored rank pairs), got pp={num_ranks}"
    if num_microbatches % 2 or num_microbatches < 2 * num_ranks:
        return (
            f"dualpipe needs an even number of microbatches >= 2 * pp = {2 * num_ranks} "
            f"(half per direction), got {num_microbatches}"
        )
    return None


class _DualPipeProgram:
    """A rank's program under construction, as packed action codes (:func:`schedules.ir.encode`). F passes
    count per chunk (from the chunk's first microbatch ``first``); B and I share one backward counter per chunk
    (each microbatch gets one of them); every I queues its W, and W passes leave the queue oldest first."""

    def __init__(self, stage0: int, stage1: int, num_stages: int, first: tuple[int, int] = (0, 0)) -> None:
        self.stages = (stage0, stage1)
        self.num_stages = num_stages
        self.forwards = list(first)
        self.backwards = list(first)
        self.weight_queue: deque[int] = deque()
        self.codes: list[int] = []
        self.pairs: list[int] = []  # positions of overlapped F&B pairs (the F; its B follows)

    def _code(self, chunk: int, op: Op, mb: int) -> int:
        return (mb * self.num_stages + self.stages[chunk]) * NUM_OPS + int(op)

    def overlapped(self, f_chunk: int, b_chunk: int) -> None:
        """DualPipe's F&B: the forward of ``f_chunk`` and the full backward of ``b_chunk`` as one pair."""
        self.pairs.append(len(self.codes))
        self.forward(f_chunk)
        self.backward(b_chunk)

    def overlapped_rounds(self, count: int) -> None:
        """``count`` rounds of the main phase, F&B (F chunk 0, B chunk 1) then F&B (F chunk 1, B chunk 0),
        woven at C speed (:func:`schedules.periodic.woven`): each column's microbatch steps by one per round."""
        if count <= 0:
            return
        step = self.num_stages * NUM_OPS
        f, b = self.forwards, self.backwards
        columns = [
            (self._code(0, Op.F, f[0]), step),
            (self._code(1, Op.B, b[1]), step),
            (self._code(1, Op.F, f[1]), step),
            (self._code(0, Op.B, b[0]), step),
        ]
        base = len(self.codes)
        self.codes.extend(woven(count, columns))
        self.pairs.extend(woven(count, [(base, 4), (base + 2, 4)]))
        for chunk in (0, 1):
            f[chunk] += count
            b[chunk] += count

    def forward(self, chunk: int) -> None:
        self.codes.append(self._code(chunk, Op.F, self.forwards[chunk]))
        self.forwards[chunk] += 1

    def backward(self, chunk: int, split: bool = False) -> None:
        """A full backward B, or with ``split`` an I whose W is queued."""
        mb = self.backwards[chunk]
        self.backwards[chunk] += 1
        self.codes.append(self._code(chunk, Op.I if split else Op.B, mb))
        if split:
            self.weight_queue.append(self._code(chunk, Op.W, mb))

    def weight(self) -> None:
        """The oldest queued W, if any."""
        if self.weight_queue:
            self.codes.append(self.weight_queue.popleft())


def dualpipe_v(num_ranks: int, num_microbatches: int) -> Schedule:
    """DualPipeV on p ranks (2p stages, V-shape) with m >= 2p microbatches.

    Steps on rank r (deepseek-ai/DualPipe; chunk 0 = stage r, chunk 1 = stage 2p-1-r):

    1. 2(p-r-1) forwards of chunk 0;
    2. r+1 pairs (F chunk 0, F chunk 1);
    3. p-r-1 triples (I chunk 1, W, F chunk 1), zero-bubble style;
    4. main phase, m-2p+r+1 times: F&B (F chunk 0, B chunk 1) then F&B (F chunk 1, B chunk 0), the last
       rank's very first pair as a plain F then B;
    5. p-r-1 times: B chunk 1, then F&B (F chunk 1, B chunk 0);
    6. r+1 pairs (backward chunk 1, backward chunk 0), switching from B to I (W deferred) half way;
    7. p-r-1 times: W, then a backward of chunk 0;
    8. r+1 W passes.

    The F&B pairs are recorded in :attr:`Schedule.overlapped` (see the module docstring).
    """
    problem = dualpipe_v_rule(num_ranks, num_microbatches)
    if problem:
        raise ScheduleError(problem)
    p, m = num_ranks, num_microbatches
    ranks = [_eight_steps(_DualPipeProgram(r, 2 * p - 1 - r, 2 * p), r, p, m) for r in range(p)]
    return _schedule("dualpipe-v", p, m, ranks, (0,))


def _eight_steps(rank: _DualPipeProgram, h: int, p: int, m: int) -> _DualPipeProgram:
    """deepseek-ai/DualPipe's eight steps on half rank ``h`` of ``p``, ``m`` microbatches per chunk (the
    step list in :func:`dualpipe_v`'s docstring), appended to ``rank``."""
    for _ in range(2 * (p - h - 1)):  # 1
        rank.forward(0)
    for _ in range(h + 1):  # 2
        rank.forward(0)
        rank.forward(1)
    for _ in range(p - h - 1):  # 3
        rank.backward(1, split=True)
        rank.weight()
        rank.forward(1)
    rounds = m - 2 * p + h + 1  # 4: F&B pairs
    if rounds > 0 and h == p - 1:  # the middle rank's first pair runs unoverlapped: a smaller bubble
        rank.forward(0)  # (deepseek-ai/DualPipe and PyTorch's ScheduleDualPipeV do the same)
        rank.backward(1)
        rank.overlapped(1, 0)
        rounds -= 1
    rank.overlapped_rounds(rounds)
    for _ in range(p - h - 1):  # 5
        rank.backward(1)
        rank.overlapped(1, 0)
    split = False
    half = (h + 1) // 2
    for i in range(h + 1):  # 6: odd half ranks split from chunk 1's backward on, even ones from chunk 0's
        if i == half and h % 2 == 1:
            split = True
        rank.backward(1, split)
        if i == half and h % 2 == 0:
            split = True
        rank.backward(0, split)
    for _ in range(p - h - 1):  # 7
        rank.weight()
        rank.backward(0, split)
    for _ in range(h + 1):  # 8
        rank.weight()
    return rank


def dualpipe(num_ranks: int, num_microbatches: int) -> Schedule:
    """Bidirectional DualPipe on ``num_ranks`` = PP (even) ranks with ``num_microbatches`` = m (even, >= 2 PP):
    2 PP stages in two chains, the forward direction (stages 0..PP-1 on ranks 0..PP-1, microbatches
    0..m/2-1) and the reverse one (stages PP..2PP-1 on ranks PP-1..0, microbatches m/2..m-1); each stage is
    1/PP of the model, so every rank holds two of them (see the module docstring).

    Rank r runs the eight steps of half rank h = min(r, PP-1-r) of PP/2 with m/2 microbatches per direction;
    its chunk 0 (DualPipe's phase 0) is the forward direction on ranks r < PP/2 and the reverse direction
    on the others.
    """
    problem = dualpipe_rule(num_ranks, num_microbatches)
    if problem:
        raise ScheduleError(problem)
    pp, m = num_ranks, num_microbatches
    half_p, half_m = pp // 2, m // 2
    ranks = []
    for r in range(pp):
        forward_stage, reverse_stage = r, 2 * pp - 1 - r  # direction 0's stage r; direction 1's at PP-1-r
        if r < half_p:
            rank = _DualPipeProgram(forward_stage, reverse_stage, 2 * pp, (0, half_m))
        else:
            rank = _DualPipeProgram(reverse_stage, forward_stage, 2 * pp, (half_m, 0))
        ranks.append(_eight_steps(rank, min(r, pp - 1 - r), half_p, half_m))
    return _schedule("dualpipe", pp, m, ranks, (0, pp))


def _schedule(
    name: str, p: int, m: int, ranks: list[_DualPipeProgram], chain_starts: tuple[int, ...]
) -> Schedule:
    """The :class:`Schedule` of the built rank programs (V-shape placement, their F&B pairs: an F and a B of
    the other chunk, another microbatch, by construction; tests run :meth:`Schedule.check_overlapped`)."""
    programs = tuple(array("q", rank.codes) for rank in ranks)
    pairs = tuple(tuple(rank.pairs) for rank in ranks)
    return Schedule(
        name, p, 2 * p, m, v_shape_placement(p), programs, pairs, chain_starts, pairs_checked=True
    )
