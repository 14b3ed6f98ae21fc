"""The one cost model of a training step: a layout's per-stage costs (:class:`StageCosts`), used by the
simulator (:func:`pipesim.sim.scenario.simulate_scenario`), ``compare --model``, ``gantt``, the roofline and the
planner's estimator (:mod:`pipesim.plan.estimate`) alike. The estimator differs from the simulator only in how
it evaluates the pipeline phase (a closed form instead of the timeline), never in a cost.

A stage's F / B / W is its layer count x one layer's times (:func:`pipesim.cost.times.layer_pass_times`), plus
the embedding on stage 0 and the head on the last stage; with layers of several kinds (first-k-dense and
interleaved MoE layers, sliding-window layers) each kind's layer times x its count in the stage, and DeepSeek-V3's
multi-token-prediction modules as one more layer of the last layer's kind and one more output head each on
the last stage (their small 2h x h projection not timed). Transfers: :func:`pipesim.cost.times.p2p_bytes` sent
from stage s's rank to stage s+1's, plus an intra-node all-gather on the receiver with scatter/gather (SC21
Section 4.1). Data-parallel reduction of a stage: its dense gradients over data x context parallel and its
routed-expert gradients over the expert-data-parallel group (Megatron-Core), each (``Layout.grad_reduce_bytes`` per parameter)
all-reduced (distributed optimizer: reduce-scattered) over the stage's data-parallel group in buckets of
:data:`pipesim.cost.times.DP_BUCKET_PARAMS` parameters (Megatron-LM's default bucket size); the whole
reduction is handed to the engine, whose gradient buckets decide what the backward hides (the one model of DP
overlap). Stages 0 and S-1 also all-reduce the tied embedding gradient. ZeRO-3: each unit's weights are
all-gathered before its forward and backward (and a fully recomputed forward) and its gradients
reduce-scattered in the backward; each pass lasts the longer of its compute and its collectives
(prefetched, Rajbhandari et al., ZeRO, SC20). Optimizer step: the slowest pipeline rank's Adam over its
(sharded) parameters, plus with the distributed optimizer the all-gather of the updated 16-bit weights.

Costs are cached by exactly the fields they depend on, so one :class:`StageCostModel` can serve every
candidate of a plan.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipesim.comm.base import CommModel
from pipesim.cost import fsdp
from pipesim.cost.flops import ACT_BYTES
from pipesim.cost.memory import (
    layer_activation_bytes,
    stage_activation_bytes,
    stage_param_split,
    transient_bytes,
)
from pipesim.cost.times import (
    DEFAULT_EFFICIENCY,
    DP_BUCKET_PARAMS,
    Efficiency,
    PassTimes,
    bucketed_collective_s,
    embedding_pass_times,
    head_pass_times,
    layer_detail,
    layer_pass_times,
    mtp_pass_times,
    optimizer_step_s,
    p2p_bytes,
    param_gather_exposed_s,
)
from pipesim.sim.engine import OpCosts
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import LayerKind, ModelSpec
from pipesim.specs.placement import RankGrid, RankGroups

__all__ = ["StageCosts", "StageCostModel", "weight_stash_bytes_per_layer", "dp_buckets"]

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


def dp_buckets(stage_params: Sequence[float]) -> int:
    """Gradient buckets per stage handed to the engine: the largest stage's parameters (per TP rank) over
    :data:`pipesim.cost.times.DP_BUCKET_PARAMS`, rounded up (Megatron-LM's DDP bucket size, 40M parameters).
    The engine splits every stage's reduction into this many equal buckets."""
    most = max(stage_params, default=0.0)
    return max(1, -(-int(most) // DP_BUCKET_PARAMS))


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


def _unit_key(layout: Layout) -> tuple[Any, ...]:
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


class StageCostModel:
    """Per-stage costs of layouts of ``model`` on ``gpu`` with collectives timed by ``comm`` (see the module
    docstring). Caches are keyed by every field a cost depends on. Not thread-safe."""

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
        self._rank_units: dict[tuple[Any, ...], _Units] = {}
        self._key_ids: dict[Any, int] = {}  # unit keys, grids and layer-kind counts, numbered
        self._stages: dict[tuple[Any, ...], tuple[PassTimes, float, float, float, float, Any]] = {}
        self._stage_dp: dict[tuple[Any, ...], float] = {}
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
        key = (_unit_key(layout), grid, r)
        hit = self._rank_units.get(key)
        if hit is None:
            g = self.rank_groups(grid, r)
            hit = self._rank_units[key] = self.units(layout, g.tp, g.layer_groups)
        return hit

    def units(
        self, layout: Layout, tp_group: Iterable[int], groups: dict[str, list[int]] | None = None
    ) -> _Units:
        """({layer kind: one layer}, embedding, head) pass times on TP group ``tp_group`` (``groups``: the cp /
        ep / etp ranks of that pipeline rank)."""
        g = groups or {}
        key = (_unit_key(layout), tuple(tp_group), tuple((k, tuple(v)) for k, v in sorted(g.items())))
        hit = self._units.get(key)
        if hit is None:
            args = (self.model, layout, self.gpu, self.efficiency, self.comm, list(tp_group))
            hit = self._units[key] = (
                {k: layer_pass_times(*args, g, k) for k in self.model.kind_counts()},
                embedding_pass_times(*args),
                head_pass_times(*args),
            )
        return hit

    def mtp_glue(self, layout: Layout, tp_group: Sequence[int]) -> PassTimes:
        """Cached :func:`pipesim.cost.times.mtp_pass_times` of one MTP module on ``tp_group``."""
        args = (self.model, layout, self.gpu, self.efficiency, self.comm, list(tp_group))
        return self._memoized(("mtp", _unit_key(layout), tuple(tp_group)), lambda: mtp_pass_times(*args))

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
            key = ("pieces", _unit_key(layout), tuple(tp_group), g_key, kind)
            return self._memoized(key, lambda: fsdp.submodules(layer_detail(*args, groups=groups, kind=kind)))

        groups_key = (tuple(shard), tuple(edp), tuple(tp_group), tuple(units))
        key = ("fsdp", _unit_key(layout), fsdp.fsdp_key(layout), *groups_key)
        timed = fsdp.unit_collectives(self._collective, layout, shard, edp)
        split = pieces if layout.fsdp == "none" else None
        return self._memoized(
            key, lambda: fsdp.fsdp_stage_passes(total, *fsdp.pass_steps(units, layout, timed, split))
        )

    def transfer_s(self, layout: Layout, grid: RankGrid, src: int, dst: int) -> float:
        """Seconds of one stage-to-stage transfer from pipeline rank ``src`` to ``dst`` (0 on one rank),
        including the receiver's all-gather with scatter/gather (SC21 Section 4.1)."""
        if src == dst:
            return 0.0
        a, b = grid.rank(0, 0, src), grid.rank(0, 0, dst)
        key = (
            layout.tp,
            layout.micro_batch_size,
            layout.seq_length,
            layout.sequence_parallel,
            layout.cp,
            a,
            b,
        )
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

    def main_layer_activation_bytes(self, layout: Layout) -> float:
        """Cached :func:`pipesim.cost.memory.layer_activation_bytes` of the model's main layer kind."""
        model = self.model
        return float(
            self._memoized(
                ("acts_layer", _unit_key(layout)),
                lambda: layer_activation_bytes(model, layout, model.main_kind()),
            )
        )

    def weight_stash_per_layer(self, layout: Layout) -> float:
        """Cached :func:`weight_stash_bytes_per_layer`."""
        model = self.model
        return float(
            self._memoized(("stash", _unit_key(layout)), lambda: weight_stash_bytes_per_layer(model, layout))
        )

    def _stage(
        self, layout: Layout, grid: RankGrid, r: int, kid: int, first: bool, last: bool
    ) -> tuple[PassTimes, float, float, float, float, fsdp.FsdpSpans | None]:
        """One stage's pass times, dense and expert parameters, and with ZeRO-3 / FSDP its collectives' total
        and exposed seconds and where they fall: layers of the kind counts numbered ``kid`` on rank ``r``."""
        model = self.model
        kinds = self._kind_of[kid]
        per_kind, emb, head = self.rank_units(layout, grid, r)
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
        dense_p, expert_p = self._memoized(
            ("params", layout.tp, layout.ep, layout.etp, kid, first, last),
            lambda: stage_param_split(model, layout, kinds, first, last),
        )
        return p, dense_p, expert_p, c_total, c_exposed, spans

    # ------------------------------------------------------------------ the one function
    def stage_costs(self, layout: Layout, placement: Sequence[int], grid: RankGrid) -> StageCosts:
        """Per-stage costs of ``layout`` with global stage s on pipeline rank ``placement[s]`` and global ranks
        from ``grid`` (see the module docstring)."""
        model = self.model
        n_stages = len(placement)
        layers = layout.layers_per_stage(model, n_stages)
        zero3 = layout.zero_stage >= 3
        starts = [0, *itertools.accumulate(layers[:-1])]
        # Stages alike in (unit fields, grid, rank, layer kinds, ends) cost alike: one memo entry each.
        ukey = self._key_ids.setdefault(_unit_key(layout), len(self._key_ids))
        gkey = self._key_ids.setdefault(grid, len(self._key_ids))
        zkey = (fsdp.fsdp_key(layout), layout) if zero3 else None

        passes: list[PassTimes] = []
        params: list[float] = []
        expert: list[float] = []
        z_comm: list[float] = []
        z_exposed: list[float] = []
        z_spans: list[fsdp.FsdpSpans] = []
        for s in range(n_stages):
            r = placement[s]
            first, last = s == 0, s == n_stages - 1
            kid = self._kinds.get((starts[s], layers[s]))
            if kid is None:
                ks = tuple(model.kind_counts(starts[s], starts[s] + layers[s]).items())
                kid = self._kinds[starts[s], layers[s]] = self._key_ids.setdefault(ks, len(self._key_ids))
                self._kind_of[kid] = dict(ks)
            key = (ukey, gkey, r, kid, first, last, zkey)
            hit = self._stages.get(key)
            if hit is None:
                hit = self._stages[key] = self._stage(layout, grid, r, kid, first, last)
            p, dense_p, expert_p, c_total, c_exposed, spans = hit
            if spans is not None:
                z_spans.append(spans)
            passes.append(p)
            params.append(dense_p + expert_p)
            expert.append(expert_p)
            z_comm.append(c_total)
            z_exposed.append(c_exposed)

        p2p = [self.transfer_s(layout, grid, placement[s], placement[s + 1]) for s in range(n_stages - 1)]

        # Data-parallel gradient reduction, per stage (the engine's buckets decide what is hidden).
        grad_b = layout.grad_reduce_bytes
        collective = "reduce-scatter" if layout.distributed_optimizer else "all-reduce"
        bucket = DP_BUCKET_PARAMS * grad_b
        tied_pair = model.tied_embeddings and layout.pp > 1 and placement[0] != placement[-1]
        dp_full: list[float] = []
        for s in range(n_stages):
            red = 0.0
            rg = self.rank_groups(grid, placement[s])
            if zero3 and layout.fsdp == "hybrid":  # HSDP: the gradient shards, across replicas, once a step
                replicas = fsdp.shard_groups(rg.dp_cp, layout)[1]
                shard = (params[s] - expert[s]) / layout.shard_size
                red = self._collective("all-reduce", shard * grad_b, replicas, bucket)
            elif not zero3:  # ZeRO-3 reduce-scatters unit by unit inside every backward instead
                dkey = (collective, grad_b, params[s], expert[s], gkey, placement[s])
                red = self._stage_dp.get(dkey, -1.0)
                if red < 0:
                    red = self._collective(collective, (params[s] - expert[s]) * grad_b, rg.dp_cp, bucket)
                    if expert[s] > 0:
                        red += self._collective(collective, expert[s] * grad_b, rg.edp, bucket)
                    self._stage_dp[dkey] = red
            if tied_pair and s in (0, n_stages - 1):
                pair = [
                    self.rank_groups(grid, placement[0]).first,
                    self.rank_groups(grid, placement[-1]).first,
                ]
                red += self._collective(
                    "all-reduce", model.vocab_size * model.hidden_size / layout.tp * grad_b, pair
                )
            dp_full.append(red)

        # Optimizer step: the slowest pipeline rank's.
        # Dense state shards over dp x cp, expert state over edp (Megatron-Core's distributed optimizer).
        rank_params = [0.0] * layout.pp
        rank_expert = [0.0] * layout.pp
        for s in range(n_stages):
            rank_params[placement[s]] += params[s]
            rank_expert[placement[s]] += expert[s]
        rank_forward = [0.0] * layout.pp
        for s in range(n_stages):
            rank_forward[placement[s]] += passes[s].forward_s
        opt = 0.0
        dense_dp = layout.dp * layout.cp
        for r in range(layout.pp):
            dense_r, expert_r = rank_params[r] - rank_expert[r], rank_expert[r]
            local = (
                dense_r / dense_dp + expert_r / layout.edp if layout.distributed_optimizer else rank_params[r]
            )
            t_opt = optimizer_step_s(local, self.gpu, self.efficiency)
            if layout.distributed_optimizer and not zero3:
                # Dense weights gather over dp x cp, experts over edp (one stream, one after the other).
                ag_s = ag_one_s = 0.0
                rg = self.rank_groups(grid, r)
                for size, group in ((dense_r * ACT_BYTES, rg.dp_cp), (expert_r * ACT_BYTES, rg.edp)):
                    if size > 0:
                        ag_s += self._collective("all-gather", size, group, bucket)
                        ag_one_s = max(
                            ag_one_s, self._collective("all-gather", min(bucket, size), group, bucket)
                        )
                t_opt += param_gather_exposed_s(ag_s, ag_one_s, rank_forward[r], layout.overlap_param_gather)
            opt = max(opt, t_opt)

        acts = self._memoized(
            ("acts", _unit_key(layout), tuple(layers)),
            lambda: stage_activation_bytes(
                model,
                layout,
                layers,
                [model.kind_counts(a, a + n) for a, n in zip(starts, layers, strict=True)],
            ),
        )
        stash_layer = self.weight_stash_per_layer(layout)
        transient = self._memoized(
            ("transient", _unit_key(layout), layout.pp), lambda: transient_bytes(model, layout)
        )
        costs = OpCosts(
            forward_s=tuple(p.forward_s for p in passes),
            backward_s=tuple(p.backward_s for p in passes),
            weight_s=tuple(p.weight_s for p in passes),
            p2p_s=tuple(p2p),
            activation_bytes=acts,
            weight_stash_bytes=tuple(min(a, n * stash_layer) for a, n in zip(acts, layers, strict=True)),
            tp_comm_forward_s=tuple(p.tp_forward_s for p in passes),
            tp_comm_backward_s=tuple(p.tp_backward_s for p in passes),
            recompute_s=tuple(p.recompute_s for p in passes),
            dp_reduce_s=tuple(dp_full),
            dp_overlap=layout.dp_overlap,
            dp_buckets=dp_buckets(params),
            optimizer_s=opt,
            p2p_blocking=not layout.p2p_overlapped,
        )
        return StageCosts(
            costs,
            tuple(passes),
            tuple(params),
            tuple(rank_params),
            transient,
            tuple(z_comm),
            tuple(z_exposed),
            tuple(expert),
            tuple(rank_expert),
            tuple(z_spans),
        )
