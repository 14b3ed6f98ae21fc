"""FSDP / ZeRO-3 as it runs: each unit's (layer's, the embedding's, the head's) weights all-gathered over its
shard group before it computes, prefetched one unit ahead, and its gradients reduce-scattered after its
backward, all on one communication stream that the unit's compute hides only as far as it fits.

Model (PyTorch FSDP's forward/backward prefetch, Zhao et al., "PyTorch FSDP: Experiences on Scaling Fully
Sharded Data Parallel", VLDB 2023, Section 3.3.2; DeepSpeed ZeRO-3's prefetching, Rajbhandari et al.,
ZeRO-Infinity, SC21, Section 7.1): a pass visits its units in order (the backward in reverse). The gather of
unit 0 is issued when the pass starts; the gather of unit i+1 when unit i starts computing (prefetch depth 1:
at most two units gathered at once, the one computing and the next); in the backward the reduce-scatter of
unit i when its gradients are ready (its compute ends). The collectives run one at a time, in the order they
were issued, on one stream (they share the GPU's links): a gather waits behind an earlier reduce-scatter.
Unit i computes once unit i-1 has finished and its own gather has arrived. The pass ends when its last
compute and its last collective have finished, so

    uniform units, compute c and collective g per unit, L units:  pass = g + c + (L - 1) max(g, c)

(forward), the first gather always exposed. What a pass takes beyond its compute is the exposed FSDP
communication, reported as its own kind. Gathers per backward: one (FSDP's recompute runs inside the unit's
backward on the weights gathered for it), two when a fully recomputed forward fetches again (DeepSpeed ZeRO-3,
:attr:`pipesim.specs.layout.Layout.regather_recompute`), none without resharding after the forward.

Collective sizes (nccl-tests convention, the whole buffer): the gather moves the unit's 16-bit weights, the
reduce-scatter its gradients at ``Layout.grad_reduce_bytes`` per parameter, each over the unit's shard group
(dense weights: the shard group of dp x cp ranks; routed experts: the expert-data-parallel group).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pipesim.cost.times import PassTimes
from pipesim.specs.layout import Layout
from pipesim.specs.model import LayerKind, ModelSpec

__all__ = ["FsdpUnit", "prefetched_pass_s", "fsdp_stage_passes", "shard_groups", "stage_units", "fsdp_key"]

Unit = tuple[PassTimes, float, float]


@dataclass(frozen=True)
class FsdpUnit:
    """One FSDP unit of a stage: its compute for one microbatch and the seconds of its weight all-gather and
    gradient reduce-scatter."""

    passes: PassTimes
    gather_s: float
    scatter_s: float


def prefetched_pass_s(
    compute_s: Sequence[float], gather_s: Sequence[float], scatter_s: Sequence[float] | None = None
) -> tuple[float, float]:
    """(duration, communication seconds) of one pass over units with these compute, gather and (backward)
    reduce-scatter times, in visiting order, under the prefetch-one-ahead model of the module docstring."""
    n = len(compute_s)
    if n == 0:
        return 0.0, 0.0
    comm = gather_s[0]  # the stream is free again at this time
    arrived = gather_s[0]
    end = 0.0
    busy = sum(gather_s) + (sum(scatter_s) if scatter_s is not None else 0.0)
    for i in range(n):
        start = max(end, arrived)
        if i + 1 < n:  # prefetch the next unit's weights as this one starts
            comm = max(comm, start) + gather_s[i + 1]
            arrived = comm
        end = start + compute_s[i]
        if scatter_s is not None and scatter_s[i] > 0:
            comm = max(comm, end) + scatter_s[i]
    return max(end, comm), busy


def fsdp_stage_passes(units: Sequence[FsdpUnit], layout: Layout) -> tuple[PassTimes, float, float]:
    """(the stage's pass times with its units' collectives, their seconds per microbatch, the part the
    compute does not hide) for ``units`` in forward order (see the module docstring)."""
    total = PassTimes()
    for u in units:
        total = total + u.passes
    fwd, c_fwd = prefetched_pass_s([u.passes.forward_s for u in units], [u.gather_s for u in units])
    per_bwd = 0.0 if not layout.reshard_after_forward else (2.0 if layout.regather_recompute else 1.0)
    back = list(reversed(units))
    bwd, c_bwd = prefetched_pass_s(
        [u.passes.backward_s for u in back], [per_bwd * u.gather_s for u in back], [u.scatter_s for u in back]
    )
    exposed = (fwd - total.forward_s) + (bwd - total.backward_s)
    return replace(total, forward_s=fwd, backward_s=bwd), c_fwd + c_bwd, exposed


def shard_groups(dense_group: Sequence[int], layout: Layout) -> tuple[list[int], list[int]]:
    """(shard group, replica group) of the first shard of ``dense_group`` (the dp x cp ranks holding the same
    dense weights, in rank order): full sharding shards over all of it (no replicas); hybrid over consecutive
    runs of ``layout.shard_size`` ranks (inside a server when it divides the server), replicating across runs,
    whose gradient shards are all-reduced over the replica group (HSDP, Zhao et al. 2023, Section 3.2.2)."""
    size = layout.shard_size
    group = list(dense_group)
    return group[:size], group[::size]


def fsdp_key(layout: Layout) -> tuple[object, ...]:
    """The layout fields the FSDP collectives depend on beyond one layer's pass times."""
    return (
        layout.zero_stage,
        layout.fsdp,
        layout.shard_size,
        layout.reshard_after_forward,
        layout.regather_recompute,
        layout.grad_reduce_bytes,
    )


def stage_units(
    model: ModelSpec,
    layout: Layout,
    kinds: dict[LayerKind, int],
    per_kind: dict[LayerKind, PassTimes],
    emb: PassTimes,
    head: PassTimes,
    first: bool,
    last: bool,
) -> list[Unit]:
    """A stage's FSDP units in forward order as (compute, dense parameters, routed-expert parameters) per GPU:
    the embedding on the first stage, one unit per layer (kinds in their order), on the last stage the head
    (the output layer, or the tied embedding's copy) and one unit per multi-token-prediction module."""
    t = layout.tp
    exp_div = layout.ep * layout.etp
    units: list[Unit] = []
    if first:
        units.append((emb, model.embedding_params() / t, 0.0))
    for kind, n in kinds.items():
        e = model.expert_layer_params() if kind.moe else 0
        units += [(per_kind[kind], (model.layer_params(kind) - e) / t, e / exp_div)] * n
    if last:
        # A tied output layer on the embedding's stage reuses the embedding unit's gathered weights.
        out = 0 if model.tied_embeddings and first else model.vocab_size * model.hidden_size / t
        units.append((head, out + model.final_norm_params(), 0.0))
        if model.mtp_layers:
            e = model.expert_layer_params() if model.main_kind().moe else 0
            dense = (model.mtp_params() / model.mtp_layers - e) / t
            mtp = per_kind[model.main_kind()] + head
            units += [(mtp, dense, e / exp_div)] * model.mtp_layers
    return units
