"""A fast analytic estimate of one training step: step time, its breakdown and peak memory per GPU, without
building a schedule or simulating a timeline. The planner (:mod:`pipesim.plan`) runs it on every candidate
layout and runs the full simulation (:func:`pipesim.scenario.simulate_scenario`) only on the best few.

Costs come from the same functions the simulator uses (:mod:`pipesim.cost`, :mod:`pipesim.memory`), cached by
the few fields each depends on: one transformer layer's F / B / W times by (tp, sequence parallel,
micro-batch, recompute) (sequence length, precision and attention kernels are fixed for a plan); transfers by
(tp, dp, micro-batch, sequence parallel); gradient reductions by (tp, dp, collective, bytes).

Step time = pipeline phase + exposed data-parallel reduction + optimizer step, where:

* pipeline phase, for a rank r holding per-microbatch work W_r (its chunks' F + B) and the slowest rank's
  W_max: ``m W_max + k (sum_r W_r - W_max) / v + exposed transfers``. For uniform stages this is SC21's
  (m + (p-1)/v) (t_f + t_b) (Narayanan et al. 2021, Section 2.2: bubble (p-1)/m for GPipe and 1F1B,
  (1/v)(p-1)/m interleaved), and for v = 1 it is the classic (m-1) max + sum of a heterogeneous pipeline.
  ``k`` is the family's bubble factor relative to 1F1B: 1 for GPipe, 1F1B and interleaved 1F1B; for ZB-H1
  (T_F + T_B - T_W) / (T_F + T_B + T_W) and for ZB-H2 max(0, T_F + T_B - 2 T_W) / (T_F + T_B + T_W), with
  T_B the input-gradient pass (Qi et al., ICLR 2024, Table 2). A registered family with no closed form here
  gets ``k`` from simulating its schedule once with uniform stage costs of the same F : B : W ratios (cached).
  Exposed transfers: 2 (p - 1) transfer times, the fill and drain of one microbatch (each direction crosses
  p - 1 boundaries; in the steady state transfers overlap compute);
* exposed data-parallel reduction: stage s's last backward ends about s (B_chunk + transfer) before the end
  of the pipeline phase (the final backward wave runs from the last stage to the first); its reduction (the
  part not hidden behind its own backward, as :func:`pipesim.scenario.stage_costs` hands the engine) runs on
  its rank's reduction stream after that; the exposed time is how far the last one ends past the pipeline;
* optimizer step: the most loaded pipeline rank's Adam step (:func:`pipesim.cost.optimizer_step_s`) plus, with
  the distributed optimizer, the all-gather of updated weights; as the simulator charges it.

Peak memory per GPU: weights, gradients and optimizer state of the rank's stages (:mod:`pipesim.memory`),
plus its stashed activations = in-flight microbatches (closed form per family: GPipe m, 1F1B min(m, p - r)
(SC21 Section 2.2.1), interleaved min(v m, 2(p - r - 1) + (v - 1) p + 1) / v (Korthikanti et al. 2022,
Section 4.2.3), ZB-H1 as 1F1B and ZB-H2 min(m, 2p - 1 - r) (Qi et al. Table 2); others counted on the
built schedule) x the rank's activations per microbatch x ACTIVATION_OVERHEAD, plus the backward's
transient working set and the fixed reserve. Ranks 0 and p - 1 are evaluated (embedding and logits); for
families counted on the schedule, every rank.

The test suite checks the estimate against the simulator (tests/test_plan_estimate.py): step time within
10 percent and the same order on a sample of layouts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipesim.comm import CommModel
from pipesim.cost import (
    DP_BUCKET_PARAMS,
    Efficiency,
    PassTimes,
    bucketed_collective_s,
    embedding_pass_times,
    head_pass_times,
    layer_pass_times,
    optimizer_step_s,
    p2p_bytes,
)
from pipesim.engine import OpCosts, simulate
from pipesim.flops import ACT_BYTES
from pipesim.gpus import GPUSpec
from pipesim.layout import Layout
from pipesim.memory import (
    ACTIVATION_OVERHEAD,
    bytes_per_param,
    embedding_activation_bytes,
    head_activation_bytes,
    layer_activation_bytes,
    stage_params,
    transient_bytes,
)
from pipesim.models import ModelSpec
from pipesim.placement import RankGrid
from schedules import Schedule, ScheduleError, build_schedule, get_family
from schedules.classic import interleaved_microbatch_rule

__all__ = ["Estimate", "Estimator", "FamilyModel", "FAMILY_MODELS", "stage_placement"]


# --------------------------------------------------------------------------- schedule families
@dataclass(frozen=True)
class FamilyModel:
    """Closed forms of one schedule family: ``rule(p, m, v)`` says why it cannot run (None if it can);
    ``bubble_factor(F, B_input, W)`` is its bubble relative to 1F1B's for per-microbatch times of a rank;
    ``in_flight(p, m, v, rank)`` its peak stashed microbatches on ``rank`` (units of the rank's whole stage)."""

    rule: Callable[[int, int, int], str | None]
    bubble_factor: Callable[[float, float, float], float]
    in_flight: Callable[[int, int, int, int], float]


def _no_rule(p: int, m: int, v: int) -> str | None:
    return None


def _one(f: float, b: float, w: float) -> float:
    return 1.0


def _zb_h1(f: float, b: float, w: float) -> float:
    # Qi et al. 2024 Table 2: ZB-H1 bubble (p-1)(T_F + T_B - T_W) vs 1F1B's (p-1)(T_F + T_B + T_W).
    return max(f + b - w, 0.0) / (f + b + w)


def _zb_h2(f: float, b: float, w: float) -> float:
    # Qi et al. 2024 Table 2: ZB-H2 bubble (p-1)(T_F + T_B - 2 T_W), zero when T_W >= (T_F + T_B) / 2.
    return max(f + b - 2.0 * w, 0.0) / (f + b + w)


def _interleaved_in_flight(p: int, m: int, v: int, r: int) -> float:
    # Korthikanti et al. 2022, Section 4.2.3 (also pipesim.memory.in_flight_analytic).
    return min(v * m, 2 * (p - r - 1) + (v - 1) * p + 1) / v


FAMILY_MODELS: dict[str, FamilyModel] = {
    "gpipe": FamilyModel(_no_rule, _one, lambda p, m, v, r: float(m)),
    "1f1b": FamilyModel(_no_rule, _one, lambda p, m, v, r: float(min(m, p - r))),
    "interleaved-1f1b": FamilyModel(interleaved_microbatch_rule, _one, _interleaved_in_flight),
    "zb-h1": FamilyModel(_no_rule, _zb_h1, lambda p, m, v, r: float(min(m, p - r))),
    "zb-h2": FamilyModel(_no_rule, _zb_h2, lambda p, m, v, r: float(min(m, 2 * p - 1 - r))),
}


def stage_placement(name: str, pp: int, chunks: int) -> tuple[int, ...] | None:
    """Rank of every global stage for the placements the registry's families use (one stage per rank;
    interleaved: stage s on rank s mod p; V-shape with 2 chunks: rank r holds r and 2p-1-r), or None when the
    family's placement must be read from its built schedule."""
    family = get_family(name)
    if chunks == 1:
        return tuple(range(pp))
    if family.uses_vpp:
        return tuple(s % pp for s in range(pp * chunks))
    if family.chunks_per_rank == 2:
        return tuple(range(pp)) + tuple(range(pp - 1, -1, -1))
    return None


# --------------------------------------------------------------------------- the estimate
@dataclass(frozen=True)
class Estimate:
    """The analytic estimate of one layout (seconds, bytes per GPU). ``compute_s`` is one rank's busy time
    (compute and TP communication, recompute included) on the slowest rank; ``bubble_s`` the rest of the
    pipeline phase; ``pp_comm_s`` the exposed transfers; the parts add up to ``step_time_s``."""

    step_time_s: float
    pipeline_s: float
    compute_s: float
    recompute_s: float
    tp_comm_s: float
    bubble_s: float
    pp_comm_s: float
    dp_exposed_s: float
    optimizer_s: float
    peak_memory_bytes: float
    memory_rank: int
    weights_bytes: float
    activations_bytes: float
    capacity_bytes: float

    @property
    def fits(self) -> bool:
        """True when the peak fits the GPU's HBM."""
        return self.peak_memory_bytes <= self.capacity_bytes

    def breakdown(self) -> dict[str, float]:
        """Exposed seconds per part, adding up to the step time."""
        return {
            "compute": self.compute_s - self.tp_comm_s,
            "tp_comm": self.tp_comm_s,
            "bubble": self.bubble_s,
            "pp_comm": self.pp_comm_s,
            "dp_comm": self.dp_exposed_s,
            "optimizer": self.optimizer_s,
        }


_Units = tuple[PassTimes, PassTimes, PassTimes]


class Estimator:
    """Estimates layouts of one model on one cluster; see the module docstring. Not thread-safe (caches)."""

    def __init__(
        self,
        model: ModelSpec,
        gpu: GPUSpec,
        comm: CommModel,
        efficiency: Efficiency,
        reserve_bytes: float,
    ) -> None:
        self.model = model
        self.gpu = gpu
        self.comm = comm
        self.eff = efficiency
        self.reserve = reserve_bytes
        self._units: dict[tuple[Any, ...], _Units] = {}
        self._acts: dict[tuple[Any, ...], tuple[float, float, float, float]] = {}
        self._p2p: dict[tuple[Any, ...], float] = {}
        self._coll: dict[tuple[Any, ...], float] = {}
        self._schedules: dict[tuple[Any, ...], Schedule | str] = {}
        self._bubble: dict[tuple[Any, ...], float] = {}

    # ----------------------------------------------------------------- cached pieces
    @staticmethod
    def _unit_key(layout: Layout) -> tuple[Any, ...]:
        return (
            layout.tp,
            layout.sequence_parallel,
            layout.micro_batch_size,
            layout.recompute,
            layout.seq_length,
            layout.precision,
            layout.attention,
        )

    def units(self, layout: Layout) -> _Units:
        """(one layer, embedding, head) pass times for ``layout``'s (tp, sp, micro-batch, recompute)."""
        key = self._unit_key(layout)
        hit = self._units.get(key)
        if hit is None:
            group = list(range(layout.tp))
            args = (self.model, layout, self.gpu, self.eff, self.comm, group)
            hit = (layer_pass_times(*args), embedding_pass_times(*args), head_pass_times(*args))
            self._units[key] = hit
        return hit

    def activations(self, layout: Layout) -> tuple[float, float, float, float]:
        """(per layer, embedding extra, head extra, backward transient) activation bytes per microbatch."""
        key = self._unit_key(layout)
        hit = self._acts.get(key)
        if hit is None:
            m = self.model
            hit = (
                layer_activation_bytes(m, layout),
                embedding_activation_bytes(m, layout),
                head_activation_bytes(m, layout),
                transient_bytes(m, layout),
            )
            self._acts[key] = hit
        return hit

    def transfer_s(self, layout: Layout, grid: RankGrid) -> float:
        """Seconds of one stage-to-stage transfer (the slower of neighbour and wrap-around pairs), including
        the receiver's all-gather with scatter/gather (SC21 Section 4.1), as the simulator charges it."""
        key = (layout.tp, layout.dp, layout.pp, layout.micro_batch_size, layout.sequence_parallel)
        hit = self._p2p.get(key)
        if hit is None:
            hit = 0.0
            if layout.pp > 1:
                size = p2p_bytes(self.model, layout)
                full = ACT_BYTES * layout.micro_batch_size * layout.seq(self.model) * self.model.hidden_size
                gather = layout.tp > 1 and layout.scatter_gather and not layout.sequence_parallel
                pairs = {(0, 1), (layout.pp - 1, 0)}
                for a, b in sorted(pairs):
                    t = self.comm.p2p_s(size, grid.rank(0, 0, a), grid.rank(0, 0, b))
                    if gather:
                        t += self.comm.collective_s("all-gather", full, grid.tp_group(0, b))
                    hit = max(hit, t)
            self._p2p[key] = hit
        return hit

    def collective(self, op: str, total_bytes: float, ranks: Sequence[int], key: tuple[Any, ...]) -> float:
        """Bucketed collective time (:func:`pipesim.cost.bucketed_collective_s`), cached by ``key``."""
        k = (op, round(total_bytes), key)
        hit = self._coll.get(k)
        if hit is None:
            bucket = DP_BUCKET_PARAMS * key[-1]  # key ends with the gradient bytes per parameter
            hit = self._coll[k] = bucketed_collective_s(self.comm, op, total_bytes, bucket, ranks)
        return hit

    def schedule(self, name: str, pp: int, m: int, chunks: int) -> Schedule | str:
        """The built schedule, or the reason it cannot be built (cached)."""
        key = (name, pp, m, chunks)
        hit = self._schedules.get(key)
        if hit is None:
            try:
                hit = build_schedule(name, pp, m, chunks)
            except ScheduleError as exc:
                hit = str(exc)
            self._schedules[key] = hit
        return hit

    def rule(self, name: str, pp: int, m: int, chunks: int) -> str | None:
        """Why schedule ``name`` cannot run ``m`` microbatches on ``pp`` ranks with ``chunks`` chunks, or None."""
        fam = FAMILY_MODELS.get(name)
        if fam is not None:
            return fam.rule(pp, m, chunks)
        built = self.schedule(name, pp, m, chunks)
        return built if isinstance(built, str) else None

    def _generic_bubble(self, name: str, pp: int, m: int, chunks: int, f: float, b: float, w: float) -> float:
        """Bubble factor of a family without a closed form: simulate its schedule with uniform chunk costs of
        the given F : B : W ratios (rounded to 2 decimals, cached) and compare with 1F1B's (p-1) W."""
        rf, rb = round(b / f, 2), round(w / f, 2)
        key = (name, pp, m, chunks, rf, rb)
        hit = self._bubble.get(key)
        if hit is None:
            built = self.schedule(name, pp, m, chunks)
            assert not isinstance(built, str)
            fam = get_family(name)
            wc = min(rb, rf) if fam.split_backward else 0.0
            costs = OpCosts.uniform(built.num_stages, 1.0, rf, weight_s=wc)
            t = simulate(built, costs).step_time_s
            per_rank = chunks * (1.0 + rf)
            hit = (t - m * per_rank) / ((pp - 1) * per_rank / chunks) if pp > 1 else 0.0
            self._bubble[key] = hit = max(hit, 0.0)
        return hit

    def _in_flight(self, name: str, pp: int, m: int, chunks: int, rank: int) -> float:
        fam = FAMILY_MODELS.get(name)
        if fam is not None:
            return fam.in_flight(pp, m, chunks, rank)
        key = ("inflight", name, pp, m, chunks)
        hit = self._bubble.get(key + (rank,))
        if hit is None:
            built = self.schedule(name, pp, m, chunks)
            assert not isinstance(built, str)
            for r in range(built.num_ranks):
                level = peak = 0.0
                for action in built.actions(r):
                    op = action.op.name
                    if op == "F":
                        level += 1.0
                    elif op == "B" or op == "W":
                        level -= 1.0
                    peak = max(peak, level)
                self._bubble[key + (r,)] = peak / chunks
            hit = self._bubble[key + (rank,)]
        return hit

    def _extra_in_flight(self, name: str, pp: int, m: int, chunks: int, rank: int) -> float:
        fam = FAMILY_MODELS.get(name)
        if fam is not None:
            return fam.in_flight(pp, m, 1, rank)
        return self._in_flight(name, pp, m, chunks, rank)

    # ----------------------------------------------------------------- the estimate
    def estimate(self, layout: Layout) -> Estimate:
        """The analytic estimate of ``layout`` (see the module docstring). The layout must already pass
        :meth:`pipesim.layout.Layout.check_model` and its schedule's rule."""
        model = self.model
        family = get_family(layout.schedule)
        p, m = layout.pp, layout.num_microbatches
        chunks = family.chunks(layout.vpp)
        n_stages = p * chunks
        placement = stage_placement(layout.schedule, p, chunks)
        if placement is None:
            built = self.schedule(layout.schedule, p, m, chunks)
            assert not isinstance(built, str)
            placement = built.stage_to_rank
        layers = layout.layers_per_stage(model, n_stages)
        layer, emb, head = self.units(layout)
        grid = RankGrid(layout.tp, layout.dp, p)

        # Per-rank work per microbatch (F + B of its stages) and its parts.
        work = [0.0] * p
        fwd = [0.0] * p
        wgt = [0.0] * p
        rec = [0.0] * p
        tpc = [0.0] * p
        params = [0.0] * p
        for s in range(n_stages):
            r = placement[s]
            n = layers[s]
            f = n * layer.forward_s
            b = n * layer.backward_s
            w = n * layer.weight_s
            rc = n * layer.recompute_s
            tc = n * (layer.tp_forward_s + layer.tp_backward_s)
            if s == 0:
                f, b, w = f + emb.forward_s, b + emb.backward_s, w + emb.weight_s
                tc += emb.tp_forward_s + emb.tp_backward_s
            if s == n_stages - 1:
                f, b, w = f + head.forward_s, b + head.backward_s, w + head.weight_s
                tc += head.tp_forward_s + head.tp_backward_s
            work[r] += f + b
            fwd[r] += f
            wgt[r] += w
            rec[r] += rc
            tpc[r] += tc
            params[r] += stage_params(model, layout, n, s == 0, s == n_stages - 1)

        slow = max(range(p), key=lambda r: (work[r], -r))
        w_max = work[slow]
        if p == 1:
            k = 0.0
        else:
            f_r, w_r = fwd[slow], (wgt[slow] if family.split_backward else 0.0)
            b_in = w_max - f_r - w_r
            fam = FAMILY_MODELS.get(layout.schedule)
            if fam is not None:
                k = fam.bubble_factor(f_r, b_in, w_r)
            else:
                k = self._generic_bubble(
                    layout.schedule, p, m, chunks, f_r / chunks, (w_max - f_r) / chunks, w_r / chunks
                )
        c = self.transfer_s(layout, grid)
        bubble = k * (sum(work) - w_max) / chunks
        pp_comm = 2.0 * (p - 1) * c
        pipeline = m * w_max + bubble + pp_comm

        # Data-parallel gradient reduction: per stage, the part not hidden by its own last backward, on the
        # rank's reduction stream from the stage's last backward on (see the module docstring).
        grad_b = layout.grad_reduce_bytes
        dp_exposed = 0.0
        if layout.dp > 1 or (model.tied_embeddings and p > 1):
            collective = "reduce-scatter" if layout.distributed_optimizer else "all-reduce"
            dp_group = grid.dp_group(0, 0)
            key = (layout.tp, layout.dp, grad_b)
            bucket = DP_BUCKET_PARAMS * grad_b
            b_chunk = (w_max - fwd[slow]) / chunks
            free = [0.0] * p
            tied = model.tied_embeddings and p > 1 and placement[0] != placement[-1]
            emb_s = 0.0
            if tied:
                pair = [grid.rank(0, 0, placement[0]), grid.rank(0, 0, placement[-1])]
                emb_s = self.comm.collective_s(
                    "all-reduce", model.vocab_size * model.hidden_size / layout.tp * grad_b, pair
                )
            # Stages in order of readiness: the final backward wave finishes the last stage first.
            end = 0.0
            for s in range(n_stages - 1, -1, -1):
                r = placement[s]
                n = layers[s]
                sp_params = stage_params(model, layout, n, s == 0, s == n_stages - 1)
                red = self.collective(collective, sp_params * grad_b, dp_group, key) if layout.dp > 1 else 0.0
                tail = red
                b_stage = n * layer.backward_s
                if layout.dp_overlap and red > 0:
                    one_bucket = red * min(1.0, bucket / (sp_params * grad_b))
                    tail = max(one_bucket, red - b_stage)
                if tied and s in (0, n_stages - 1):
                    tail += emb_s
                if tail <= 0:
                    continue
                ready = pipeline - s * (b_chunk + c) if layout.dp_overlap else pipeline
                free[r] = max(free[r], ready) + tail
                end = max(end, free[r])
            dp_exposed = max(end - pipeline, 0.0)

        # Optimizer step on the most loaded rank.
        opt = 0.0
        for r in {0, p - 1, slow}:
            local = params[r] / layout.dp if layout.distributed_optimizer else params[r]
            t = optimizer_step_s(local, self.gpu, self.eff)
            if layout.distributed_optimizer and layout.dp > 1:
                t += self.collective(
                    "all-gather", params[r] * ACT_BYTES, grid.dp_group(0, 0), (layout.tp, layout.dp, grad_b)
                )
            opt = max(opt, t)

        # Memory: ranks 0 and p-1 (and every rank for families counted on the schedule).
        per_layer, emb_act, head_act, transient = self.activations(layout)
        wb, gb, ob = bytes_per_param(layout)
        per_param = wb + gb + ob
        ranks = range(p) if layout.schedule not in FAMILY_MODELS else sorted({0, p - 1})
        best = (-1.0, 0, 0.0, 0.0)
        for r in ranks:
            layers_r = sum(layers[s] for s in range(n_stages) if placement[s] == r)
            acts = self._in_flight(layout.schedule, p, m, chunks, r) * layers_r * per_layer
            # The first and last stages' extras live on one chunk only: count that chunk's microbatches as
            # if it were the only one (the family's form with v = 1; 1 on the last stage of 1F1B-like orders).
            if placement[0] == r:
                acts += self._extra_in_flight(layout.schedule, p, m, chunks, 0) * emb_act
            if placement[-1] == r:
                acts += self._extra_in_flight(layout.schedule, p, m, chunks, r) * head_act
            acts *= ACTIVATION_OVERHEAD
            static = params[r] * per_param
            peak = static + acts + transient + self.reserve
            if peak > best[0]:
                best = (peak, r, static, acts)

        busy = w_max * m
        return Estimate(
            step_time_s=pipeline + dp_exposed + opt,
            pipeline_s=pipeline,
            compute_s=busy,
            recompute_s=rec[slow] * m,
            tp_comm_s=tpc[slow] * m,
            bubble_s=bubble,
            pp_comm_s=pp_comm,
            dp_exposed_s=dp_exposed,
            optimizer_s=opt,
            peak_memory_bytes=best[0],
            memory_rank=best[1],
            weights_bytes=best[2],
            activations_bytes=best[3],
            capacity_bytes=self.gpu.hbm_bytes,
        )
