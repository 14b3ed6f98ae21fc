"""The Zero Bubble paper's heuristic scheduler (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024,
arXiv:2401.10241, Section 3.1, "Heuristic algorithm"), one run per setting of its binary knobs, for one stage
per rank; :func:`schedules.zb_auto.auto_zero_bubble` searches the knobs and chooses.

The paper's heuristic builds the order in rounds, one microbatch per round, from per-stage times of F, I (the
paper's B: backward for inputs) and W (backward for weights), the transfer time and a memory limit:

1. Warm-up (round 0): every stage runs the first forward; then, from the last stage up, stage j is given as
   many more forwards as fit in memory *and* finish before the first I (of microbatch 0) can arrive from stage
   j+1, that arrival being simulated stage by stage. A binary knob (``allow_short_bubble``) says whether one
   more forward may still start when it would end after that arrival (the paper: "a small bubble (less than
   T_F) before the first B ... we use a binary hyperparameter"). The counts are then made strictly
   decreasing with the stage index (stage j always holds at least one forward more than stage j+1; paper,
   point 3), and the round ends with microbatch 0's I passes from the last stage to the first.
2. Every later round gives each stage one F (unless the stage is out of forwards) and one I, so the pattern
   settles into 1F-1I-1W. Before a pass, pending W passes are inserted (a) while memory would overflow (W
   frees the weight stash), (b) while a whole W fits in the wait for the pass's input, and (c) for a wait
   shorter than T_W when leaving it idle would make this stage's cumulative bubble the largest of all
   stages (or always, with the knob ``fill_short_gaps``).
3. A stage j holding two or more forwards more than stage j+1 may skip this round's F (knob
   ``prioritize_input_grad``) when that F (with any W needed to make room for it) would not finish before the
   next I can come back from stage j+1, or when the wait it leaves does not make this stage's bubble the
   largest. A stage never runs an F in a round in which the next stage does not.
4. When F and I passes run out, the remaining W passes follow one by one. Stage 0, whose I passes nobody
   waits for, runs its pending W passes before each I once its forwards are done.

Memory is charged per pass as the paper charges it (Table 1; its scheduler's ``mem_f``, ``mem_b``, ``mem_w``):
F adds one microbatch of the stage's activations, I frees all but ``stash_fraction`` of it (what W still needs:
the inputs of the linear layers, 32sbh of the sb(34h + 5as) bytes per layer, Korthikanti et al. 2022), W frees
the rest. The limits of the registered variants are the paper's: p microbatches (ZB-1p, 1F1B's peak) and 2p
(ZB-2p).

A run also reports which knobs ever decided one of its steps (:func:`heuristic_run`): a knob decides a step
where its value is read and the rest of the state leaves the choice open. A run whose other knobs are flipped
takes every step the same way and so builds the same order, which the search then does not build again.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from schedules.compiled import run_heuristic, worth_compiling
from schedules.ir import NUM_OPS, Op, Schedule, ScheduleError
from schedules.timing import StageTimes

__all__ = [
    "AutoTimes",
    "heuristic_order",
    "heuristic_run",
    "SHORT_BUBBLE",
    "INPUT_GRAD_FIRST",
    "FILL_SHORT_GAPS",
]

_EPS = 1e-9
SHORT_BUBBLE, INPUT_GRAD_FIRST, FILL_SHORT_GAPS = 1, 2, 4  # the knobs' bits in heuristic_run's result


@dataclass(frozen=True)
class AutoTimes:
    """Seconds per microbatch of one stage's F, I (= B - W) and W, and per transfer; ``stash_fraction`` of a
    microbatch's activations stays stashed from I until W."""

    forward_s: float = 1.0
    input_s: float = 1.0
    weight_s: float = 1.0
    p2p_s: float = 0.0
    stash_fraction: float = 0.0

    def stage_times(self, num_stages: int) -> StageTimes:
        """The same times on every stage, for :func:`schedules.timing.time_order`."""
        return StageTimes.uniform(
            num_stages,
            self.forward_s,
            self.input_s,
            self.weight_s,
            self.p2p_s,
            stash_fraction=self.stash_fraction,
        )


_F, _I, _W = int(Op.F), int(Op.I), int(Op.W)


