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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property

import numpy as np

from pipesim.cost.memory import ACTIVATION_OVERHEAD, peak_bytes, state_bytes
from pipesim.cost.stage_table import (
    REC,
    TPB,
    TPF,
    ZE,
    B,
    F,
    StageMemory,
    StageTable,
    W,
    rank_column_sums,
    rank_sums,
)
from pipesim.plan.dp_exposure import DpExposure, RankRounds
from pipesim.specs.layout import Layout
from schedules import get_family

__all__ = [
    "MemoryPieces",
    "StagePieces",
    "StageWeights",
    "cost_fields",
    "cost_key",
    "memory_pieces",
    "rank_state_bytes",
    "stage_pieces",
]

# Every Layout field but the two that only choose the schedule (its name and chunk count, whose effect on costs
# is the placement, part of the pieces' key).
_COST_FIELDS = tuple(f.name for f in fields(Layout) if f.name not in ("schedule", "vpp"))


def cost_fields(layout: Layout) -> tuple[object, ...]:
    """The fields of ``layout`` its per-stage costs depend on beside its schedule: all but schedule and vpp."""
    return tuple(getattr(layout, f) for f in _COST_FIELDS)


def cost_key(
    layout: Layout, schedule: str | None = None, fields: tuple[object, ...] | None = None
) -> tuple[object, ...]:
    """The fields of ``layout`` its per-stage costs depend on, given the placement, when run by ``schedule``
    (default its own): :func:`cost_fields` (``fields`` when given), whether its pipeline sends block
    (Megatron-Core's default depends on the schedule), and the schedule's number of chains (bidirectional
    DualPipe's two model copies cost otherwise than one chain of as many stages:
    :meth:`pipesim.cost.stages.StageCostModel.stage_costs`)."""
    name = layout.schedule if schedule is None else schedule
    base = cost_fields(layout) if fields is None else fields
    return (*base, layout.p2p_overlapped_for(name), get_family(name).chains)


@dataclass(frozen=True)
class StagePieces:
    """One layout's per-stage costs on one placement (:class:`pipesim.cost.stage_table.StageTable`) summed per
    rank: per microbatch, each rank's work (F + B of its stages, plus its blocking sends), its blocking sends,
    its ZeRO-3 / FSDP communication its passes do not hide, forward, weight-gradient, recompute and
    TP-communication seconds; the slowest rank (most work, lowest index on ties); the stage-boundary
    transfers; the stages with a gradient reduction (last stage first) as (stage, seconds, rank, W seconds,
    B seconds). ``table`` holds the step's scalars (optimizer step, gradient buckets); its memory is
    :class:`MemoryPieces`'."""

    table: StageTable
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
    rounds: RankRounds | None = None
    exposures: dict[tuple[float, bool, str], DpExposure] = field(
        default_factory=dict, compare=False, repr=False
    )

    def exposure(self, wave_step_s: float, split_backward: bool, optimizer: str) -> DpExposure:
        """The gradient reductions' :class:`pipesim.plan.dp_exposure.DpExposure` (cached)."""
        key = (wave_step_s, split_backward, optimizer)
        hit = self.exposures.get(key)
        if hit is None:
            hit = self.exposures[key] = DpExposure.of(
                self.dp_stages,
                self.table.dp_buckets,
                self.table.dp_overlap,
                len(self.work),
                wave_step_s,
                split_backward,
                optimizer,
                self.rounds,
            )
        return hit


_PIECE_COLUMNS = [F, F, W, REC, TPF, ZE]


# A placement's per-rank sums (StagePieces' work ... pp_comm fields), behind the table parts they are read from.
RankSums = tuple[object, object, tuple[tuple[float, ...], ...], int, float, float, float]


def stage_pieces(
    layout: Layout, table: StageTable, shared: dict[tuple[int, int, bool], RankSums] | None = None
) -> StagePieces:
    """The :class:`StagePieces` of ``table``, the costs of ``layout`` on its frame's placement. Every per-rank
    sum adds its stages in stage order from 0.0, as a loop over the stages would. ``shared`` keeps the per-rank
    sums of tables alike in their stage entries (which decide their values and frame: the cost model keeps
    them, so their ids are unique) and transfers (e.g. layouts differing in the distributed optimizer only)."""
    key = (id(table.entries), id(table.p2p_s), table.p2p_blocking)
    sums = None if shared is None else shared.get(key)
    if sums is None:
        sums = _rank_sums(layout.pp, table)
        if shared is not None:
            shared[key] = sums
    rows, slow, sum_work, hop, pp_comm = sums[2:]
    v = table.values
    dp = table.dp_reduce_s
    order = np.flatnonzero(dp > 0)[::-1]
    dp_stages = tuple(
        zip(
            order.tolist(),
            dp[order].tolist(),
            table.frame.placement[order].tolist(),
            v[order, W].tolist(),
            v[order, B].tolist(),
            strict=True,
        )
    )
    work, fwd, wgt, rec, tpc, blocked, fsdp_exposed = rows
    rounds = _rounds(table.frame.by_rank, dp, v)
    return StagePieces(
        table,
        work,
        fwd,
        wgt,
        rec,
        tpc,
        blocked,
        fsdp_exposed,
        slow,
        sum_work,
        hop,
        pp_comm,
        dp_stages,
        rounds,
    )


