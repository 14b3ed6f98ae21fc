"""The estimator's closed form of the exposed data-parallel gradient reduction (:mod:`pipesim.plan.estimate`),
over the per-stage costs the engine runs (:class:`pipesim.sim.engine.OpCosts`), summed once per placement
(:class:`pipesim.plan.pieces.StagePieces`).

Times are taken relative to the end of the pipeline phase P: every reduction becomes ready a fixed time before
P, so the exposed time does not depend on P at all once P is long enough that no rank's first reduction could
start before the step began (the usual case); :class:`DpExposure` computes that value and the P from which it
holds once per placement, and runs the walk again only for a shorter P."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DpExposure", "RankRounds", "dp_exposed_s", "limit_by_rounds"]

Stages = Sequence[tuple[int, float, int, float, float]]


def _walk(
    dp_stages: Stages,
    dp_buckets: int,
    dp_overlap: bool,
    num_ranks: int,
    pipeline_s: float,
    wave_step_s: float,
    split_backward: bool,
    optimizer: str,
) -> tuple[float, float]:
    """(exposed seconds, the shortest pipeline phase for which they hold unchanged): the walk of
    :func:`dp_exposed_s`, in times relative to the pipeline's end (``pipeline_s`` = inf: the limit)."""
    nb = dp_buckets
    coef = 1 - 1 / nb
    inf = math.inf
    free = [-pipeline_s] * num_ranks
    own_end = [-inf] * num_ranks
    need = -inf  # each rank's first reduction starts after time 0 once pipeline_s >= need
    for s, red, r, weight_s, backward_s in dp_stages:  # (x if x >= y else y: max(x, y), inlined)
        if dp_overlap:
            ready = -s * wave_step_s
            start = ready - (weight_s if split_backward else backward_s) * coef
            a, b = start + red, ready + red / nb
            later = a if a >= b else b
            if own_end[r] == -inf:
                gap = red - later
                need = need if need >= gap else gap
            held = free[r] + red
            free[r] = held if held >= later else later
        else:
            ready = 0.0
            f = free[r]
            free[r] = (f if f >= 0.0 else 0.0) + red
        e = own_end[r]
        own_end[r] = e if e >= ready else ready
    if optimizer == "sync":
        # Each rank's free time only grows, so the latest end is the largest final one.
        end = max(-pipeline_s, *free)
        return (end if end >= 0.0 else 0.0), need
    exposed = max(max(f - e, 0.0) for f, e in zip(free, own_end, strict=True) if e > -inf)
    return exposed, need


def dp_exposed_s(
    dp_stages: Stages,
    dp_buckets: int,
    dp_overlap: bool,
    num_ranks: int,
    pipeline_s: float,
    wave_step_s: float,
    split_backward: bool,
    optimizer: str,
) -> float:
    """Seconds the gradient reductions extend the step, as the engine runs them on each rank's reduction
    stream (:mod:`pipesim.sim.gradients`): ``dp_stages`` are the stages with a reduction, last stage first, as
    (stage s, reduction seconds, rank, W seconds, B seconds) (:class:`pipesim.plan.pieces.StagePieces`); a
    stage's ``dp_buckets`` equal buckets become ready in turn through its last gradient pass (B, or W with a
    split backward), which ends about s x ``wave_step_s`` (one chunk's backward plus a transfer) before the end
    of the pipeline phase ``pipeline_s`` (the final backward wave runs from the last stage to the first); one
    bucket at a time per rank; without ``dp_overlap`` each starts after the pipeline phase. Exposed: past the
    pipeline phase under ``sync``; under ``post-validation`` the longest time a rank's reductions run past its
    own last gradient pass (no barrier waits for the others)."""
    if not dp_stages:
        return 0.0
    args = (dp_stages, dp_buckets, dp_overlap, num_ranks)
    return _walk(*args, pipeline_s, wave_step_s, split_backward, optimizer)[0]


