"""A fast analytic estimate of one training step: step time, its breakdown and peak memory per GPU, without
building a schedule or simulating a timeline. The planner (:mod:`pipesim.plan.search`) runs it on every candidate
layout and runs the full simulation (:func:`pipesim.sim.scenario.simulate_scenario`) only on the best few.

Costs come from the same functions the simulator uses (:mod:`pipesim.cost.times`, :mod:`pipesim.cost.memory`), cached by
the few fields each depends on: one transformer layer's F / B / W times by (tp, sequence parallel,
micro-batch, recompute) (sequence length, precision and attention kernels are fixed for a plan); transfers by
(tp, dp, micro-batch, sequence parallel); gradient reductions by (tp, dp, collective, bytes).

Step time = pipeline phase + exposed data-parallel reduction + optimizer step, where:

* pipeline phase, for a rank r holding per-microbatch work W_r (its chunks' F + B) and the slowest rank's
  W_max: ``m W_max + k (sum_r W_r - W_max) / v + exposed transfers``. For uniform stages this is SC21's
  (m + (p-1)/v) (t_f + t_b) (Narayanan et al. 2021, Section 2.2: bubble (p-1)/m for GPipe and 1F1B,
  (1/v)(p-1)/m interleaved), and for v = 1 it is the classic (m-1) max + sum of a heterogeneous pipeline.
  ``k`` is the family's bubble factor relative to 1F1B: 1 for GPipe, 1F1B and interleaved 1F1B. Every other
  family (the zero-bubble ones, DualPipeV, and any registered later) is *profiled*: its schedule is built
  for memory at m (m <= 2 pp) or at 2 pp and 3 pp with the peak extrapolated linearly in m, and simulated
  once per (pp, m or 3 pp when m > 2 pp, chunks) with uniform chunk costs of the candidate's F : B : W
  ratios (rounded to 0.1; cached); ``k`` is read off that run (for ZB-H1 this reproduces Qi et al.,
  ICLR 2024, Table 2: (T_F + T_B - T_W) / (T_F + T_B + T_W) with T_B the input-gradient pass).
  Exposed transfers: twice the sum of the transfer times of every stage boundary (each timed between its
  two ranks), the fill and drain of one microbatch through every stage (p - 1 boundaries for one chunk per
  rank, p v - 1 interleaved, 2p - 2 crossing ranks for a V-shape); in the steady state transfers overlap
  compute;
* exposed data-parallel reduction: stage s's last backward ends about s (B_chunk + transfer) before the end
  of the pipeline phase (the final backward wave runs from the last stage to the first); its reduction (the
  part not hidden behind its own backward, as :func:`pipesim.sim.scenario.stage_costs` hands the engine) runs on
  its rank's reduction stream after that; the exposed time is how far the last one ends past the pipeline;
* optimizer step: the most loaded pipeline rank's Adam step (:func:`pipesim.cost.times.optimizer_step_s`) plus, with
  the distributed optimizer, the all-gather of updated weights; as the simulator charges it.

Peak memory per GPU: weights, gradients and optimizer state of the rank's stages (:mod:`pipesim.cost.memory`),
plus its stashed activations = in-flight microbatches (closed form: GPipe m, 1F1B min(m, p - r) (SC21
Section 2.2.1), interleaved min(v m, 2(p - r - 1) + (v - 1) p + 1) / v (Korthikanti et al. 2022, Section
4.2.3); profiled families: counted along each rank's program, activations held from F to B or I and the
weight-gradient stash from I to W, as the simulator frees them) x the rank's activations per microbatch x
ACTIVATION_OVERHEAD, plus the backward's transient working set and the fixed reserve. Ranks 0 and p - 1 are
evaluated for closed forms (embedding and logits), every rank for profiled families.

The test suite checks the estimate against the simulator on samples of layouts of every registered family
(tests/test_plan_estimate.py; bounds stated there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipesim.comm.base import CommModel
from pipesim.cost.flops import ACT_BYTES
from pipesim.cost.memory import (
    ACTIVATION_OVERHEAD,
    bytes_per_param,
    embedding_activation_bytes,
    head_activation_bytes,
    layer_activation_bytes,
    stage_params,
    transient_bytes,
)
from pipesim.cost.times import (
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
from pipesim.sim.engine import OpCosts, simulate
from pipesim.sim.scenario import weight_stash_bytes_per_layer
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec
from pipesim.specs.placement import RankGrid
from schedules import Schedule, ScheduleError, build_schedule, get_family
from schedules.classic import interleaved_microbatch_rule
from schedules.greedy import GREEDY_FAMILIES, GreedyTimes, build_timed

__all__ = ["Estimate", "Estimator", "FamilyModel", "FAMILY_MODELS", "stage_placement"]


# --------------------------------------------------------------------------- schedule families
@dataclass(frozen=True)
class FamilyModel:
    """Closed forms of one schedule family: ``rule(p, m, v)`` says why it cannot run (None if it can);
    ``in_flight(p, m, v, rank)`` is its peak stashed microbatches on ``rank`` (units of the rank's whole
    stage). The bubble of these families is 1F1B's, divided by v (SC21 Section 2.2)."""

    rule: Callable[[int, int, int], str | None]
    in_flight: Callable[[int, int, int, int], float]


