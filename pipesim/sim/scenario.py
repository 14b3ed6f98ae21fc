"""A real training scenario end to end: model + GPU + layout + communication -> schedule, per-stage costs,
simulated timeline, and a :class:`SimulationReport` (throughput, FLOP/s, time and memory breakdowns).

Per-stage costs are computed once per distinct stage (one transformer layer timed per tensor-parallel group,
then multiplied by the stage's layer count), never per microbatch, so the cost side stays O(stages).

Definitions used in the report:

* throughput: tokens (samples) of the global batch / step time;
* model TFLOP/s per GPU = model FLOPs per step / (step time x GPUs) with model FLOPs = Korthikanti et al.
  eq. (7) generalised to GQA / SwiGLU (no recomputation counted); MFU = that / peak. Hardware TFLOP/s and HFU add
  the recomputed forward (eq. (8) spirit; for full recomputation on GPT this is SC21 eq. (3), the figure SC21
  Table 1 reports);
* time breakdown, per pipeline rank averaged over ranks, in seconds. *Exposed* parts add up to the step time:
  compute (busy minus TP communication; recompute included and also shown alone) + TP communication (on the
  compute stream, so always exposed) + bubble (idle time in the pipeline phase not caused by a transfer) +
  PP communication exposed (idle time only transfers caused) + DP communication exposed (gradient reduction
  running past the pipeline phase) + FSDP communication exposed (:mod:`pipesim.cost.fsdp`: ZeRO-3 / FSDP
  collectives the passes' compute does not hide) + optimizer. *Total* gives each communication's duration.

``Scenario.optimizer`` is the optimizer mode (:mod:`pipesim.sim.iterations`): ``sync`` times one step from
t = 0 behind a global barrier; ``post-validation`` (Qi et al., ICLR 2024, Section 4) runs back-to-back
iterations with each rank's gradient reduction and optimizer step between its own iterations, and the step
time is the steady-state period (T(N) - T(1)) / (N - 1); the breakdown is then per steady-state step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pipesim.comm.base import CommModel, LevelCommModel
from pipesim.comm.factory import build_comm, server_cluster
from pipesim.cost.flops import hardware_flops_per_step, model_flops_per_step
from pipesim.cost.fsdp import FsdpSpans
from pipesim.cost.memory import RESERVE_BYTES, RankMemory, rank_memory
from pipesim.cost.stages import StageCostModel, StageCosts
from pipesim.cost.times import Efficiency, PassTimes
from pipesim.errors import InputError
from pipesim.results import Result
from pipesim.sim.breakdown import TimeBreakdown, time_breakdown
from pipesim.sim.engine import OpCosts, Timeline, simulate
from pipesim.sim.iterations import OPTIMIZER_MODES, run_iterations
from pipesim.sim.metrics import PipelineMetrics, pipeline_metrics
from pipesim.sim.throughput import Throughput
from pipesim.specs.efficiency import GPU_PROFILE, resolve_efficiency
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec
from pipesim.specs.placement import DEFAULT_ORDER, RankGrid
from schedules import Schedule, build_schedule, get_family
from schedules.greedy import GreedyTimes
from schedules.timed import TIMED_FAMILIES, build_timed

__all__ = [
    "Scenario",
    "SimulationReport",
    "StageCosts",
    "TimeBreakdown",
    "default_comm",
    "build_scenario_schedule",
    "stage_costs",
    "simulate_scenario",
    "check_gpu_count",
]


def default_comm(gpu: GPUSpec, world_size: int) -> CommModel:
    """The communication model when none is given: ``world_size`` GPUs on servers like ``gpu``'s own
    (:attr:`pipesim.specs.gpu.GPUSpec.server`: DGX A100's two-level model for the A100s, the dgx-h100
    topology for H100 and H200, and so on; :mod:`pipesim.specs.server` gives every figure's source)."""
    return build_comm(server_cluster(gpu.server), world_size)


@dataclass(frozen=True)
class Scenario:
    """Everything one simulation needs. ``comm`` times every TP, PP and DP collective (replace it with a
    topology-aware model of the same protocol; default: :func:`default_comm`, servers like the GPU's own); ``reserve_bytes`` is the per-GPU memory held back for the
    CUDA context and communication buffers; ``optimizer`` the optimizer mode (see the module docstring)."""

    model: ModelSpec
    gpu: GPUSpec
    layout: Layout
    comm: CommModel = None  # type: ignore[assignment]  # None: default_comm(gpu), set in __post_init__
    efficiency: Efficiency = GPU_PROFILE
    reserve_bytes: float = RESERVE_BYTES
    rank_order: tuple[str, ...] = DEFAULT_ORDER
    optimizer: str = "sync"

    def __post_init__(self) -> None:
        for key, kind, hint in (
            ("model", ModelSpec, "pipesim.get_model('llama3-8b')"),
            ("gpu", GPUSpec, "pipesim.get_gpu('h100-sxm')"),
            ("layout", Layout, "pipesim.Layout(tp=2, global_batch_size=64)"),
        ):
            value = getattr(self, key)
            if not isinstance(value, kind):
                raise InputError(
                    f"Scenario {key}={value!r} ({type(value).__name__}) is not a {kind.__name__}: give e.g. {hint} "
                    "(pipesim.simulate takes preset names)"
                )
        if self.optimizer not in OPTIMIZER_MODES:
            raise InputError(
                f"optimizer={self.optimizer!r} is not an optimizer mode; valid: {', '.join(OPTIMIZER_MODES)}"
            )
        if self.comm is None:
            object.__setattr__(self, "comm", default_comm(self.gpu, self.layout.num_gpus))
        # Default: the GPU's calibrated profile (pipesim.specs.efficiency).
        object.__setattr__(self, "efficiency", resolve_efficiency(self.efficiency, self.gpu.efficiency))

    def comm_description(self) -> str:
        """One line naming the communication model and its parameters (GB/s = 1e9 B/s)."""
        c = self.comm
        if isinstance(c, LevelCommModel):
            return (
                f"two-level: {c.gpus_per_node} GPUs/node, {c.intra_Bps / 1e9:g} GB/s per GPU inside a node, "
                f"{c.inter_Bps / 1e9:g} GB/s per GPU across nodes"
            )
        graph = getattr(c, "graph", None)
        name = graph.graph.get("name") if graph is not None and hasattr(graph, "graph") else None
        return f"topology {name}" if name else type(c).__name__

    @cached_property
    def cost_model(self) -> StageCostModel:
        """The scenario's :class:`pipesim.cost.stages.StageCostModel` (built once, caches its pieces)."""
        return StageCostModel(self.model, self.gpu, self.comm, self.efficiency)

    @cached_property
    def grid(self) -> RankGrid:
        """The Megatron-order rank grid of the layout."""
        lay = self.layout
        return RankGrid(lay.tp, lay.dp, lay.pp, self.rank_order, lay.cp, lay.ep, lay.etp)

    def gpus_per_node(self) -> int:
        """GPUs per server of the communication model (the topology's, or the two-level model's)."""
        c = self.comm
        if isinstance(c, LevelCommModel):
            return c.gpus_per_node
        graph = getattr(c, "graph", None)
        return int(graph.graph.get("gpus_per_node", 8)) if graph is not None else 8

    def placement_description(self) -> str:
        """One line: the rank order and, per dimension, how many groups cross servers."""
        cross = self.grid.crossings(self.gpus_per_node())
        parts = [f"{d.upper()} {c.crossing}/{c.groups} groups" for d, c in cross.items()]
        order = "-".join(self.grid.full_order) if self.layout.cp > 1 else "-".join(self.rank_order)
        return f"rank order {order}; groups crossing servers: " + ", ".join(parts)


def check_gpu_count(layout: Layout, gpus: int | None) -> None:
    """Raise :class:`InputError` when a GPU count is given and dp x tp x pp differs from it."""
    if gpus is not None and layout.num_gpus != gpus:
        cp, cpv = (" x cp", f" x {layout.cp}") if layout.cp > 1 else ("", "")
        unit = layout.tp * layout.pp * layout.cp
        raise InputError(
            f"dp x tp x pp{cp} = {layout.dp} x {layout.tp} x {layout.pp}{cpv} = {layout.num_gpus} does not equal "
            f"--gpus={gpus}; for tp={layout.tp}, pp={layout.pp}{', cp=' + str(layout.cp) if cp else ''} valid "
            f"--gpus are positive multiples of {unit}"
        )


def chunks_per_rank(layout: Layout) -> int:
    """Model chunks each pipeline rank runs: ``vpp`` for interleaved schedules, the family's fixed count for
    V-shapes and DualPipe (2), else 1 -- what reports print as vpp."""
    return get_family(layout.schedule).chunks(layout.vpp)


def build_scenario_schedule(scenario: Scenario) -> Schedule:
    """Validate the layout against the model and build its pipeline schedule."""
    layout, model = scenario.layout, scenario.model
    family = get_family(layout.schedule)
    chunks = family.chunks(layout.vpp)
    if layout.vpp > 1 and not family.uses_vpp and family.chunks_per_rank is None:
        raise InputError(
            f"vpp={layout.vpp} needs an interleaved schedule; schedule {layout.schedule!r} runs one chunk per rank"
        )
    if family.chunks_per_rank is not None and layout.pp == 1:  # as plan's search (pipesim.plan.space)
        raise InputError(
            f"{layout.schedule} needs pp >= 2: it runs {family.chunks_per_rank} chunks on each rank of a "
            "pipeline, and on one rank it is the single-chunk schedule holding more activations; use 1f1b or "
            "pp > 1"
        )
    if family.uses_vpp and layout.vpp > 1 and layout.pp == 1:
        raise InputError(
            f"{layout.schedule} with vpp={layout.vpp} needs pp >= 2 (one rank has nothing to interleave; "
            "Megatron-LM refuses a virtual pipeline at pp=1); use 1f1b or pp > 1"
        )
    if family.chunks_per_rank is not None and layout.vpp not in (1, family.chunks_per_rank):
        raise InputError(
            f"vpp={layout.vpp}: schedule {layout.schedule!r} always runs {family.chunks_per_rank} chunks per rank; "
            f"valid vpp: 1 or {family.chunks_per_rank} (both mean the same), or an interleaved schedule"
        )
    layout.check_model(model, layout.pp * chunks // family.chains)  # stages of one model copy
    return build_schedule(layout.schedule, layout.pp, layout.num_microbatches, chunks)


def _greedy_for_costs(scenario: Scenario, default: Schedule, costs: OpCosts) -> Schedule:
    """Rebuild a greedy zero-bubble schedule (``zb-1p``/``zb-2p``) for the scenario's own pass times and weight
    stash, so that its memory cap holds for the real activations: the registry's default order assumes equal
    F/I/W times and that I frees everything, while a real layer keeps most of its activations until W (Qi et
    al. 2024, Table 1). The placement (one stage per rank) and hence the per-stage costs stay the same."""
    n = len(costs.forward_s)
    times = GreedyTimes(
        forward_s=sum(costs.forward_s) / n,
        input_s=sum(b - w for b, w in zip(costs.backward_s, costs.weight_s, strict=True)) / n,
        weight_s=sum(costs.weight_s) / n,
        p2p_s=sum(costs.p2p_s) / len(costs.p2p_s) if costs.p2p_s else 0.0,
    )
    stash_fraction = max(
        (w / a for w, a in zip(costs.weight_stash_bytes, costs.activation_bytes, strict=True) if a > 0),
        default=0.0,
    )
    layout = scenario.layout
    return build_timed(
        default.name, layout.pp, layout.num_microbatches, times, None, stash_fraction, scenario.optimizer
    )


def stage_costs(scenario: Scenario, schedule: Schedule) -> StageCosts:
    """Per-stage costs of ``scenario`` on ``schedule``'s placement and chains of stages (two model copies for
    bidirectional DualPipe): the one cost model, :meth:`pipesim.cost.stages.StageCostModel.stage_costs`."""
    return scenario.cost_model.stage_costs(
        scenario.layout, schedule.stage_to_rank, scenario.grid, len(schedule.chain_starts)
    )


@dataclass(frozen=True)
class SimulationReport(Throughput, Result):
    """The result of :func:`simulate_scenario`; see the module docstring for the definitions."""

    scenario: Scenario
    schedule: Schedule
    costs: OpCosts
    timeline: Timeline
    metrics: PipelineMetrics
    stage_passes: tuple[PassTimes, ...]
    breakdown: TimeBreakdown
    memory: tuple[RankMemory, ...]
    model_flops: float
    hardware_flops: float
    stage_fsdp: tuple[FsdpSpans, ...] = ()  # ZeRO-3 / FSDP collectives inside each stage's passes

    @property
    def step_time_s(self) -> float:
        """Seconds per optimizer step."""
        return self.metrics.step_time_s

    @property
    def num_gpus(self) -> int:
        """GPUs in the run."""
        return self.scenario.layout.num_gpus

    @property
    def tokens_per_step(self) -> int:
        """Global batch x sequence length."""
        lay = self.scenario.layout
        return lay.global_batch_size * lay.seq(self.scenario.model)

    @property
    def samples_per_s(self) -> float:
        """Sequences per second over the whole cluster."""
        return self.scenario.layout.global_batch_size / self.step_time_s

    @property
    def peak_flops(self) -> float:
        """The GPU's dense peak at the layout's precision."""
        return self.scenario.gpu.peak(self.scenario.layout.precision)

    @property
    def worst_memory(self) -> RankMemory:
        """The pipeline rank with the highest peak memory."""
        return max(self.memory, key=lambda m: (m.peak, -m.rank))

    @property
    def fits(self) -> bool:
        """True when every rank's peak fits in HBM."""
        return all(m.fits for m in self.memory)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the shape ``pipesim simulate --json`` prints; its ``energy`` is one step's at
        the default PUE and node overhead, which the CLI's energy flags replace)."""
        from pipesim.sim.energy import simulation_energy
        from pipesim.specs.gpu import defaults_note

        sc = self.scenario
        worst = self.worst_memory
        note = defaults_note(sc.gpu)
        return {
            "model": sc.model.name,
            "parameters": sc.model.num_params(mtp=True),
            "active_parameters": sc.model.num_params(active=True, mtp=True),
            "gpu": sc.gpu.name,
            "comm": sc.comm_description(),
            "layout": _layout_dict(self),
            "optimizer": sc.optimizer,
            "step_time_s": self.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "samples_per_s": self.samples_per_s,
            "model_tflops_per_gpu": self.model_tflops_per_gpu,
            "hardware_tflops_per_gpu": self.hardware_tflops_per_gpu,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "bubble_ratio": self.metrics.bubble_ratio,
            "bubble_over_ideal": self.metrics.bubble_over_ideal,
            "time_breakdown_s": self.breakdown.as_dict(),
            "memory_per_rank_bytes": _memory_dict(worst),
            "memory_by_pipeline_rank_bytes": [_memory_dict(m) for m in self.memory],
            "hbm_bytes": sc.gpu.hbm_bytes,
            "fits": self.fits,
            "notes": [note] if note else [],
            "energy": simulation_energy(self, gpus_per_node=sc.gpus_per_node()).as_dict(),
        }


# The JSON layout's keys, in order (micro-batch, batch, sequence and microbatches go between the two).
_LAYOUT_HEAD = ("dp", "tp", "pp", "cp", "ep", "etp", "cp_comm", "moe_imbalance", "vpp", "schedule")
_LAYOUT_TAIL = ("sequence_parallel", "recompute", "distributed_optimizer", "zero_stage", "fsdp", "fsdp_shard_size",
                "reshard_after_forward", "precision", "attention", "dp_overlap", "tp_comm_overlap")  # fmt: skip


def _layout_dict(r: SimulationReport) -> dict[str, Any]:
    lay = r.scenario.layout
    out: dict[str, Any] = {k: getattr(lay, k) for k in _LAYOUT_HEAD}
    out["vpp"] = chunks_per_rank(lay)
    out.update(micro_batch_size=lay.micro_batch_size, global_batch_size=lay.global_batch_size)
    out.update(seq_length=lay.seq(r.scenario.model), microbatches=lay.num_microbatches)
    out.update({k: getattr(lay, k) for k in _LAYOUT_TAIL})
    out["gpus"] = lay.num_gpus
    return out


def _memory_dict(m: RankMemory) -> dict[str, float | int | bool]:
    return {
        "pipeline_rank": m.rank,
        "weights": m.weights,
        "grads": m.grads,
        "optimizer": m.optimizer,
        "activations": m.activations,
        "transient": m.transient,
        "reserve": m.reserve,
        "peak": m.peak,
        "fits": m.fits,
        "expert_weights": m.expert_weights,
        "expert_grads": m.expert_grads,
        "expert_optimizer": m.expert_optimizer,
    }


def simulate_scenario(scenario: Scenario) -> SimulationReport:
    """Build the schedule and per-stage costs of ``scenario``, simulate one step (``sync``) or the
    back-to-back iterations of ``post-validation`` and report it (per steady-state step)."""
    schedule = build_scenario_schedule(scenario)
    sc = stage_costs(scenario, schedule)
    if schedule.name in TIMED_FAMILIES:
        schedule = _greedy_for_costs(scenario, schedule, sc.costs)
    costs = sc.costs
    if scenario.optimizer == "sync":
        timeline = simulate(schedule, costs)
        metrics = pipeline_metrics(schedule, costs, timeline)
    else:
        run = run_iterations(schedule, costs, scenario.optimizer)
        timeline, metrics = run.timeline, run.metrics
    layout, model = scenario.layout, scenario.model
    memory = tuple(
        rank_memory(
            r,
            sc.rank_params[r],
            metrics.peak_activation_bytes_per_rank[r],
            sc.transient_bytes,
            layout,
            scenario.gpu.hbm_bytes,
            scenario.reserve_bytes,
            sc.rank_expert_params[r] if sc.rank_expert_params else 0.0,
        )
        for r in range(schedule.num_ranks)
    )
    return SimulationReport(
        scenario=scenario,
        schedule=schedule,
        costs=costs,
        timeline=timeline,
        metrics=metrics,
        stage_passes=sc.passes,
        breakdown=time_breakdown(metrics, sc, schedule, scenario.efficiency.step_overhead_s),
        memory=memory,
        model_flops=model_flops_per_step(model, layout),
        hardware_flops=hardware_flops_per_step(model, layout),
        stage_fsdp=sc.zero3_spans,
    )
