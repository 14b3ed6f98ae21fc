"""The estimator's closed form of the exposed data-parallel gradient reduction (:mod:`pipesim.plan.estimate`),
over the per-stage costs the engine runs (:class:`pipesim.sim.engine.OpCosts`)."""

from __future__ import annotations

from collections.abc import Sequence

from pipesim.sim.engine import OpCosts

__all__ = ["dp_exposed_s"]


def dp_exposed_s(
    c: OpCosts,
    placement: Sequence[int],
    pipeline_s: float,
    wave_step_s: float,
    split_backward: bool,
    optimizer: str,
) -> float:
    """Seconds the gradient reductions extend the step, as the engine runs them on each rank's reduction
    stream (:mod:`pipesim.sim.gradients`): a stage's ``dp_buckets`` equal buckets become ready in turn through
    its last gradient pass (B, or W with a split backward), which ends about s x ``wave_step_s`` (one chunk's
    backward plus a transfer) before the end of the pipeline phase ``pipeline_s`` (the final backward wave runs
    from the last stage to the first); one bucket at a time per rank. Exposed: past the pipeline phase under
    ``sync``; under ``post-validation`` the longest time a rank's reductions run past its own last gradient
    pass (no barrier waits for the others)."""
    if not any(c.dp_reduce_s):
        return 0.0
    nb = c.dp_buckets
    p = max(placement) + 1
    free = [0.0] * p
    own_end = [-float("inf")] * p
    end = 0.0
    for s in range(len(placement) - 1, -1, -1):
        red = c.dp_reduce_s[s]
        if red <= 0:
            continue
        r = placement[s]
        if c.dp_overlap:
            grad_pass = c.weight_s[s] if split_backward else c.backward_s[s]
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
