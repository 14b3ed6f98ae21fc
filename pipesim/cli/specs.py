"""What the option groups hand to commands: typed, checked objects built from parsed flags (never dicts of
strings). Each builder checks what its spec does not check itself (``Layout`` checks its own fields)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import click

from pipesim.cli.flags import FLAGS
from pipesim.errors import InputError
from pipesim.io.units import finite, parse_count

if TYPE_CHECKING:
    from pipesim.specs.gpu import GPUSpec
    from pipesim.specs.layout import Layout
    from pipesim.specs.model import ModelSpec

__all__ = [
    "EnergyFlags",
    "Hardware",
    "LayoutFlags",
    "build_energy_flags",
    "build_hardware",
    "build_layout_flags",
    "flag_defaults",
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


def flag_defaults(cls: type) -> dict[str, Any]:
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
        return flag_defaults(cls)

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
