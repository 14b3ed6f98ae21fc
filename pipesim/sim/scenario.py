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
  running past the pipeline phase) + optimizer. *Total* gives each communication's full duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from pipesim.comm.base import CommModel, LevelCommModel
from pipesim.comm.factory import ClusterSpec, build_comm
from pipesim.cost.flops import ACT_BYTES, hardware_flops_per_step, model_flops_per_step
from pipesim.cost.memory import (
    RESERVE_BYTES,
    WEIGHT_BYTES,
    RankMemory,
    rank_memory,
    stage_activation_bytes,
    stage_params,
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
    layer_pass_times,
    optimizer_step_s,
    p2p_bytes,
)
from pipesim.errors import InputError
from pipesim.sim.engine import OpCosts, Timeline, simulate
from pipesim.sim.metrics import PipelineMetrics, pipeline_metrics
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec
from pipesim.specs.placement import DEFAULT_ORDER, RankGrid
from schedules import Schedule, build_schedule, get_family
from schedules.greedy import GREEDY_FAMILIES, GreedyTimes, build_timed

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


def default_comm() -> CommModel:
    """The fallback communication model: the default :class:`pipesim.comm.factory.ClusterSpec`, a DGX
    A100-like two-level cluster (8 GPUs per node, 240 GB/s per GPU inside a node: nccl-tests all-reduce busbw
    230-232 GB/s measured, published.md s6.2; 24 GB/s per GPU across nodes: one 200 Gb/s HDR NIC per GPU)."""
    return build_comm(ClusterSpec(), 1)


@dataclass(frozen=True)
class Scenario:
    """Everything one simulation needs. ``comm`` times every TP, PP and DP collective (replace it with a
    topology-aware model of the same protocol); ``reserve_bytes`` is the per-GPU memory held back for the
    CUDA context and communication buffers."""

    model: ModelSpec
    gpu: GPUSpec
    layout: Layout
    comm: CommModel = field(default_factory=default_comm)
    efficiency: Efficiency = DEFAULT_EFFICIENCY
    reserve_bytes: float = RESERVE_BYTES
    rank_order: tuple[str, str, str] = DEFAULT_ORDER

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
    def grid(self) -> RankGrid:
        """The Megatron-order rank grid of the layout."""
        return RankGrid(self.layout.tp, self.layout.dp, self.layout.pp, self.rank_order)

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
        parts = [f"{d.upper()} {cross[d].crossing}/{cross[d].groups} groups" for d in ("tp", "dp", "pp")]
        return f"rank order {'-'.join(self.rank_order)}; groups crossing servers: " + ", ".join(parts)


def check_gpu_count(layout: Layout, gpus: int | None) -> None:
    """Raise :class:`InputError` when a GPU count is given and dp x tp x pp differs from it."""
    if gpus is not None and layout.num_gpus != gpus:
        raise InputError(
            f"dp x tp x pp = {layout.dp} x {layout.tp} x {layout.pp} = {layout.num_gpus} does not equal "
            f"--gpus={gpus}; for tp={layout.tp}, pp={layout.pp} valid --gpus are multiples of {layout.tp * layout.pp}"
        )


def build_scenario_schedule(scenario: Scenario) -> Schedule:
    """Validate the layout against the model and build its pipeline schedule."""
    layout, model = scenario.layout, scenario.model
    family = get_family(layout.schedule)
    chunks = family.chunks(layout.vpp)
    if layout.vpp > 1 and not family.uses_vpp and family.chunks_per_rank is None:
        raise InputError(
            f"vpp={layout.vpp} needs an interleaved schedule; schedule {layout.schedule!r} runs one chunk per rank"
        )
    layout.check_model(model, layout.pp * chunks)
    return build_schedule(layout.schedule, layout.pp, layout.num_microbatches, chunks)


