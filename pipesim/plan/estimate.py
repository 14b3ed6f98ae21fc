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
  ``k`` is the family's bubble factor relative to 1F1B: 1 for GPipe, 1F1B and interleaved 1F1B. (With
  bidirectional DualPipe's two model copies, each microbatch runs through one of them: m / 2 in place of m.) Every other
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
* ZeRO-3 / FSDP: the per-unit gathers and reduce-scatters are inside the stages' pass times (the cost model's
  prefetch pipeline, :mod:`pipesim.cost.fsdp`), so the pipeline phase carries them as the simulator does; their
  exposed part on the slowest rank is reported apart from compute;
* optimizer step: the most loaded pipeline rank's Adam step (:func:`pipesim.cost.times.optimizer_step_s`) plus, with
  the distributed optimizer, the all-gather of updated weights; as the simulator charges it.

Under ``--optimizer post-validation`` (Qi et al., ICLR 2024, Section 4; :mod:`pipesim.sim.iterations`) the step
is the steady-state period (T(N) - T(1)) / (N - 1) of back-to-back iterations, with each rank's reduction and
optimizer step between its own iterations, in the same three parts: the pipeline phase's bubble factor ``k``
is profiled for every family (closed forms included) from that steady state of the uniform-cost schedule;
the exposed reduction is the longest time a rank's reductions run past the rank's own last gradient pass
(no barrier waits for the others); then the optimizer step.

Peak memory per GPU: weights, gradients and optimizer state of the rank's stages (:mod:`pipesim.cost.memory`),
plus its stashed activations = in-flight microbatches (closed form: GPipe m, 1F1B min(m, p - r) (SC21
Section 2.2.1), interleaved min(v m, 2(p - r - 1) + (v - 1) p + 1) / v (Korthikanti et al. 2022, Section
4.2.3); profiled families: counted along each rank's program, activations held from F to B or I and the
weight-gradient stash from I to W, as the simulator frees them) x the rank's activations per microbatch x
ACTIVATION_OVERHEAD, plus the backward's transient working set and the fixed reserve. Ranks 0 and p - 1 are
evaluated for closed forms (embedding and logits), every rank for profiled families.

The memory is computed apart from the times (:meth:`Estimator.memory_as`, from the layout's
:class:`pipesim.cost.stage_table.StageMemory`, bytes only), so that the planner times only the layouts that fit.

The test suite checks the estimate against the simulator on samples of layouts of every registered family
(tests/test_plan_estimate.py; bounds stated there).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipesim.comm.base import CommModel
from pipesim.cost.memory import RESERVE_BYTES, bytes_per_param, peak_bytes
from pipesim.cost.stage_cache import unit_key
from pipesim.cost.stages import StageCostModel, StageCosts
from pipesim.cost.times import Efficiency
from pipesim.plan.estimates import Estimate, MemoryBound, MemoryEstimate
from pipesim.plan.pieces import (
    MemoryPieces,
    RankSums,
    StagePieces,
    StageWeights,
    cost_fields,
    cost_key,
    rank_state_bytes,
    stage_pieces,
)
from pipesim.plan.profiles import Profile
from pipesim.plan.schedule_facts import ScheduleFacts
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec
from pipesim.specs.placement import RankGrid
from schedules import get_family
from schedules.timed import TIMED_FAMILIES

__all__ = ["Estimate", "Estimator", "MemoryBound", "MemoryEstimate"]


