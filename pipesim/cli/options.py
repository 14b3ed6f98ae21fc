"""Every command-line flag of pipesim, declared once, and the option groups that turn parsed flags into specs.

A flag is one entry of :data:`FLAGS` (its click declaration: names, type, default, help). An *option group*
is a decorator made by :func:`option_group`: it adds a list of flags to a command and, when the command runs,
hands the command one typed object built from their values instead of the raw values, e.g.
:func:`layout_options` gives a :class:`LayoutFlags` (whose ``layout()`` is a checked
:class:`pipesim.specs.layout.Layout`), :func:`cluster_options` a :class:`ClusterFlags` (whose ``comm()`` is
the one factory of the communication model for every command), :func:`energy_options` an
:class:`EnergyFlags`. The checks live where the spec is built (``Layout`` checks its own fields), never again
in a command.

Megatron-LM's long names are aliases in the same declaration (``--tp`` / ``--tensor-model-parallel-size``), so
a line of Megatron-LM arguments (as ``plan`` prints them) can be pasted.

Adding a flag is a one-place change per group: add its declaration to :data:`FLAGS` (the key is the keyword
the builder receives), add the key to the group's ``names`` tuple, and add a field to the group's dataclass
(or a parameter to its builder). Every command using the group gets the flag; ``tests/test_cli_flags.py``
freezes each command's flag set, so update its table in the same commit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from pipesim.cli.cluster_flags import ClusterFlags, build_cluster_flags
from pipesim.cli.flags import FLAGS
from pipesim.cli.group import ARGV_KEY
from pipesim.cli.specs import (
    EnergyFlags,
    Hardware,
    LayoutFlags,
    build_energy_flags,
    build_hardware,
    build_layout_flags,
)
from pipesim.cli.synthetic import SyntheticFlags, build_synthetic_flags

__all__ = [
    "FLAGS",
    "ClusterFlags",
    "EnergyFlags",
    "Hardware",
    "LayoutFlags",
    "SyntheticFlags",
    "cluster_options",
    "energy_options",
    "flag",
    "hardware_options",
    "layout_options",
    "option_group",
    "synthetic_options",
]

F = TypeVar("F", bound=Callable[..., Any])

LAYOUT_NAMES = (
    "pp",
    "vpp",
    "layers_per_virtual_stage",
    "tp",
    "dp",
    "micro_batch_size",
    "global_batch_size",
    "seq_length",
    "sequence_parallel",
    "recompute",
    "distributed_optimizer",
    "zero_stage",
    "fsdp",
    "fsdp_shard_size",
    "reshard_after_forward",
    "precision",
    "attention",
    "dp_overlap",
    "tp_comm_overlap",
    "tp_comm_overlap_forward",
    "overlap_param_gather",
    "overlap_p2p_comm",
    "cuda_graphs",
    "fp8_recipe",
    "uneven_layers",
    "cp",
    "cp_comm",
    "ep",
    "etp",
    "moe_imbalance",
)
CLUSTER_NAMES = (
    "gpus",
    "gpus_per_node",
    "intra_node_gbps",
    "inter_node_gbps",
    "topology",
    "nodes",
    "rank_order",
    "max_gpus",
)  # and "fabric", "oversubscription" for the commands that draw or sweep one topology
ENERGY_NAMES = ("tokens", "price_per_gpu_hour", "pue", "node_overhead_w")
SYNTHETIC_NAMES = (
    "microbatches",
    "schedules",
    "forward_time",
    "backward_time",
    "weight_time",
    "memory_limit",
    "p2p_time",
    "activation_bytes",
    "dp_time",
    "dp_buckets",
    "fb_time",
    "optimizer",
    "weight_stash",
    "schedule_files",
)


class PipesimOption(click.Option):
    """A click option whose error messages name the spelling the user typed (``--pp`` or its Megatron-LM
    alias ``--pipeline-model-parallel-size``), not every alias."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        argv = ctx.meta.get(ARGV_KEY, ()) if ctx is not None else ()
        for opt in self.opts + self.secondary_opts:
            if any(a == opt or a.startswith(opt + "=") for a in argv):
                return repr(opt)
        return repr(self.opts[0])


