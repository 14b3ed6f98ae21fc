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
from collections.abc import Sequence
from dataclasses import dataclass

from pipesim.cost import fsdp
from pipesim.cost.flops import ACT_BYTES
from pipesim.cost.grad_reduce import stage_reductions
from pipesim.cost.memory import (
    stage_activation_bytes,
    transient_bytes,
)
from pipesim.cost.stage_cache import StageCostCache, unit_key, weight_stash_bytes_per_layer
from pipesim.cost.times import (
    DP_BUCKET_PARAMS,
    PassTimes,
    optimizer_step_s,
    param_gather_exposed_s,
)
from pipesim.errors import InputError
from pipesim.sim.engine import OpCosts
from pipesim.specs.layout import Layout
from pipesim.specs.placement import RankGrid

__all__ = ["StageCosts", "StageCostModel", "weight_stash_bytes_per_layer", "dp_buckets"]


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


class StageCostModel(StageCostCache):
    """Per-stage costs of layouts of ``model`` on ``gpu`` with collectives timed by ``comm`` (see the module
    docstring), from the parts :class:`pipesim.cost.stage_cache.StageCostCache` caches by every field they
    depend on. Not thread-safe."""

    # ------------------------------------------------------------------ the one function
    def stage_costs(
        self, layout: Layout, placement: Sequence[int], grid: RankGrid, chains: int = 1
    ) -> StageCosts:
        """Per-stage costs of ``layout`` with global stage s on pipeline rank ``placement[s]`` and global ranks
        from ``grid`` (see the module docstring). ``chains`` > 1 (bidirectional DualPipe: 2) splits the stages
        into equal chains, each a whole copy of the model with its own parameters (stage s holds block s mod
        S / chains; the copies' gradient exchange: :mod:`pipesim.cost.grad_reduce`)."""
        model = self.model
        n_stages = len(placement)
        if chains < 1 or n_stages % chains:
            raise InputError(f"{n_stages} stages cannot form {chains} equal chains of stages")
        length = n_stages // chains
        layers = layout.layers_per_stage(model, length) * chains
        zero3 = layout.zero_stage >= 3
        # Each chain (a whole copy of the model) splits its layers alike: stage starts restart per chain.
        starts = [0, *itertools.accumulate(layers[: length - 1])] * chains
        # Stages alike in (unit fields, grid, rank, layer kinds, chain ends) cost alike: one memo entry each.
        ukey = self._key_ids.setdefault(unit_key(layout), len(self._key_ids))
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
            first, last = s % length == 0, s % length == length - 1
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

        p2p = [  # no transfer between one chain's last stage and the next chain's first
            0.0 if (s + 1) % length == 0 else self.transfer_s(layout, grid, placement[s], placement[s + 1])
            for s in range(n_stages - 1)
        ]
        hop = max((self.state_hop_s(grid, r) for r in range(layout.pp - 1)), default=0.0)

        # Data-parallel gradient reduction, per stage (the engine's buckets decide what is hidden).
        grad_b = layout.grad_reduce_bytes
        bucket = DP_BUCKET_PARAMS * grad_b
        dp_full = stage_reductions(
            model,
            layout,
            placement,
            params,
            expert,
            chains,
            lambda r: self.rank_groups(grid, r),
            self._collective,
            self._stage_dp.setdefault(gkey, {}),
        )

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
            ("acts", unit_key(layout), tuple(layers), chains),
            lambda: stage_activation_bytes(
                model,
                layout,
                layers,
                [model.kind_counts(a, a + n) for a, n in zip(starts, layers, strict=True)],
                chains,
            ),
        )
        stash_layer = self.weight_stash_per_layer(layout)
        transient = self._memoized(
            ("transient", unit_key(layout), layout.pp), lambda: transient_bytes(model, layout)
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
            validation_hop_s=hop,
            # Expert all-to-alls inside F and inside the backward's I phase: what DualPipe's F&B pairs hide.
            a2a_forward_s=tuple(min(p.ep_forward_s, p.forward_s) for p in passes),
            a2a_backward_s=tuple(
                min(max(p.ep_comm_s - p.ep_forward_s, 0.0), p.backward_s - p.weight_s) for p in passes
            ),
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
