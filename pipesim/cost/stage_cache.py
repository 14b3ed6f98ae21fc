"""The cached parts of the one cost model (:mod:`pipesim.cost.stages`): one layer's, the embedding's and the
head's pass times per (unit fields, tensor-parallel group), collectives and stage-to-stage transfers per
(bytes, group), each pipeline rank's process groups, ZeRO-3 / FSDP stage passes, and one stage's pass times and
parameters per (unit fields, grid, rank, layer kinds, chain ends), so that stages alike in those fields, within a
layout and across the planner's candidates, are costed once. Every cache is keyed by every field its value
depends on; :class:`pipesim.cost.stages.StageCostModel` assembles a layout's per-stage costs from these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pipesim.comm.base import CommModel
from pipesim.cost import fsdp
from pipesim.cost.end_ops import embedding_ops, head_ops, mtp_ops
from pipesim.cost.flops import ACT_BYTES, layer_ops
from pipesim.cost.grad_reduce import VALIDATION_STATE_BYTES
from pipesim.cost.memory import layer_activation_bytes, stage_extra_activation_bytes, stage_param_split
from pipesim.cost.ops import Op
from pipesim.cost.times import (
    DEFAULT_EFFICIENCY,
    Efficiency,
    PassTimes,
    bucketed_collective_s,
    comm_signature,
    embedding_pass_times,
    head_pass_times,
    layer_detail,
    layer_pass_times,
    mtp_pass_times,
    p2p_bytes,
)
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import LayerKind, ModelSpec
from pipesim.specs.placement import RankGrid, RankGroups

__all__ = ["StageCostCache", "unit_key", "weight_stash_bytes_per_layer"]

_Units = tuple[dict[LayerKind, PassTimes], PassTimes, PassTimes]


def weight_stash_bytes_per_layer(model: ModelSpec, layout: Layout) -> float:
    """What a layer keeps from I until W (split backward): each GEMM's input and output gradient; 32 s b h for
    GPT without TP (Qi et al. 2024, Table 1: W needs 32 s b h)."""
    b, s, t = layout.micro_batch_size, layout.seq(model) // layout.cp, layout.tp
    h = model.hidden_size
    tokens = b * s
    rep = tokens / t if layout.sequence_parallel else float(tokens)
    kv_t = max(1, model.num_kv_heads // t) * model.head_dim
    qkv_n = h // t + 2 * kv_t
    f_t = model.ffn_hidden_size // t
    inputs = rep * h + tokens * h / t + rep * h + tokens * f_t
    grads = tokens * qkv_n + tokens * h + tokens * model.mlp_in_width / t + tokens * h
    return ACT_BYTES * (inputs + grads)


def unit_key(layout: Layout) -> tuple[Any, ...]:
    """The layout fields one layer's, the embedding's and the head's pass times depend on."""
    return (
        layout.tp,
        layout.sequence_parallel,
        layout.micro_batch_size,
        layout.recompute,
        layout.seq_length,
        layout.precision,
        layout.attention,
        layout.tp_comm_overlap,
        layout.scatter_gather,
        layout.cp,
        layout.cp_comm,
        layout.ep,
        layout.etp,
        layout.moe_imbalance,
        layout.tp_comm_overlap_forward,
        layout.fp8_recipe,
        layout.cuda_graphs,
    )