def _no_rule(p: int, m: int, v: int) -> str | None:
    return None


def _interleaved_in_flight(p: int, m: int, v: int, r: int) -> float:
    # Korthikanti et al. 2022, Section 4.2.3 (also pipesim.cost.memory.in_flight_analytic).
    return min(v * m, 2 * (p - r - 1) + (v - 1) * p + 1) / v


FAMILY_MODELS: dict[str, FamilyModel] = {
    "gpipe": FamilyModel(_no_rule, lambda p, m, v, r: float(m)),
    "1f1b": FamilyModel(_no_rule, lambda p, m, v, r: float(min(m, p - r))),
    "interleaved-1f1b": FamilyModel(interleaved_microbatch_rule, _interleaved_in_flight),
}


def _dualpipe_v_rule(p: int, m: int, v: int) -> str | None:
    from schedules.dualpipe import dualpipe_v_rule

    return dualpipe_v_rule(p, m)


# Rules of profiled families whose generators accept every m >= 1 except where noted; a family not listed
# here (registered later) is checked by building its schedule at the actual size.
KNOWN_RULES: dict[str, Callable[[int, int, int], str | None]] = {
    "zb-h1": _no_rule,
    "zb-h2": _no_rule,
    "zb-v": _no_rule,
    "zb-1p": _no_rule,
    "zb-2p": _no_rule,
    "dualpipe-v": _dualpipe_v_rule,
}


def profile_microbatches(pp: int, m: int) -> int:
    """Microbatches at which a profiled family's bubble is measured: m itself up to 2p, else 3p (by then
    warm-up and cool-down are fixed and each further microbatch adds one steady-state period, so the
    absolute bubble no longer changes)."""
    return m if m <= 2 * pp else 3 * pp


@dataclass(frozen=True)
class _Profile:
    """What a built schedule tells the estimator: its placement and, per rank, its local stages (in stage
    order) and the non-dominated state vectors (A_1..A_c, S_1..S_c): per local stage, microbatches whose
    activations are held (forward done, B or I not) and whose weight-gradient stash is held (I done, W not)."""

    placement: tuple[int, ...]
    local: tuple[tuple[int, ...], ...]
    states: tuple[tuple[tuple[int, ...], ...], ...]