def weight_stash_bytes_per_layer(model: ModelSpec, layout: Layout) -> float:
    """What a layer keeps from I until W (split backward): each GEMM's input and output gradient; 32 s b h for
    GPT without TP (Qi et al. 2024, Table 1: W needs 32 s b h)."""
    b, s, t = layout.micro_batch_size, layout.seq(model), layout.tp
    h = model.hidden_size
    tokens = b * s
    rep = tokens / t if layout.sequence_parallel else float(tokens)
    kv_t = max(1, model.num_kv_heads // t) * model.head_dim
    qkv_n = h // t + 2 * kv_t
    f_t = model.ffn_hidden_size // t
    inputs = rep * h + tokens * h / t + rep * h + tokens * f_t
    grads = tokens * qkv_n + tokens * h + tokens * model.mlp_in_width / t + tokens * h
    return ACT_BYTES * (inputs + grads)


@dataclass(frozen=True)
class StageCosts:
    """What :func:`stage_costs` returns: the engine's :class:`OpCosts`, each stage's :class:`PassTimes`, each
    stage's full gradient-reduction time (before hiding any of it behind the backward) and its parameters per
    TP rank; with ZeRO-3, per microbatch and stage, the weight all-gathers and gradient reduce-scatters inside
    its passes and the part of them that the passes' compute does not hide."""

    costs: OpCosts
    passes: tuple[PassTimes, ...]
    dp_full_s: tuple[float, ...]
    params: tuple[float, ...]
    zero3_comm_s: tuple[float, ...] = ()
    zero3_exposed_s: tuple[float, ...] = ()


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
    return build_timed(default.name, layout.pp, layout.num_microbatches, times, None, stash_fraction)


def stage_costs(scenario: Scenario, schedule: Schedule) -> StageCosts:
    """Per-stage costs of ``scenario`` for ``schedule`` (see :class:`StageCosts`).

    A stage's F / B / W is its layer count x one layer's times, plus the embedding on stage 0 and the head on
    the last stage. Transfers: :func:`pipesim.cost.times.p2p_bytes` sent from stage s's rank to stage s+1's, plus
    an intra-node all-gather on the receiver with scatter/gather (SC21 Section 4.1). DP reduction of a stage:
    its gradients (Layout.grad_reduce_bytes per parameter) all-reduced (distributed optimizer:
    reduce-scatter) over the stage's data-parallel group in DP_BUCKET_PARAMS buckets; with ``dp_overlap`` the
    part that runs during the stage's last backward is hidden (only the remainder after it, and at least one
    bucket, is handed to the engine), and stages 0 and S-1 also all-reduce the tied embedding gradient.
    """
    model, layout, gpu, eff, comm = (
        scenario.model,
        scenario.layout,
        scenario.gpu,
        scenario.efficiency,
        scenario.comm,
    )
    grid = scenario.grid
    n_stages = schedule.num_stages
    placement = schedule.stage_to_rank
    layers = layout.layers_per_stage(model, n_stages)

    cache: dict[tuple[int, ...], tuple[PassTimes, PassTimes, PassTimes]] = {}

    def units(pp_rank: int) -> tuple[PassTimes, PassTimes, PassTimes]:
        group = tuple(grid.tp_group(0, pp_rank))
        if group not in cache:
            cache[group] = (
                layer_pass_times(model, layout, gpu, eff, comm, group),
                embedding_pass_times(model, layout, gpu, eff, comm, group),
                head_pass_times(model, layout, gpu, eff, comm, group),
            )
        return cache[group]

    zero3: dict[tuple[int, str], tuple[PassTimes, float, float]] = {}

    def sharded(pp_rank: int, unit: str, pt: PassTimes, unit_params: float) -> tuple[PassTimes, float, float]:
        """ZeRO-3: (pass times with the unit's collectives, their total, the part compute does not hide)."""
        key = (pp_rank, unit)
        if key not in zero3:
            group = grid.dp_group(0, pp_rank)
            gather = comm.collective_s("all-gather", unit_params * WEIGHT_BYTES, group)
            scatter = comm.collective_s("reduce-scatter", unit_params * layout.grad_reduce_bytes, group)
            # The backward gathers the weights again, and once more for a fully recomputed forward.
            bwd_comm = gather * (2 if layout.recompute == "full" else 1) + scatter
            fwd = max(pt.forward_s, gather)
            bwd = max(pt.backward_s, bwd_comm)
            exposed = (fwd - pt.forward_s) + (bwd - pt.backward_s)
            zero3[key] = (replace(pt, forward_s=fwd, backward_s=bwd), gather + bwd_comm, exposed)
        return zero3[key]

    passes: list[PassTimes] = []
    params: list[float] = []
    z_comm: list[float] = []
    z_exposed: list[float] = []
    for s in range(n_stages):
        layer, emb, head = units(placement[s])
        c_total = c_exposed = 0.0
        if layout.zero_stage >= 3:
            tp_size = layout.tp
            head_params = model.embedding_params() if model.tied_embeddings else model.output_params()
            layer, lc, le = sharded(placement[s], "layer", layer, model.layer_params() / tp_size)
            c_total, c_exposed = lc * layers[s], le * layers[s]
            if s == 0:
                emb, ec, ee = sharded(placement[s], "embedding", emb, model.embedding_params() / tp_size)
                c_total, c_exposed = c_total + ec, c_exposed + ee
            if s == n_stages - 1:
                head, hc, he = sharded(placement[s], "head", head, head_params / tp_size)
                c_total, c_exposed = c_total + hc, c_exposed + he
        p = layer.scaled(layers[s])
        if s == 0:
            p = p + emb
        if s == n_stages - 1:
            p = p + head
        passes.append(p)
        params.append(stage_params(model, layout, layers[s], s == 0, s == n_stages - 1))
        z_comm.append(c_total)
        z_exposed.append(c_exposed)

    # Pipeline transfers.
    size = p2p_bytes(model, layout)
    full = ACT_BYTES * layout.micro_batch_size * layout.seq(model) * model.hidden_size
    gather = layout.tp > 1 and layout.scatter_gather and not layout.sequence_parallel
    p2p: list[float] = []
    for s in range(n_stages - 1):
        src, dst = grid.rank(0, 0, placement[s]), grid.rank(0, 0, placement[s + 1])
        t = comm.p2p_s(size, src, dst)
        if gather and src != dst:
            t += comm.collective_s("all-gather", full, grid.tp_group(0, placement[s + 1]))
        p2p.append(t)

    # Data-parallel gradient reduction, per stage.
    grad_b = layout.grad_reduce_bytes
    collective = "reduce-scatter" if layout.distributed_optimizer else "all-reduce"
    bucket = DP_BUCKET_PARAMS * grad_b
    tied_pair = model.tied_embeddings and layout.pp > 1 and placement[0] != placement[-1]
    dp_full: list[float] = []
    dp_engine: list[float] = []
    for s in range(n_stages):
        group = grid.dp_group(0, placement[s])
        red = bucketed_collective_s(comm, collective, params[s] * grad_b, bucket, group)
        if layout.zero_stage >= 3:  # reduce-scattered layer by layer inside every backward instead
            red = 0.0
        tail = red
        if layout.dp_overlap and red > 0:
            one_bucket = red * min(1.0, bucket / (params[s] * grad_b))
            tail = max(one_bucket, red - passes[s].backward_s)
        if tied_pair and s in (0, n_stages - 1):
            pair = [grid.rank(0, 0, placement[0]), grid.rank(0, 0, placement[-1])]
            emb_s = comm.collective_s(
                "all-reduce", model.vocab_size * model.hidden_size / layout.tp * grad_b, pair
            )
            red += emb_s
            tail += emb_s
        dp_full.append(red)
        dp_engine.append(tail)

    # Optimizer step: the slowest pipeline rank's Adam over its (sharded) parameters, plus, with the
    # distributed optimizer, the all-gather of the updated 16-bit weights.
    rank_params = [0.0] * layout.pp
    for s in range(n_stages):
        rank_params[placement[s]] += params[s]
    opt = 0.0
    for r in range(layout.pp):
        local = rank_params[r] / layout.dp if layout.distributed_optimizer else rank_params[r]
        t = optimizer_step_s(local, gpu, eff)
        if layout.distributed_optimizer and layout.dp > 1 and layout.zero_stage < 3:
            t += bucketed_collective_s(
                comm, "all-gather", rank_params[r] * ACT_BYTES, bucket, grid.dp_group(0, r)
            )
        opt = max(opt, t)

    acts = stage_activation_bytes(model, layout, layers)
    stash_layer = weight_stash_bytes_per_layer(model, layout)
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
        dp_reduce_s=tuple(dp_engine),
        dp_overlap=layout.dp_overlap,
        optimizer_s=opt,
    )
    return StageCosts(costs, tuple(passes), tuple(dp_full), tuple(params), tuple(z_comm), tuple(z_exposed))


