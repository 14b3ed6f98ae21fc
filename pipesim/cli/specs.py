"""What the option groups hand to commands: typed, checked objects built from parsed flags (never dicts of
strings). Each builder checks what its spec does not check itself (``Layout`` checks its own fields)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import click

from pipesim.cli.flags import FLAGS
from pipesim.errors import InputError
from pipesim.io.units import finite, parse_count
from pipesim.sim.budget import check_gpus

if TYPE_CHECKING:
    from pipesim.comm.base import CommModel
    from pipesim.comm.factory import ClusterSpec
    from pipesim.plan.search import PlanCluster
    from pipesim.specs.gpu import GPUSpec
    from pipesim.specs.layout import Layout
    from pipesim.specs.model import ModelSpec

__all__ = [
    "ClusterFlags",
    "EnergyFlags",
    "Hardware",
    "LayoutFlags",
    "build_cluster_flags",
    "build_energy_flags",
    "build_hardware",
    "build_layout_flags",
    "given",
]


# The synthetic scenario of compare and gantt (no --model): 4 ranks, 2 chunks for interleaved schedules.
SYNTHETIC_PP = 4
SYNTHETIC_VPP = 2


def given(name: str) -> bool:
    """Whether the user gave flag ``name`` (its keyword): typed on the running command's line or set by its
    experiment file (``--config``)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return False
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "DEFAULT_MAP")


def typed(name: str) -> bool:
    """Whether the user typed flag ``name`` (its keyword) on the running command's line (an experiment file's
    value does not count: plan's winner files write every field)."""
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source(name) if ctx is not None else None
    return source is not None and source.name == "COMMANDLINE"


def require(name: str) -> None:
    """Refuse, as click refuses a missing required flag (a usage error: one line plus ``Try ... --help``),
    the running command's flag ``name`` (its keyword) when it was not given; for flags that only some uses
    of a command need, so click cannot require them itself."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        raise InputError(f"--{name.replace('_', '-')} is required")
    param = next(p for p in ctx.command.params if p.name == name)
    raise click.MissingParameter(ctx=ctx, param=param)


def _defaults(cls: type) -> dict[str, Any]:
    """The declared defaults of the flags behind ``cls``'s fields (for groups that declare only some)."""
    out = {}
    for f in fields(cls):
        if f.name in FLAGS:
            attrs = FLAGS[f.name][1]
            out[f.name] = attrs.get("default", False if attrs.get("is_flag") else None)
    return out


# --------------------------------------------------------------------------- model and GPU
@dataclass(frozen=True)
class Hardware:
    """The resolved ``--model`` (None when not given) and ``--gpu``."""

    model: ModelSpec | None
    gpu: GPUSpec

    def need_model(self) -> ModelSpec:
        """The model, or :class:`InputError` listing the presets when ``--model`` was not given."""
        if self.model is None:
            from pipesim.specs.model import model_names

            raise InputError(
                f"--model is required; presets: {', '.join(model_names())} (or a config.json path)"
            )
        return self.model


