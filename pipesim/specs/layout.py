"""The parallel layout of a training run (:class:`Layout`) and its validation against a model.

Names follow Megatron-LM's arguments: ``--tensor-model-parallel-size`` (tp), ``--pipeline-model-parallel-size``
(pp), data parallel size (dp), ``--num-layers-per-virtual-pipeline-stage`` expressed as chunks per rank (vpp),
``--micro-batch-size``, ``--global-batch-size``, ``--seq-length``, ``--sequence-parallel``,
``--recompute-granularity`` (none | selective | full), ``--use-distributed-optimizer``.
Microbatches per pipeline = global batch / (micro batch x dp).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from pipesim.errors import InputError, check_choice, is_count
from pipesim.specs.model import ModelSpec

__all__ = [
    "Layout",
    "MAX_WORLD_GPUS",
    "check_world",
    "RECOMPUTE",
    "ATTENTION",
    "FP8_RECIPES",
    "divisors",
    "divisors_up_to",
    "TRAIN_PRECISIONS",
    "CP_COMM",
    "BLOCKING_P2P_SCHEDULES",
    "FSDP",
]

RECOMPUTE = ("none", "selective", "full")
ATTENTION = ("flash", "unfused")
# Precisions a training step's GEMMs can run in (fp8 / fp4 as in Transformer Engine: GEMMs in fp8 or NVFP4, the
# rest in bf16; fp4 on GPUs with FP4 tensor cores, Blackwell).
TRAIN_PRECISIONS = ("bf16", "fp16", "fp8", "fp4")
# GPUs one simulated step may span: the simulator keeps every rank's groups and placement (about 6 s at this
# size on one core, linear in it), and no cluster built holds a million GPUs. Not a flag: past it the run
# would take hours and hundreds of GB, so the refusal names the size instead.
MAX_WORLD_GPUS = 2**20


def check_world(gpus: int, detail: str) -> None:
    """Refuse a step over more than :data:`MAX_WORLD_GPUS` GPUs (``detail`` says how it counts them)."""
    if gpus > MAX_WORLD_GPUS:
        raise InputError(
            f"{detail} = {gpus:,} GPUs, over the {MAX_WORLD_GPUS:,} one simulation can span (every rank's groups "
            "are tracked: this would take hours); lower the sizes"
        )


# fp8 scaling recipes (Megatron-LM --fp8-recipe; delayed is Transformer Engine's DelayedScaling default):
# their cast costs are in pipesim.cost.kernels.
FP8_RECIPES = ("delayed", "current", "blockwise")
# Context-parallel attention: ring (Megatron-Core's P2P ring, Liu et al. Ring Attention) or all-gather of
# keys and values (Llama 3, arXiv:2407.21783 Section 3.3.2).
CP_COMM = ("ring", "all-gather")
# Schedules whose sends block by default: Megatron-Core's non-interleaved 1F1B (it refuses overlap_p2p_comm).
BLOCKING_P2P_SCHEDULES = ("1f1b",)
# Parameter sharding as PyTorch FSDP runs it (Zhao et al., "PyTorch FSDP", VLDB 2023, Section 3.2): none, full
# (shard over every GPU holding the same weights, i.e. ZeRO-3) or hybrid (shard inside groups of
# ``fsdp_shard_size``, replicate across them: HSDP).
FSDP = ("none", "full", "hybrid")


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n`` in increasing order (none for n < 1)."""
    return list(_divisors(n))


def divisors_up_to(n: int, limit: int = 32_768) -> list[int]:
    """The divisors of ``n`` up to ``limit`` (default: the most GPUs a command takes), in increasing order:
    the sizes a parallel dimension can take, at a cost that does not grow with ``n`` (a model size)."""
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