class Estimator(ScheduleFacts):
    """Estimates layouts of one model on one cluster; see the module docstring. Every cost comes from one
    :class:`pipesim.cost.stages.StageCostModel`, the simulator's. Not thread-safe (caches)."""

    def __init__(
        self,
        model: ModelSpec,
        gpu: GPUSpec,
        comm: CommModel,
        efficiency: Efficiency,
        reserve_bytes: float = RESERVE_BYTES,
        optimizer: str = "sync",
    ) -> None:
        super().__init__(optimizer)
        self.model = model
        self.gpu = gpu
        self.comm = comm
        self.eff = efficiency
        self.reserve = reserve_bytes
        self.costs = StageCostModel(model, gpu, comm, efficiency)
        self._pieces: dict[tuple[Any, ...], StagePieces] = {}
        self._rank_sums: dict[tuple[int, int, bool], RankSums] = {}
        self._memories: dict[tuple[Any, ...], MemoryPieces] = {}
        self._weights: dict[int, StageWeights] = {}
        self._states: dict[tuple[Any, ...], tuple[float, ...]] = {}
        self._most: dict[tuple[Any, ...], float] = {}
        self._held: dict[tuple[int, int], np.ndarray] = {}
        self._fixed: dict[tuple[str, int, int], tuple[int, ...] | None] = {}
        self._placements: dict[
            tuple[Any, ...], tuple[tuple[int, ...], tuple[Profile, ...], tuple[float, ...] | None]
        ] = {}
        self._variants: dict[tuple[Any, ...], tuple[float, ...]] = {}
        self._grids: dict[tuple[int, ...], RankGrid] = {}
        self._last_layout: Layout | None = None
        self._last_fields: tuple[object, ...] = ()
        self._last_keys: dict[str, tuple[object, ...]] = {}
        self._last_memory_key: tuple[object, ...] = ()
        self._last_state_key: tuple[object, ...] = ()
        self._last_transient = 0.0

    def _greedy_variant(self, layout: Layout, schedule: str) -> tuple[float, ...]:
        """(I, W, P2P) relative to F of one layer and the weight-stash fraction: the times a greedy
        zero-bubble order is rebuilt for (the simulator uses the stage averages of the real scenario). Coarse
        buckets keep the number of (slow) greedy builds small: I and W to 0.5, the fraction to 0.1, and
        transfers left out of the order's construction (they are still charged in the estimate). Cached."""
        key = self._cost_key(layout, schedule)
        hit = self._variants.get(key)
        if hit is None:
            hit = self._variants[key] = self._variant_of(layout)
        return hit

    def _variant_of(self, layout: Layout) -> tuple[float, ...]:
        per_kind = self.costs.rank_units(layout, self._grid(layout, layout.pp), 0)[0]
        layer = per_kind[self.model.main_kind()]
        f = layer.forward_s
        ri = round((layer.backward_s - layer.weight_s) / f * 2) / 2
        rw = round(layer.weight_s / f * 2) / 2
        per_layer = self.costs.main_layer_activation_bytes(layout)
        stash = self.costs.weight_stash_per_layer(layout)
        sf = round(min(1.0, stash / per_layer) * 10) / 10 if per_layer > 0 else 0.0
        return (max(ri, 0.5), rw, 0.0, sf)

    def _cost_key(self, layout: Layout, schedule: str) -> tuple[object, ...]:
        """:func:`pipesim.plan.pieces.cost_key`, remembered for the last layout asked (the planner asks for
        one layout under each of its schedules in a row; the layout is held, so its identity is not reused)."""
        self._remember(layout)
        hit = self._last_keys.get(schedule)
        if hit is None:
            hit = self._last_keys[schedule] = cost_key(layout, schedule, self._last_fields)
        return hit

    def _remember(self, layout: Layout) -> None:
        if layout is not self._last_layout:
            self._last_layout, self._last_fields, self._last_keys = layout, cost_fields(layout), {}
            # What its memory pieces depend on beside the placement (memory_pieces): the unit fields, pp and
            # the bytes per dense and per expert parameter.
            per_param = (bytes_per_param(layout), bytes_per_param(layout, layout.edp))
            self._last_memory_key = (unit_key(layout), layout.pp, *per_param)
            # ... and its weights, gradients and optimizer state (rank_state_bytes).
            self._last_state_key = (layout.tp, layout.ep, layout.etp, layout.pp, *per_param)
            self._last_transient = self.costs.transient(layout)

    def _grid(self, layout: Layout, pp: int) -> RankGrid:
        key = (layout.tp, layout.dp, pp, layout.cp, layout.ep, layout.etp)
        hit = self._grids.get(key)
        if hit is None:
            hit = self._grids[key] = RankGrid(*key[:3], cp=layout.cp, ep=layout.ep, etp=layout.etp)
        return hit

    # ----------------------------------------------------------------- the estimate
    def _placement(
        self, layout: Layout, schedule: str, vpp: int
    ) -> tuple[tuple[int, ...], tuple[Profile, ...], tuple[float, ...] | None]:
        """The stage -> rank placement of ``layout`` run by ``schedule`` with ``vpp`` chunks, for families
        without closed forms the profiles of its built schedule (exact at m <= 2p; beyond, at 2p and 3p
        microbatches, extrapolated in m), and a greedy family's rebuilt times (:meth:`_greedy_variant`).
        Cached by what they depend on: the schedule, vpp, pp, the microbatches and those times."""
        variant = self._greedy_variant(layout, schedule) if schedule in TIMED_FAMILIES else None
        p, m = layout.pp, layout.num_microbatches
        key = (schedule, vpp, p, m, variant)
        hit = self._placements.get(key)
        if hit is None:
            family = get_family(schedule)
            chunks = family.chunks(vpp)
            profs: tuple[Profile, ...] = ()
            if family.in_flight is None:
                sizes = [m] if m <= 2 * p else [2 * p, 3 * p]
                profs = tuple(self.profile(schedule, p, mm, chunks, variant) for mm in sizes)
            placement = self._fixed_placement(schedule, p, vpp)
            if placement is None:
                placement = tuple(
                    profs[0].placement if profs else self.profile(schedule, p, m, chunks).placement
                )
            hit = self._placements[key] = (placement, profs, variant)
        return hit

    def _fixed_placement(self, schedule: str, p: int, vpp: int) -> tuple[int, ...] | None:
        """The family's own stage -> rank placement, None when only its built schedule says (cached)."""
        key = (schedule, p, vpp)
        if key not in self._fixed:
            family = get_family(schedule)
            fixed = family.stage_placement(p, family.chunks(vpp))
            self._fixed[key] = None if fixed is None else tuple(fixed)
        return self._fixed[key]

    def stage_costs(self, layout: Layout) -> StageCosts:
        """The per-stage costs the estimate uses: the simulator's own
        (:meth:`pipesim.cost.stages.StageCostModel.stage_costs`) on the layout's placement."""
        placement = self._placement(layout, layout.schedule, layout.vpp)[0]
        return self.pieces(layout, layout.schedule, layout.vpp, placement).table.stage_costs

    def pieces(self, layout: Layout, schedule: str, vpp: int, placement: tuple[int, ...]) -> StagePieces:
        """The :class:`pipesim.plan.pieces.StagePieces` of ``layout`` run by ``schedule`` with ``vpp`` chunks
        on ``placement`` (cached: shared by every schedule with that placement whose costs agree,
        :func:`pipesim.plan.pieces.cost_key`, which includes the schedule's number of chains)."""
        key = (self._cost_key(layout, schedule), placement)
        hit = self._pieces.get(key)
        if hit is None:
            chains = get_family(schedule).chains
            grid = self._grid(layout, layout.pp)
            table = self.costs.stage_table(layout, placement, grid, chains, schedule)
            hit = self._pieces[key] = stage_pieces(layout, table, self._rank_sums)
        return hit

    def memory_pieces(self, layout: Layout, schedule: str, placement: tuple[int, ...]) -> MemoryPieces:
        """The :class:`pipesim.plan.pieces.MemoryPieces` of ``layout`` run by ``schedule`` on ``placement``
        (cached by every value they depend on: the unit fields, pp, the bytes per parameter, the placement
        and the schedule's number of chains)."""
        self._remember(layout)
        chains = get_family(schedule).chains
        key = (self._last_memory_key, placement, chains)
        hit = self._memories.get(key)
        if hit is None:
            mem = self.costs.stage_memory(layout, placement, chains)
            weights = self._weights.get(id(mem))  # one per stage memory (the cost model keeps it: ids unique)
            if weights is None:
                extra = self.costs.extra_bytes(layout)
                weights = self._weights[id(mem)] = StageWeights(mem, layout.pp, extra)
            state = self._state(layout, placement, chains)
            hit = self._memories[key] = MemoryPieces(weights, state, self.reserve)
        return hit

    def _state(self, layout: Layout, placement: tuple[int, ...], chains: int) -> tuple[float, ...]:
        """Per rank, weights + gradients + optimizer state (:func:`pipesim.plan.pieces.rank_state_bytes`;
        cached by tp, ep, etp, pp, the bytes per parameter, the placement and the chains)."""
        self._remember(layout)
        key = (self._last_state_key, placement, chains)
        hit = self._states.get(key)
        if hit is None:
            frame = self.costs.frame(layout, placement, chains)
            rank_params, rank_expert = self.costs.rank_param_sums(layout, frame)
            hit = self._states[key] = rank_state_bytes(layout, rank_params, rank_expert)
        return hit

    def _most_state(self, layout: Layout, placement: tuple[int, ...], chains: int, ends: bool) -> float:
        """The most weights + gradients + optimizer state on one rank: over ranks 0 and p-1 (``ends``, the
        closed forms' ranks) or over every rank (cached as :meth:`_state`)."""
        key = (self._last_state_key, placement, chains, ends)
        hit = self._most.get(key)
        if hit is None:
            state = self._state(layout, placement, chains)
            hit = self._most[key] = max((state[0], state[-1]) if ends else state)
        return hit

    def screen(self, layout: Layout, schedule: str, vpp: int) -> MemoryEstimate | MemoryBound:
        """:meth:`memory_as`, or a :class:`MemoryBound` when the layout's state alone (weights, gradients,
        optimizer state, the backward's working set and the reserve, on the ranks :meth:`memory_as` takes its
        peak over) is above HBM: activations only add to that sum (floating-point addition is monotonic), so
        such a layout is out of memory whatever its activations."""
        family = get_family(schedule)
        self._remember(layout)
        # The placement without the profiles where the family fixes it: a greedy family's profile needs the
        # layout's pass times (_greedy_variant), which a layout rejected here never has to have.
        placement = self._fixed_placement(schedule, layout.pp, vpp)
        if placement is None:
            placement = self._placement(layout, schedule, vpp)[0]
        most = self._most_state(layout, placement, family.chains, family.in_flight is not None)
        # The sum is non-decreasing in the state, so its largest over the ranks is the sum of the largest state.
        lower = peak_bytes(most, 0.0, self._last_transient, self.reserve)
        if lower > self.gpu.hbm_bytes:
            return MemoryBound(lower, self.gpu.hbm_bytes)
        placement, profs, _ = self._placement(layout, schedule, vpp)
        return self._memory(layout, schedule, vpp, placement, profs)

    def _held_peaks(self, profile: Profile, mp: MemoryPieces) -> np.ndarray:
        """:meth:`pipesim.plan.profiles.Profile.held_peaks` on ``mp``'s walk weights, cached by the profile and
        the stage memory they come from (layouts alike but for their weights' bytes per parameter share it;
        both objects are kept for the estimator's life, so their ids are unique)."""
        key = (id(profile), id(mp.memory))
        hit = self._held.get(key)
        if hit is None:
            hit = self._held[key] = profile.held_peaks(mp.walk_matrix)
        return hit

    def estimate(self, layout: Layout) -> Estimate:
        """The analytic estimate of ``layout`` (see the module docstring). The layout must already pass
        :meth:`pipesim.specs.layout.Layout.check_model` and its schedule's rule."""
        return self.estimate_as(layout, layout.schedule, layout.vpp)

    def memory_as(self, layout: Layout, schedule: str, vpp: int) -> MemoryEstimate:
        """The peak memory of ``layout`` run by ``schedule`` with ``vpp`` chunks, as :meth:`estimate_as` finds it,
        without timing any pass (the planner times only the layouts that fit)."""
        placement, profs, _ = self._placement(layout, schedule, vpp)
        return self._memory(layout, schedule, vpp, placement, profs)

    def _memory(
        self,
        layout: Layout,
        schedule: str,
        vpp: int,
        placement: tuple[int, ...],
        profs: tuple[Profile, ...],
    ) -> MemoryEstimate:
        """Peak memory: ranks 0 and p-1 for closed forms, every rank for profiled families (module docstring)."""
        family = get_family(schedule)
        p, m = layout.pp, layout.num_microbatches
        chunks = family.chunks(vpp)
        mp = self.memory_pieces(layout, schedule, placement)
        if family.in_flight is not None:
            acts_of: dict[int, float] = {}
            for r, (layer_bytes, extra_bytes) in mp.end_bytes.items():
                # The first and last stages' extras live on one chunk only: count that chunk's microbatches as
                # if it were the only one (the family's form with one chunk).
                acts = family.in_flight(p, m, chunks, r) * layer_bytes
                acts_of[r] = acts + family.in_flight(p, m, 1, r) * extra_bytes
            memory_rank, peak, state, activations = mp.peak_memory(list(acts_of), list(acts_of.values()))
        else:
            # Per rank, per local stage: activation bytes, and the part of them kept from I to W.
            peaks = [self._held_peaks(pr, mp) for pr in profs]
            held = (
                peaks[0]
                if len(peaks) == 1
                else np.maximum(peaks[1] + (peaks[1] - peaks[0]) * (m - 3 * p) / p, 0.0)
            )
            memory_rank, peak, state, activations = mp.peak_over_ranks(held)
        return MemoryEstimate(peak, memory_rank, state, activations, self.gpu.hbm_bytes)

    def estimate_as(
        self, layout: Layout, schedule: str, vpp: int, memory: MemoryEstimate | None = None
    ) -> Estimate:
        """:meth:`estimate` of ``layout`` with its schedule and chunk count replaced by ``schedule`` and ``vpp``
        (the planner estimates every schedule of one layout without building a layout for each). ``memory``:
        its :meth:`memory_as`, when already known."""
        family = get_family(schedule)
        p, m = layout.pp, layout.num_microbatches
        chunks = family.chunks(vpp)
        placement, profs, variant = self._placement(layout, schedule, vpp)
        if memory is None:
            memory = self._memory(layout, schedule, vpp, placement, profs)
        pc = self.pieces(layout, schedule, vpp, placement)

        # Per-rank work per microbatch (F + B of its stages, and blocking sends, which hold the sender's
        # compute) and its parts: the pieces' sums.
        work, fwd, blocked = pc.work, pc.fwd, pc.blocked
        slow = pc.slow
        w_max = work[slow]
        if p == 1 or (family.in_flight is not None and self.optimizer == "sync"):
            k = 0.0 if p == 1 else 1.0
        else:
            f_r, w_r = fwd[slow], (pc.wgt[slow] if family.split_backward else 0.0)
            b_r = w_max - blocked[slow] - f_r
            k = self.profiled_bubble(
                schedule, p, m, chunks, f_r / chunks, b_r / chunks, w_r / chunks, variant
            )
        bubble = k * (pc.sum_work - w_max) / chunks
        runs = m / family.chains  # each microbatch runs through one chain: 1/chains of the rank's stages
        pp_comm = pc.pp_comm + runs * blocked[slow]
        pipeline = runs * (w_max - blocked[slow]) + bubble + pp_comm

        b_chunk = (w_max - blocked[slow] - fwd[slow]) / chunks
        dp_exposed = pc.exposure(b_chunk + pc.hop, family.split_backward, self.optimizer).at(pipeline)

        opt = pc.table.optimizer_s
        return Estimate(
            step_time_s=pipeline + dp_exposed + opt,
            pipeline_s=pipeline,
            compute_s=(w_max - blocked[slow]) * runs,
            recompute_s=pc.rec[slow] * runs,
            tp_comm_s=pc.tpc[slow] * runs,
            bubble_s=bubble,
            pp_comm_s=pp_comm,
            dp_exposed_s=dp_exposed,
            optimizer_s=opt,
            memory=memory,
            fsdp_comm_s=m * pc.fsdp_exposed[slow],
            fixed_s=min(self.eff.step_overhead_s, opt),
        )