def build_hardware(model_arg: str | None, gpu_arg: str) -> Hardware:
    """Resolve ``--model`` and ``--gpu`` (presets, files, or an experiment file's inline tables)."""
    from pipesim.cli.config import inline_spec
    from pipesim.io.readers import resolve_gpu, resolve_model

    model = inline_spec(model_arg) or (resolve_model(model_arg) if model_arg else None)
    return Hardware(model, inline_spec(gpu_arg) or resolve_gpu(gpu_arg))


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class LayoutFlags:
    """The layout flags; :meth:`layout` completes them (defaults that depend on other flags) into a Layout.

    The fields are :class:`Layout`'s (less ``schedule``, a command's own flag, and ``scatter_gather``, never a
    flag) plus ``layers_per_virtual_stage``; ``dp`` and ``global_batch_size`` None are derived by
    :meth:`layout`. No field has a default here: :meth:`defaults` are the flags' declared ones, which are
    Layout's (:mod:`pipesim.cli.flags`).
    """

    pp: int
    vpp: int
    layers_per_virtual_stage: int | None
    tp: int
    dp: int | None
    micro_batch_size: int
    global_batch_size: int | None
    seq_length: int | None
    sequence_parallel: bool
    recompute: str
    distributed_optimizer: bool
    zero_stage: int
    precision: str
    attention: str
    dp_overlap: bool
    tp_comm_overlap: bool
    tp_comm_overlap_forward: bool
    overlap_param_gather: bool
    fp8_recipe: str
    uneven_layers: bool
    cp: int
    cp_comm: str
    ep: int
    etp: int
    moe_imbalance: float
    overlap_p2p_comm: bool | None
    fsdp: str
    fsdp_shard_size: int | None
    reshard_after_forward: bool
    cuda_graphs: bool

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Declared defaults of every layout flag (those of :class:`Layout`; dp and the global batch None)."""
        return _defaults(cls)

    def synthetic_pipeline(self) -> tuple[int, int]:
        """(pp, vpp) of ``compare`` and ``gantt`` without ``--model``: ``--pp`` and ``--vpp`` when typed, else
        the synthetic demo's :data:`SYNTHETIC_PP` ranks and :data:`SYNTHETIC_VPP` chunks (with a model every
        command defaults to the flags' declared 1 and 1)."""
        pp = self.pp if given("pp") else SYNTHETIC_PP
        vpp = self.virtual_stages(None) if given("vpp") else SYNTHETIC_VPP
        if pp == 1 and vpp > 1:  # one rank has nothing to interleave (simulate refuses it the same way)
            if given("vpp"):
                raise InputError(
                    f"--vpp={vpp} needs pp >= 2 (one rank has nothing to interleave; Megatron-LM refuses a "
                    "virtual pipeline at pp=1); drop --vpp or give --pp 2 or more"
                )
            vpp = 1
        return pp, vpp

    def virtual_stages(self, model: ModelSpec | None) -> int:
        """vpp: ``--vpp``, or ``model``'s layers / (pp x ``--num-layers-per-virtual-pipeline-stage``)."""
        per = self.layers_per_virtual_stage
        if self.vpp < 1:
            raise InputError(f"vpp={self.vpp} must be >= 1 (1: one chunk per rank)")
        if per is None:
            return self.vpp
        flag = "--num-layers-per-virtual-pipeline-stage"
        if given("vpp"):
            raise InputError(f"give --vpp or {flag}, not both")
        if model is None:
            raise InputError(f"{flag} needs --model (vpp = its layers / (pp x {per}))")
        if self.pp < 1 or model.num_layers % (self.pp * per):
            raise InputError(
                f"{flag}={per} with pp={self.pp}: pp x {per} does not divide num_layers={model.num_layers}"
            )
        return model.num_layers // (self.pp * per)

    def layout(
        self,
        schedule: str | None = None,
        *,
        microbatches: int | None = None,
        gpus: int | None = None,
        **changes: Any,
    ) -> Layout:
        """The :class:`Layout`: dp defaults to ``gpus / (tp x cp x pp)`` (else 1), the global batch to
        ``microbatches`` (default 4 x pp) microbatches per replica, the schedule to interleaved-1f1b when
        vpp > 1 else 1f1b; ``changes`` override fields. Layout checks every value."""
        from pipesim.sim.compare import default_schedule
        from pipesim.specs.layout import Layout

        tp, pp = changes.get("tp", self.tp), changes.get("pp", self.pp)
        unit = tp * pp * changes.get("cp", self.cp)
        dp = self.dp
        if dp is None:
            fits = gpus is not None and unit >= 1 and gpus % unit == 0 and gpus >= unit
            dp = gpus // unit if fits and gpus is not None else 1
        mbs = self.micro_batch_size
        gbs = self.global_batch_size
        if gbs is None:
            gbs = mbs * dp * (microbatches if microbatches is not None else 4 * pp)
        vpp = changes.get("vpp", self.vpp)
        if schedule is None:
            schedule = default_schedule(vpp)
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "layers_per_virtual_stage"}
        values.update(dp=dp, global_batch_size=gbs, schedule=schedule, vpp=vpp)
        values.update(changes)
        return Layout(**values)


def build_layout_flags(**values: Any) -> LayoutFlags:
    """:class:`LayoutFlags` of the parsed values (checked when :meth:`LayoutFlags.layout` builds the Layout)."""
    return LayoutFlags(**values)