class _Builder:
    """One run of the paper's heuristic: per-stage counters, end times and bubbles, and the knobs that decided
    a step so far (:data:`SHORT_BUBBLE`, :data:`INPUT_GRAD_FIRST`, :data:`FILL_SHORT_GAPS` bits)."""

    def __init__(self, p: int, m: int, times: AutoTimes, limit: float) -> None:
        self.p, self.m, self.t, self.limit = p, m, times, limit
        self.f = [0] * p
        self.i = [0] * p
        self.w = [0] * p
        self.end = [0.0] * p
        self.mem = [0.0] * p
        self.bubble = [0.0] * p
        self.top = 0.0  # max(self.bubble): bubbles only grow, so the running maximum is kept
        self.f_end = [[0.0] * m for _ in range(p)]
        self.i_end = [[0.0] * m for _ in range(p)]
        self.orders: list[list[int]] = [[] for _ in range(p)]  # packed codes (schedules.ir.encode)
        self.decisive = 0
        keep = times.stash_fraction
        # Indexed by Op (F 0, B 1 unused, I 2, W 3).
        self.cost = [times.forward_s, 0.0, times.input_s, times.weight_s]
        self.charge = [1.0, 0.0, -(1.0 - keep), -keep]
        self.counters = [self.f, self.f, self.i, self.w]

    def ready(self, j: int, op: int) -> float:
        """When the input of stage j's next ``op`` pass is available on its rank (0 if local)."""
        if op == _F:
            return self.f_end[j - 1][self.f[j]] + self.t.p2p_s if j > 0 else 0.0
        if op == _I and j < self.p - 1:
            return self.i_end[j + 1][self.i[j]] + self.t.p2p_s
        return 0.0

    def put(self, j: int, op: int) -> None:
        """Append stage j's next ``op`` pass and advance its clock."""
        counter = self.counters[op]
        mb = counter[j]
        mem = self.mem[j] + self.charge[op]
        if mem > self.limit + _EPS:  # pragma: no cover - callers make room first
            raise ScheduleError("zero-bubble heuristic: internal error, memory limit exceeded")
        end = self.end[j]
        start = max(end, self.ready(j, op))
        if self.f[j] > 0:
            bubble = self.bubble[j] = self.bubble[j] + (start - end)
            if bubble > self.top:
                self.top = bubble
        end = self.end[j] = start + self.cost[op]
        self.mem[j] = mem
        if op == _F:
            self.f_end[j][mb] = end
        elif op == _I:
            self.i_end[j][mb] = end
        counter[j] = mb + 1
        self.orders[j].append((mb * self.p + j) * NUM_OPS + op)

    def make_room(self, j: int, op: int) -> bool:
        """Insert W passes until ``op`` fits in memory; False if no W is left to free enough."""
        while self.mem[j] + self.charge[op] > self.limit + _EPS:
            if self.w[j] >= self.i[j]:
                return False
            self.put(j, _W)
        return True

    def fill_wait(self, j: int, op: int, fill_short_gaps: bool) -> None:
        """Insert pending W passes into the wait before stage j's next ``op`` (rules 2b and 2c)."""
        arrival = self.ready(j, op)
        tw = self.cost[_W]
        while self.w[j] < self.i[j] and self.end[j] + tw <= arrival + _EPS:
            self.put(j, _W)
        if self.w[j] < self.i[j] and self.end[j] < arrival - _EPS:
            gap = arrival - self.end[j]
            if gap > self.top - self.bubble[j] + _EPS:  # the wait would be the largest bubble
                self.put(j, _W)
            else:
                self.decisive |= FILL_SHORT_GAPS
                if fill_short_gaps:
                    self.put(j, _W)


def heuristic_order(
    num_ranks: int,
    num_microbatches: int,
    memory_limit: float,
    times: AutoTimes,
    allow_short_bubble: bool,
    prioritize_input_grad: bool,
    fill_short_gaps: bool,
) -> Schedule | None:
    """One run of the paper's heuristic with the given knobs (see the module docstring), or None when the
    memory limit cannot be met along the way."""
    knobs = (allow_short_bubble, prioritize_input_grad, fill_short_gaps)
    return heuristic_run(num_ranks, num_microbatches, memory_limit, times, *knobs)[0]


