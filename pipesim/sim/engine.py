"""The timeline simulator: when does every action, transfer and reduction of a schedule run?

Model:

* each rank runs its program in order on one compute stream; an action starts when the rank is free and every
  signal it depends on (:func:`schedules.ir.depends_on`) is available on that rank;
* a signal produced on another rank travels as a transfer on the producer's send stream: it starts when the
  producer finishes and the stream is free (sends on one rank go one at a time, in program order) and lasts
  ``p2p_s`` of the stage boundary it crosses; the consumer may start when it ends;
* gradient reduction of each stage's parameters runs on a per-rank data-parallel stream in ``dp_buckets``
  equal buckets: with ``dp_overlap`` bucket k of a stage is ready k+1 / dp_buckets of the way through the
  stage's last gradient pass (B, or W with a split backward; layers produce their gradients in turn, as
  Megatron-LM's and PyTorch DDP's bucketed reductions use them), otherwise after all of the rank's compute;
  the stream reduces one bucket at a time, in order of readiness; the optimizer step then follows once every
  rank has reduced its gradients (``sync``: gradient clipping needs the global norm), or under
  ``post-validation`` once the rank itself has and the partially reduced global state of the previous rank
  has arrived (:mod:`pipesim.sim.gradients`);
* a step may begin with its ranks' streams busy until given times (:class:`RankStart`): the previous
  iteration's optimizer step and last transfers, when iterations run back to back
  (:mod:`pipesim.sim.iterations`).

* an overlapped forward-and-backward pair of a schedule (DualPipe's F&B, :attr:`schedules.Schedule.overlapped`)
  runs as one span once the inputs of both passes are there, lasting ``fb_pair_s`` when given, else
  max(compute of both, all-to-alls of both) (:mod:`pipesim.sim.overlap`) when the passes hold all-to-all time;
  otherwise its two passes run one after the other.

Costs come in as numbers per stage (:class:`OpCosts`), so the engine knows nothing about models or GPUs.

Two evaluations compute this model, with the same floating-point operations, so their timelines are
bit-identical (a differential test holds them together, and the reference against a brute-force event
simulation):

* :func:`pipesim.sim.wavefront.simulate_wavefront`, the numpy reference: one round of numpy calls per level of
  the schedule; quick to start, slow for long programs (0.25 M actions/s at 4 ranks);
* :func:`pipesim.sim.compiled.simulate_compiled` (not yet for overlapped F&B pairs): one compiled pass (numba, cached on disk), tens of millions
  of actions per second at any rank count; importing numba and loading the cache costs about a second, so
  ``method="auto"`` takes it only for schedules whose wavefront would take longer than that (or once it is
  loaded).

Results are deterministic.
"""

from __future__ import annotations

import sys
from typing import Literal

from pipesim.sim.timeline import OpCosts, RankStart, SpanKind, Stream, Timeline
from pipesim.sim.wavefront import decode_actions, simulate_wavefront
from schedules.ir import Schedule, ScheduleError
from schedules.iterations import check_optimizer_mode

__all__ = ["OpCosts", "RankStart", "Timeline", "SpanKind", "Stream", "simulate", "decode_actions", "Method"]

Method = Literal["auto", "compiled", "wavefront"]

# The wavefront runs one round (about 20 us of numpy calls) per action of the longest program; beyond this
# many rounds (about half a second) the compiled pass, numba's import and cache load included, is faster.
COMPILED_FROM_ROUNDS = 25_000
# ... and beyond this many actions its per-action numpy work alone is (about 0.3 us per action).
COMPILED_FROM_ACTIONS = 1_000_000


# Wavefront rounds this process has run: many small simulations (calibrate's fits: hundreds of steps) pay for
# loading the compiled pass as one long one does.
_rounds_run = 0


def _prefer_compiled(schedule: Schedule) -> bool:
    """Whether ``method="auto"`` takes the compiled pass for ``schedule``: when it is already loaded, or the
    schedule (or the wavefront rounds this process has already run) is long enough to pay for loading it (and
    numba is installed)."""
    global _rounds_run
    if "pipesim.sim.compiled" in sys.modules:
        return True
    longest = max((len(p) for p in schedule.programs), default=0)
    short = longest < COMPILED_FROM_ROUNDS and schedule.num_actions < COMPILED_FROM_ACTIONS
    if short and _rounds_run + longest < COMPILED_FROM_ROUNDS:
        _rounds_run += longest
        return False
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a dependency; without it the reference still runs
        return False
    return True


def simulate(
    schedule: Schedule,
    costs: OpCosts,
    *,
    method: Method = "auto",
    start: RankStart | None = None,
    optimizer: str = "sync",
) -> Timeline:
    """Simulate one training step of ``schedule`` with ``costs``; see the module docstring for the model.

    ``start`` is when each rank's compute and send streams are free (None: all at 0); ``optimizer`` the
    optimizer mode that places the optimizer step (``sync`` or ``post-validation``).

    ``method`` picks the evaluation: ``"wavefront"`` (numpy reference), ``"compiled"`` (numba) or ``"auto"``
    (compiled for long schedules); all give the same timeline, bit for bit. Overlapped F&B pairs (given
    ``fb_pair_s``, or all-to-all time in the passes) are modelled by the wavefront only: such a step always
    runs there.
    Raises :class:`ScheduleError` if the schedule is incomplete or deadlocks (with the rank x step grid).
    """
    if costs.num_stages != schedule.num_stages:
        raise ScheduleError(
            f"costs cover {costs.num_stages} stages but schedule {schedule.name!r} has {schedule.num_stages}"
        )
    if method not in ("auto", "compiled", "wavefront"):
        raise ScheduleError(f"unknown simulation method {method!r}; valid: auto, compiled, wavefront")
    check_optimizer_mode(optimizer)
    if start is not None:
        start.check(schedule.num_ranks)
    pairs = costs.hides_in_pairs and any(schedule.overlapped)
    if not pairs and (method == "compiled" or (method == "auto" and _prefer_compiled(schedule))):
        from pipesim.sim.compiled import simulate_compiled

        return simulate_compiled(schedule, costs, start, optimizer)
    return simulate_wavefront(schedule, costs, start, optimizer)
