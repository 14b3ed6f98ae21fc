"""One planning question: the cluster (:class:`PlanCluster`), what to search (:class:`SearchSpace`) and the
request itself (:class:`PlanRequest`), with its per-process estimator."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pipesim.comm.base import CommModel, LevelCommModel
from pipesim.comm.factory import ClusterSpec, build_comm
from pipesim.cost.memory import RESERVE_BYTES
from pipesim.cost.times import Efficiency
from pipesim.errors import InputError, is_count
from pipesim.plan.estimate import Estimator
from pipesim.sim.budget import MAX_ACTIONS
from pipesim.specs.efficiency import GPU_PROFILE, resolve_efficiency
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import FSDP, RECOMPUTE, TRAIN_PRECISIONS, check_world
from pipesim.specs.model import ModelSpec
from schedules import REGISTRY, get_family
from schedules.iterations import OPTIMIZER_MODES

# --------------------------------------------------------------------------- the request
# Default context-parallel sizes keep at least this many tokens of a sequence on each GPU (an assumption: below
# it the key/value exchange outweighs the attention it hides behind; published long-context recipes, e.g.
# NeMo's Llama 3 8K-1M rows in nemo-performance.md, keep 4K-32K tokens per GPU).
MIN_CP_TOKENS = 4096


@dataclass(frozen=True)
class SearchSpace:
    """What to search. ``None`` means every valid value; tuples restrict a dimension to those values.
    ``max_tp`` / ``max_pp`` cap tp and pp; ``allow_cross_node_tp`` lets tp exceed the GPUs per node;
    ``uneven_layers`` lets pp (x chunks) not divide the layer count. ``cp`` / ``ep`` / ``etp``: context-,
    expert- and expert-tensor-parallel sizes (None: cp over powers of two that leave at least
    :data:`MIN_CP_TOKENS` tokens per GPU; ep over the divisors of the expert count; etp 1 or tp). ``fsdp``: FSDP
    modes searched besides the distributed-optimizer choices (``full``, ``hybrid``; none by default),
    ``fsdp_shard_sizes`` the hybrid shard sizes (None: see :func:`pipesim.plan.space._shardings`)."""

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
    cp: tuple[int, ...] | None = None
    ep: tuple[int, ...] | None = None
    etp: tuple[int, ...] | None = None
    fsdp: tuple[str, ...] = ()
    fsdp_shard_sizes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "vpp", "micro_batch_sizes", "cp", "ep", "etp"):
            values = getattr(self, name)
            flag = "--micro-batch-size" if name == "micro_batch_sizes" else f"--{name}"  # plan's flag names
            if values is not None:
                if not values:
                    raise InputError(f"{flag}: give at least one value")
                bad = [v for v in values if not is_count(v)]
                if bad:
                    raise InputError(f"{flag}={bad[0]!r} must be a positive integer")
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
        bad_fsdp = [f for f in self.fsdp if f not in FSDP or f == "none"]
        if bad_fsdp:
            raise InputError(f"--fsdp={bad_fsdp[0]!r} to search; valid: none, full, hybrid (comma list)")
        if self.fsdp_shard_sizes is not None:
            if "hybrid" not in self.fsdp:
                raise InputError("--fsdp-shard-size needs --fsdp hybrid in the search")
            bad = [v for v in self.fsdp_shard_sizes if isinstance(v, bool) or not isinstance(v, int) or v < 2]
            if bad or not self.fsdp_shard_sizes:
                raise InputError(f"--fsdp-shard-size={bad[0] if bad else '(empty)'!r} must be integers >= 2")
        if not self.distributed_optimizer or not self.sequence_parallel:
            raise InputError("distributed optimizer and sequence parallel choices must not be empty")

    def schedule_names(self) -> tuple[str, ...]:
        """The schedules searched: the user's, else every registered one the planner estimates (registration
        order; :attr:`schedules.ScheduleFamily.planned`)."""
        if self.schedules is not None:
            return self.schedules
        return tuple(name for name, family in REGISTRY.items() if family.planned)


@dataclass(frozen=True)
class PlanCluster:
    """The machines: ``nodes`` x ``gpus_per_node`` GPUs of ``gpu``. With ``topology`` (a preset name or a
    TOML path of :mod:`topologies`) collectives are timed on its graph; without, on ``level``'s two-level
    model (whose ``gpus_per_node`` must agree; default: the GPU's server's figures)."""

    gpu: GPUSpec
    nodes: int
    gpus_per_node: int
    topology: str | None = None
    level: LevelCommModel = None  # type: ignore[assignment]  # None: the GPU server's figures (__post_init__)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise InputError(f"--nodes={self.nodes} must be >= 1")
        if self.gpus_per_node < 1:
            raise InputError(f"--gpus-per-node={self.gpus_per_node} must be >= 1")
        check_world(self.num_gpus, f"{self.nodes:,} nodes x {self.gpus_per_node} GPUs")
        if self.level is None:
            srv = self.gpu.server
            object.__setattr__(
                self, "level", LevelCommModel(self.gpus_per_node, srv.intra_Bps, srv.inter_Bps)
            )

    @classmethod
    def on_server(cls, gpu: GPUSpec, nodes: int) -> PlanCluster:
        """``nodes`` servers like ``gpu``'s own (:mod:`pipesim.specs.server`): its topology preset when it has
        one, else the two-level model with its figures."""
        srv = gpu.server
        return cls(gpu, nodes, srv.gpus_per_node, srv.topology)

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
    """One planning question. ``precision``, ``attention``, ``dp_overlap``, ``scatter_gather``,
    ``tp_comm_overlap``, ``overlap_p2p_comm`` (None: Megatron-Core's default per schedule) and ``cuda_graphs``
    are held fixed (see :class:`pipesim.specs.layout.Layout`); ``top_k`` layouts get the full simulation; ``tokens`` (if
    given) is the training run's length for days and GPU-hours; ``optimizer`` is the optimizer mode every
    layout is estimated and simulated under (:mod:`pipesim.sim.iterations`)."""

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
    overlap_p2p_comm: bool | None = None
    cuda_graphs: bool = False
    efficiency: Efficiency = GPU_PROFILE
    reserve_bytes: float = RESERVE_BYTES
    top_k: int = 16
    tokens: float | None = None
    max_actions: int = MAX_ACTIONS  # compute actions the top_k simulations may hold together
    optimizer: str = "sync"

    def __post_init__(self) -> None:
        if self.global_batch_size < 1:
            raise InputError(f"--global-batch-size={self.global_batch_size} must be >= 1")
        if self.seq_length is not None and self.seq_length < 1:
            raise InputError(f"--seq-length={self.seq_length} must be >= 1")
        if self.precision not in TRAIN_PRECISIONS:
            raise InputError(f"--precision={self.precision!r}; valid: {', '.join(TRAIN_PRECISIONS)}")
        self.cluster.gpu.peak(self.precision)
        object.__setattr__(
            self, "efficiency", resolve_efficiency(self.efficiency, self.cluster.gpu.efficiency)
        )
        if self.top_k < 0:
            raise InputError(f"--top-k={self.top_k} must be >= 0")
        if self.tokens is not None and not self.tokens > 0:
            raise InputError(f"--tokens={self.tokens} must be > 0")
        if self.optimizer not in OPTIMIZER_MODES:
            raise InputError(f"--optimizer={self.optimizer!r}; valid: {', '.join(OPTIMIZER_MODES)}")
        for name in ("ep", "etp"):
            values = getattr(self.space, name)
            if values is not None and values != (1,) and not self.model.moe:
                raise InputError(
                    f"--{name}={','.join(map(str, values))}: {self.model.name} is a dense model (no experts to "
                    f"split); drop --{name}"
                )

    @property
    def seq(self) -> int:
        """Sequence length in use."""
        return self.seq_length if self.seq_length is not None else self.model.seq_length


_ESTIMATORS: dict[PlanRequest, Estimator] = {}


def estimator_for(request: PlanRequest) -> Estimator:
    """The per-process :class:`pipesim.plan.estimate.Estimator` of ``request`` (one request at a time)."""
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
            request.optimizer,
        )
        _ESTIMATORS[key] = hit
    return hit
