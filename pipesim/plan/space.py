"""The search space of a plan: every candidate layout in a fixed order, and the rejected ones counted by
reason (:data:`REASONS`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pipesim.plan.estimate import Estimator
from pipesim.plan.request import MIN_CP_TOKENS, PlanRequest, estimator_for
from pipesim.sim.budget import MAX_PLAN_VPP
from pipesim.specs.layout import Layout, divisors, divisors_up_to
from pipesim.specs.model import ModelSpec
from schedules import get_family

GIB = 2**30

# Rejection reasons, in the order they are checked; values are the labels ``--explain`` prints.
REASONS: dict[str, str] = {
    "tp_nvlink": "tp beyond the NVLink domain (GPUs per node)",
    "tp_heads": "tp does not divide attention heads / KV heads / MLP width",
    "pp_layers": "pp does not divide the layers",
    "batch": "global batch not divisible by micro-batch x dp",
    "cp_seq": "cp does not split the sequence into 2 x cp equal chunks",
    "ep_experts": "ep does not divide the experts",
    "ep_fit": "etp x ep does not divide tp x cp x dp (or etp the expert width)",
    "vpp_pp1": "several chunks per rank need pp > 1",
    "vpp_layers": "layers not divisible by pp x chunks (vpp)",
    "schedule": "schedule constraint",
    "memory": "out of memory (estimate)",
    "memory_sim": "out of memory (full simulation)",
}


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
    cp: int = 1
    ep: int = 1
    etp: int = 1
    fsdp: str = "none"
    fsdp_shard_size: int | None = None

    @property
    def sharding(self) -> str:
        """Short text of the weight sharding: ``off`` / ``on`` (distributed optimizer), ``fsdp`` (full) or
        ``hsdpS`` (hybrid, shard groups of S)."""
        if self.fsdp == "full":
            return "fsdp"
        if self.fsdp == "hybrid":
            return f"hsdp{self.fsdp_shard_size}"
        return "on" if self.distributed_optimizer else "off"

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
            overlap_p2p_comm=request.overlap_p2p_comm,
            cuda_graphs=request.cuda_graphs,
            cp=self.cp,
            ep=self.ep,
            etp=self.etp,
            fsdp=self.fsdp,
            fsdp_shard_size=self.fsdp_shard_size,
        )

    def label(self) -> str:
        """Short text: ``tp=8 pp=4 dp=2 vpp=1 mbs=1 1f1b recompute=full do sp``."""
        shard = {"off": "", "on": " do"}.get(self.sharding, f" {self.sharding}")
        extra = shard + (" sp" if self.sequence_parallel else "")
        par = (f" cp={self.cp}" if self.cp > 1 else "") + (
            f" ep={self.ep} etp={self.etp}" if self.ep > 1 else ""
        )
        return (
            f"tp={self.tp}{par} pp={self.pp} dp={self.dp} vpp={self.vpp} mbs={self.micro_batch_size} "
            f"{self.schedule} recompute={self.recompute}{extra}"
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
class Rejections:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, n: int, example: str) -> None:
        if n <= 0:
            return
        self.counts[reason] += n
        self.examples.setdefault(reason, example)


def _vpp_values(request: PlanRequest, family_name: str, pp: int) -> list[int]:
    """Chunks per rank to try for a family at ``pp``: 1 for single-chunk families, the family's fixed count
    for V-shapes, and for interleaved families every v in 2 .. :data:`pipesim.sim.budget.MAX_PLAN_VPP` with
    pp x v dividing the layers (any pp x v <= layers with uneven layers), or the user's list. The bound keeps
    the search (each v builds schedules of pp x v stages) from growing with the layer count."""
    fam = get_family(family_name)
    if not fam.uses_vpp and fam.chunks_per_rank is None:
        return [1]
    if pp == 1:  # one rank has nothing to interleave (Megatron-LM refuses a virtual pipeline at pp = 1; a
        return []  # V-shape or DualPipe on one rank is its single-chunk schedule with more activations held)
    if fam.chunks_per_rank is not None:
        return [fam.chunks_per_rank]
    layers = request.model.num_layers
    if request.space.vpp is not None:
        return sorted({v for v in request.space.vpp if v >= 2})
    if request.space.uneven_layers:
        return list(range(2, min(layers // pp, MAX_PLAN_VPP) + 1))
    if layers % pp:
        return []
    return [v for v in divisors_up_to(layers // pp, MAX_PLAN_VPP) if v >= 2]


def _cp_values(request: PlanRequest, gpus: int) -> list[int]:
    """Context-parallel sizes to try: the user's, else 1 and the powers of two c dividing ``gpus`` that keep
    at least MIN_CP_TOKENS tokens per GPU (s / c)."""
    if request.space.cp is not None:
        return [c for c in request.space.cp if gpus % c == 0]
    out, c = [1], 2
    while c <= gpus and gpus % c == 0 and request.seq // c >= MIN_CP_TOKENS:
        out.append(c)
        c *= 2
    return out


def _expert_values(request: PlanRequest, tp: int) -> list[tuple[int, int]]:
    """(ep, etp) pairs to try: (1, 1) for a dense model; else the user's lists, or every divisor of the expert
    count as ep with etp 1 or tp (Megatron-Core's two common choices)."""
    model, space = request.model, request.space
    if not model.moe:
        return [(1, 1)]
    eps = list(space.ep) if space.ep is not None else divisors_up_to(model.num_experts)
    etps = list(space.etp) if space.etp is not None else sorted({1, tp})
    return [(e, t) for e in eps for t in etps]


def _shardings(
    request: PlanRequest, model: ModelSpec, dp: int, cp: int
) -> list[tuple[bool, str, int | None]]:
    """(distributed optimizer, fsdp, shard size) choices at data x context parallel size ``dp`` x ``cp``: the
    distributed-optimizer choices, then with ``space.fsdp`` full sharding and hybrid sharding over every shard
    size S of the space (default: the divisors of dp x cp strictly between 1 and dp x cp that divide or are
    multiples of the GPUs per node). Hybrid is skipped for mixture-of-experts models (not modelled)."""
    space = request.space
    out: list[tuple[bool, str, int | None]] = [(do, "none", None) for do in space.distributed_optimizer]
    group = dp * cp
    if group < 2:
        return out
    per_node = request.cluster.gpus_per_node
    for mode in space.fsdp:
        if mode == "full":
            out.append((True, "full", None))
        elif mode == "hybrid" and not model.moe:
            sizes = space.fsdp_shard_sizes or tuple(
                d for d in divisors(group) if 1 < d < group and (d % per_node == 0 or per_node % d == 0)
            )
            out += [(True, "hybrid", d) for d in sizes if 1 < d < group and group % d == 0]
    return out


def _splits(request: PlanRequest) -> Iterator[tuple[int, int, int, int, tuple[str, str] | None]]:
    """(tp, cp, pp, dp, tp problem) of every way the space splits the cluster's GPUs into tensor x context x
    pipeline x data parallelism; the problem (reason key, message) when tp itself breaks a rule."""
    model, space = request.model, request.space
    n_gpus = request.cluster.num_gpus
    per_node = request.cluster.gpus_per_node
    tps = [t for t in divisors(n_gpus) if t <= model.num_attention_heads]
    if space.tp is not None:
        tps = [t for t in tps if t in space.tp]
    if space.max_tp is not None:
        tps = [t for t in tps if t <= space.max_tp]
    for tp in tps:
        tp_reason: tuple[str, str] | None = None
        if tp > per_node and not space.allow_cross_node_tp:
            tp_reason = ("tp_nvlink", f"tp={tp} exceeds the {per_node} GPUs per node (NVLink domain)")
        else:
            problem = _tp_problem(model, tp)
            if problem:
                tp_reason = ("tp_heads", problem)
        for cp in _cp_values(request, n_gpus // tp):
            pps = [p for p in divisors(n_gpus // (tp * cp)) if p <= model.num_layers]
            if space.pp is not None:
                pps = [p for p in pps if p in space.pp]
            if space.max_pp is not None:
                pps = [p for p in pps if p <= space.max_pp]
            for pp in pps:
                yield tp, cp, pp, n_gpus // (tp * cp * pp), tp_reason


def _split_problem(
    request: PlanRequest, tp: int, cp: int, pp: int, dp: int, mbs: int, tp_reason: tuple[str, str] | None
) -> tuple[str, str] | None:
    """The first structural rule a split with micro-batch ``mbs`` breaks, as (reason key, message), or None."""
    model = request.model
    if tp_reason is not None:
        return tp_reason
    if cp > 1 and request.seq % (2 * cp):
        return "cp_seq", f"seq {request.seq} does not split into {2 * cp} chunks"
    if model.num_layers % pp and not request.space.uneven_layers:
        return "pp_layers", f"pp={pp} does not divide num_layers={model.num_layers}"
    gbs = request.global_batch_size
    if gbs % (mbs * dp):
        return "batch", f"global batch {gbs} is not divisible by micro-batch x dp = {mbs * dp}"
    return None


def has_layout(request: PlanRequest) -> bool:
    """Whether some split of the cluster (tp, cp, pp, dp, micro-batch) passes the structural rules: cheap (no
    schedule, memory or time), so a node-count search can skip the counts no layout divides."""
    return any(
        _split_problem(request, tp, cp, pp, dp, mbs, reason) is None
        for tp, cp, pp, dp, reason in _splits(request)
        for mbs in request.space.micro_batch_sizes
    )


def enumerate_space(
    request: PlanRequest, estimator: Estimator | None = None
) -> tuple[list[Candidate], Rejections, int]:
    """Every layout of the search space: the candidates that pass the structural rules (in enumeration
    order), the rejections by reason, and the number of layouts enumerated in all."""
    model, space = request.model, request.space
    gbs = request.global_batch_size
    est = estimator or estimator_for(request)
    schedules = space.schedule_names()
    rej = Rejections()
    out: list[Candidate] = []
    total = 0
    n_rc = len(space.recompute)

    def sp_values(tp: int) -> list[bool]:
        return [s for s in space.sequence_parallel if not s or tp > 1] or [False]

    for tp, cp, pp, dp, tp_reason in _splits(request):
        experts = _expert_values(request, tp)
        slots = [(name, v) for name in schedules for v in (_vpp_values(request, name, pp) or [0])]
        sps = sp_values(tp)
        shardings = _shardings(request, model, dp, cp)
        n_do = len(shardings)
        for mbs in space.micro_batch_sizes:
            per_expert = len(slots) * n_rc * n_do * len(sps)
            group = per_expert * len(experts)
            total += group
            where = f"tp={tp} cp={cp} pp={pp} dp={dp} mbs={mbs}"
            broken = _split_problem(request, tp, cp, pp, dp, mbs, tp_reason)
            if broken is not None:
                rej.add(broken[0], group, f"{where}: {broken[1]}")
                continue
            m = gbs // (mbs * dp)
            per_slot = n_rc * n_do * len(sps)
            for ep, etp in experts:
                ewhere = f"{where} ep={ep} etp={etp}"
                if model.moe and model.num_experts % ep:
                    rej.add("ep_experts", per_expert, f"{ewhere}: ep does not divide {model.num_experts}")
                    continue
                if (tp * cp * dp) % (ep * etp) or (model.moe and model.expert_ffn % etp):
                    rej.add("ep_fit", per_expert, f"{ewhere}: etp x ep does not divide tp x cp x dp")
                    continue
                for name, v in slots:
                    fam = get_family(name)
                    chunks = fam.chunks(max(v, 1))
                    stages = pp * chunks // fam.chains  # the stages of one model copy
                    if v == 0 and pp == 1:
                        rej.add(
                            "vpp_pp1", per_slot, f"{ewhere} {name}: one pipeline rank, nothing to interleave"
                        )
                        continue
                    label = f"{ewhere} {name} vpp={max(v, 1)}"
                    if v == 0:
                        why = f"no chunk count splits {model.num_layers} layers over pp={pp}"
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
                        for do, fsdp, shard in shardings:
                            for sp in sps:
                                out.append(
                                    Candidate(
                                        len(out),
                                        tp,
                                        pp,
                                        dp,
                                        chunks,
                                        mbs,
                                        name,
                                        rc,
                                        do,
                                        sp,
                                        cp,
                                        ep,
                                        etp,
                                        fsdp,
                                        shard,
                                    )
                                )
    return out, rej, total
