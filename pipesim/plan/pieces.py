"""What the planner's candidates that differ only in their schedule share: one layout's per-stage costs on one
stage placement (:class:`StagePieces`), summed per pipeline rank once instead of once per candidate.

Every schedule with the same placement (gpipe, 1F1B and the one-chunk zero-bubble orders: stage s on rank s;
the interleaved families with the same chunk count: stage s on rank s mod p; the V-shapes) runs the same
:meth:`pipesim.cost.stages.StageCostModel.stage_costs`, since no cost depends on the schedule: the estimator
(:mod:`pipesim.plan.estimate`) keeps these pieces per (layout without its schedule and chunk count, placement)
and adds only what the schedule changes (bubble factor, in-flight activations, the gradient reduction's end).
The sums below are the estimator's own, in the same order, so every estimate is bit-identical to summing per
candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from pipesim.cost.fsdp import exposed_on_rank
from pipesim.cost.memory import stage_extra_activation_bytes
from pipesim.cost.stages import StageCosts
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec
from schedules import get_family

__all__ = ["StagePieces", "cost_key", "stage_pieces"]

# Every Layout field but the two that only choose the schedule (its name and chunk count, whose effect on costs
# is the placement, part of the pieces' key).
_COST_FIELDS = tuple(f.name for f in fields(Layout) if f.name not in ("schedule", "vpp"))


def cost_key(layout: Layout) -> tuple[object, ...]:
    """The fields of ``layout`` its per-stage costs depend on, given the placement: all but schedule and vpp,
    whether its pipeline sends block (Megatron-Core's default depends on the schedule), and the schedule's
    number of chains (bidirectional DualPipe's two model copies cost otherwise than one chain of as many
    stages: :meth:`pipesim.cost.stages.StageCostModel.stage_costs`)."""
    chains = get_family(layout.schedule).chains
    return (*(getattr(layout, name) for name in _COST_FIELDS), layout.p2p_overlapped, chains)


@dataclass(frozen=True)
class StagePieces:
    """One layout's :class:`StageCosts` on one placement and its per-rank sums: per microbatch, each rank's
    work (F + B of its stages, plus its blocking sends), its blocking sends, its ZeRO-3 / FSDP communication
    its passes do not hide, forward, weight-gradient, recompute and TP-communication seconds; the slowest
    rank (most work, lowest index on ties); the stage-boundary transfers; the stages with a gradient reduction
    (last stage first) as (stage, seconds, rank, W seconds, B seconds); per rank its local stages' activation
    and weight-stash bytes (the profiled memory walk's weights) and, for ranks 0 and p-1, their layer and extra
    (embedding, head) activation bytes (the closed forms')."""

    sc: StageCosts
    work: tuple[float, ...]
    fwd: tuple[float, ...]
    wgt: tuple[float, ...]
    rec: tuple[float, ...]
    tpc: tuple[float, ...]
    blocked: tuple[float, ...]
    fsdp_exposed: tuple[float, ...]
    slow: int
    sum_work: float
    hop: float
    pp_comm: float
    dp_stages: tuple[tuple[int, float, int, float, float], ...]
    walk_matrix: np.ndarray
    end_bytes: dict[int, tuple[float, float]]


def stage_pieces(model: ModelSpec, layout: Layout, placement: Sequence[int], sc: StageCosts) -> StagePieces:
    """The :class:`StagePieces` of ``sc``, the costs of ``layout`` on ``placement``."""
    c = sc.costs
    p = layout.pp
    n_stages = len(placement)
    work = [0.0] * p
    fwd = [0.0] * p
    wgt = [0.0] * p
    rec = [0.0] * p
    tpc = [0.0] * p
    # Blocking sends (c.p2p_blocking) hold the sender's compute: they join its per-microbatch work.
    blocked = [0.0] * p
    if c.p2p_blocking:
        for s in range(n_stages - 1):
            if placement[s] != placement[s + 1]:  # F(s) sends to s+1, B(s+1) back to s
                blocked[placement[s]] += c.p2p_s[s]
                blocked[placement[s + 1]] += c.p2p_s[s]
    for s in range(n_stages):
        r = placement[s]
        work[r] += c.forward_s[s] + c.backward_s[s]
        fwd[r] += c.forward_s[s]
        wgt[r] += c.weight_s[s]
        rec[r] += c.recompute_s[s]
        tpc[r] += c.tp_comm_forward_s[s] + c.tp_comm_backward_s[s]
    for r in range(p):
        work[r] += blocked[r]
    slow = max(range(p), key=lambda r: (work[r], -r))
    boundary = c.p2p_s
    hop = sum(boundary) / len(boundary) if boundary else 0.0
    dp_stages = tuple(
        (s, c.dp_reduce_s[s], placement[s], c.weight_s[s], c.backward_s[s])
        for s in range(n_stages - 1, -1, -1)
        if c.dp_reduce_s[s] > 0
    )
    local = [[s for s in range(n_stages) if placement[s] == r] for r in range(p)]
    walk = [
        [c.activation_bytes[s] for s in local[r]] + [c.weight_stash_bytes[s] for s in local[r]]
        for r in range(p)
    ]
    widths = {len(w) for w in walk}
    walk_matrix = np.array(walk, dtype=np.float64) if len(widths) == 1 else np.array(walk, dtype=object)
    last = n_stages - 1
    end_bytes: dict[int, tuple[float, float]] = {}
    for r in sorted({0, p - 1}):
        extras = [stage_extra_activation_bytes(model, layout, s == 0, s == last) for s in local[r]]
        layer_bytes = sum(c.activation_bytes[s] - x for s, x in zip(local[r], extras, strict=True))
        end_bytes[r] = (layer_bytes, sum(extras))
    return StagePieces(
        sc,
        tuple(work),
        tuple(fwd),
        tuple(wgt),
        tuple(rec),
        tuple(tpc),
        tuple(blocked),
        tuple(exposed_on_rank(sc.zero3_exposed_s, placement, r, 1) for r in range(p)),
        slow,
        sum(work),
        hop,
        2.0 * sum(boundary),
        dp_stages,
        walk_matrix,
        end_bytes,
    )
