"""Capacity planning: search every valid parallel layout of a model on a cluster, rank them by step time,
explain what was rejected, and estimate training time and the fewest nodes that meet a deadline.

The search (:func:`plan`):

1. enumerate the search space in a fixed order: tp over the divisors of the GPU count, pp over the
   divisors of GPUs / tp, dp = GPUs / (tp pp) (every GPU is used), micro-batch sizes, every registered
   schedule (vpp over the values that split the layers evenly, for families with chunks), recompute
   none / selective / full, distributed optimizer off / on, sequence parallelism off / on (tp > 1 only).
   User constraints narrow each dimension;
2. reject, with a reason, layouts that cannot run: tp beyond the NVLink domain (GPUs per node) unless
   allowed, tp not dividing the heads / KV heads / MLP width, pp (x chunks) not dividing the layers, the
   global batch not divisible by micro-batch x dp, the schedule's own rule (e.g. interleaved 1F1B needs the
   microbatches to be a multiple of pp);
3. estimate every remaining layout (the *candidates*) analytically (:mod:`pipesim.plan.estimate`), rejecting
   those out of memory;
4. simulate the ``top_k`` fastest feasible candidates on the full timeline
   (:func:`pipesim.sim.scenario.simulate_scenario`) and rank them by simulated step time; the rest keep their
   estimated rank behind them.

Steps 3 and 4 run on an :class:`pipesim.plan.executors.ExecutorSpec` (in process, local processes, or Dask); the
result is identical whichever runs it (results come back in item order, and the ranking breaks ties by the
enumeration index).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pipesim.comm.base import CommModel, LevelCommModel
from pipesim.comm.factory import ClusterSpec, build_comm
from pipesim.cost.flops import hardware_flops_per_step, model_flops_per_step
from pipesim.cost.memory import RESERVE_BYTES
from pipesim.cost.times import DEFAULT_EFFICIENCY, Efficiency
from pipesim.errors import InputError
from pipesim.plan.estimate import Estimate, Estimator
from pipesim.plan.executors import ExecutorSpec, chunked, run_chunks
from pipesim.sim.scenario import Scenario, SimulationReport, simulate_scenario
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import RECOMPUTE, TRAIN_PRECISIONS, Layout, divisors
from pipesim.specs.model import ModelSpec
from schedules import REGISTRY, get_family

__all__ = [
    "REASONS",
    "SearchSpace",
    "PlanCluster",
    "PlanRequest",
    "Candidate",
    "PlanEntry",
    "PlanResult",
    "plan",
    "enumerate_space",
    "training_time",
    "fewest_nodes",
    "NodesSearch",
]

GIB = 2**30
SECONDS_PER_DAY = 86400.0

# Rejection reasons, in the order they are checked; values are the labels ``--explain`` prints.
REASONS: dict[str, str] = {
    "tp_nvlink": "tp beyond the NVLink domain (GPUs per node)",
    "tp_heads": "tp does not divide attention heads / KV heads / MLP width",
    "pp_layers": "pp does not divide the layers",
    "batch": "global batch not divisible by micro-batch x dp",
    "vpp_layers": "layers not divisible by pp x chunks (vpp)",
    "schedule": "schedule constraint",
    "memory": "out of memory (estimate)",
    "memory_sim": "out of memory (full simulation)",
}


# --------------------------------------------------------------------------- the request
@dataclass(frozen=True)
class SearchSpace:
    """What to search. ``None`` means every valid value; tuples restrict a dimension to those values.
    ``max_tp`` / ``max_pp`` cap tp and pp; ``allow_cross_node_tp`` lets tp exceed the GPUs per node;
    ``uneven_layers`` lets pp (x chunks) not divide the layer count."""

    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = None
    vpp: tuple[int, ...] | None = None
    micro_batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    schedules: tuple[str, ...] | None = None
    recompute: tuple[str, ...] = RECOMPUTE
    distributed_optimizer: tuple[bool, ...] = (False, True)
    sequence_parallel: tuple[bool, ...] = (False, True)
    max_tp: int | None = None
    max_pp: int | None = None
    allow_cross_node_tp: bool = False
    uneven_layers: bool = False

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "vpp", "micro_batch_sizes"):
            values = getattr(self, name)
            if values is not None:
                if not values:
                    raise InputError(f"--{name.replace('_', '-')}: give at least one value")
                bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
                if bad:
                    raise InputError(f"--{name.replace('_', '-')}={bad[0]!r} must be a positive integer")
        for name in ("max_tp", "max_pp"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise InputError(f"--{name.replace('_', '-')}={v} must be >= 1")
        bad_rc = [r for r in self.recompute if r not in RECOMPUTE]
        if bad_rc or not self.recompute:
            raise InputError(
                f"--recompute={','.join(self.recompute) or '(empty)'}: valid: {', '.join(RECOMPUTE)}"
            )
        if self.schedules is not None:
            if not self.schedules:
                raise InputError(f"--schedules: give at least one of {', '.join(REGISTRY)}")
            for name in self.schedules:
                get_family(name)  # unknown names raise ScheduleError listing the valid ones
        if not self.distributed_optimizer or not self.sequence_parallel:
            raise InputError("distributed optimizer and sequence parallel choices must not be empty")

    def schedule_names(self) -> tuple[str, ...]:
        """The schedules searched: the user's, else every registered one (registration order)."""
        return self.schedules if self.schedules is not None else tuple(REGISTRY)


