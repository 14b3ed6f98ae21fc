"""Each pipeline stage's data-parallel gradient reduction, the time the engine's buckets then hide or expose
(the one model of DP overlap is :mod:`pipesim.sim.gradients`): dense gradients over data x context parallel,
routed-expert gradients over the expert-data-parallel group (Megatron-Core), all-reduced (distributed
optimizer: reduce-scattered) in buckets of :data:`pipesim.cost.times.DP_BUCKET_PARAMS` parameters; HSDP's
shards across replicas; the tied embedding between a chain's first and last stage; and, for schedules whose
stages form several copies of the model (bidirectional DualPipe, DeepSeek-V3 report arXiv:2412.19437
Section 3.2.1), each block's gradients between the ranks holding its copies (deepseek-ai/DualPipe's example
adds each copy's gradient to its mirror rank's). Also the size of the partially reduced global state that
post-validation passes from rank to rank before each optimizer step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipesim.cost import fsdp
from pipesim.cost.stage_table import StageFrame
from pipesim.cost.times import DP_BUCKET_PARAMS
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec
from pipesim.specs.placement import RankGroups

__all__ = ["VALIDATION_STATE_BYTES", "stage_reductions"]

# The partially reduced global state a stage passes on before its optimizer step under post-validation (Qi et
# al., "Zero Bubble Pipeline Parallelism", ICLR 2024, Section 4: the gradient norm and the NaN/Inf check): one
# fp32 sum of squares and one fp32 flag.
VALIDATION_STATE_BYTES = 8.0

Collective = Callable[..., float]


def stage_reductions(
    model: ModelSpec,
    layout: Layout,
    frame: StageFrame,
    params: Sequence[float],
    expert: Sequence[float],
    groups: Callable[[int], RankGroups],
    collective_s: Collective,
    memo: dict[tuple[Any, ...], float] | None = None,
) -> np.ndarray:
    """Seconds of each stage's whole gradient reduction (see the module docstring), for the stages of
    ``frame``: ``params`` / ``expert`` are each stage *signature*'s parameters per TP rank and their
    routed-expert part (:class:`pipesim.cost.stage_table.StageFrame`), ``groups(r)`` the process groups of
    pipeline rank r, ``collective_s(op, bytes, group, bucket=None)`` times one (bucketed) collective, and
    ``memo`` (one per rank grid) keeps each rank's data-parallel part by every value it depends on. The
    data-parallel part is one per signature; the tied embedding's and the model copies' terms are added to
    the stages they concern, in that order."""
    placement = frame.placement.tolist()
    chains, length = frame.chains, frame.length
    zero3 = layout.zero_stage >= 3
    grad_b = layout.grad_reduce_bytes
    collective = "reduce-scatter" if layout.distributed_optimizer else "all-reduce"
    bucket = DP_BUCKET_PARAMS * grad_b
    memo = {} if memo is None else memo
    base: list[float] = []
    for (r, _, _, _), n, x in zip(frame.sigs, params, expert, strict=True):
        red = 0.0
        rg = groups(r)
        if zero3 and layout.fsdp == "hybrid":  # HSDP: the gradient shards, across replicas, once a step
            replicas = fsdp.shard_groups(rg.dp_cp, layout)[1]
            shard = (n - x) / layout.shard_size
            red = collective_s("all-reduce", shard * grad_b, replicas, bucket)
        elif not zero3:  # ZeRO-3 reduce-scatters unit by unit inside every backward instead
            key = (collective, grad_b, n, x, r)
            red = memo.get(key, -1.0)
            if red < 0:
                red = collective_s(collective, (n - x) * grad_b, rg.dp_cp, bucket)
                if x > 0:
                    red += collective_s(collective, x * grad_b, rg.edp, bucket)
                memo[key] = red
        base.append(red)
    dp_full = np.array(base, dtype=np.float64)[frame.sig_index]
    stage_params = np.asarray(params, dtype=np.float64)[frame.sig_index].tolist()
    special: set[int] = set()
    if model.tied_embeddings and layout.pp > 1:
        special |= {c * length for c in range(chains)} | {c * length + length - 1 for c in range(chains)}
    if chains > 1:
        special = set(range(frame.num_stages))
    for s in sorted(special):
        red = float(dp_full[s])
        ends = (s - s % length, s - s % length + length - 1)  # this chain's first and last stage
        if model.tied_embeddings and layout.pp > 1 and s in ends and placement[ends[0]] != placement[ends[1]]:
            pair = [groups(placement[ends[0]]).first, groups(placement[ends[1]]).first]
            red += collective_s("all-reduce", model.vocab_size * model.hidden_size / layout.tp * grad_b, pair)
        if chains > 1:  # the copies of this block, one per chain
            copies = sorted({groups(placement[c * length + s % length]).first for c in range(chains)})
            if len(copies) > 1:
                red += collective_s("all-reduce", stage_params[s] * grad_b, copies, bucket)
        dp_full[s] = red
    return dp_full