# --------------------------------------------------------------------------- cluster and communication
@dataclass(frozen=True)
class ClusterFlags:
    """The cluster flags: a topology graph (``--topology``, ``--nodes``, ``--fabric``, ``--oversubscription``)
    or a two-level model (GPUs per node, per-GPU bandwidths in GB/s); ``gpus`` is the GPU count the user gave,
    if any. Flags left out take the GPU's own server (:mod:`pipesim.specs.server`): commands call
    :meth:`for_gpu` before :meth:`spec`, which is the :class:`pipesim.comm.factory.ClusterSpec` (which checks
    the values)."""

    gpus: int | None
    gpus_per_node: int | None
    intra_node_gbps: float | None
    inter_node_gbps: float | None
    topology: str | None
    nodes: int | None
    rank_order: str
    fabric: str | None
    oversubscription: float | None
    max_gpus: int

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Declared defaults of every cluster flag."""
        return _defaults(cls)

    def for_gpu(self, gpu: GPUSpec) -> ClusterFlags:
        """The flags with what the user left out taken from ``gpu``'s server: its topology preset when no
        cluster flag is given (and it has one), and its two-level figures for the two-level flags not given.
        A two-level flag chooses the two-level model (so ``--inter-node-GBps 100`` on an H100 keeps DGX H100's
        NVLink figure and 8 GPUs per node)."""
        from dataclasses import replace

        srv = gpu.server
        two_level = any(
            v is not None for v in (self.gpus_per_node, self.intra_node_gbps, self.inter_node_gbps)
        )
        topology = self.topology if self.topology is not None or two_level else srv.topology
        return replace(
            self,
            topology=topology,
            gpus_per_node=self.gpus_per_node
            if topology is not None
            else self.gpus_per_node or srv.gpus_per_node,
            intra_node_gbps=self.intra_node_gbps if self.intra_node_gbps is not None else srv.intra_Bps / 1e9,
            inter_node_gbps=self.inter_node_gbps if self.inter_node_gbps is not None else srv.inter_Bps / 1e9,
        )

    def spec(self, gpus_per_node: int | None = None) -> ClusterSpec:
        """The cluster (``gpus_per_node`` overrides ``--gpus-per-node`` of the two-level model; ``--nodes``
        counts the topology's servers, and only ``plan`` takes it without one). Needs :meth:`for_gpu` first."""
        from pipesim.comm.factory import ClusterSpec

        if self.topology is not None:  # the two-level figures are unused: the spec's own defaults
            return ClusterSpec(
                self.topology, self.nodes, fabric=self.fabric, oversubscription=self.oversubscription
            )
        per = gpus_per_node or self.gpus_per_node
        if per is None or self.intra_node_gbps is None or self.inter_node_gbps is None:
            raise RuntimeError(
                "ClusterFlags.spec() before for_gpu(): the two-level defaults come from the GPU"
            )
        return ClusterSpec(
            None,
            None,
            per,
            self.intra_node_gbps * 1e9,
            self.inter_node_gbps * 1e9,
            fabric=self.fabric,
            oversubscription=self.oversubscription,
        )

    def comm(self, world_size: int) -> CommModel:
        """The communication model of ranks 0..world_size-1 (:func:`pipesim.comm.factory.build_comm`)."""
        from pipesim.comm.factory import build_comm

        if self.topology is None and self.nodes is not None:
            raise InputError("--nodes needs --topology (the servers of which cluster?)")
        spec = self.spec()
        if spec.topology is not None:
            per = spec.node_gpus()
            check_gpus(spec.nodes if spec.nodes is not None else -(-world_size // per), per, self.max_gpus)
        return build_comm(spec, world_size)

    def world(self) -> int | None:
        """The GPU count the flags name: ``--gpus``, else ``--nodes`` x the topology's GPUs per server."""
        if self.gpus is not None:
            return self.gpus
        if self.topology is not None and self.nodes is not None:
            from topologies import resolve_spec

            return self.nodes * resolve_spec(self.topology).node.gpus
        return None

    def rank_grid(self) -> tuple[str, ...]:
        """``--rank-order`` parsed (fastest-varying axis first)."""
        from pipesim.specs.placement import parse_order

        return parse_order(self.rank_order)

    def plan_cluster(self, gpu: GPUSpec, nodes_optional: bool) -> PlanCluster:
        """The :class:`PlanCluster` of ``plan``: ``--nodes`` or ``--gpus`` (a multiple of the GPUs per node);
        with ``nodes_optional`` (a ``--max-days`` search) one node to start from."""
        from pipesim.comm.base import LevelCommModel
        from pipesim.plan.search import PlanCluster

        spec = self.spec()
        per = spec.node_gpus()
        if self.topology is not None and self.gpus_per_node is not None and self.gpus_per_node != per:
            raise InputError(
                f"--gpus-per-node={self.gpus_per_node} contradicts topology {self.topology} ({per} per node)"
            )
        nodes = self.nodes
        if nodes is not None and self.topology is not None:
            check_gpus(nodes, per, self.max_gpus)
        if self.gpus is not None:
            if nodes is not None:
                raise InputError("give --nodes or --gpus, not both")
            if self.gpus < 1 or self.gpus % per:
                where = f"topology {self.topology}" if self.topology else "the two-level model"
                raise InputError(
                    f"--gpus={self.gpus} must be a positive multiple of the {per} GPUs per node ({where}); "
                    f"valid: {per}, {2 * per}, {3 * per}, ..."
                )
            nodes = self.gpus // per
        if nodes is None:
            if not nodes_optional:
                raise InputError(
                    "give --nodes N or --gpus N (or --max-days with --tokens to find the node count)"
                )
            nodes = 1
        level = LevelCommModel(per, spec.intra_node_Bps, spec.inter_node_Bps)
        return PlanCluster(gpu, nodes, per, self.topology, level)


def build_cluster_flags(**values: Any) -> ClusterFlags:
    """:class:`ClusterFlags`, checked by building its :class:`ClusterSpec` once (on DGX A100 figures for the
    flags left out: the values given are what is checked here; :meth:`ClusterFlags.for_gpu` fills the rest)."""
    from pipesim.specs.gpu import get_gpu

    flags = ClusterFlags(**values)
    if flags.topology is not None:
        given = [f for f, v in (("--intra-node-GBps", flags.intra_node_gbps), ("--inter-node-GBps",
                 flags.inter_node_gbps)) if v is not None]  # fmt: skip
        if given:
            raise InputError(
                f"{given[0]} sets the two-level model, which --topology {flags.topology} replaces: give one "
                "of them (the topology's links are in `pipesim topo show`)"
            )
    flags.for_gpu(get_gpu("a100-80gb")).spec()
    return flags


# --------------------------------------------------------------------------- energy and cost
@dataclass(frozen=True)
class EnergyFlags:
    """``--tokens`` (a count), price, PUE and per-node overhead; ``energy_flags`` the energy-only flags the
    user typed (``--pue``, ``--node-overhead-W``: they mean nothing without the GPU's board power)."""

    tokens: float | None
    price_per_gpu_hour: float | None
    pue: float
    node_overhead_w: float
    energy_flags: tuple[str, ...]

    def check_for(self, gpu: GPUSpec) -> None:
        """Refuse the energy-only flags for a GPU without a TDP (its report gives times and cost only)."""
        if gpu.tdp_w is None and self.energy_flags:
            raise InputError(
                f"{self.energy_flags[0]} sets the energy model, which needs the GPU's board power: gpu "
                f"{gpu.name!r} has none (write a GPU TOML with base = {gpu.name!r} and tdp_W = ...)"
            )


def build_energy_flags(
    tokens: str | None, price_per_gpu_hour: float | None, pue: float, node_overhead_w: float
) -> EnergyFlags:
    """:class:`EnergyFlags`, checked (PUE >= 1, price and overhead finite and >= 0, tokens a count)."""
    from pipesim.sim.energy import check_price, check_pue

    check_pue(pue)
    check_price(price_per_gpu_hour)
    finite(node_overhead_w, "--node-overhead-W", minimum=0)
    asked = tuple(
        flag for name, flag in (("pue", "--pue"), ("node_overhead_w", "--node-overhead-W")) if given(name)
    )
    count = None if tokens is None else parse_count(tokens)
    return EnergyFlags(count, price_per_gpu_hour, pue, node_overhead_w, asked)