@dataclass(frozen=True)
class PlanCluster:
    """The machines: ``nodes`` x ``gpus_per_node`` GPUs of ``gpu``. With ``topology`` (a preset name or a
    TOML path of :mod:`topologies`) collectives are timed on its graph; without, on ``level``'s two-level
    model (whose ``gpus_per_node`` must agree)."""

    gpu: GPUSpec
    nodes: int
    gpus_per_node: int
    topology: str | None = None
    level: LevelCommModel = field(default_factory=LevelCommModel)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise InputError(f"--nodes={self.nodes} must be >= 1")
        if self.gpus_per_node < 1:
            raise InputError(f"--gpus-per-node={self.gpus_per_node} must be >= 1")

    @property
    def num_gpus(self) -> int:
        """nodes x GPUs per node."""
        return self.nodes * self.gpus_per_node

    def with_nodes(self, nodes: int) -> PlanCluster:
        """The same cluster with another node count."""
        return replace(self, nodes=nodes)

    def comm(self) -> CommModel:
        """The communication model of the whole cluster (:func:`pipesim.comm.factory.build_comm`)."""
        spec = ClusterSpec(
            self.topology,
            self.nodes if self.topology is not None else None,
            self.gpus_per_node,
            self.level.intra_Bps,
            self.level.inter_Bps,
        )
        return build_comm(spec, self.num_gpus)


@dataclass(frozen=True)
class PlanRequest:
    """One planning question. ``precision``, ``attention``, ``dp_overlap``, ``scatter_gather`` and
    ``tp_comm_overlap`` are held fixed (see :class:`pipesim.specs.layout.Layout`); ``top_k`` layouts get the full simulation; ``tokens`` (if
    given) is the training run's length for days and GPU-hours."""

    model: ModelSpec
    cluster: PlanCluster
    global_batch_size: int
    seq_length: int | None = None
    space: SearchSpace = field(default_factory=SearchSpace)
    precision: str = "bf16"
    attention: str = "flash"
    dp_overlap: bool = True
    scatter_gather: bool = True
    tp_comm_overlap: bool = True
    efficiency: Efficiency = DEFAULT_EFFICIENCY
    reserve_bytes: float = RESERVE_BYTES
    top_k: int = 16
    tokens: float | None = None

    def __post_init__(self) -> None:
        if self.global_batch_size < 1:
            raise InputError(f"--global-batch-size={self.global_batch_size} must be >= 1")
        if self.seq_length is not None and self.seq_length < 1:
            raise InputError(f"--seq-length={self.seq_length} must be >= 1")
        if self.precision not in TRAIN_PRECISIONS:
            raise InputError(f"--precision={self.precision!r}; valid: {', '.join(TRAIN_PRECISIONS)}")
        self.cluster.gpu.peak(self.precision)
        if self.top_k < 0:
            raise InputError(f"--top-k={self.top_k} must be >= 0")
        if self.tokens is not None and not self.tokens > 0:
            raise InputError(f"--tokens={self.tokens} must be > 0")

    @property
    def seq(self) -> int:
        """Sequence length in use."""
        return self.seq_length if self.seq_length is not None else self.model.seq_length