def heuristic_run(
    num_ranks: int,
    num_microbatches: int,
    memory_limit: float,
    times: AutoTimes,
    allow_short_bubble: bool,
    prioritize_input_grad: bool,
    fill_short_gaps: bool,
) -> tuple[Schedule | None, int]:
    """:func:`heuristic_order`'s result and the knobs that decided one of its steps (bits
    :data:`SHORT_BUBBLE`, :data:`INPUT_GRAD_FIRST`, :data:`FILL_SHORT_GAPS`): the run with any of the others
    flipped is this one."""
    p, m = num_ranks, num_microbatches
    if worth_compiling(3 * p * m):
        knobs = (allow_short_bubble, prioritize_input_grad, fill_short_gaps)
        return _heuristic_compiled(p, m, memory_limit, times, *knobs)
    b = _Builder(p, m, times, memory_limit)
    tf, ti, comm = times.forward_s, times.input_s, times.p2p_s
    # 1. Warm-up: microbatch 0's forward everywhere, then as many forwards as fit before the first I arrives.
    for j in range(p):
        if not b.make_room(j, _F):
            return None, b.decisive
        b.put(j, _F)
    extra = [0] * p
    back = b.f_end[p - 1][0] + ti  # when the last stage's first I ends
    for j in range(p - 2, -1, -1):
        mem, clock = b.mem[j], b.end[j]
        while b.f[j] + extra[j] < m and mem + 1.0 <= memory_limit + _EPS:
            ends_late = clock + tf > back + comm + _EPS  # the forward would end after the first I arrives
            starts_late = clock >= back + comm - _EPS
            if ends_late != starts_late:
                b.decisive |= SHORT_BUBBLE
            if ends_late if allow_short_bubble else starts_late:
                break
            mem += 1.0
            clock += tf
            extra[j] += 1
        back = max(clock, back + comm) + ti
    for j in range(1, p):  # strictly decreasing with the stage index, where forwards remain
        while extra[j] > 0 and extra[j] >= extra[j - 1] and b.f[j] + extra[j] < m:
            extra[j] -= 1
    for j in range(p):
        for _ in range(extra[j]):
            b.put(j, _F)
    for j in range(p - 1, -1, -1):
        b.put(j, _I)
    # 2./3. One F and one I per stage per round.
    for rnd in range(1, m):
        want = [b.f[j] < m for j in range(p)]
        if prioritize_input_grad or not b.decisive & INPUT_GRAD_FIRST:  # (else the knob's effect is known)
            for j in range(p - 1):
                if want[j] and b.f[j] >= b.f[j + 1] + 2 and _skip_forward(b, j):
                    b.decisive |= INPUT_GRAD_FIRST
                    if not prioritize_input_grad:
                        break
                    want[j] = False
        for j in range(p - 2, -1, -1):  # never an F in a round where the next stage has none
            want[j] = want[j] and want[j + 1]
        for j in range(p):
            if not want[j]:
                continue
            if not b.make_room(j, _F):
                return None, b.decisive
            if j > 0:
                b.fill_wait(j, _F, fill_short_gaps)
            b.put(j, _F)
        for j in range(p - 1, -1, -1):
            if b.i[j] != rnd or b.f[j] <= rnd:  # pragma: no cover - the rounds keep these in step
                raise ScheduleError("zero-bubble heuristic: internal error, rounds out of step")
            if not b.make_room(j, _I):
                return None, b.decisive
            if j < p - 1:
                b.fill_wait(j, _I, fill_short_gaps)
            if j == 0 and b.f[0] == m:  # nobody waits for stage 0's I: drain its W passes first
                while b.w[0] < b.i[0]:
                    b.put(0, _W)
            b.put(j, _I)
    # 4. The remaining W passes.
    for j in range(p):
        while b.w[j] < m:
            b.put(j, _W)
    order = Schedule("zb-auto", p, p, m, tuple(range(p)), tuple(array("q", order) for order in b.orders))
    return order, b.decisive


def _heuristic_compiled(
    p: int,
    m: int,
    memory_limit: float,
    times: AutoTimes,
    allow_short_bubble: bool,
    prioritize_input_grad: bool,
    fill_short_gaps: bool,
) -> tuple[Schedule | None, int]:
    """:func:`heuristic_run` by its compiled twin (:mod:`schedules.compiled.heuristic`)."""
    status, decisive, programs = run_heuristic(
        p, m, memory_limit, times.forward_s, times.input_s, times.weight_s, times.p2p_s, times.stash_fraction,
        allow_short_bubble, prioritize_input_grad, fill_short_gaps,
    )  # fmt: skip
    if status == 2:  # pragma: no cover - as in the reference, the rounds keep the passes in step
        raise ScheduleError("zero-bubble heuristic: internal error, rounds out of step")
    if status == 1:
        return None, decisive
    return Schedule("zb-auto", p, p, m, tuple(range(p)), programs), decisive


def _skip_forward(b: _Builder, j: int) -> bool:
    """Rule 3: whether stage j (two or more forwards ahead of j+1) should skip this round's F."""
    nxt = b.end[j + 1] + b.cost[_F] + b.cost[_I] + b.t.p2p_s  # when j+1's next I could be back
    if b.end[j] >= nxt:
        return True
    need, mem, w = 0.0, b.mem[j] + 1.0, b.w[j]
    while mem > b.limit + _EPS and w < b.i[j]:  # W passes needed to make room for the F
        need += b.cost[_W]
        mem -= b.t.stash_fraction
        w += 1
    if b.end[j] + b.cost[_F] + need <= nxt + _EPS:
        return False
    return nxt - b.end[j] <= b.top - b.bubble[j] + _EPS