class StageCostCache:
    """The cached parts of per-stage costs of layouts of ``model`` on ``gpu`` with collectives timed by ``comm``
    (see the module docstring). Not thread-safe."""

    def __init__(
        self, model: ModelSpec, gpu: GPUSpec, comm: CommModel, efficiency: Efficiency = DEFAULT_EFFICIENCY
    ) -> None:
        self.model = model
        self.gpu = gpu
        self.comm = comm
        self.efficiency = efficiency
        self._units: dict[tuple[Any, ...], _Units] = {}
        self._coll: dict[tuple[Any, ...], float] = {}
        self._p2p: dict[tuple[Any, ...], float] = {}
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._groups: dict[tuple[RankGrid, int], RankGroups] = {}
        self._group_keys: dict[tuple[RankGrid, int], tuple[object, ...]] = {}  # per rank, its groups' keys
        self._rank_units: dict[tuple[Any, ...], tuple[_Units, int]] = {}
        self._by_groups: dict[tuple[Any, ...], tuple[_Units, int]] = {}
        self._key_ids: dict[Any, int] = {}  # unit keys, grids and layer-kind counts, numbered
        self._stages: dict[tuple[Any, ...], tuple[PassTimes, float, float, float, float, Any]] = {}
        self._stage_dp: dict[int, dict[tuple[Any, ...], float]] = {}  # per grid number
        self._kinds: dict[
            tuple[int, int], int
        ] = {}  # (first layer, layer count) -> number of its kind counts
        self._kind_of: dict[int, dict[LayerKind, int]] = {}

    # ------------------------------------------------------------------ cached pieces
    def rank_groups(self, grid: RankGrid, r: int) -> RankGroups:
        """The :class:`pipesim.specs.placement.RankGroups` of pipeline rank ``r`` (cached)."""
        hit = self._groups.get((grid, r))
        if hit is None:
            hit = self._groups[grid, r] = RankGroups.of(grid, r)
        return hit

    def rank_units(self, layout: Layout, grid: RankGrid, r: int) -> _Units:
        """:meth:`units` of pipeline rank ``r`` of ``grid`` (cached by the unit fields, the grid and r)."""
        return self._units_of(unit_key(layout), layout, grid, r)[0]

    def _units_of(self, ukey: tuple[Any, ...], layout: Layout, grid: RankGrid, r: int) -> tuple[_Units, int]:
        """:meth:`rank_units` and the number of its :meth:`units` entry (equal numbers: equal units)."""
        key = (ukey, grid, r)
        hit = self._rank_units.get(key)
        if hit is None:
            g = self.rank_groups(grid, r)
            # Ranks whose groups the communication model keys alike time alike: one lookup of units for them.
            groups = self._group_keys.get((grid, r))
            if groups is None:
                groups = self._group_keys[grid, r] = (
                    self._group_key(g.tp),
                    *((k, self._group_key(v)) for k, v in sorted(g.layer_groups.items())),
                )
            gkey = (ukey, *groups)
            hit = self._by_groups.get(gkey)
            if hit is None:
                units = self.units(layout, g.tp, g.layer_groups)
                uid = self._key_ids.setdefault(id(units), len(self._key_ids))
                hit = self._by_groups[gkey] = (units, uid)
            self._rank_units[key] = hit
        return hit

    def _group_key(self, ranks: Sequence[int]) -> tuple[object, ...]:
        """The communication model's key of a group (``group_key``: equal keys, equal costs), or its ranks."""
        key_of = getattr(self.comm, "group_key", None)
        return tuple(ranks) if key_of is None else key_of(ranks)

    def units(
        self, layout: Layout, tp_group: Iterable[int], groups: dict[str, list[int]] | None = None
    ) -> _Units:
        """({layer kind: one layer}, embedding, head) pass times on TP group ``tp_group`` (``groups``: the cp /
        ep / etp ranks of that pipeline rank). Cached by the unit fields and the communication operators'
        times on these groups (:func:`pipesim.cost.times.comm_signature`): placements whose collectives time
        alike share one entry, exactly."""
        g = groups or {}
        tp = list(tp_group)
        ukey = unit_key(layout)
        key = (ukey, comm_signature(self._unit_ops(layout, ukey), self.comm, tp, g))
        hit = self._units.get(key)
        if hit is None:
            args = (self.model, layout, self.gpu, self.efficiency, self.comm, tp)
            hit = self._units[key] = (
                {k: layer_pass_times(*args, g, k) for k in self.model.kind_counts()},
                embedding_pass_times(*args),
                head_pass_times(*args),
            )
        return hit

    def _unit_ops(self, layout: Layout, ukey: tuple[Any, ...]) -> tuple[Op, ...]:
        """Every operator of the units :meth:`units` times (each layer kind, embedding, head), in order."""
        model = self.model

        def build() -> tuple[Op, ...]:
            ops = [op for k in model.kind_counts() for op in layer_ops(model, layout, kind=k).all]
            return tuple(ops + list(embedding_ops(model, layout).all) + list(head_ops(model, layout).all))

        return self._memoized(("unit_ops", ukey), build)

    def mtp_glue(self, layout: Layout, tp_group: Sequence[int]) -> PassTimes:
        """Cached :func:`pipesim.cost.times.mtp_pass_times` of one MTP module on ``tp_group`` (keyed like
        :meth:`units`)."""
        tp = list(tp_group)
        ukey = unit_key(layout)
        ops = self._memoized(("mtp_ops", ukey), lambda: tuple(mtp_ops(self.model, layout).all))
        args = (self.model, layout, self.gpu, self.efficiency, self.comm, tp)
        key = ("mtp", ukey, comm_signature(ops, self.comm, tp))
        return self._memoized(key, lambda: mtp_pass_times(*args))

    def _collective(self, op: str, size: float, group: Sequence[int], bucket: float | None = None) -> float:
        key = (op, size, tuple(group), bucket)
        hit = self._coll.get(key)
        if hit is None:
            if bucket is None:
                hit = self.comm.collective_s(op, size, group)
            else:
                hit = bucketed_collective_s(self.comm, op, size, bucket, group)
            self._coll[key] = hit
        return hit

    def _memoized(self, key: tuple[Any, ...], make: Any) -> Any:
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = make()
        return hit

    def _fsdp_stage(
        self, layout: Layout, grid: RankGrid, r: int, units: list[fsdp.Unit], total: PassTimes
    ) -> tuple[PassTimes, float, float, fsdp.FsdpSpans]:
        """ZeRO-3 / FSDP: a stage's (pass times ``total`` with its units' collectives, their total, the part
        compute does not hide, where they fall) for ``units`` (:func:`pipesim.cost.fsdp.stage_units`) on pipeline rank ``r``:
        dense weights over the shard group, experts over the expert-data-parallel group; DeepSpeed ZeRO-3
        (``fsdp`` none) fetches per submodule (:func:`pipesim.cost.fsdp.submodules`)."""
        rg = self.rank_groups(grid, r)
        shard, tp_group = fsdp.shard_groups(rg.dp_cp, layout)[0], list(rg.tp)
        edp = rg.edp
        groups = rg.layer_groups
        g_key = tuple((k, tuple(v)) for k, v in groups.items())
        args = (self.model, layout, self.gpu, self.efficiency, self.comm, tp_group)

        def pieces(kind: LayerKind) -> fsdp.Pieces:
            key = ("pieces", unit_key(layout), tuple(tp_group), g_key, kind)
            return self._memoized(key, lambda: fsdp.submodules(layer_detail(*args, groups=groups, kind=kind)))

        groups_key = (tuple(shard), tuple(edp), tuple(tp_group), tuple(units))
        key = ("fsdp", unit_key(layout), fsdp.fsdp_key(layout), *groups_key)
        timed = fsdp.unit_collectives(self._collective, layout, shard, edp)
        split = pieces if layout.fsdp == "none" else None
        return self._memoized(
            key,
            lambda: fsdp.fsdp_stage_passes(
                total, *fsdp.pass_steps(units, layout, timed, split), self.efficiency.comm_sm_share
            ),
        )

    def transfer_s(self, layout: Layout, grid: RankGrid, src: int, dst: int) -> float:
        """Seconds of one stage-to-stage transfer from pipeline rank ``src`` to ``dst`` (0 on one rank),
        including the receiver's all-gather with scatter/gather (SC21 Section 4.1)."""
        if src == dst:
            return 0.0
        a, b = grid.rank(0, 0, src), grid.rank(0, 0, dst)
        key = (*self.transfer_key(layout), a, b)
        hit = self._p2p.get(key)
        if hit is None:
            model = self.model
            hit = self.comm.p2p_s(p2p_bytes(model, layout), a, b)
            if layout.tp > 1 and layout.scatter_gather and not layout.sequence_parallel:
                full = (
                    ACT_BYTES * layout.micro_batch_size * (layout.seq(model) // layout.cp) * model.hidden_size
                )
                hit += self.comm.collective_s("all-gather", full, grid.tp_group(0, dst))
            self._p2p[key] = hit
        return hit

    def transfer_key(self, layout: Layout) -> tuple[Any, ...]:
        """The layout fields a stage-to-stage transfer's time depends on (beside its two ranks)."""
        return (
            layout.tp,
            layout.micro_batch_size,
            layout.seq_length,
            layout.sequence_parallel,
            layout.cp,
            layout.scatter_gather,
        )

    def state_hop_s(self, grid: RankGrid, src: int) -> float:
        """Seconds to pass the partially reduced global state (:data:`VALIDATION_STATE_BYTES`) from pipeline
        rank ``src`` to ``src + 1`` before the optimizer step under post-validation (Qi et al., ICLR 2024,
        Section 4; :mod:`pipesim.sim.gradients`)."""
        a, b = grid.rank(0, 0, src), grid.rank(0, 0, src + 1)
        key = ("state", a, b)
        hit = self._p2p.get(key)
        if hit is None:
            hit = self._p2p[key] = self.comm.p2p_s(VALIDATION_STATE_BYTES, a, b)
        return hit

    def main_layer_activation_bytes(self, layout: Layout) -> float:
        """Cached :func:`pipesim.cost.memory.layer_activation_bytes` of the model's main layer kind."""
        model = self.model
        return float(
            self._memoized(
                ("acts_layer", unit_key(layout)),
                lambda: layer_activation_bytes(model, layout, model.main_kind()),
            )
        )

    def extra_bytes(self, layout: Layout) -> Callable[[bool, bool], float]:
        """``(first, last) ->`` :func:`pipesim.cost.memory.stage_extra_activation_bytes` of ``layout``
        (cached by the unit fields)."""
        model, ukey = self.model, unit_key(layout)

        def extra(first: bool, last: bool) -> float:
            return float(
                self._memoized(
                    ("extra", ukey, first, last),
                    lambda: stage_extra_activation_bytes(model, layout, first, last),
                )
            )

        return extra

    def weight_stash_per_layer(self, layout: Layout) -> float:
        """Cached :func:`weight_stash_bytes_per_layer`."""
        model = self.model
        return float(
            self._memoized(("stash", unit_key(layout)), lambda: weight_stash_bytes_per_layer(model, layout))
        )

    def stage_key(
        self,
        layout: Layout,
        ukey: tuple[Any, ...],
        grid: RankGrid,
        gkey: int,
        sig: tuple[int, int, bool, bool],
    ) -> tuple[Any, ...]:
        """The key of :meth:`_stage`'s result for stage signature ``sig`` = (rank, kinds id, first, last):
        every value it depends on. The rank enters through its units (numbered entries of :meth:`units`, equal
        for ranks whose collectives time alike) unless the last stage's MTP glue or ZeRO-3's per-rank shard
        groups need the rank itself."""
        r, kid, first, last = sig
        uid = self._units_of(ukey, layout, grid, r)[1]
        zero3 = layout.zero_stage >= 3
        own = (gkey, r) if zero3 or (last and self.model.mtp_layers) else None
        return (uid, kid, first, last, own, (fsdp.fsdp_key(layout), layout) if zero3 else None)

    def _stage(
        self, layout: Layout, grid: RankGrid, r: int, kid: int, first: bool, last: bool
    ) -> tuple[PassTimes, float, float, float, float, fsdp.FsdpSpans | None]:
        """One stage's pass times, dense and expert parameters, and with ZeRO-3 / FSDP its collectives' total
        and exposed seconds and where they fall: layers of the kind counts numbered ``kid`` on rank ``r``."""
        model = self.model
        kinds = self._kind_of[kid]
        per_kind, emb, head = self.rank_units(layout, grid, r)
        # (Callers may share one result between ranks whose units are the same entry when neither the MTP
        # glue nor ZeRO-3 asks for the rank's own groups: :meth:`stage_key`.)
        p = PassTimes()
        for kind, n in kinds.items():
            p = p + per_kind[kind].scaled(n)
        if first:
            p = p + emb
        # Each MTP module on the last stage: its norms and projection, one more layer and the head.
        glue = self.mtp_glue(layout, self.rank_groups(grid, r).tp) if last and model.mtp_layers else None
        if last:
            p = p + head
            if glue is not None:
                p = p + (per_kind[model.main_kind()] + head + glue).scaled(model.mtp_layers)
        c_total = c_exposed = 0.0
        spans = None
        if layout.zero_stage >= 3:
            units = fsdp.stage_units(model, layout, kinds, per_kind, emb, head, first, last, glue)
            p, c_total, c_exposed, spans = self._fsdp_stage(layout, grid, r, units, p)
        dense_p, expert_p = self.stage_params(layout, kid, first, last)
        return p, dense_p, expert_p, c_total, c_exposed, spans

    def stage_params(self, layout: Layout, kid: int, first: bool, last: bool) -> tuple[float, float]:
        """A stage's dense and routed-expert parameters per GPU (:func:`pipesim.cost.memory.stage_param_split`)
        for layers of the kind counts numbered ``kid`` (cached by tp, ep, etp and the signature)."""
        model, kinds = self.model, self._kind_of[kid]
        return self._memoized(
            ("params", layout.tp, layout.ep, layout.etp, kid, first, last),
            lambda: stage_param_split(model, layout, kinds, first, last),
        )