# --------------------------------------------------------------------------- candidates
@dataclass(frozen=True, order=True)
class Candidate:
    """One point of the search space (dp follows from the GPU count). ``index`` is its enumeration order."""

    index: int
    tp: int
    pp: int
    dp: int
    vpp: int
    micro_batch_size: int
    schedule: str
    recompute: str
    distributed_optimizer: bool
    sequence_parallel: bool

    def layout(self, request: PlanRequest) -> Layout:
        """The :class:`Layout` of this candidate under ``request``'s fixed settings."""
        return Layout(
            tp=self.tp,
            pp=self.pp,
            dp=self.dp,
            vpp=self.vpp,
            micro_batch_size=self.micro_batch_size,
            global_batch_size=request.global_batch_size,
            seq_length=request.seq,
            sequence_parallel=self.sequence_parallel,
            recompute=self.recompute,
            distributed_optimizer=self.distributed_optimizer,
            precision=request.precision,
            schedule=self.schedule,
            attention=request.attention,
            scatter_gather=request.scatter_gather,
            dp_overlap=request.dp_overlap,
            uneven_layers=request.space.uneven_layers,
            tp_comm_overlap=request.tp_comm_overlap,
        )

    def label(self) -> str:
        """Short text: ``tp=8 pp=4 dp=2 vpp=1 mbs=1 1f1b recompute=full do sp``."""
        extra = (" do" if self.distributed_optimizer else "") + (" sp" if self.sequence_parallel else "")
        return (
            f"tp={self.tp} pp={self.pp} dp={self.dp} vpp={self.vpp} mbs={self.micro_batch_size} {self.schedule} "
            f"recompute={self.recompute}{extra}"
        )


def _tp_problem(model: ModelSpec, tp: int) -> str | None:
    if model.num_attention_heads % tp:
        return f"tp={tp} does not divide num_attention_heads={model.num_attention_heads}"
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        return f"tp={tp} neither divides nor is a multiple of num_kv_heads={model.num_kv_heads}"
    if model.ffn_hidden_size % tp:
        return f"tp={tp} does not divide ffn_hidden_size={model.ffn_hidden_size}"
    return None


@dataclass
class _Rejections:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, n: int, example: str) -> None:
        if n <= 0:
            return
        self.counts[reason] += n
        self.examples.setdefault(reason, example)


