"""Back-to-back training iterations of one schedule, and the two optimizer modes that join them.

* ``sync``: the optimizer step is globally synchronised (gradient-norm clipping and the NaN/Inf check need every
  rank's gradients), so no rank starts iteration k+1 before every rank has finished iteration k. Every iteration
  then takes the same time, the one-step time pipesim has always reported.
* ``post-validation``: the Zero Bubble paper's optimizer step without that barrier (Qi et al., "Zero Bubble
  Pipeline Parallelism", ICLR 2024, arXiv:2401.10241, Section 4, "Bypassing optimizer synchronizations"):
  each rank updates its weights as soon as its own passes are done and the global check is validated later,
  rolling back in the rare case it fails. The next iteration's warm-up on a rank may then start while other
  ranks still run this iteration's tail.

:func:`repeat_iterations` models the second mode without any change to the engine: rank r's program for N
iterations is its one-iteration program N times, the microbatches of iteration k renumbered ``k * m + mb``. An
action of iteration k+1 then starts as soon as its rank is free and its inputs have arrived, which is exactly
"no barrier". The steady-state step time is the period the back-to-back timeline settles into; see
:func:`steady_state_step`.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from schedules.ir import NUM_OPS, Schedule, ScheduleError

__all__ = ["OPTIMIZER_MODES", "check_optimizer_mode", "repeat_iterations", "steady_state_step"]

OPTIMIZER_MODES = ("sync", "post-validation")


def check_optimizer_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`OPTIMIZER_MODES`, else raise :class:`ScheduleError` listing them."""
    if mode not in OPTIMIZER_MODES:
        raise ScheduleError(f"unknown optimizer mode {mode!r}; valid: {', '.join(OPTIMIZER_MODES)}")
    return mode


def repeat_iterations(schedule: Schedule, iterations: int) -> Schedule:
    """``iterations`` back-to-back copies of ``schedule`` with no barrier between them (post-validation).

    Iteration k's microbatch mb becomes microbatch ``k * m + mb``; each rank runs its program once per
    iteration, in order. Dependencies never cross microbatches, so the result is complete and deadlock-free
    whenever ``schedule`` is. With the packed codes ``(mb * S + stage) * NUM_OPS + op`` the renumbering is one
    addition of ``k * m * S * NUM_OPS`` per code.
    """
    if iterations < 1:
        raise ScheduleError(f"iterations={iterations} must be >= 1")
    if iterations == 1:
        return schedule
    shift = schedule.num_microbatches * schedule.num_stages * NUM_OPS
    programs = []
    for prog in schedule.programs:
        out = array("q")
        for k in range(iterations):
            offset = k * shift
            out.extend(c + offset for c in prog)
        programs.append(out)
    pairs = (
        tuple(
            tuple(k + it * len(prog) for it in range(iterations) for k in ks)
            for ks, prog in zip(
                schedule.overlapped or ((),) * schedule.num_ranks, schedule.programs, strict=True
            )
        )
        if schedule.overlapped
        else ()
    )  # empty when the schedule has no overlapped pairs
    return Schedule(
        schedule.name,
        schedule.num_ranks,
        schedule.num_stages,
        schedule.num_microbatches * iterations,
        schedule.stage_to_rank,
        tuple(programs),
        pairs,
        schedule.chain_starts,
        pairs_checked=True,  # each iteration's pairs are the checked schedule's, shifted
    )


def steady_state_step(iteration_ends: Sequence[float]) -> float:
    """The steady-state step time from the times at which iterations 1..N of a back-to-back run end.

    Definition (pipesim's choice, stated in ``--help``): ``(T(N) - T(1)) / (N - 1)``, the mean period of the
    iterations after the first, where T(k) is when the last pass of iteration k ends on any rank. The first
    iteration carries the pipeline fill that later iterations overlap with their predecessor's tail, so it is
    left out; averaging over the rest (rather than taking T(N) - T(N-1) alone) smooths schedules whose pattern
    repeats over more than one iteration. With one iteration it is T(1), the synchronous step.
    """
    ends = list(iteration_ends)
    if not ends:
        raise ScheduleError("steady-state step needs at least one iteration")
    if len(ends) == 1:
        return ends[0]
    return (ends[-1] - ends[0]) / (len(ends) - 1)