def _pareto(points: set[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    """The points no other point dominates (>= in every coordinate, > in one)."""
    pts = sorted(points, key=lambda q: -sum(q))
    front: list[tuple[int, ...]] = []
    for q in pts:
        if not any(all(x >= y for x, y in zip(f, q, strict=True)) for f in front):
            front.append(q)
    return tuple(sorted(front))


def _profile(schedule: Schedule) -> _Profile:
    placement = schedule.stage_to_rank
    local = tuple(
        tuple(s for s in range(schedule.num_stages) if placement[s] == r) for r in range(schedule.num_ranks)
    )
    states = []
    for r in range(schedule.num_ranks):
        index = {s: i for i, s in enumerate(local[r])}
        c = len(local[r])
        vec = [0] * (2 * c)
        seen: set[tuple[int, ...]] = set()
        for action in schedule.actions(r):
            i = index[action.stage]
            op = action.op.name
            if op == "F":
                vec[i] += 1
            elif op == "B":
                vec[i] -= 1
            elif op == "I":
                vec[i] -= 1
                vec[c + i] += 1
            elif op == "W":
                vec[c + i] -= 1
            seen.add(tuple(vec))
        states.append(_pareto(seen))
    return _Profile(placement, local, tuple(states))


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
        self._profiles: dict[tuple[Any, ...], _Profile] = {}
        self._params: dict[tuple[int, int, bool, bool], float] = {}

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
            layout.tp_comm_overlap,
            layout.scatter_gather,
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

    def transfer_s(self, layout: Layout, grid: RankGrid, src: int, dst: int) -> float:
        """Seconds of one stage-to-stage transfer from pipeline rank ``src`` to ``dst``, including the
        receiver's all-gather with scatter/gather (SC21 Section 4.1), as the simulator charges it."""
        key = (layout.tp, layout.dp, layout.pp, layout.micro_batch_size, layout.sequence_parallel, src, dst)
        hit = self._p2p.get(key)
        if hit is None:
            hit = 0.0
            if src != dst:
                size = p2p_bytes(self.model, layout)
                full = ACT_BYTES * layout.micro_batch_size * layout.seq(self.model) * self.model.hidden_size
                gather = layout.tp > 1 and layout.scatter_gather and not layout.sequence_parallel
                hit = self.comm.p2p_s(size, grid.rank(0, 0, src), grid.rank(0, 0, dst))
                if gather:
                    hit += self.comm.collective_s("all-gather", full, grid.tp_group(0, dst))
            self._p2p[key] = hit
        return hit

    def collective(self, op: str, total_bytes: float, ranks: Sequence[int], key: tuple[Any, ...]) -> float:
        """Bucketed collective time (:func:`pipesim.cost.times.bucketed_collective_s`), cached by ``key``."""
        k = (op, round(total_bytes), key)
        hit = self._coll.get(k)
        if hit is None:
            bucket = DP_BUCKET_PARAMS * key[-1]  # key ends with the gradient bytes per parameter
            hit = self._coll[k] = bucketed_collective_s(self.comm, op, total_bytes, bucket, ranks)
        return hit

    def schedule(
        self, name: str, pp: int, m: int, chunks: int, variant: tuple[float, ...] | None = None
    ) -> Schedule | str:
        """The built schedule, or the reason it cannot be built (cached). ``variant`` = (I, W, P2P, stash
        fraction), relative to F, rebuilds a greedy zero-bubble family for those times as the simulator does
        (:func:`pipesim.sim.scenario._greedy_for_costs`); the registry's default order otherwise."""
        key = (name, pp, m, chunks, variant)
        hit = self._schedules.get(key)
        if hit is None:
            try:
                if variant is not None:
                    ri, rw, rc, sf = variant
                    hit = build_timed(name, pp, m, GreedyTimes(1.0, ri, rw, rc), None, sf)
                else:
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
        known = KNOWN_RULES.get(name)
        if known is not None:
            return known(pp, m, chunks)
        built = self.schedule(name, pp, m, chunks)
        return built if isinstance(built, str) else None

    def profile(
        self, name: str, pp: int, m: int, chunks: int, variant: tuple[float, ...] | None = None
    ) -> _Profile:
        """The cached :class:`_Profile` of family ``name`` built with ``m`` microbatches."""
        key = (name, pp, m, chunks, variant)
        hit = self._profiles.get(key)
        if hit is None:
            built = self.schedule(name, pp, m, chunks, variant)
            assert not isinstance(built, str), built
            hit = self._profiles[key] = _profile(built)
        return hit

    def profiled_bubble(
        self,
        name: str,
        pp: int,
        m: int,
        chunks: int,
        f: float,
        b: float,
        w: float,
        variant: tuple[float, ...] | None = None,
    ) -> float:
        """Bubble factor of a profiled family (relative to 1F1B's (p-1) x per-microbatch work / chunks): its
        schedule, built at :func:`profile_microbatches`, simulated with uniform chunk costs F = 1 and B, W in
        the given ratios (rounded to 0.1, cached)."""
        rb = round(b / f * 10) / 10
        rw = min(round(w / f * 10) / 10, rb)
        mp = profile_microbatches(pp, m)
        key = (name, pp, mp, chunks, rb, rw, variant)
        hit = self._bubble.get(key)
        if hit is None:
            built = self.schedule(name, pp, mp, chunks, variant)
            if isinstance(built, str):
                mp = m
                built = self.schedule(name, pp, m, chunks, variant)
                assert not isinstance(built, str), built
            split = get_family(name).split_backward
            costs = OpCosts.uniform(built.num_stages, 1.0, rb, weight_s=rw if split else 0.0)
            t = simulate(built, costs).step_time_s
            per_rank = chunks * (1.0 + rb)
            hit = (t - mp * per_rank) / ((pp - 1) * per_rank / chunks) if pp > 1 else 0.0
            self._bubble[key] = hit = max(hit, 0.0)
        return hit

    def _greedy_variant(self, layout: Layout) -> tuple[float, ...]:
        """(I, W, P2P) relative to F of one layer and the weight-stash fraction: the times a greedy
        zero-bubble order is rebuilt for (the simulator uses the stage averages of the real scenario). Coarse
        buckets keep the number of (slow) greedy builds small: I and W to 0.5, the fraction to 0.1, and
        transfers left out of the order's construction (they are still charged in the estimate)."""
        layer = self.units(layout)[0]
        f = layer.forward_s
        ri = round((layer.backward_s - layer.weight_s) / f * 2) / 2
        rw = round(layer.weight_s / f * 2) / 2
        per_layer = self.activations(layout)[0]
        sf = round(min(1.0, self.stash_per_layer(layout) / per_layer) * 10) / 10 if per_layer > 0 else 0.0
        return (max(ri, 0.5), rw, 0.0, sf)

    def stage_params(self, layout: Layout, layers: int, first: bool, last: bool) -> float:
        """Cached :func:`pipesim.cost.memory.stage_params` (it depends on tp and the stage's shape only)."""
        key = (layout.tp, layers, first, last)
        hit = self._params.get(key)
        if hit is None:
            hit = self._params[key] = stage_params(self.model, layout, layers, first, last)
        return hit

    def stash_per_layer(self, layout: Layout) -> float:
        """Bytes one layer keeps from I until W per microbatch (split backward), as the simulator charges."""
        key = ("stash",) + self._unit_key(layout)
        hit = self._coll.get(key)
        if hit is None:
            hit = self._coll[key] = weight_stash_bytes_per_layer(self.model, layout)
        return hit

    # ----------------------------------------------------------------- the estimate
    def estimate(self, layout: Layout) -> Estimate:
        """The analytic estimate of ``layout`` (see the module docstring). The layout must already pass
        :meth:`pipesim.specs.layout.Layout.check_model` and its schedule's rule."""
        model = self.model
        family = get_family(layout.schedule)
        p, m = layout.pp, layout.num_microbatches
        chunks = family.chunks(layout.vpp)
        n_stages = p * chunks
        closed = FAMILY_MODELS.get(layout.schedule)
        variant = self._greedy_variant(layout) if layout.schedule in GREEDY_FAMILIES else None
        # Profiled families: exact at m <= 2p; beyond, two profiles (2p and 3p microbatches) and a linear
        # extrapolation of the peak in m (exact once the order is periodic, where the slope is zero).
        profs: list[_Profile] = []
        if closed is None:
            sizes = [m] if m <= 2 * p else [2 * p, 3 * p]
            profs = [self.profile(layout.schedule, p, mm, chunks, variant) for mm in sizes]
        placement = stage_placement(layout.schedule, p, chunks)
        if placement is None:
            placement = profs[0].placement
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
            params[r] += self.stage_params(layout, n, s == 0, s == n_stages - 1)

        slow = max(range(p), key=lambda r: (work[r], -r))
        w_max = work[slow]
        if p == 1 or closed is not None:
            k = 0.0 if p == 1 else 1.0
        else:
            f_r, w_r = fwd[slow], (wgt[slow] if family.split_backward else 0.0)
            k = self.profiled_bubble(
                layout.schedule, p, m, chunks, f_r / chunks, (w_max - f_r) / chunks, w_r / chunks, variant
            )
        boundary = [
            self.transfer_s(layout, grid, placement[s], placement[s + 1]) for s in range(n_stages - 1)
        ]
        c = sum(boundary) / len(boundary) if boundary else 0.0
        bubble = k * (sum(work) - w_max) / chunks
        pp_comm = 2.0 * sum(boundary)
        pipeline = m * w_max + bubble + pp_comm

        # Data-parallel gradient reduction: per stage, the part not hidden by its own last backward, on the
        # rank's reduction stream from the stage's last backward on (see the module docstring).
        grad_b = layout.grad_reduce_bytes
        dp_group = grid.dp_group(0, 0) if layout.dp > 1 else [0]
        dp_exposed = 0.0
        if layout.dp > 1 or (model.tied_embeddings and p > 1):
            collective = "reduce-scatter" if layout.distributed_optimizer else "all-reduce"
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
                sp_params = self.stage_params(layout, n, s == 0, s == n_stages - 1)
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
                    "all-gather", params[r] * ACT_BYTES, dp_group, (layout.tp, layout.dp, grad_b)
                )
            opt = max(opt, t)

        # Memory: ranks 0 and p-1 for closed forms, every rank for profiled families.
        per_layer, emb_act, head_act, transient = self.activations(layout)
        stash_layer = self.stash_per_layer(layout)
        wb, gb, ob = bytes_per_param(layout)
        per_param = wb + gb + ob
        ranks = sorted({0, p - 1}) if closed is not None else range(p)
        best = (-1.0, 0, 0.0, 0.0)

        def stage_act(s: int) -> float:
            a = layers[s] * per_layer
            if s == 0:
                a += emb_act
            if s == n_stages - 1:
                a += head_act
            return a

        for r in ranks:
            if closed is not None:
                layers_r = sum(layers[s] for s in range(n_stages) if placement[s] == r)
                extras = (emb_act if placement[0] == r else 0.0) + (head_act if placement[-1] == r else 0.0)
                acts = closed.in_flight(p, m, chunks, r) * layers_r * per_layer
                # The first and last stages' extras live on one chunk only: count that chunk's microbatches
                # as if it were the only one (the family's form with v = 1).
                acts += closed.in_flight(p, m, 1, r) * extras
            else:
                # Per local stage: activation bytes and the part of them kept from I to W (the simulator's
                # weight_stash_bytes = min(activations, layers x stash per layer)).
                local_stages = profs[0].local[r]
                act_s = [stage_act(s) for s in local_stages]
                stash_s = [min(a, layers[s] * stash_layer) for a, s in zip(act_s, local_stages, strict=True)]
                weights = act_s + stash_s
                peaks = [
                    max(
                        (sum(x * w for x, w in zip(vec, weights, strict=True)) for vec in pr.states[r]),
                        default=0.0,
                    )
                    for pr in profs
                ]
                acts = (
                    peaks[0]
                    if len(peaks) == 1
                    else max(peaks[1] + (peaks[1] - peaks[0]) * (m - 3 * p) / p, 0.0)
                )
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
