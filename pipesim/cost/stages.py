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

Costs are cached by exactly the fields they depend on (:mod:`pipesim.cost.stage_cache`), so one
:class:`StageCostModel` can serve every candidate of a plan.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipesim.cost import fsdp
from pipesim.cost.flops import ACT_BYTES
from pipesim.cost.grad_reduce import stage_reductions
from pipesim.cost.memory import (
    stage_activation_bytes,
    transient_bytes,
)
from pipesim.cost.stage_cache import StageCostCache, unit_key, weight_stash_bytes_per_layer
from pipesim.cost.stage_table import (
    COLUMNS,
    PARAMS,
    PASS_COLUMNS,
    B,
    Entry,
    F,
    StageCosts,
    StageFrame,
    StageMemory,
    StageTable,
    W,
    rank_sums,
)
from pipesim.cost.times import (
    DP_BUCKET_PARAMS,
    optimizer_step_s,
    param_gather_exposed_s,
)
from pipesim.errors import InputError
from pipesim.sim.budget import check_buckets
from pipesim.specs.layout import Layout
from pipesim.specs.placement import RankGrid

__all__ = ["StageCosts", "StageCostModel", "StageTable", "weight_stash_bytes_per_layer", "dp_buckets"]


_PASS_VALUES = operator.attrgetter(*PASS_COLUMNS)  # a stage's PASS_COLUMNS fields, in one call


