"""A layout's per-stage costs as arrays (:class:`StageTable`), the form :class:`pipesim.cost.stages.StageCostModel`
computes them in: stages alike in (pipeline rank, layer kinds, chain ends) are costed once and spread to every
stage of their kind by index (:class:`StageFrame`), so a layout of many stages costs little more than one of
few. The simulator reads the tuples of :meth:`StageTable.stage_costs`; the planner sums the arrays per
pipeline rank (:mod:`pipesim.plan.pieces`). Both see the same numbers: an array and its tuple hold the same
floats, and every sum below adds in stage order as a loop over the stages would."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from pipesim.cost import fsdp
from pipesim.cost.times import PassTimes
from pipesim.sim.engine import OpCosts

__all__ = [
    "COLUMNS",
    "PASS_COLUMNS",
    "StageCosts",
    "StageFrame",
    "StageMemory",
    "StageTable",
    "rank_column_sums",
    "rank_sums",
]

# The per-stage columns of StageTable.values, in order: these PassTimes fields of the stage's passes, then its
# parameters (dense + expert), their routed-expert part, and its ZeRO-3 collectives' total and exposed seconds.
PASS_COLUMNS = (
    "forward_s",
    "backward_s",
    "weight_s",
    "recompute_s",
    "tp_forward_s",
    "tp_backward_s",
    "ep_forward_s",
    "ep_comm_s",
)
COLUMNS = (*PASS_COLUMNS, "params", "expert_params", "zero3_comm_s", "zero3_exposed_s")
F, B, W, REC, TPF, TPB, EPF, EPC, PARAMS, EXPERT, ZC, ZE = range(len(COLUMNS))


def rank_sums(placement: np.ndarray, values: np.ndarray, ranks: int) -> np.ndarray:
    """Per pipeline rank, the sum of ``values`` over its stages, added in stage order from 0.0 (as the loop
    ``out[placement[s]] += values[s]`` adds: ``numpy.bincount`` accumulates in index order)."""
    return np.bincount(placement, weights=values, minlength=ranks)


def rank_column_sums(frame: StageFrame, values: np.ndarray, ranks: int) -> np.ndarray:
    """:func:`rank_sums` of every column of ``values`` (stages x columns) at once: (ranks x columns), each
    rank's stages added in stage order from 0.0."""
    by_rank = frame.by_rank
    if by_rank is None:
        return np.stack([rank_sums(frame.placement, values[:, j], ranks) for j in range(values.shape[1])], 1)
    per = values[by_rank]  # ranks x stages per rank x columns
    acc = per[:, 0, :] + 0.0  # 0.0 + x: the loop's first addition
    for j in range(1, per.shape[1]):
        acc = acc + per[:, j, :]
    return acc


@dataclass(frozen=True, eq=False)
class StageFrame:
    """Where the stages of one placement sit, independent of the layout's unit fields: each stage's pipeline
    rank, layer count and first layer; the distinct stage signatures (rank, layer-kind id, first / last of its
    chain) and each stage's signature; the distinct stage-to-stage transfers (source rank, destination rank)
    and each boundary's transfer (-1: none, at a chain's end or within one rank)."""

    placement: np.ndarray
    layers: tuple[int, ...]
    starts: tuple[int, ...]
    chains: int
    sigs: tuple[tuple[int, int, bool, bool], ...]
    sig_index: np.ndarray
    pairs: tuple[tuple[int, int], ...]
    pair_index: np.ndarray

    @cached_property
    def by_rank(self) -> np.ndarray | None:
        """Each rank's stages in stage order as a (ranks x stages per rank) index array, or None when the
        ranks hold different numbers of stages."""
        counts = np.bincount(self.placement)
        if len(counts) == 0 or counts.min() != counts.max():
            return None
        return np.argsort(self.placement, kind="stable").reshape(len(counts), -1)

    @cached_property
    def crossings(self) -> tuple[np.ndarray, np.ndarray]:
        """The boundaries whose two stages sit on different ranks, and for each the (sending, receiving) rank
        pair flattened in boundary order."""
        pl = self.placement
        cross = np.flatnonzero(pl[:-1] != pl[1:])
        return cross, np.stack([pl[cross], pl[cross + 1]], axis=1).ravel()

    def local(self, rank: int) -> list[int]:
        """The stages on ``rank``, in stage order."""
        hit = self._locals.get(rank)
        if hit is None:
            hit = self._locals[rank] = np.flatnonzero(self.placement == rank).tolist()
        return hit

    @cached_property
    def _locals(self) -> dict[int, list[int]]:
        return {}

    @property
    def num_stages(self) -> int:
        """Global (virtual) stages."""
        return len(self.layers)

    @property
    def length(self) -> int:
        """Stages of one chain (one copy of the model)."""
        return self.num_stages // self.chains


