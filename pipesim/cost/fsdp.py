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

(forward), the first gather always exposed. A collective's kernels hold some of the GPU's SMs while they run
(NCCL's channels are CUDA blocks: "reducing the number of channels also reduces the number of CUDA blocks used
for communication, hence the impact on GPU computing resources", NCCL documentation, ``NCCL_MAX_NCHANNELS``), so a
unit's compute that overlaps the stream's collectives runs at ``1 - share`` of its speed until the stream goes
idle (``share`` = the GPU profile's ``comm_sms / sm_count``; DeepSeek-V3, arXiv:2412.19437, Section 3.2.2,
gives 20 of an H800's 132 SMs to communication kernels). What a pass takes beyond its compute is the exposed
FSDP communication, reported as its own kind. Gathers per backward: one (FSDP's recompute runs inside the unit's
backward on the weights gathered for it), two when a fully recomputed forward fetches again (DeepSpeed ZeRO-3,
:attr:`pipesim.specs.layout.Layout.regather_recompute`), none without resharding after the forward.

Units: PyTorch FSDP wraps each transformer layer (its auto-wrap policy, Zhao et al. Section 4.1), so a layer
is one unit and its recomputed forward runs inside the unit's backward. DeepSpeed ZeRO-3 fetches per
submodule (the hooks of every module holding parameters; ZeRO-Infinity Section 7.1), so its units are a
layer's weight-holding GEMMs (QKV, projection, MLP up and down, experts, router: :func:`submodules`), each
with the operators that run after it until the next, and a fully recomputed layer fetches every submodule
again for the recompute, then once more for its backward.

Collective sizes (nccl-tests convention, the whole buffer): the gather moves the unit's 16-bit weights, the
reduce-scatter its gradients at ``Layout.grad_reduce_bytes`` per parameter, each over the unit's shard group
(dense weights: the shard group of dp x cp ranks; routed experts: the expert-data-parallel group).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pipesim.cost.memory import WEIGHT_BYTES
from pipesim.cost.times import PassTimes, TimedOp
from pipesim.specs.layout import Layout
from pipesim.specs.model import LayerKind, ModelSpec

__all__ = [
    "Step",
    "FsdpSpans",
    "prefetched_pass_s",
    "fsdp_stage_passes",
    "shard_groups",
    "stage_units",
    "fsdp_key",
    "submodules",
    "pass_steps",
    "unit_collectives",
    "exposed_on_rank",
]

# (compute, dense parameters, routed-expert parameters, layer kind or None for the embedding / head / MTP)
Unit = tuple[PassTimes, float, float, "LayerKind | None"]
# (seconds, dense parameters, expert parameters) of one submodule's share of a pass
Piece = tuple[float, float, float]
Pieces = tuple[tuple[Piece, ...], tuple[Piece, ...], tuple[Piece, ...]]
# (gather s, reduce-scatter s, gather bytes, reduce-scatter bytes) of one unit
Collectives = Callable[[float, float], tuple[float, float, float, float]]
# (start, end) seconds from the pass's start and the bytes one GPU passes, of one collective
Span = tuple[float, float, float]


@dataclass(frozen=True)
class Step:
    """One unit's turn in a pass: its compute, the all-gather it waits for (issued one unit ahead) and the
    reduce-scatter of its gradients issued when it ends (backward only), in seconds."""

    compute_s: float
    gather_s: float
    scatter_s: float = 0.0
    gather_bytes: float = 0.0
    scatter_bytes: float = 0.0


@dataclass(frozen=True)
class FsdpSpans:
    """One stage's FSDP / ZeRO-3 collectives in one microbatch's passes, as the prefetch model places them
    (:func:`prefetched_pass_s`): every parameter all-gather of the forward (``forward_gathers``) and of the
    backward (``backward_gathers``) and every gradient reduce-scatter (``backward_scatters``), each as (start,
    end) seconds from its pass's start and the bytes one GPU passes to it (nccl-tests buffer size). Zero-length
    collectives (no gather when weights stay gathered after the forward) are left out."""

    forward_gathers: tuple[Span, ...] = ()
    backward_gathers: tuple[Span, ...] = ()
    backward_scatters: tuple[Span, ...] = ()


def _computed(start: float, compute_s: float, busy_until: float, share: float) -> float:
    """When a unit's compute of ``compute_s`` started at ``start`` ends, at ``1 - share`` of its speed while the
    communication stream is busy (until ``busy_until``) and at full speed after."""
    if share <= 0 or busy_until <= start:
        return start + compute_s
    slow = compute_s / (1.0 - share)
    if start + slow <= busy_until:
        return start + slow
    return busy_until + compute_s - (busy_until - start) * (1.0 - share)


def _prefetched(
    compute_s: Sequence[float],
    gather_s: Sequence[float],
    scatter_s: Sequence[float] | None,
    share: float = 0.0,
) -> tuple[float, list[tuple[float, float]], list[tuple[float, float]]]:
    """(duration, each unit's gather (start, end), each unit's reduce-scatter (start, end)) of one pass under
    the prefetch-one-ahead model of the module docstring (no scatters: an empty list), compute sharing the SMs
    with the stream's collectives at ``share``."""
    n = len(compute_s)
    gathers: list[tuple[float, float]] = []
    scatters: list[tuple[float, float]] = []
    if n == 0:
        return 0.0, gathers, scatters
    comm = gather_s[0]  # the stream is free again at this time
    gathers.append((0.0, comm))
    arrived = gather_s[0]
    end = 0.0
    for i in range(n):
        start = max(end, arrived)
        if i + 1 < n:  # prefetch the next unit's weights as this one starts
            issued = max(comm, start)
            comm = issued + gather_s[i + 1]
            gathers.append((issued, comm))
            arrived = comm
        end = _computed(start, compute_s[i], comm, share)  # the stream is busy from start until comm
        if scatter_s is not None:
            issued = max(comm, end) if scatter_s[i] > 0 else end
            if scatter_s[i] > 0:
                comm = issued + scatter_s[i]
            scatters.append((issued, issued + scatter_s[i]))
    return max(end, comm), gathers, scatters


def prefetched_pass_s(
    compute_s: Sequence[float],
    gather_s: Sequence[float],
    scatter_s: Sequence[float] | None = None,
    share: float = 0.0,
) -> tuple[float, float]:
    """(duration, communication seconds) of one pass over units with these compute, gather and (backward)
    reduce-scatter times, in visiting order, under the prefetch-one-ahead model of the module docstring, the
    collectives holding ``share`` of the SMs while they overlap compute."""
    busy = sum(gather_s) + (sum(scatter_s) if scatter_s is not None else 0.0)
    return _prefetched(compute_s, gather_s, scatter_s, share)[0], busy


def _spans(
    steps: Sequence[Step], scatter: bool, share: float
) -> tuple[float, tuple[Span, ...], tuple[Span, ...]]:
    """(duration, gather spans, reduce-scatter spans) of one pass over ``steps`` (:class:`FsdpSpans`)."""
    end, gathers, scatters = _prefetched(
        [u.compute_s for u in steps],
        [u.gather_s for u in steps],
        [u.scatter_s for u in steps] if scatter else None,
        share,
    )
    g = tuple((a, b, u.gather_bytes) for (a, b), u in zip(gathers, steps, strict=True) if b > a)
    sc = tuple((a, b, u.scatter_bytes) for (a, b), u in zip(scatters, steps, strict=False) if b > a)
    return end, g, sc


def fsdp_stage_passes(
    total: PassTimes, forward: Sequence[Step], backward: Sequence[Step], share: float = 0.0
) -> tuple[PassTimes, float, float, FsdpSpans]:
    """(the stage's pass times ``total`` with the steps' collectives, their seconds per microbatch, the part
    the compute does not hide, where they fall in the passes) for the forward and backward ``Step``
    sequences in visiting order, the collectives holding ``share`` of the SMs while they overlap compute
    (the compute they slow counts as exposed communication)."""
    fwd, f_gathers, _ = _spans(forward, False, share)
    bwd, b_gathers, b_scatters = _spans(backward, True, share)
    busy = sum(u.gather_s for u in forward) + sum(u.gather_s + u.scatter_s for u in backward)
    exposed = (fwd - total.forward_s) + (bwd - total.backward_s)
    spans = FsdpSpans(f_gathers, b_gathers, b_scatters)
    return replace(total, forward_s=fwd, backward_s=bwd), busy, exposed, spans


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
    mtp_glue: PassTimes | None = None,
) -> list[Unit]:
    """A stage's FSDP units in forward order as (compute, dense parameters, routed-expert parameters) per GPU:
    the embedding on the first stage, one unit per layer (kinds in their order), on the last stage the head
    (the output layer, or the tied embedding's copy) and one unit per multi-token-prediction module (its layer,
    the head and ``mtp_glue``, the module's norms and projection)."""
    t = layout.tp
    exp_div = layout.ep * layout.etp
    units: list[Unit] = []
    if first:
        units.append((emb, model.embedding_params() / t, 0.0, None))
    for kind, n in kinds.items():
        e = model.expert_layer_params() if kind.moe else 0
        units += [(per_kind[kind], (model.layer_params(kind) - e) / t, e / exp_div, kind)] * n
    if last:
        # A tied output layer on the embedding's stage reuses the embedding unit's gathered weights.
        out = 0 if model.tied_embeddings and first else model.vocab_size * model.hidden_size / t
        units.append((head, out + model.final_norm_params(), 0.0, None))
        if model.mtp_layers:
            e = model.expert_layer_params() if model.main_kind().moe else 0
            dense = (model.mtp_params() / model.mtp_layers - e) / t
            mtp = per_kind[model.main_kind()] + head + (mtp_glue or PassTimes())
            units += [(mtp, dense, e / exp_div, None)] * model.mtp_layers
    return units


def submodules(timed: Sequence[TimedOp]) -> Pieces:
    """A layer's weight-holding submodules (DeepSpeed ZeRO-3's fetch units) as (seconds, dense parameters,
    routed-expert parameters) for its forward, its recomputed forward (empty without full recomputation of
    the weights) and its backward, each in execution order, from the layer's timed operators
    (:func:`pipesim.cost.times.layer_detail`): a submodule is a forward GEMM with a weight gradient (``X.dw``),
    weights N x K per GEMM of its (M, N, K) shape and batch (grouped experts: ``moe.`` GEMMs other than the
    router); an operator without weights joins the submodule before it (the first one, if none is before it).
    In the backward a submodule is its ``X.dx`` and ``X.dw`` with the operators after them. Each list's seconds
    add up to its phase's time."""
    weights: dict[str, tuple[float, float]] = {}
    for t in timed:
        if t.op.phase == "W" and t.op.name.endswith(".dw"):
            base = t.op.name[:-3]
            fwd = next((u.op for u in timed if u.op.name == base and u.op.phase == "F"), None)
            if fwd is not None and fwd.shape is not None:
                n = float(fwd.batch * fwd.shape[1] * fwd.shape[2])
                expert = base.startswith("moe.") and base != "moe.router"
                weights[base] = (0.0, n) if expert else (n, 0.0)

    def split(ops: Sequence[TimedOp], unit_of: Callable[[str], str | None]) -> tuple[Piece, ...]:
        pieces: list[list[float]] = []
        current: str | None = None
        lead = 0.0
        for t in ops:
            base = unit_of(t.op.name)
            if base is not None and base != current:
                current = base
                pieces.append([0.0, *weights[base]])
            if pieces:
                pieces[-1][0] += t.time_s
            else:
                lead += t.time_s
        if pieces:
            pieces[0][0] += lead
        elif lead > 0:
            pieces.append([lead, 0.0, 0.0])
        return tuple((p[0], p[1], p[2]) for p in pieces)

    forward = [t for t in timed if t.op.phase == "F"]
    recomputed = [t for t in timed if t.op.recompute]
    backward_i = [t for t in timed if t.op.phase == "I" and not t.op.recompute]
    dw = {t.op.name[:-3]: t for t in timed if t.op.phase == "W" and t.op.name[:-3] in weights}
    # Execution order of a whole backward: each weight gradient right after its input gradient.
    backward: list[TimedOp] = []
    for t in backward_i:
        backward.append(t)
        grad_of = t.op.name[:-3] if t.op.name.endswith(".dx") else ""
        if grad_of in dw:
            backward.append(dw.pop(grad_of))
    backward += [dw[k] for k in dw]  # weight gradients without an input gradient (a first GEMM)
    strip = "recompute."
    rec = split(recomputed, lambda n: n[len(strip) :] if n[len(strip) :] in weights else None)
    if not any(p[1] or p[2] for p in rec):  # selective recomputation: no weights re-run, time joins backward
        rec = ()
        backward = recomputed + backward
    bwd = split(backward, lambda n: n[:-3] if n[-3:] in (".dx", ".dw") and n[:-3] in weights else None)
    return split(forward, lambda n: n if n in weights else None), rec, bwd


def pass_steps(
    units: Sequence[Unit],
    layout: Layout,
    collectives: Collectives,
    pieces_of: Callable[[LayerKind], Pieces] | None,
) -> tuple[list[Step], list[Step]]:
    """The forward and backward :class:`Step` sequences of a stage's ``units`` (forward order):
    ``collectives(dense, expert)`` gives a unit's (gather, reduce-scatter) seconds and bytes; with ``pieces_of`` (DeepSpeed
    ZeRO-3) every layer is split into its :func:`submodules`, else (FSDP) a layer is one unit. Backward gathers
    are dropped when weights stay gathered after the forward (``reshard_after_forward`` False)."""
    regather = 1.0 if layout.reshard_after_forward else 0.0
    forward: list[Step] = []
    per_unit: list[list[Step]] = []
    for pt, dense, expert, kind in units:
        if pieces_of is None or kind is None:
            g, sc, gb, sb = collectives(dense, expert)
            forward.append(Step(pt.forward_s, g, gather_bytes=gb))
            per_unit.append([Step(pt.backward_s, regather * g, sc, regather * gb, sb)])
            continue
        fwd, rec, bwd = pieces_of(kind)
        for c, d, e in fwd:
            g, _, gb, _ = collectives(d, e)
            forward.append(Step(c, g, gather_bytes=gb))
        layer = []
        for c, d, e in rec:
            g, _, gb, _ = collectives(d, e)
            layer.append(Step(c, regather * g, gather_bytes=regather * gb))
        for c, d, e in bwd:
            g, sc, gb, sb = collectives(d, e)
            layer.append(Step(c, regather * g, sc, regather * gb, sb))
        per_unit.append(layer)
    return forward, [step for layer in reversed(per_unit) for step in layer]


def unit_collectives(
    collective: Callable[[str, float, Sequence[int]], float],
    layout: Layout,
    shard: Sequence[int],
    edp: Sequence[int],
) -> Collectives:
    """``(dense, expert) -> (gather s, reduce-scatter s, gather bytes, reduce-scatter bytes)`` of one unit with
    ``collective(op, bytes, ranks)``:
    its 16-bit weights gathered and its gradients (``Layout.grad_reduce_bytes`` each) reduce-scattered over
    the shard group (dense) and the expert-data-parallel group (routed experts)."""
    g_b = layout.grad_reduce_bytes

    def timed(dense: float, expert: float) -> tuple[float, float, float, float]:
        gather = collective("all-gather", dense * WEIGHT_BYTES, shard)
        scatter = collective("reduce-scatter", dense * g_b, shard)
        if expert > 0:
            gather += collective("all-gather", expert * WEIGHT_BYTES, edp)
            scatter += collective("reduce-scatter", expert * g_b, edp)
        return gather, scatter, (dense + expert) * WEIGHT_BYTES, (dense + expert) * g_b

    return timed


def exposed_on_rank(exposed_s: Sequence[float], placement: Sequence[int], rank: int, m: int) -> float:
    """Seconds of FSDP communication the passes of pipeline rank ``rank`` do not hide over ``m`` microbatches,
    from each stage's exposed seconds per microbatch (the planner's breakdown; already inside the passes)."""
    return m * sum(e for s, e in enumerate(exposed_s) if placement[s] == rank)