def dp_buckets(stage_params: Sequence[float]) -> int:
    """Gradient buckets per stage handed to the engine: the largest stage's parameters (per TP rank) over
    :data:`pipesim.cost.times.DP_BUCKET_PARAMS`, rounded up (Megatron-LM's DDP bucket size, 40M parameters).
    The engine splits every stage's reduction into this many equal buckets."""
    most = max(stage_params, default=0.0)
    return max(1, -(-int(most) // DP_BUCKET_PARAMS))


class StageCostModel(StageCostCache):
    """Per-stage costs of layouts of ``model`` on ``gpu`` with collectives timed by ``comm`` (see the module
    docstring), from the parts :class:`pipesim.cost.stage_cache.StageCostCache` caches by every field they
    depend on. Not thread-safe."""

    # ------------------------------------------------------------------ the one function
    def stage_costs(
        self, layout: Layout, placement: Sequence[int], grid: RankGrid, chains: int = 1
    ) -> StageCosts:
        """Per-stage costs of ``layout`` with global stage s on pipeline rank ``placement[s]`` and global ranks
        from ``grid`` (see the module docstring): :meth:`stage_table`'s, as tuples."""
        return self.stage_table(layout, placement, grid, chains).stage_costs

    def frame(self, layout: Layout, placement: Sequence[int], chains: int = 1) -> StageFrame:
        """The :class:`pipesim.cost.stage_table.StageFrame` of ``placement`` (cached): ``chains`` > 1
        (bidirectional DualPipe: 2) splits the stages into equal chains, each a whole copy of the model
        (stage s holds block s mod S / chains)."""
        n_stages = len(placement)
        key = ("frame", tuple(placement), chains)  # the layers follow from the stage count
        hit = self._memo.get(key)
        if hit is None:
            if chains < 1 or n_stages % chains:
                raise InputError(f"{n_stages} stages cannot form {chains} equal chains of stages")
            layers = layout.layers_per_stage(self.model, n_stages // chains) * chains
            hit = self._memo[key] = self._frame(tuple(placement), layers, chains)
        return hit

    def _frame(self, placement: tuple[int, ...], layers: tuple[int, ...], chains: int) -> StageFrame:
        model = self.model
        n_stages = len(placement)
        length = n_stages // chains
        # Each chain (a whole copy of the model) splits its layers alike: stage starts restart per chain.
        starts = (0, *itertools.accumulate(layers[: length - 1])) * chains
        sig_ids: dict[tuple[int, int, bool, bool], int] = {}
        index = []
        for s in range(n_stages):
            kid = self._kinds.get((starts[s], layers[s]))
            if kid is None:
                ks = tuple(model.kind_counts(starts[s], starts[s] + layers[s]).items())
                kid = self._kinds[starts[s], layers[s]] = self._key_ids.setdefault(ks, len(self._key_ids))
                self._kind_of[kid] = dict(ks)
            sig = (placement[s], kid, s % length == 0, s % length == length - 1)
            index.append(sig_ids.setdefault(sig, len(sig_ids)))
        pair_ids: dict[tuple[int, int], int] = {}
        pairs = []
        for s in range(n_stages - 1):  # no transfer between one chain's last stage and the next chain's first
            a, b = placement[s], placement[s + 1]
            pairs.append(
                -1 if (s + 1) % length == 0 or a == b else pair_ids.setdefault((a, b), len(pair_ids))
            )
        return StageFrame(
            np.array(placement, dtype=np.intp),
            layers,
            starts,
            chains,
            tuple(sig_ids),
            np.array(index, dtype=np.intp),
            tuple(pair_ids),
            np.array(pairs, dtype=np.intp),
        )

    def stage_table(
        self,
        layout: Layout,
        placement: Sequence[int],
        grid: RankGrid,
        chains: int = 1,
        schedule: str | None = None,
    ) -> StageTable:
        """Per-stage costs of ``layout`` on ``placement`` and ``grid`` as arrays (see the module docstring and
        :class:`pipesim.cost.stage_table.StageTable`): each distinct stage signature costed once. ``schedule``
        (default the layout's) decides whether pipeline sends block (:meth:`Layout.p2p_overlapped_for`); no
        other cost depends on it."""
        model = self.model
        frame = self.frame(layout, placement, chains)
        ukey = unit_key(layout)
        gkey = self._key_ids.setdefault(grid, len(self._key_ids))
        fid = id(frame)  # frames are kept (memoized) for the model's life: their ids are unique
        # Every stage key (stage_key) follows from the frame's signatures, the unit fields, the grid and, with
        # ZeRO-3, the layout: the signatures' entries are kept per those (layouts differing in other fields,
        # e.g. the distributed optimizer, share them).
        zero3 = (fsdp.fsdp_key(layout), layout) if layout.zero_stage >= 3 else None
        entries, by_sig = self._memoized(
            ("signatures", fid, ukey, gkey, zero3), lambda: self._signatures(layout, frame, ukey, grid, gkey)
        )
        values = by_sig[frame.sig_index]
        p2p = self._memoized(
            ("p2p", fid, gkey, *self.transfer_key(layout)),
            lambda: np.array(
                [*(self.transfer_s(layout, grid, a, b) for a, b in frame.pairs), 0.0], dtype=np.float64
            )[frame.pair_index],  # index -1: no transfer
        )
        hop = self._memoized(
            ("hop", gkey, layout.pp),
            lambda: max((self.state_hop_s(grid, r) for r in range(layout.pp - 1)), default=0.0),
        )

        # Data-parallel gradient reduction, per stage (the engine's buckets decide what is hidden).
        sig_params, sig_expert = by_sig[:, PARAMS].tolist(), [e[2] for e in entries]
        dp_key = (layout.distributed_optimizer, layout.grad_reduce_bytes, layout.zero_stage, layout.fsdp)
        dp_full = self._memoized(
            ("dp", fid, gkey, *dp_key, layout.shard_size, tuple(sig_params), tuple(sig_expert)),
            lambda: stage_reductions(
                model,
                layout,
                frame,
                sig_params,
                sig_expert,
                lambda r: self.rank_groups(grid, r),
                self._collective,
                self._stage_dp.setdefault(gkey, {}),
            ),
        )
        p2p.setflags(write=False)  # shared between the tables that memoized them
        dp_full.setflags(write=False)
        buckets = dp_buckets(values[:, PARAMS].tolist())
        check_buckets(len(placement), buckets)  # before the engine builds one span per bucket
        values = self._ddp_contention(layout, values, dp_full, buckets)
        mem = self.stage_memory(layout, placement, chains)
        rank_forward = rank_sums(frame.placement, values[:, F], layout.pp)
        opt = self._optimizer_s(
            layout, grid, gkey, mem.rank_params.tolist(), mem.rank_expert_params.tolist(), rank_forward
        )
        return StageTable(
            frame,
            entries,
            values,
            p2p,
            dp_full,
            mem,
            opt,
            buckets,
            layout.dp_overlap,
            not layout.p2p_overlapped_for(layout.schedule if schedule is None else schedule),
            hop,
        )

    def _ddp_contention(
        self, layout: Layout, values: np.ndarray, dp_full: np.ndarray, buckets: int
    ) -> np.ndarray:
        """``values`` with each stage's backward (B, and W, the pass its last gradients come from under a
        split backward) lengthened by the SMs its overlapped gradient reduction takes from it.

        NCCL's kernels hold ``comm_sms`` of the SMs while they run (the same share as FSDP's overlap,
        :mod:`pipesim.cost.fsdp`), so compute overlapping them runs at ``1 - share`` of its speed. With
        ``dp_overlap`` the buckets of a stage become ready through its last gradient pass, bucket k at
        (k+1)/K of it, so about (K-1)/K x min(reduction, pass) of the reduction runs under that pass, which
        takes share x that much longer. The engine runs one cost per (pass, stage), so the extra time is spread
        over the stage's microbatches: exact for the step time at pp = 1 (every pass on the critical path),
        an underestimate of deeper pipelines' cool-down chains. Not for ZeRO-3 / FSDP (their collectives have
        their own model) or without a share (every profile but the A100s' has comm_sms = 0)."""
        share = self.efficiency.comm_sm_share
        if not (
            layout.dp_overlap
            and share > 0
            and buckets > 1
            and layout.zero_stage < 3
            and layout.fsdp == "none"
            and dp_full.any()
        ):
            return values
        out = values.copy()
        extra = share * (buckets - 1) / buckets * np.minimum(dp_full, out[:, B]) / layout.num_microbatches
        out[:, B] += extra
        out[:, W] += extra
        return out

    def _signatures(
        self, layout: Layout, frame: StageFrame, ukey: tuple[Any, ...], grid: RankGrid, gkey: int
    ) -> tuple[tuple[Entry, ...], np.ndarray]:
        """The :meth:`_stage` entry of each of ``frame``'s signatures, and their :data:`COLUMNS` as rows
        (read-only). Stages alike in (units, layer kinds, chain ends) cost alike: one memo entry each
        (stage_key)."""
        entries = []
        rows = []
        for sig in frame.sigs:
            key = self.stage_key(layout, ukey, grid, gkey, sig)
            hit = self._stages.get(key)
            if hit is None:
                hit = self._stages[key] = self._stage(layout, grid, *sig)
            entries.append(hit)
            p, dense_p, expert_p, c_total, c_exposed, _ = hit
            rows.append((*_PASS_VALUES(p), dense_p + expert_p, expert_p, c_total, c_exposed))
        by_sig = np.array(rows, dtype=np.float64).reshape(len(rows), len(COLUMNS))
        by_sig.setflags(write=False)  # shared by every table of these signatures
        return tuple(entries), by_sig

    def stage_memory(self, layout: Layout, placement: Sequence[int], chains: int = 1) -> StageMemory:
        """What ``layout``'s memory on ``placement`` is made of (:class:`pipesim.cost.stage_table.StageMemory`):
        no pass is timed for it. Cached by the frame, the unit fields and pp; :meth:`stage_table` holds the same
        object, so the planner's memory check and its timing read the same bytes."""
        frame = self.frame(layout, placement, chains)
        ukey = unit_key(layout)
        return self._memoized(
            ("memory", id(frame), ukey, layout.pp, chains),  # frames live as long as the model: ids unique
            lambda: self._stage_memory(layout, frame, ukey, chains),
        )

    def _stage_memory(
        self, layout: Layout, frame: StageFrame, ukey: tuple[object, ...], chains: int
    ) -> StageMemory:
        model = self.model
        rank_params, rank_expert = self.rank_param_sums(layout, frame)
        layers = frame.layers
        acts = self._memoized(
            ("acts", ukey, layers, chains),
            lambda: np.array(
                stage_activation_bytes(
                    model,
                    layout,
                    layers,
                    [self._kind_of[frame.sigs[i][1]] for i in frame.sig_index.tolist()],  # each stage's kinds
                    chains,
                ),
                dtype=np.float64,
            ),
        )
        stash = np.minimum(acts, np.array(layers, dtype=np.float64) * self.weight_stash_per_layer(layout))
        for a in (acts, stash):
            a.setflags(write=False)  # shared by every table of this memory
        return StageMemory(
            frame,
            acts,
            stash,
            rank_params,
            rank_expert,
            self.transient(layout),
        )

    def transient(self, layout: Layout) -> float:
        """:func:`pipesim.cost.memory.transient_bytes` of ``layout`` (cached by the unit fields and pp)."""
        model = self.model
        return float(
            self._memoized(("transient", unit_key(layout), layout.pp), lambda: transient_bytes(model, layout))
        )

    def rank_param_sums(self, layout: Layout, frame: StageFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per pipeline rank of ``frame``, its parameters per GPU (dense + expert) and their routed-expert part,
        each rank's stages added in stage order (cached by the frame, tp, ep and etp): what weights, gradients
        and optimizer state are counted from, without timing a pass."""
        return self._memoized(
            ("rank params", id(frame), layout.tp, layout.ep, layout.etp, layout.pp),
            lambda: self._rank_param_sums(layout, frame),
        )

    def _rank_param_sums(self, layout: Layout, frame: StageFrame) -> tuple[np.ndarray, np.ndarray]:
        split = [self.stage_params(layout, kid, first, last) for _, kid, first, last in frame.sigs]
        by_sig = np.array([(d + e, e) for d, e in split], dtype=np.float64).reshape(len(split), 2)
        per_stage = by_sig[frame.sig_index]
        out = (
            rank_sums(frame.placement, per_stage[:, 0], layout.pp),
            rank_sums(frame.placement, per_stage[:, 1], layout.pp),
        )
        for a in out:
            a.setflags(write=False)  # shared by every table and memory of this frame
        return out

    def _optimizer_s(
        self,
        layout: Layout,
        grid: RankGrid,
        gkey: int,
        rank_params: list[float],
        rank_expert: list[float],
        rank_forward: np.ndarray,
    ) -> float:
        """Optimizer step: the slowest pipeline rank's. Dense state shards over dp x cp, expert state over edp
        (Megatron-Core's distributed optimizer), with its all-gather of updated weights (exposed as
        :func:`pipesim.cost.times.param_gather_exposed_s` says). Cached per rank by every value it uses, and
        the whole step by every rank's values (layouts alike in those, e.g. differing in recompute or
        micro-batch size only, share it)."""
        zero3 = layout.zero_stage >= 3
        bucket = DP_BUCKET_PARAMS * layout.grad_reduce_bytes
        dense_dp = layout.dp * layout.cp
        gather = layout.distributed_optimizer and not zero3
        memo = self._stage_dp.setdefault(gkey, {})
        # Every per-rank key's values at once: the step is their maximum.
        overlapped = gather and layout.overlap_param_gather
        step_key = (
            "opt step",
            tuple(rank_params),
            tuple(rank_expert),
            tuple(rank_forward.tolist()) if overlapped else None,
            layout.distributed_optimizer,
            gather,
            bucket,
            layout.overlap_param_gather,
            dense_dp,
            layout.edp,
        )
        step = memo.get(step_key)
        if step is None:
            step = memo[step_key] = self._rank_optimizer_s(
                layout, grid, memo, rank_params, rank_expert, rank_forward
            )
        return step

    def _rank_optimizer_s(
        self,
        layout: Layout,
        grid: RankGrid,
        memo: dict[tuple[Any, ...], float],
        rank_params: list[float],
        rank_expert: list[float],
        rank_forward: np.ndarray,
    ) -> float:
        """:meth:`_optimizer_s`, rank by rank (each rank's step cached in ``memo``, its grid's)."""
        zero3 = layout.zero_stage >= 3
        bucket = DP_BUCKET_PARAMS * layout.grad_reduce_bytes
        dense_dp = layout.dp * layout.cp
        gather = layout.distributed_optimizer and not zero3
        opt = 0.0
        for r in range(layout.pp):
            dense_r, expert_r = rank_params[r] - rank_expert[r], rank_expert[r]
            fwd = float(rank_forward[r]) if gather and layout.overlap_param_gather else 0.0
            key = (
                "opt",
                r,
                rank_params[r],
                expert_r,
                fwd,
                layout.distributed_optimizer,
                gather,
                bucket,
                layout.overlap_param_gather,
                dense_dp,
                layout.edp,
            )
            t_opt = memo.get(key, -1.0)
            if t_opt < 0:
                local = (
                    dense_r / dense_dp + expert_r / layout.edp
                    if layout.distributed_optimizer
                    else rank_params[r]
                )
                t_opt = optimizer_step_s(local, self.gpu, self.efficiency)
                if gather:
                    # Dense weights gather over dp x cp, experts over edp (one stream, one after the other).
                    ag_s = ag_one_s = 0.0
                    rg = self.rank_groups(grid, r)
                    for size, group in ((dense_r * ACT_BYTES, rg.dp_cp), (expert_r * ACT_BYTES, rg.edp)):
                        if size > 0:
                            ag_s += self._collective("all-gather", size, group, bucket)
                            ag_one_s = max(
                                ag_one_s, self._collective("all-gather", min(bucket, size), group, bucket)
                            )
                    t_opt += param_gather_exposed_s(
                        ag_s, ag_one_s, float(rank_forward[r]), layout.overlap_param_gather
                    )
                memo[key] = t_opt
            opt = max(opt, t_opt)
        return opt