@dataclass(frozen=True)
class StageCosts:
    """Per-stage costs of one layout on one placement. ``costs`` is what the engine runs (:class:`OpCosts`:
    its ``dp_reduce_s`` is each stage's whole gradient reduction, tied embedding included, in ``dp_buckets``
    buckets); ``passes`` each stage's :class:`PassTimes`; ``params`` each stage's parameters per TP rank and
    ``rank_params`` each pipeline rank's; ``transient_bytes`` the backward's working set; with ZeRO-3, per
    microbatch and stage, the weight all-gathers and gradient reduce-scatters inside its passes
    (``zero3_comm_s``), the part of them the passes' compute does not hide (``zero3_exposed_s``) and where
    each falls in its pass (``zero3_spans``)."""

    costs: OpCosts
    passes: tuple[PassTimes, ...]
    params: tuple[float, ...]
    rank_params: tuple[float, ...]
    transient_bytes: float
    zero3_comm_s: tuple[float, ...]
    zero3_exposed_s: tuple[float, ...]
    expert_params: tuple[float, ...] = ()  # the routed-expert part of ``params``
    rank_expert_params: tuple[float, ...] = ()
    zero3_spans: tuple[fsdp.FsdpSpans, ...] = ()

    @property
    def dp_full_s(self) -> tuple[float, ...]:
        """Each stage's full gradient-reduction time (before the engine hides any of it)."""
        return self.costs.dp_reduce_s


# One costed stage signature: pass times, dense and expert parameters, ZeRO-3 collectives' total and exposed
# seconds, and where they fall (None without ZeRO-3).
Entry = tuple[PassTimes, float, float, float, float, Any]


@dataclass(frozen=True, eq=False)
class StageMemory:
    """What one layout's memory on one placement is made of, none of it a time: per stage its activation bytes
    per microbatch and the part of them kept from I to W; per pipeline rank its parameters per GPU (dense +
    expert) and their routed-expert part; the backward's transient working set. The planner reads it to rule
    out layouts that do not fit before timing them."""

    frame: StageFrame
    activation_bytes: np.ndarray
    weight_stash_bytes: np.ndarray
    rank_params: np.ndarray
    rank_expert_params: np.ndarray
    transient_bytes: float


@dataclass(frozen=True)
class StageTable:
    """Per-stage costs of one layout on one placement (see the module docstring): ``values[s, j]`` is stage s's
    :data:`COLUMNS` [j]; ``p2p_s`` per boundary, ``dp_reduce_s``, ``activation_bytes`` and
    ``weight_stash_bytes`` per stage, per pipeline rank its parameters and their routed-expert part
    (``memory``); the step's scalars as :class:`OpCosts` names them."""

    frame: StageFrame
    entries: tuple[Entry, ...]
    values: np.ndarray
    p2p_s: np.ndarray
    dp_reduce_s: np.ndarray
    memory: StageMemory
    optimizer_s: float
    dp_buckets: int
    dp_overlap: bool
    p2p_blocking: bool
    validation_hop_s: float

    @cached_property
    def stage_costs(self) -> StageCosts:
        """The same costs as tuples: what the engine runs (:class:`OpCosts`) and the per-stage views."""
        v, mem = self.values, self.memory
        col = [tuple(v[:, j].tolist()) for j in range(len(COLUMNS))]
        a2a_f = np.minimum(v[:, EPF], v[:, F])
        a2a_b = np.minimum(np.maximum(v[:, EPC] - v[:, EPF], 0.0), v[:, B] - v[:, W])
        costs = OpCosts(
            forward_s=col[F],
            backward_s=col[B],
            weight_s=col[W],
            p2p_s=tuple(self.p2p_s.tolist()),
            activation_bytes=tuple(mem.activation_bytes.tolist()),
            weight_stash_bytes=tuple(mem.weight_stash_bytes.tolist()),
            tp_comm_forward_s=col[TPF],
            tp_comm_backward_s=col[TPB],
            recompute_s=col[REC],
            dp_reduce_s=tuple(self.dp_reduce_s.tolist()),
            dp_overlap=self.dp_overlap,
            dp_buckets=self.dp_buckets,
            optimizer_s=self.optimizer_s,
            p2p_blocking=self.p2p_blocking,
            validation_hop_s=self.validation_hop_s,
            # Expert all-to-alls inside F and inside the backward's I phase: what DualPipe's F&B pairs hide.
            a2a_forward_s=tuple(a2a_f.tolist()),
            a2a_backward_s=tuple(a2a_b.tolist()),
        )
        index = self.frame.sig_index.tolist()
        spans = tuple(self.entries[i][5] for i in index if self.entries[i][5] is not None)
        return StageCosts(
            costs,
            tuple(self.entries[i][0] for i in index),
            col[PARAMS],
            tuple(mem.rank_params.tolist()),
            mem.transient_bytes,
            col[ZC],
            col[ZE],
            col[EXPERT],
            tuple(mem.rank_expert_params.tolist()),
            spans,
        )