@lru_cache(maxsize=4096)
def _divisors(n: int) -> tuple[int, ...]:
    """:func:`divisors` by trial division up to sqrt(n), each pair d, n / d at once (cached: the planner asks
    for the same GPU counts many times)."""
    small: list[int] = []
    large: list[int] = []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d * d != n:
                large.append(n // d)
        d += 1
    return tuple(small + large[::-1])


@dataclass(frozen=True)
class Layout:
    """How one training step is parallelised and what it keeps in memory.

    ``schedule`` names a registered pipeline schedule (``schedules.schedule_names()``). ``vpp`` is the number of
    model chunks per pipeline rank for interleaved schedules (1 otherwise). ``attention``: ``flash`` (fused,
    no s x s score matrix in memory, FlashAttention-2 style) or ``unfused`` (scores materialised, softmax and
    dropout as separate memory-bound kernels: Megatron-LM as measured in SC21 and Korthikanti et al.).
    ``scatter_gather``: SC21's scatter/gather optimisation of pipeline transfers (each TP rank sends 1/tp of the
    activation, then an intra-node all-gather; Section 4.1). ``dp_overlap``: gradient reduction starts as soon
    as a stage's last backward ends (bucketed, overlapped with remaining compute) instead of after the whole
    pipeline flush. ``zero_stage`` (Rajbhandari et al., ZeRO, SC20): 0 none; 1 optimizer state sharded over dp
    (Megatron-LM's distributed optimizer; ``distributed_optimizer=True`` means the same); 2 gradients sharded
    too; 3 parameters sharded too, each layer's weights all-gathered before its forward and backward (and its
    recomputed forward) and its gradients reduce-scattered in the backward, every microbatch, prefetched so
    that the collectives overlap the layer's compute. ``zero_stage=3`` alone is DeepSpeed's ZeRO-3, whose hooks
    fetch a submodule's weights at each of its forwards, so a fully recomputed forward gathers them again.
    ``fsdp`` (PyTorch FSDP, Zhao et al., VLDB 2023): ``full`` shards over all dp x cp GPUs holding the same
    weights (ZeRO-3; ``zero_stage`` becomes 3), ``hybrid`` (HSDP) over groups of ``fsdp_shard_size`` of them,
    replicated across the groups, whose gradient shards are all-reduced across replicas once per step; the
    recomputed forward runs inside the unit's backward on the weights gathered for it (one gather per
    backward). ``reshard_after_forward`` False keeps each unit's gathered weights from its forward to its
    backward (no backward gather, more memory). The collective timing is :mod:`pipesim.cost.fsdp`.
    ``uneven_layers``: allow pp (x vpp) not dividing the layer count (the first stages get one extra layer).
    ``tp_comm_overlap``: the backward's tensor-parallel collectives run concurrently with the weight-gradient
    (or, for SP's re-gather, input-gradient) GEMM, as Megatron-LM's asynchronous TP all-reduce does by default
    (``--no-async-tensor-model-parallel-allreduce`` turns it off). ``tp_comm_overlap_forward``: the forward's
    collectives overlap their neighbouring GEMM too (Megatron-LM ``--tp-comm-overlap``, Transformer Engine
    userbuffers: the SP all-gather with the next column-parallel GEMM, the reduce-scatter with the row-parallel
    GEMM that produces it), hidden up to the GPU profile's ``tp_overlap`` fraction; off by default, as in
    Megatron-LM. ``fp8_recipe``: the fp8 scaling recipe (:data:`FP8_RECIPES`), used when ``precision`` is fp8.
    ``overlap_param_gather``: with the distributed optimizer, the all-gather of updated weights overlaps the
    next step's first forward (Megatron-LM ``--overlap-param-gather``; off by default, as there).
    ``overlap_p2p_comm``: pipeline sends run behind compute (True) or the sender's compute waits for each of
    its sends to complete (False: Megatron-LM's batched isend/irecv pairs, waited on by the schedule before
    its next pass, megatron/core/pipeline_parallel/p2p_communication.py ``_communicate(wait_on_reqs=True)``;
    SC21's 2021 code always did so). None takes Megatron-Core's default (:attr:`p2p_overlapped`).
    ``cuda_graphs``: each layer's passes are captured as CUDA graphs (Megatron-Core ``--cuda-graph-impl
    transformer_engine`` / ``local``), so the host launches one graph instead of every kernel; off by default,
    as Megatron-Core's and Megatron Bridge's ``cuda_graph_impl = "none"``.

    Context parallelism (``cp``, Megatron-LM ``--context-parallel-size``): each sequence is split over cp
    GPUs in 2 cp chunks (GPU i takes chunks i and 2cp-1-i, the causal load balancing of Megatron-Core);
    ``cp_comm`` ``ring`` passes keys and values around the CP group overlapped with attention, ``all-gather``
    gathers them first (Llama 3). The data-parallel size ``dp`` excludes cp: GPUs = tp x cp x dp x pp.
    Expert parallelism (``ep``, ``--expert-model-parallel-size``; ``etp``, ``--expert-tensor-parallel-size``):
    the tp x cp x dp GPUs of a stage are regrouped for the expert layers as etp x ep x edp. ``etp`` defaults to
    1 (every expert whole on one GPU, as NeMo's MoE recipes set it; Megatron-LM's own default is tp).
    ``moe_imbalance`` >= 1 scales the tokens of the busiest expert-parallel rank over the balanced share
    (1.0 = perfectly balanced routing).
    """

    tp: int = 1
    pp: int = 1
    dp: int = 1
    vpp: int = 1
    micro_batch_size: int = 1
    global_batch_size: int = 1
    seq_length: int | None = None
    sequence_parallel: bool = False
    recompute: str = "none"
    distributed_optimizer: bool = False
    precision: str = "bf16"
    schedule: str = "1f1b"
    attention: str = "flash"
    scatter_gather: bool = True
    dp_overlap: bool = True
    uneven_layers: bool = False
    tp_comm_overlap: bool = True
    zero_stage: int = 0
    tp_comm_overlap_forward: bool = False
    fp8_recipe: str = "delayed"
    overlap_param_gather: bool = False
    cp: int = 1
    ep: int = 1
    etp: int = 1
    cp_comm: str = "ring"
    moe_imbalance: float = 1.0
    overlap_p2p_comm: bool | None = None
    fsdp: str = "none"
    fsdp_shard_size: int | None = None
    reshard_after_forward: bool = True
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if self.zero_stage not in (0, 1, 2, 3) or isinstance(self.zero_stage, bool):
            raise InputError(f"zero-stage={self.zero_stage!r}; valid: 0, 1, 2, 3")
        self._check_fsdp()
        # The distributed optimizer is ZeRO-1; ZeRO-2/3 shard the optimizer state as well.
        if self.distributed_optimizer and self.zero_stage == 0:
            object.__setattr__(self, "zero_stage", 1)
        if self.zero_stage >= 1:
            object.__setattr__(self, "distributed_optimizer", True)
        for key in ("tp", "pp", "dp", "vpp", "micro_batch_size", "global_batch_size", "cp", "ep", "etp"):
            value = getattr(self, key)
            if not is_count(value):
                raise InputError(f"{key.replace('_', '-')}={value!r} must be a positive integer")
        seq = self.seq_length
        if seq is not None and not is_count(seq):
            raise InputError(f"seq-length={seq!r} must be a positive integer")
        if self.overlap_p2p_comm is not None and not isinstance(self.overlap_p2p_comm, bool):
            raise InputError(f"overlap-p2p-comm={self.overlap_p2p_comm!r}; valid: true, false (or unset)")
        check_choice("cp-comm", self.cp_comm, CP_COMM)
        imb = self.moe_imbalance
        if isinstance(imb, bool) or not isinstance(imb, (int, float)) or not 1.0 <= imb < math.inf:
            raise InputError(f"moe-imbalance={imb!r} must be a finite number >= 1.0 (1.0 = balanced routing)")
        if self.ep > 1 and imb > self.ep:  # every routed token on one of ep ranks: ep x the balanced share
            raise InputError(
                f"moe-imbalance={imb:g} exceeds ep={self.ep}: the busiest of {self.ep} expert-parallel rank(s) "
                f"receives at most every routed token, {self.ep} x the balanced share; valid: 1.0 to {self.ep}"
            )
        check_world(self.num_gpus, f"dp x cp x tp x pp = {self.dp} x {self.cp} x {self.tp} x {self.pp}")
        stage = self.tp * self.cp * self.dp
        if stage % (self.ep * self.etp):
            fits = [d for d in divisors(stage) if stage % (d * self.etp) == 0]
            if fits:
                valid = f"valid ep for etp={self.etp}: {', '.join(map(str, fits))}"
            else:  # no ep works with this etp: say which etp would (with this ep, else with ep 1)
                with_ep = [d for d in divisors(stage) if stage % (d * self.ep) == 0]
                valid = f"valid etp for ep={self.ep}: {', '.join(map(str, with_ep))}" if with_ep else ""
                valid = valid or f"valid etp (ep=1): {', '.join(map(str, divisors(stage)))}"
            raise InputError(
                f"etp x ep = {self.etp} x {self.ep} = {self.etp * self.ep} does not divide tp x cp x dp = "
                f"{self.tp} x {self.cp} x {self.dp} = {stage}; {valid}"
            )
        check_choice("recompute", self.recompute, RECOMPUTE)
        check_choice("attention", self.attention, ATTENTION)
        check_choice("fp8-recipe", self.fp8_recipe, FP8_RECIPES)
        check_choice("precision", self.precision, TRAIN_PRECISIONS)
        per_replica = self.micro_batch_size * self.dp
        if self.global_batch_size % per_replica:
            lower = max(per_replica, self.global_batch_size // per_replica * per_replica)
            raise InputError(
                f"global-batch-size={self.global_batch_size} is not divisible by micro-batch-size x dp = "
                f"{self.micro_batch_size} x {self.dp} = {per_replica}; valid nearby: {lower}, {lower + per_replica}"
            )
        if self.sequence_parallel and self.tp == 1:
            raise InputError(
                "sequence-parallel needs tp > 1 (it splits the non-tensor-parallel regions over tp)"
            )

    def _check_fsdp(self) -> None:
        """The FSDP flags' rules: a known mode; ``fsdp`` means ZeRO-3 (so no other ZeRO stage); a shard size
        only with ``hybrid``, where it must divide dp x cp; no-reshard only with parameter sharding."""
        check_choice("fsdp", self.fsdp, FSDP)
        if self.fsdp != "none":
            if self.zero_stage not in (0, 3):
                raise InputError(
                    f"fsdp={self.fsdp} shards parameters (ZeRO-3) but zero-stage={self.zero_stage}; valid "
                    "zero-stage with --fsdp: 0 or 3"
                )
            object.__setattr__(self, "zero_stage", 3)
        size = self.fsdp_shard_size
        if size is not None:
            if self.fsdp != "hybrid":
                raise InputError(
                    f"fsdp-shard-size={size} needs fsdp=hybrid (full shards over every dp x cp GPU); "
                    f"fsdp={self.fsdp}"
                )
            group = self.dp * self.cp if isinstance(self.dp, int) and isinstance(self.cp, int) else 0
            if not is_count(size) or (group and group % size):
                valid = ", ".join(str(d) for d in divisors(group)) if group > 0 else "divisors of dp x cp"
                raise InputError(f"fsdp-shard-size={size!r} must divide dp x cp = {group}; valid: {valid}")
        elif self.fsdp == "hybrid":
            raise InputError("fsdp=hybrid needs fsdp-shard-size (GPUs per shard group, dividing dp x cp)")
        if not self.reshard_after_forward and self.zero_stage < 3:
            raise InputError(
                "no-reshard-after-forward needs sharded parameters (--fsdp full|hybrid or --zero-stage 3)"
            )

    @property
    def shard_size(self) -> int:
        """GPUs one parameter shard spans with ZeRO-3 / FSDP: ``fsdp_shard_size`` for hybrid sharding, else
        dp x cp (every GPU holding the same dense weights)."""
        return self.fsdp_shard_size if self.fsdp_shard_size is not None else self.dp * self.cp

    @property
    def regather_recompute(self) -> bool:
        """True when a fully recomputed forward gathers its weights again before the backward's own gather:
        DeepSpeed ZeRO-3 (``zero_stage=3`` without ``fsdp``), whose per-submodule hooks fetch at every forward
        (Rajbhandari et al., ZeRO-Infinity, SC21, Section 7.1); FSDP recomputes inside the unit's backward."""
        return self.zero_stage >= 3 and self.fsdp == "none" and self.recompute == "full"

    @property
    def p2p_overlapped(self) -> bool:
        """Whether pipeline sends overlap compute: ``overlap_p2p_comm`` when set, else Megatron-Core's default
        (megatron/training/arguments.py ``--no-overlap-p2p-communication``, on by default, which
        ``validate_args`` turns off without virtual pipeline stages, as
        ``forward_backward_pipelining_without_interleaving`` refuses it): blocking for the non-interleaved
        schedules of :data:`BLOCKING_P2P_SCHEDULES`, overlapped otherwise."""
        return self.p2p_overlapped_for(self.schedule)

    def p2p_overlapped_for(self, schedule: str) -> bool:
        """:attr:`p2p_overlapped` of this layout run by ``schedule``."""
        if self.overlap_p2p_comm is not None:
            return self.overlap_p2p_comm
        return schedule not in BLOCKING_P2P_SCHEDULES

    @property
    def num_gpus(self) -> int:
        """GPUs the layout occupies: dp x cp x tp x pp."""
        return self.dp * self.cp * self.tp * self.pp

    @property
    def edp(self) -> int:
        """Expert data-parallel size: tp cp dp / (etp ep) (the GPUs holding the same experts)."""
        return self.tp * self.cp * self.dp // (self.ep * self.etp)

    @property
    def num_microbatches(self) -> int:
        """Microbatches per pipeline per step: global batch / (micro batch x dp)."""
        return self.global_batch_size // (self.micro_batch_size * self.dp)

    @property
    def grad_reduce_bytes(self) -> int:
        """Bytes per gradient element in the data-parallel reduction: Megatron-LM all-reduces fp32 main
        gradients with bf16 (it forces accumulate_allreduce_grads_in_fp32 for bf16) and fp16 gradients with fp16
        (its default)."""
        return 2 if self.precision == "fp16" else 4

    def seq(self, model: ModelSpec) -> int:
        """Sequence length in use: the layout's if set, else the model's."""
        return self.seq_length if self.seq_length is not None else model.seq_length

    def check_model(self, model: ModelSpec, num_stages: int | None = None) -> None:
        """Raise :class:`InputError` if this layout cannot split ``model``.

        Rules: tp divides the attention heads (and KV heads, and the MLP width); pp x vpp divides the layer
        count unless ``uneven_layers``; and pp x vpp <= layers in any case. ``num_stages`` overrides pp x vpp
        (V-shape schedules use 2 chunks per rank).
        """
        self._check_moe_cp(model)
        heads = model.num_attention_heads
        if heads % self.tp:
            valid = ", ".join(map(str, divisors_up_to(heads)))
            raise InputError(f"tp={self.tp} does not divide num_attention_heads={heads}; valid tp: {valid}")
        if model.num_kv_heads % self.tp and self.tp % model.num_kv_heads:
            valid = ", ".join(
                str(d)
                for d in divisors_up_to(heads)
                if model.num_kv_heads % d == 0 or d % model.num_kv_heads == 0
            )
            raise InputError(
                f"tp={self.tp} neither divides nor is a multiple of num_kv_heads={model.num_kv_heads}; valid tp: {valid}"
            )
        if model.ffn_hidden_size % self.tp:
            raise InputError(f"tp={self.tp} does not divide ffn_hidden_size={model.ffn_hidden_size}")
        stages = num_stages if num_stages is not None else self.pp * self.vpp
        layers = model.num_layers
        if stages > layers:
            raise InputError(
                f"pp x chunks = {stages} stages exceeds num_layers={layers}; every stage needs at least one layer"
            )
        if layers % stages and not self.uneven_layers:
            chunks = stages // self.pp
            pps = [str(d) for d in divisors_up_to(layers) if layers % (d * chunks) == 0]
            # The chunk counts that do split the layers at this pp (when no pp works with these chunks).
            per = [str(c) for c in divisors_up_to(layers // self.pp) if layers % (self.pp * c) == 0]
            if pps:
                valid = f"valid pp (with {chunks} chunk(s) per rank): {', '.join(pps)}"
            elif per:
                valid = f"valid chunks per rank (vpp) at pp={self.pp}: {', '.join(per)}"
            else:
                valid = f"no chunk count splits them at pp={self.pp}"
            raise InputError(
                f"pp x chunks = {stages} does not divide num_layers={layers}; {valid}; or pass --uneven-layers"
            )

    def _check_moe_cp(self, model: ModelSpec) -> None:
        """Megatron-LM's expert- and context-parallel constraints (arguments.py / parallel_state)."""
        e = model.num_experts
        if (self.ep > 1 or self.etp > 1) and not e:
            raise InputError(
                f"ep={self.ep}, etp={self.etp} need a mixture-of-experts model; {model.name!r} is dense"
            )
        if e and e % self.ep:
            valid = ", ".join(
                str(d) for d in divisors_up_to(e) if (self.tp * self.cp * self.dp) % (d * self.etp) == 0
            )
            raise InputError(f"ep={self.ep} does not divide num_experts={e}; valid ep here: {valid}")
        if e and self.fsdp == "hybrid":
            raise InputError(
                f"fsdp=hybrid with the mixture-of-experts model {model.name!r} is not modelled (expert weights "
                "shard over the expert-data-parallel group); valid: --fsdp full or --zero-stage 3"
            )
        if e and model.expert_ffn % self.etp:
            raise InputError(
                f"etp={self.etp} does not divide the expert width moe_ffn_hidden_size={model.expert_ffn}"
            )
        if self.cp > 1:
            s = self.seq(model)
            if s % (2 * self.cp):
                valid = ", ".join(str(c) for c in divisors_up_to(s // 2, 64)) if s % 2 == 0 else "1"
                raise InputError(
                    f"cp={self.cp}: seq-length={s} does not split into 2 x cp = {2 * self.cp} equal chunks; valid cp: "
                    f"{valid}"
                )

    def layers_per_stage(self, model: ModelSpec, num_stages: int) -> tuple[int, ...]:
        """Transformer layers of each of ``num_stages`` global stages: an even split, the remainder going one
        each to the first stages (only reachable with ``uneven_layers``)."""
        base, extra = divmod(model.num_layers, num_stages)
        return tuple(base + (1 if s < extra else 0) for s in range(num_stages))