@dataclass(frozen=True)
class TimeBreakdown:
    """Seconds per pipeline rank (mean over ranks; DP communication: the busiest rank). ``exposed`` parts add
    up to the step time; ``total`` gives each part's full duration (communication partly hidden)."""

    compute: float
    recompute: float
    bubble: float
    tp_comm: float
    pp_comm_total: float
    pp_comm_exposed: float
    dp_comm_total: float
    dp_comm_exposed: float
    optimizer: float

    def as_dict(self) -> dict[str, dict[str, float]]:
        """{part: {"total": s, "exposed": s}} in a fixed order."""
        return {
            "compute": {"total": self.compute, "exposed": self.compute},
            "recompute": {"total": self.recompute, "exposed": self.recompute},
            "bubble": {"total": self.bubble, "exposed": self.bubble},
            "tp_comm": {"total": self.tp_comm, "exposed": self.tp_comm},
            "pp_comm": {"total": self.pp_comm_total, "exposed": self.pp_comm_exposed},
            "dp_comm": {"total": self.dp_comm_total, "exposed": self.dp_comm_exposed},
            "optimizer": {"total": self.optimizer, "exposed": self.optimizer},
        }


@dataclass(frozen=True)
class SimulationReport:
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
    def tokens_per_s(self) -> float:
        """Training tokens per second over the whole cluster."""
        return self.tokens_per_step / self.step_time_s

    @property
    def samples_per_s(self) -> float:
        """Sequences per second over the whole cluster."""
        return self.scenario.layout.global_batch_size / self.step_time_s

    @property
    def model_tflops_per_gpu(self) -> float:
        """Model FLOPs (no recomputation) per second per GPU, in TFLOP/s."""
        return self.model_flops / (self.step_time_s * self.num_gpus) / 1e12

    @property
    def hardware_tflops_per_gpu(self) -> float:
        """Hardware FLOPs (recomputation included) per second per GPU, in TFLOP/s."""
        return self.hardware_flops / (self.step_time_s * self.num_gpus) / 1e12

    @property
    def peak_flops(self) -> float:
        """The GPU's dense peak at the layout's precision."""
        return self.scenario.gpu.peak(self.scenario.layout.precision)

    @property
    def mfu(self) -> float:
        """Model FLOPs utilisation: model TFLOP/s per GPU / peak."""
        return self.model_tflops_per_gpu * 1e12 / self.peak_flops

    @property
    def hfu(self) -> float:
        """Hardware FLOPs utilisation: hardware TFLOP/s per GPU / peak."""
        return self.hardware_tflops_per_gpu * 1e12 / self.peak_flops

    @property
    def worst_memory(self) -> RankMemory:
        """The pipeline rank with the highest peak memory."""
        return max(self.memory, key=lambda m: (m.peak, -m.rank))

    @property
    def fits(self) -> bool:
        """True when every rank's peak fits in HBM."""
        return all(m.fits for m in self.memory)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the shape ``pipesim simulate --json`` prints)."""
        sc, lay = self.scenario, self.scenario.layout
        worst = self.worst_memory
        return {
            "model": sc.model.name,
            "gpu": sc.gpu.name,
            "comm": sc.comm_description(),
            "layout": {
                "dp": lay.dp,
                "tp": lay.tp,
                "pp": lay.pp,
                "vpp": lay.vpp,
                "schedule": lay.schedule,
                "micro_batch_size": lay.micro_batch_size,
                "global_batch_size": lay.global_batch_size,
                "seq_length": lay.seq(sc.model),
                "microbatches": lay.num_microbatches,
                "sequence_parallel": lay.sequence_parallel,
                "recompute": lay.recompute,
                "distributed_optimizer": lay.distributed_optimizer,
                "precision": lay.precision,
                "attention": lay.attention,
                "dp_overlap": lay.dp_overlap,
                "tp_comm_overlap": lay.tp_comm_overlap,
                "gpus": lay.num_gpus,
            },
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
        }


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
    }


def _breakdown(metrics: PipelineMetrics, sc: StageCosts, schedule: Schedule) -> TimeBreakdown:
    ranks = schedule.num_ranks
    per_rank_dp = [0.0] * ranks
    for s, t in enumerate(sc.dp_full_s):
        per_rank_dp[schedule.stage_to_rank[s]] += t
    # ZeRO-3's gathers and reduce-scatters run inside every pass of every microbatch: their unhidden part is
    # data-parallel communication, not compute, although it keeps the compute stream busy.
    m = schedule.num_microbatches
    z_total = [0.0] * ranks
    z_exposed = 0.0
    for s, (c, e) in enumerate(zip(sc.zero3_comm_s, sc.zero3_exposed_s, strict=True)):
        z_total[schedule.stage_to_rank[s]] += c * m
        z_exposed += e * m / ranks
    busy = sum(metrics.compute_busy_s_per_rank) / ranks - z_exposed
    tp = metrics.tp_comm_s / ranks
    pp_exposed = metrics.p2p_exposed_s / ranks
    bubble = max(metrics.pipeline_time_s - busy - z_exposed - pp_exposed, 0.0)
    return TimeBreakdown(
        compute=busy - tp,
        recompute=metrics.recompute_s / ranks,
        bubble=bubble,
        tp_comm=tp,
        pp_comm_total=metrics.p2p_time_s / ranks,
        pp_comm_exposed=pp_exposed,
        dp_comm_total=max((d + z for d, z in zip(per_rank_dp, z_total, strict=True)), default=0.0),
        dp_comm_exposed=metrics.dp_exposed_s + z_exposed,
        optimizer=metrics.optimizer_s,
    )


def simulate_scenario(scenario: Scenario) -> SimulationReport:
    """Build the schedule and per-stage costs of ``scenario``, simulate one step and report it."""
    schedule = build_scenario_schedule(scenario)
    sc = stage_costs(scenario, schedule)
    if schedule.name in GREEDY_FAMILIES:
        schedule = _greedy_for_costs(scenario, schedule, sc.costs)
    costs, params = sc.costs, sc.params
    n = schedule.num_stages
    timeline = simulate(schedule, costs)
    metrics = pipeline_metrics(schedule, costs, timeline)
    layout, model = scenario.layout, scenario.model
    rank_params = [0.0] * schedule.num_ranks
    for s in range(n):
        rank_params[schedule.stage_to_rank[s]] += params[s]
    transient = transient_bytes(model, layout)
    memory = tuple(
        rank_memory(
            r,
            rank_params[r],
            metrics.peak_activation_bytes_per_rank[r],
            transient,
            layout,
            scenario.gpu.hbm_bytes,
            scenario.reserve_bytes,
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
        breakdown=_breakdown(metrics, sc, schedule),
        memory=memory,
        model_flops=model_flops_per_step(model, layout),
        hardware_flops=hardware_flops_per_step(model, layout),
    )