def flag(name: str, **override: Any) -> click.Option:
    """A fresh click option for flag ``name`` of :data:`FLAGS` (``override`` replaces declaration attributes,
    e.g. ``required=True``)."""
    decls, attrs = FLAGS[name]
    merged = {**attrs, **override}
    if merged.get("required"):  # a default (even None) would satisfy click's required check
        merged.pop("default", None)
        merged.pop("show_default", None)
    return PipesimOption(list(decls), **merged)


def _attach(func: Any, params: Sequence[click.Parameter]) -> None:
    # click.command reads f.__click_params__ in reverse (decorators apply bottom-up): append reversed so the
    # help lists the flags in the order given.
    if not hasattr(func, "__click_params__"):
        func.__click_params__ = []
    func.__click_params__.extend(reversed(params))


@dataclass(frozen=True)
class OptionGroup:
    """Flags ``names`` handed to a command as one object, ``build(**values)``, under keyword ``dest``."""

    dest: str
    names: tuple[str, ...]
    build: Callable[..., Any]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            values = {n: kwargs.pop(n) for n in self.names}
            kwargs[self.dest] = self.build(**values)
            return func(**kwargs)

        _attach(wrapper, [flag(n, **self.overrides.get(n, {})) for n in self.names])
        return wrapper  # type: ignore[return-value]


def option_group(
    dest: str,
    names: Sequence[str],
    build: Callable[..., Any],
    overrides: dict[str, dict[str, Any]] | None = None,
) -> OptionGroup:
    """A decorator adding flags ``names`` to a command, which receives ``build(**their values)`` as ``dest``."""
    return OptionGroup(dest, tuple(names), build, overrides or {})


def plain_options(*names: str, **overrides: dict[str, Any]) -> Callable[[F], F]:
    """A decorator adding flags ``names`` that the command receives as they are (its own keywords)."""

    def deco(func: F) -> F:
        _attach(func, [flag(n, **overrides.get(n, {})) for n in names])
        return func

    return deco


def hardware_options(model_required: bool = False) -> OptionGroup:
    """``--model`` and ``--gpu`` -> :class:`Hardware` (resolved presets or files)."""
    return option_group(
        "hw", ("model_arg", "gpu_arg"), build_hardware, {"model_arg": {"required": model_required}}
    )


def layout_options(names: Sequence[str] = LAYOUT_NAMES, **overrides: dict[str, Any]) -> OptionGroup:
    """The layout flags (Megatron-LM names) -> :class:`LayoutFlags`, with the same defaults in every command
    (``overrides`` change help texts or requiredness, never a default: ``compare`` and ``gantt`` without
    ``--model`` run their synthetic demo on 4 ranks, 2 chunks, by :meth:`LayoutFlags.synthetic_pipeline`)."""

    def build(**values: Any) -> LayoutFlags:
        return build_layout_flags(**{**LayoutFlags.defaults(), **values})

    return option_group("lay", names, build, overrides)


def cluster_options(names: Sequence[str] = CLUSTER_NAMES, **overrides: dict[str, Any]) -> OptionGroup:
    """The cluster flags -> :class:`ClusterFlags` (``comm()`` builds the communication model)."""

    def build(**values: Any) -> ClusterFlags:
        return build_cluster_flags(**{**ClusterFlags.defaults(), **values})

    return option_group("cluster", names, build, overrides)


def energy_options() -> OptionGroup:
    """``--tokens``, ``--price-per-gpu-hour``, ``--pue``, ``--node-overhead-W`` -> :class:`EnergyFlags`
    (model in :mod:`pipesim.sim.energy`)."""
    return option_group("energy", ENERGY_NAMES, build_energy_flags)


def synthetic_options() -> OptionGroup:
    """``compare``'s synthetic scenario (uniform per-stage times) -> :class:`SyntheticFlags`."""
    return option_group("synthetic", SYNTHETIC_NAMES, build_synthetic_flags)