def _vpp_values(request: PlanRequest, family_name: str, pp: int) -> list[int]:
    """Chunks per rank to try for a family at ``pp``: 1 for single-chunk families, the family's fixed count
    for V-shapes, and for interleaved families every v >= 2 with pp x v dividing the layers (any pp x v <=
    layers with uneven layers), or the user's list."""
    fam = get_family(family_name)
    if fam.chunks_per_rank is not None:
        return [fam.chunks_per_rank]
    if not fam.uses_vpp:
        return [1]
    layers = request.model.num_layers
    if request.space.vpp is not None:
        return sorted({v for v in request.space.vpp if v >= 2})
    if pp == 1:
        return []
    if request.space.uneven_layers:
        return list(range(2, layers // pp + 1))
    if layers % pp:
        return []
    return [v for v in divisors(layers // pp) if v >= 2]


def enumerate_space(
    request: PlanRequest, estimator: Estimator | None = None
) -> tuple[list[Candidate], _Rejections, int]:
    """Every layout of the search space: the candidates that pass the structural rules (in enumeration
    order), the rejections by reason, and the number of layouts enumerated in all."""
    model, space = request.model, request.space
    n_gpus = request.cluster.num_gpus
    per_node = request.cluster.gpus_per_node
    gbs = request.global_batch_size
    est = estimator or _estimator_for(request)
    schedules = space.schedule_names()
    rej = _Rejections()
    out: list[Candidate] = []
    total = 0
    n_rc, n_do = len(space.recompute), len(space.distributed_optimizer)

    def sp_values(tp: int) -> list[bool]:
        return [s for s in space.sequence_parallel if not s or tp > 1] or [False]

    tps = [t for t in divisors(n_gpus) if t <= model.num_attention_heads]
    if space.tp is not None:
        tps = [t for t in tps if t in space.tp]
    if space.max_tp is not None:
        tps = [t for t in tps if t <= space.max_tp]
    for tp in tps:
        pps = [p for p in divisors(n_gpus // tp) if p <= model.num_layers]
        if space.pp is not None:
            pps = [p for p in pps if p in space.pp]
        if space.max_pp is not None:
            pps = [p for p in pps if p <= space.max_pp]
        tp_reason: tuple[str, str] | None = None
        if tp > per_node and not space.allow_cross_node_tp:
            tp_reason = ("tp_nvlink", f"tp={tp} exceeds the {per_node} GPUs per node (NVLink domain)")
        else:
            problem = _tp_problem(model, tp)
            if problem:
                tp_reason = ("tp_heads", problem)
        for pp in pps:
            dp = n_gpus // (tp * pp)
            slots = [(name, v) for name in schedules for v in (_vpp_values(request, name, pp) or [0])]
            sps = sp_values(tp)
            for mbs in space.micro_batch_sizes:
                group = len(slots) * n_rc * n_do * len(sps)
                total += group
                where = f"tp={tp} pp={pp} dp={dp} mbs={mbs}"
                if tp_reason is not None:
                    rej.add(tp_reason[0], group, f"{where}: {tp_reason[1]}")
                    continue
                if model.num_layers % pp and not space.uneven_layers:
                    rej.add(
                        "pp_layers", group, f"{where}: pp={pp} does not divide num_layers={model.num_layers}"
                    )
                    continue
                if gbs % (mbs * dp):
                    rej.add(
                        "batch",
                        group,
                        f"{where}: global batch {gbs} is not divisible by micro-batch x dp = {mbs * dp}",
                    )
                    continue
                m = gbs // (mbs * dp)
                per_slot = n_rc * n_do * len(sps)
                for name, v in slots:
                    fam = get_family(name)
                    chunks = fam.chunks(max(v, 1))
                    stages = pp * chunks
                    label = f"{where} {name} vpp={max(v, 1)}"
                    if v == 0:
                        why = (
                            "interleaving needs pp > 1"
                            if pp == 1
                            else f"no chunk count splits {model.num_layers} layers over pp={pp}"
                        )
                        rej.add("vpp_layers", per_slot, f"{label}: {why}")
                        continue
                    if stages > model.num_layers or (model.num_layers % stages and not space.uneven_layers):
                        rej.add(
                            "vpp_layers",
                            per_slot,
                            f"{label}: pp x chunks = {stages} does not divide num_layers={model.num_layers}",
                        )
                        continue
                    problem = est.rule(name, pp, m, chunks)
                    if problem:
                        rej.add("schedule", per_slot, f"{label}: {problem}")
                        continue
                    for rc in space.recompute:
                        for do in space.distributed_optimizer:
                            for sp in sps:
                                out.append(
                                    Candidate(
                                        len(out), tp, pp, dp, v if fam.uses_vpp else 1, mbs, name, rc, do, sp
                                    )
                                )
    return out, rej, total


# --------------------------------------------------------------------------- per-process evaluation
_ESTIMATORS: dict[PlanRequest, Estimator] = {}


def _estimator_for(request: PlanRequest) -> Estimator:
    key = replace(request, tokens=None, top_k=0)
    hit = _ESTIMATORS.get(key)
    if hit is None:
        _ESTIMATORS.clear()
        hit = Estimator(
            request.model,
            request.cluster.gpu,
            request.cluster.comm(),
            request.efficiency,
            request.reserve_bytes,
        )
        _ESTIMATORS[key] = hit
    return hit


@dataclass(frozen=True)
class _Batch(Sequence[Candidate]):
    """Candidates with the request they belong to: the unit of work sent to an executor."""

    request: PlanRequest
    items: tuple[Candidate, ...]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:
        return self.items[i]

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.items)


def _estimate_batch(batch: Sequence[Candidate]) -> list[Estimate]:
    assert isinstance(batch, _Batch)
    est = _estimator_for(batch.request)
    return [est.estimate(c.layout(batch.request)) for c in batch.items]


@dataclass(frozen=True)
class _SimSummary:
    """What the planner keeps of a full simulation (small enough to send between processes)."""

    step_time_s: float
    model_tflops_per_gpu: float
    hardware_tflops_per_gpu: float
    mfu: float
    hfu: float
    peak_memory_bytes: float
    memory_rank: int
    fits: bool
    bubble_ratio: float
    breakdown: dict[str, dict[str, float]]

    @classmethod
    def of(cls, report: SimulationReport) -> _SimSummary:
        worst = report.worst_memory
        return cls(
            report.step_time_s,
            report.model_tflops_per_gpu,
            report.hardware_tflops_per_gpu,
            report.mfu,
            report.hfu,
            worst.peak,
            worst.rank,
            report.fits,
            report.metrics.bubble_ratio,
            report.breakdown.as_dict(),
        )


def _simulate_batch(batch: Sequence[Candidate]) -> list[_SimSummary]:
    assert isinstance(batch, _Batch)
    req = batch.request
    comm = req.cluster.comm()
    out = []
    for c in batch.items:
        sc = Scenario(req.model, req.cluster.gpu, c.layout(req), comm, req.efficiency, req.reserve_bytes)
        out.append(_SimSummary.of(simulate_scenario(sc)))
    return out


def scenario_of(request: PlanRequest, candidate: Candidate) -> Scenario:
    """The :class:`Scenario` of ``candidate`` (for simulating, drawing or saving it)."""
    return Scenario(
        request.model,
        request.cluster.gpu,
        candidate.layout(request),
        request.cluster.comm(),
        request.efficiency,
        request.reserve_bytes,
    )


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class PlanEntry:
    """One feasible layout with its estimate and, for the top ones, its full simulation."""

    candidate: Candidate
    estimate: Estimate
    simulated: _SimSummary | None
    tokens_per_step: int
    num_gpus: int
    model_flops: float
    hardware_flops: float
    peak_flops: float
    hbm_bytes: float
    microbatches: int

    @property
    def step_time_s(self) -> float:
        """Simulated step time when simulated, else the estimate."""
        return self.simulated.step_time_s if self.simulated else self.estimate.step_time_s

    @property
    def peak_memory_bytes(self) -> float:
        """Peak memory per GPU (most loaded pipeline rank)."""
        return self.simulated.peak_memory_bytes if self.simulated else self.estimate.peak_memory_bytes

    @property
    def headroom_bytes(self) -> float:
        """HBM minus peak memory per GPU."""
        return self.hbm_bytes - self.peak_memory_bytes

    @property
    def tokens_per_s(self) -> float:
        """Training tokens per second over the cluster."""
        return self.tokens_per_step / self.step_time_s

    @property
    def model_tflops_per_gpu(self) -> float:
        """Model FLOPs (no recompute) per second per GPU, TFLOP/s."""
        return self.model_flops / (self.step_time_s * self.num_gpus) / 1e12

    @property
    def hardware_tflops_per_gpu(self) -> float:
        """Hardware FLOPs (recompute included; SC21 eq. 3 with full recompute) per second per GPU."""
        return self.hardware_flops / (self.step_time_s * self.num_gpus) / 1e12

    @property
    def mfu(self) -> float:
        """Model FLOPs utilisation."""
        return self.model_tflops_per_gpu * 1e12 / self.peak_flops

    @property
    def hfu(self) -> float:
        """Hardware FLOPs utilisation."""
        return self.hardware_tflops_per_gpu * 1e12 / self.peak_flops

    @property
    def busy_fraction(self) -> float:
        """Compute-busy fraction of the step (:func:`pipesim.sim.energy.busy_fraction`, the simulator's
        definition) from the simulated breakdown when available, else the estimate's."""
        from pipesim.sim.energy import busy_fraction

        bd = self.breakdown_s()
        return busy_fraction(bd["compute"], bd["optimizer"], self.step_time_s)

    def breakdown_s(self) -> dict[str, float]:
        """Exposed seconds per part (simulated when available), adding up to the step time."""
        if self.simulated:
            bd = self.simulated.breakdown
            return {
                "compute": bd["compute"]["exposed"],
                "tp_comm": bd["tp_comm"]["exposed"],
                "bubble": bd["bubble"]["exposed"],
                "pp_comm": bd["pp_comm"]["exposed"],
                "dp_comm": bd["dp_comm"]["exposed"],
                "optimizer": bd["optimizer"]["exposed"],
            }
        return self.estimate.breakdown()

    def training(self, tokens: float) -> dict[str, float]:
        """Days and GPU-hours to train on ``tokens`` tokens at this step rate."""
        return training_time(tokens, self.tokens_per_s, self.num_gpus)

    def as_dict(self, rank: int, tokens: float | None = None) -> dict[str, Any]:
        """JSON-ready row."""
        c = self.candidate
        row: dict[str, Any] = {
            "rank": rank,
            "tp": c.tp,
            "pp": c.pp,
            "dp": c.dp,
            "vpp": c.vpp,
            "micro_batch_size": c.micro_batch_size,
            "microbatches": self.microbatches,
            "schedule": c.schedule,
            "recompute": c.recompute,
            "distributed_optimizer": c.distributed_optimizer,
            "sequence_parallel": c.sequence_parallel,
            "simulated": self.simulated is not None,
            "step_time_s": self.step_time_s,
            "estimated_step_time_s": self.estimate.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "model_tflops_per_gpu": self.model_tflops_per_gpu,
            "hardware_tflops_per_gpu": self.hardware_tflops_per_gpu,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "peak_memory_bytes": self.peak_memory_bytes,
            "headroom_bytes": self.headroom_bytes,
            "time_breakdown_s": self.breakdown_s(),
        }
        if tokens is not None:
            row.update(self.training(tokens))
        return row


@dataclass(frozen=True)
class PlanResult:
    """What :func:`plan` returns. ``entries`` are the feasible layouts, best first; ``candidates`` the
    number of layouts estimated (passing the structural rules), ``enumerated`` all layouts considered."""

    request: PlanRequest
    entries: tuple[PlanEntry, ...]
    enumerated: int
    candidates: int
    rejected: dict[str, int]
    examples: dict[str, str]
    simulated: int
    closest: tuple[Candidate, Estimate] | None

    @property
    def feasible(self) -> int:
        """Layouts that fit in memory (simulated OOMs removed)."""
        return len(self.entries)

    @property
    def best(self) -> PlanEntry:
        """The winner."""
        return self.entries[0]

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready summary: model, cluster, counts, rejections and ranked results."""
        req = self.request
        shown = self.entries if limit is None else self.entries[:limit]
        return {
            "model": req.model.name,
            "gpu": req.cluster.gpu.name,
            "topology": req.cluster.topology,
            "nodes": req.cluster.nodes,
            "gpus": req.cluster.num_gpus,
            "global_batch_size": req.global_batch_size,
            "seq_length": req.seq,
            "precision": req.precision,
            "tokens": req.tokens,
            "enumerated": self.enumerated,
            "candidates": self.candidates,
            "feasible": self.feasible,
            "simulated": self.simulated,
            "rejected": {k: v for k, v in self.rejected.items() if v},
            "hbm_bytes": req.cluster.gpu.hbm_bytes,
            "results": [e.as_dict(i + 1, req.tokens) for i, e in enumerate(shown)],
        }


def training_time(tokens: float, tokens_per_s: float, num_gpus: int) -> dict[str, float]:
    """Seconds, days and GPU-hours to train on ``tokens`` tokens at ``tokens_per_s`` on ``num_gpus`` GPUs
    (the same arithmetic as SC21 eq. 4, time = tokens / throughput, with the throughput simulated)."""
    seconds = tokens / tokens_per_s
    return {
        "train_seconds": seconds,
        "train_days": seconds / SECONDS_PER_DAY,
        "gpu_hours": seconds * num_gpus / 3600.0,
    }


# --------------------------------------------------------------------------- the search
Progress = Callable[[str, int, int], None]


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


def plan(
    request: PlanRequest,
    executor: ExecutorSpec[Any] | None = None,
    progress: Progress | None = None,
    chunk_size: int = 256,
) -> PlanResult:
    """Search, estimate, simulate the top ``request.top_k`` and rank (see the module docstring).

    ``progress(phase, done, total)`` is called as work completes (phases ``estimate`` and ``simulate``).
    Raises :class:`InputError` when nothing can run: the message names the conflict (structural) or the
    closest layout and its memory overshoot (nothing fits).
    """
    spec = executor or ExecutorSpec()
    report = progress or _no_progress
    candidates, rej, total = enumerate_space(request)
    if not candidates:
        raise InputError(_no_candidate_message(request, rej, total))

    # Batches group candidates that share cached pieces (schedule family, pp, tp), so that each worker
    # process builds few schedule profiles; results are put back in enumeration order.
    grouped = sorted(candidates, key=lambda c: (c.schedule, c.pp, c.tp, c.index))
    batches = [_Batch(request, tuple(c)) for c in chunked(grouped, chunk_size)]
    done = 0
    by_index: dict[int, Estimate] = {}
    report("estimate", 0, len(candidates))

    def tick(n: int) -> None:
        nonlocal done
        done += n
        report("estimate", done, len(candidates))

    for batch, out in zip(batches, run_chunks(_estimate_batch, batches, spec, tick), strict=True):
        for c, e in zip(batch.items, out, strict=True):
            by_index[c.index] = e
    estimates = [by_index[c.index] for c in candidates]

    feasible = [(c, e) for c, e in zip(candidates, estimates, strict=True) if e.fits]
    oom = [(c, e) for c, e in zip(candidates, estimates, strict=True) if not e.fits]
    for c, e in oom:
        over = (e.peak_memory_bytes - e.capacity_bytes) / GIB
        rej.add("memory", 1, f"{c.label()}: needs {e.peak_memory_bytes / GIB:.1f} GiB, {over:.1f} GiB over")
    closest = min(oom, key=lambda ce: (ce[1].peak_memory_bytes, ce[0].index)) if oom else None
    if not feasible:
        raise InputError(_no_fit_message(request, closest, len(candidates)))
    feasible.sort(key=lambda ce: (ce[1].step_time_s, ce[0].index))

    top = feasible[: request.top_k]
    sims: list[_SimSummary] = []
    if top:
        sim_batches = [_Batch(request, (c,)) for c, _ in top]
        sdone = 0
        report("simulate", 0, len(top))

        def stick(n: int) -> None:
            nonlocal sdone
            sdone += n
            report("simulate", sdone, len(top))

        for sim_out in run_chunks(_simulate_batch, sim_batches, spec, stick):
            sims.extend(sim_out)

    model, gpu = request.model, request.cluster.gpu
    n_gpus = request.cluster.num_gpus
    tokens_per_step = request.global_batch_size * request.seq
    first = top[0][0].layout(request) if top else feasible[0][0].layout(request)
    mflops = model_flops_per_step(model, first)
    peak = gpu.peak(request.precision)

    def entry(c: Candidate, e: Estimate, s: _SimSummary | None) -> PlanEntry:
        lay = c.layout(request)
        return PlanEntry(
            candidate=c,
            estimate=e,
            simulated=s,
            tokens_per_step=tokens_per_step,
            num_gpus=n_gpus,
            model_flops=mflops,
            hardware_flops=hardware_flops_per_step(model, lay),
            peak_flops=peak,
            hbm_bytes=gpu.hbm_bytes,
            microbatches=lay.num_microbatches,
        )

    simulated_entries = []
    for (c, e), s in zip(top, sims, strict=True):
        if not s.fits:
            over = (s.peak_memory_bytes - gpu.hbm_bytes) / GIB
            rej.add(
                "memory_sim",
                1,
                f"{c.label()}: simulated peak {s.peak_memory_bytes / GIB:.1f} GiB, {over:.1f} GiB over",
            )
            continue
        simulated_entries.append(entry(c, e, s))
    simulated_entries.sort(key=lambda en: (en.step_time_s, en.candidate.index))
    rest = [entry(c, e, None) for c, e in feasible[len(top) :]]
    entries = tuple(simulated_entries + rest)
    if not entries:
        raise InputError(_no_fit_message(request, closest, len(candidates)))
    return PlanResult(
        request=request,
        entries=entries,
        enumerated=total,
        candidates=len(candidates),
        rejected=dict(rej.counts),
        examples=dict(rej.examples),
        simulated=len(top),
        closest=closest,
    )


def _no_candidate_message(request: PlanRequest, rej: _Rejections, total: int) -> str:
    model, cl, space = request.model, request.cluster, request.space
    n = cl.num_gpus
    if total == 0:
        parts = []
        if space.tp is not None:
            ok = [t for t in space.tp if n % t == 0]
            if not ok:
                valid = ", ".join(str(t) for t in divisors(n) if t <= model.num_attention_heads)
                return f"--tp {','.join(map(str, space.tp))} does not divide the {n} GPUs; valid tp: {valid}"
            parts.append(f"tp in {','.join(map(str, space.tp))}")
        if space.pp is not None:
            parts.append(f"pp in {','.join(map(str, space.pp))}")
        if space.max_tp is not None:
            parts.append(f"tp <= {space.max_tp}")
        if space.max_pp is not None:
            parts.append(f"pp <= {space.max_pp}")
        return (
            f"no layout of {model.name} on {n} GPUs satisfies {' and '.join(parts) or 'the constraints'}: "
            f"tp x pp must divide {n} (pp <= {model.num_layers} layers)"
        )
    worst = max((k for k in REASONS if rej.counts[k]), key=lambda k: rej.counts[k])
    example = rej.examples.get(worst, "")
    hint = ""
    if worst == "tp_nvlink":
        hint = "; pass --allow-cross-node-tp or choose tp <= GPUs per node"
    elif worst == "batch":
        hint = "; choose a global batch divisible by micro-batch x dp"
    elif worst in ("pp_layers", "vpp_layers"):
        hint = "; pass --uneven-layers or choose pp (x vpp) dividing the layers"
    return (
        f"no layout of {model.name} on {n} GPUs passes the rules ({total} layouts tried; most rejected for "
        f"'{REASONS[worst]}', e.g. {example}){hint}"
    )


def _no_fit_message(request: PlanRequest, closest: tuple[Candidate, Estimate] | None, n: int) -> str:
    gpu = request.cluster.gpu
    cap = gpu.hbm_bytes / GIB
    if closest is None:
        return f"no layout of {request.model.name} fits in {gpu.name} memory ({cap:.1f} GiB)"
    c, e = closest
    over = (e.peak_memory_bytes - gpu.hbm_bytes) / GIB
    hints = ["more GPUs"]
    if c.recompute != "full":
        hints.append("--recompute full")
    if c.micro_batch_size > 1:
        hints.append("a smaller micro-batch")
    if not c.distributed_optimizer and c.dp > 1:
        hints.append("--distributed-optimizer")
    return (
        f"{request.model.name} fits in no layout on {request.cluster.num_gpus} x {gpu.name} ({cap:.1f} GiB each; "
        f"{n} layouts tried); closest: {c.label()} needs {e.peak_memory_bytes / GIB:.1f} GiB per GPU, "
        f"{over:.1f} GiB over; try {', '.join(hints[:-1]) + ' or ' + hints[-1] if len(hints) > 1 else hints[0]}"
    )


# --------------------------------------------------------------------------- fewest nodes for a deadline
@dataclass(frozen=True)
class NodesSearch:
    """The fewest-nodes answer: the node count, its plan, and every node count probed (nodes, best days or
    None when nothing fits)."""

    nodes: int
    result: PlanResult
    probes: tuple[tuple[int, float | None], ...]


def _best_days(request: PlanRequest, spec: ExecutorSpec[Any], tokens: float) -> float | None:
    try:
        res = plan(replace(request, top_k=0), spec)
    except InputError:
        return None
    return res.best.training(tokens)["train_days"]


def fewest_nodes(
    request: PlanRequest,
    max_days: float,
    max_nodes: int,
    executor: ExecutorSpec[Any] | None = None,
    progress: Callable[[int, float | None], None] | None = None,
) -> NodesSearch:
    """The fewest nodes (at most ``max_nodes``) on which the best layout trains ``request.tokens`` tokens
    within ``max_days``.

    Lower bound: a run cannot beat the GPUs' dense peak, so nodes >= tokens x model FLOPs per token /
    (max_days x 86,400 s x peak x GPUs per node). From there the node count doubles until the estimated best
    layout meets the deadline, then a binary search finds the smallest count that does (assuming more
    nodes never train slower, which holds except where the global batch stops dividing evenly). The
    answer is then planned in full (top layouts simulated); if the simulation misses the deadline, the
    search continues upwards.
    """
    if request.tokens is None:
        raise InputError("--max-days needs --tokens (e.g. --tokens 15T)")
    if not max_days > 0:
        raise InputError(f"--max-days={max_days} must be > 0")
    if max_nodes < 1:
        raise InputError(f"--max-nodes={max_nodes} must be >= 1")
    spec = executor or ExecutorSpec()
    tokens = request.tokens
    model, gpu = request.model, request.cluster.gpu
    from pipesim.cost.flops import model_flops_per_token

    ideal_gpu_s = tokens * model_flops_per_token(model, request.seq) / gpu.peak(request.precision)
    lo = max(1, math.ceil(ideal_gpu_s / (max_days * SECONDS_PER_DAY) / request.cluster.gpus_per_node))
    if lo > max_nodes:
        raise InputError(
            f"{tokens:.3g} tokens of {model.name} in {max_days:g} days need at least {lo} nodes even at 100% of "
            f"peak; raise --max-nodes (now {max_nodes}) or --max-days"
        )
    probes: dict[int, float | None] = {}

    def days(n: int) -> float | None:
        if n not in probes:
            probes[n] = _best_days(replace(request, cluster=request.cluster.with_nodes(n)), spec, tokens)
            if progress:
                progress(n, probes[n])
        return probes[n]

    def ok(n: int) -> bool:
        d = days(n)
        return d is not None and d <= max_days

    hi = lo
    while not ok(hi):
        if hi >= max_nodes:
            best = min((d for d in probes.values() if d is not None), default=None)
            got = f"; best found {best:.1f} days" if best is not None else "; no layout fits"
            raise InputError(
                f"no node count up to {max_nodes} trains {tokens:.3g} tokens of {model.name} within "
                f"{max_days:g} days{got}; raise --max-nodes or --max-days"
            )
        lo = hi + 1
        hi = min(hi * 2, max_nodes)
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    n = hi
    while True:
        result = plan(replace(request, cluster=request.cluster.with_nodes(n)), spec)
        if result.best.training(tokens)["train_days"] <= max_days or n >= max_nodes:
            break
        n += 1
        while n < max_nodes and not ok(n):
            n += 1
    return NodesSearch(n, result, tuple(sorted(probes.items())))