def _rank_sums(p: int, table: StageTable) -> RankSums:
    """``table``'s per-rank sums: (its entries and transfers, which they follow from; work, forward, weight,
    recompute, TP, blocked and exposed ZeRO-3 seconds per rank; the slowest rank; the work's sum; the mean
    boundary transfer; the exposed fill and drain transfers)."""
    frame = table.frame
    v = table.values
    boundary = table.p2p_s
    # Blocking sends (p2p_blocking) hold the sender's compute: they join its per-microbatch work. F(s) sends to
    # s+1, B(s+1) back to s: each crossing boundary adds to both ranks, in boundary order.
    if table.p2p_blocking and frame.num_stages > 1:
        cross, who = frame.crossings
        blocked = rank_sums(who, np.repeat(boundary[cross], 2), p)
    else:
        blocked = np.zeros(p)
    # Per stage: F + B, F, W, recompute, TP forward + backward, exposed ZeRO-3 seconds (one gather, then the sums).
    cols = v[:, _PIECE_COLUMNS]
    cols[:, 0] += v[:, B]
    cols[:, 4] += v[:, TPB]
    sums = rank_column_sums(frame, cols, p)
    work = sums[:, 0] + blocked
    _, fwd, wgt, rec, tpc, zero3 = sums.T.tolist()
    fsdp_exposed = zero3 if v[:, ZE].any() else [0.0] * p
    work_l = work.tolist()
    slow = int(work.argmax())  # the first of the largest: most work, lowest index on ties
    bl = boundary.tolist()
    hop = sum(bl) / len(bl) if bl else 0.0
    rows = tuple(tuple(x) for x in (work_l, fwd, wgt, rec, tpc, blocked.tolist(), fsdp_exposed))
    return table.entries, boundary, rows, slow, sum(work_l), hop, 2.0 * sum(bl)


# Ranks from which walking the reductions round by round in numpy beats the scalar walk (about 7 us plus 7 us a
# round against 0.2 us a stage on the development machine: the scalar walk is faster up to about 60 ranks of one
# or two stages each; at 16 ranks it took 4-15 us against 16-53 us for one to six rounds).
ROUNDS_FROM_RANKS = 64


def _rounds(by_rank: np.ndarray | None, dp: np.ndarray, v: np.ndarray) -> RankRounds | None:
    """The reductions as :class:`pipesim.plan.dp_exposure.RankRounds` (each rank's stages last first), or None
    when ranks hold different numbers of stages or are too few for the vector walk to pay."""
    if by_rank is None or by_rank.shape[0] < ROUNDS_FROM_RANKS:
        return None
    stage = by_rank[:, ::-1].T
    red = dp[stage]
    return RankRounds(stage.astype(np.float64), red, v[stage, W], v[stage, B], red > 0)


# Ranks from which summing every rank's peak in numpy beats the loop (about 2 us against 0.1 us a rank on the
# development machine).
VECTOR_FROM_RANKS = 24


@dataclass(frozen=True, eq=False)
class StageWeights:
    """What the memory estimate reads of one :class:`pipesim.cost.stage_table.StageMemory` on ``ranks``
    pipeline ranks, each part summed when first asked and shared by every :class:`MemoryPieces` of that
    memory (layouts alike but for their bytes per parameter): per rank its local stages' activation and
    weight-stash bytes (the profiled memory walk's weights) and, for ranks 0 and p-1, their layer and extra
    (embedding, head) activation bytes (the closed forms'); ``extra_bytes(first, last)`` is a stage's
    activation bytes beyond its layers (:func:`pipesim.cost.memory.stage_extra_activation_bytes`)."""

    memory: StageMemory
    ranks: int
    extra_bytes: Callable[[bool, bool], float]

    @cached_property
    def walk_matrix(self) -> np.ndarray:
        """Per rank: its local stages' activation bytes, then their weight-stash bytes."""
        memory = self.memory
        frame = memory.frame
        acts, stash = memory.activation_bytes, memory.weight_stash_bytes
        by_rank = frame.by_rank
        if by_rank is not None:
            return np.concatenate([acts[by_rank], stash[by_rank]], axis=1)
        local = [frame.local(r) for r in range(self.ranks)]
        return np.array([acts[x].tolist() + stash[x].tolist() for x in local], dtype=object)

    @cached_property
    def end_bytes(self) -> dict[int, tuple[float, float]]:
        """Ranks 0 and p-1: their layer and extra activation bytes."""
        frame = self.memory.frame
        last = frame.num_stages - 1
        end_bytes: dict[int, tuple[float, float]] = {}
        acts_l = self.memory.activation_bytes.tolist()
        for r in sorted({0, self.ranks - 1}):
            stages = frame.local(r)
            extras = [self.extra_bytes(s == 0, s == last) if s in (0, last) else 0.0 for s in stages]
            layer_bytes = sum(acts_l[s] - x for s, x in zip(stages, extras, strict=True))
            end_bytes[r] = (layer_bytes, sum(extras))
        return end_bytes


