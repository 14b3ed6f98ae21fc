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

from collections import defaultdict

from schedules.ir import Action, Op, Schedule, ScheduleError, interleaved_placement

__all__ = ["looped_bfs", "interleaved_zero_bubble", "interleaved_zb_rule"]


def _check(name: str, num_ranks: int, num_microbatches: int, chunks: int) -> None:
    for label, value in (("pp", num_ranks), ("microbatches", num_microbatches), ("vpp", chunks)):
        if value < 1:
            raise ScheduleError(f"{name}: {label}={value} must be >= 1")


def looped_bfs(num_ranks: int, num_microbatches: int, chunks: int) -> Schedule:
    """``ScheduleLoopedBFS`` on ``num_ranks`` ranks with ``chunks`` (v) stages per rank (see the module
    docstring)."""
    _check("looped-bfs", num_ranks, num_microbatches, chunks)
    p, m, v = num_ranks, num_microbatches, chunks
    programs = []
    for r in range(p):
        stages = [c * p + r for c in range(v)]
        forwards = [Action(s, Op.F, mb) for s in stages for mb in range(m)]  # chunk by chunk, in order
        backwards = [Action(s, Op.B, mb) for s in reversed(stages) for mb in reversed(range(m))]
        programs.append(forwards + backwards)
    return Schedule.from_actions("looped-bfs", p, m, interleaved_placement(p, p * v), programs)


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
    per_round = m // max(1, m // p)
    programs = []
    for r in range(p):
        warmup = min((v - 1) * per_round + (p - 1 - r), v * m)
        total = v * m + warmup  # warm-up forwards, v*m - warmup steady steps, warmup cool-down backwards
        next_mb: dict[tuple[int, Op], int] = defaultdict(int)
        prog: list[Action] = []
        backward_steps: list[int] = []
        weights_done = 0

        def fwd_stage(step: int, r: int = r) -> int:
            return ((step // per_round) % v) * p + r

        def bwd_stage(step: int, r: int = r, warmup: int = warmup) -> int:
            return (v - 1 - ((step - warmup) // per_round) % v) * p + r

        def emit(stage: int, op: Op, prog: list[Action] = prog, next_mb: dict = next_mb) -> None:
            prog.append(Action(stage, op, next_mb[(stage, op)]))
            next_mb[(stage, op)] += 1

        for step in range(total):
            if step < warmup:  # warm-up: forwards only
                emit(fwd_stage(step), Op.F)
                continue
            if step < v * m:  # steady: one forward ...
                emit(fwd_stage(step), Op.F)
            emit(bwd_stage(step), Op.I)  # ... and one input-gradient pass (the cool-down: only this)
            backward_steps.append(step)
            if step - warmup >= r:  # W of the oldest pending I, r steps behind
                emit(bwd_stage(backward_steps[weights_done]), Op.W)
                weights_done += 1
        while weights_done < len(backward_steps):
            emit(bwd_stage(backward_steps[weights_done]), Op.W)
            weights_done += 1
        programs.append(prog)
    return Schedule.from_actions("interleaved-zb", p, m, interleaved_placement(p, p * v), programs)