@dataclass(frozen=True)
class RankRounds:
    """The stages with a reduction as rounds over the ranks, for placements where every rank holds the same
    number c of stages: (c x ranks) arrays of round j's stage on each rank (its j-th last), that stage's
    reduction, W and B seconds, and whether it has a reduction (``mask``). :func:`limit_by_rounds` walks all
    ranks at once, round by round."""

    stage: np.ndarray
    red: np.ndarray
    weight: np.ndarray
    backward: np.ndarray
    mask: np.ndarray


def limit_by_rounds(
    rounds: RankRounds,
    dp_buckets: int,
    dp_overlap: bool,
    wave_step_s: float,
    split_backward: bool,
    optimizer: str,
) -> tuple[float, float]:
    """:func:`_walk` at ``pipeline_s`` = inf over ``rounds``, every rank at once: the same operations on the
    same values (each rank's reductions in decreasing stage order), so the same floats."""
    nb = dp_buckets
    width = rounds.stage.shape[1]
    free = np.full(width, -math.inf)
    own_end = np.full(width, -math.inf)
    need = -math.inf
    grad = rounds.weight if split_backward else rounds.backward
    for j in range(rounds.stage.shape[0]):
        red, mask = rounds.red[j], rounds.mask[j]
        if dp_overlap:
            ready = -rounds.stage[j] * wave_step_s
            start = ready - grad[j] * (1 - 1 / nb)
            later = np.maximum(start + red, ready + red / nb)
            first = mask & (own_end == -math.inf)
            if first.any():
                need = max(need, float(np.max((red - later)[first])))
            free = np.where(mask, np.maximum(free + red, later), free)
        else:
            ready = np.zeros(width)
            free = np.where(mask, np.maximum(free, 0.0) + red, free)
        own_end = np.where(mask, np.maximum(own_end, ready), own_end)
    has = own_end > -math.inf
    if optimizer == "sync":
        return max(float(free.max()), 0.0), need
    return float(np.maximum(free[has] - own_end[has], 0.0).max()), need


@dataclass(frozen=True)
class DpExposure:
    """:func:`dp_exposed_s` of one placement's reductions as a function of the pipeline phase alone: the value
    for any phase of at least ``from_s`` seconds, computed once."""

    dp_stages: tuple[tuple[int, float, int, float, float], ...]
    dp_buckets: int
    dp_overlap: bool
    num_ranks: int
    wave_step_s: float
    split_backward: bool
    optimizer: str
    exposed_s: float
    from_s: float

    @classmethod
    def of(
        cls,
        dp_stages: tuple[tuple[int, float, int, float, float], ...],
        dp_buckets: int,
        dp_overlap: bool,
        num_ranks: int,
        wave_step_s: float,
        split_backward: bool,
        optimizer: str,
        rounds: RankRounds | None = None,
    ) -> DpExposure:
        """The exposure of ``dp_stages`` (arguments as :func:`dp_exposed_s` takes them); ``rounds``, the same
        stages by rank (:class:`RankRounds`), walks all ranks at once."""
        args = (dp_stages, dp_buckets, dp_overlap, num_ranks, wave_step_s, split_backward, optimizer)
        if not dp_stages:
            return cls(*args, 0.0, -math.inf)
        if rounds is not None:
            exposed, need = limit_by_rounds(
                rounds, dp_buckets, dp_overlap, wave_step_s, split_backward, optimizer
            )
        else:
            exposed, need = _walk(
                dp_stages, dp_buckets, dp_overlap, num_ranks, math.inf, wave_step_s, split_backward, optimizer
            )
        return cls(*args, exposed, need)

    def at(self, pipeline_s: float) -> float:
        """Exposed seconds after a pipeline phase of ``pipeline_s``."""
        if pipeline_s >= self.from_s:
            return self.exposed_s
        return dp_exposed_s(
            self.dp_stages,
            self.dp_buckets,
            self.dp_overlap,
            self.num_ranks,
            pipeline_s,
            self.wave_step_s,
            self.split_backward,
            self.optimizer,
        )