@dataclass(frozen=True)
class MemoryPieces:
    """One layout's memory on one placement summed per rank: its :class:`StageWeights` (what its
    :class:`pipesim.cost.stage_table.StageMemory` gives the walks and the closed forms), per rank its weights
    + gradients + optimizer state, and the GPU's reserve."""

    weights: StageWeights
    state_bytes: tuple[float, ...]
    reserve_bytes: float

    @property
    def memory(self) -> StageMemory:
        """The stage memory the pieces were summed from (the walk's weights follow from it alone)."""
        return self.weights.memory

    @property
    def walk_matrix(self) -> np.ndarray:
        """:attr:`StageWeights.walk_matrix`."""
        return self.weights.walk_matrix

    @property
    def end_bytes(self) -> dict[int, tuple[float, float]]:
        """:attr:`StageWeights.end_bytes`."""
        return self.weights.end_bytes

    def peak_memory(self, ranks: Sequence[int], held: Sequence[float]) -> tuple[int, float, float, float]:
        """The rank of most memory among ``ranks`` whose stashes peak at ``held`` bytes (the first on ties), its
        peak, weights + gradients + optimizer state, and activations: :func:`pipesim.cost.memory.rank_memory`'s
        sum in its order, with the rank's state bytes summed once per placement."""
        best = (-1, -1.0, 0.0, 0.0)
        transient = self.memory.transient_bytes
        for r, h in zip(ranks, held, strict=True):
            acts = h * ACTIVATION_OVERHEAD
            state = self.state_bytes[r]
            peak = peak_bytes(state, acts, transient, self.reserve_bytes)
            if peak > best[1]:
                best = (r, peak, state, acts)
        return best

    @cached_property
    def _state_array(self) -> np.ndarray:
        return np.array(self.state_bytes, dtype=np.float64)

    def peak_over_ranks(self, held: np.ndarray) -> tuple[int, float, float, float]:
        """:meth:`peak_memory` over every rank, rank r's stashes peaking at ``held[r]`` bytes: the same sums,
        from :data:`VECTOR_FROM_RANKS` ranks all ranks at once (``argmax`` takes the first on ties)."""
        if len(held) < VECTOR_FROM_RANKS:
            return self.peak_memory(range(len(held)), held.tolist())
        acts = held * ACTIVATION_OVERHEAD
        peaks = self._state_array + acts
        peaks += self.memory.transient_bytes
        peaks += self.reserve_bytes
        r = int(peaks.argmax())
        return r, float(peaks[r]), self.state_bytes[r], float(acts[r])


def rank_state_bytes(layout: Layout, rank_params: np.ndarray, rank_expert: np.ndarray) -> tuple[float, ...]:
    """Per pipeline rank, its weights + gradients + optimizer state for ``rank_params`` parameters of which
    ``rank_expert`` routed-expert ones: :func:`pipesim.cost.memory.rank_memory`'s sum in its order."""
    weights, grads, optimizer = state_bytes(layout, rank_params, rank_expert)
    return tuple((weights + grads + optimizer).tolist())


def memory_pieces(
    layout: Layout,
    memory: StageMemory,
    extra_bytes: Callable[[bool, bool], float],
    reserve_bytes: float,
    state: tuple[float, ...],
    weights: StageWeights | None = None,
) -> MemoryPieces:
    """The :class:`MemoryPieces` of ``memory``, ``layout``'s on its frame's placement, on GPUs keeping
    ``reserve_bytes``; ``extra_bytes(first, last)`` is a stage's activation bytes beyond its layers
    (:func:`pipesim.cost.memory.stage_extra_activation_bytes`); ``state`` its :func:`rank_state_bytes`;
    ``weights`` the memory's :class:`StageWeights` when already made."""
    if weights is None:
        weights = StageWeights(memory, layout.pp, extra_bytes)
    return MemoryPieces(weights, state, reserve_bytes)
