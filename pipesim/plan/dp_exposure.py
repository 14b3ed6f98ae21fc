"""The estimator's closed form of the exposed data-parallel gradient reduction (:mod:`pipesim.plan.estimate`),
over the per-stage costs the engine runs (:class:`pipesim.sim.engine.OpCosts`), summed once per placement
(:class:`pipesim.plan.pieces.StagePieces`)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["dp_exposed_s"]


def dp_exposed_s(
    dp_stages: Sequence[tuple[int, float, int, float, float]],
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
    nb = dp_buckets
    free = [0.0] * num_ranks
    own_end = [-float("inf")] * num_ranks
    end = 0.0
    for s, red, r, weight_s, backward_s in dp_stages:
        if dp_overlap:
            grad_pass = weight_s if split_backward else backward_s
            ready = pipeline_s - s * wave_step_s
            start = ready - grad_pass * (1 - 1 / nb)
            free[r] = max(free[r] + red, start + red, ready + red / nb)
        else:
            ready = pipeline_s
            free[r] = max(free[r], pipeline_s) + red
        own_end[r] = max(own_end[r], ready)
        end = max(end, free[r])
    if optimizer == "sync":
        return max(end - pipeline_s, 0.0)
    return max(max(f - e, 0.0) for f, e in zip(free, own_end, strict=True) if e > -float("inf"))
