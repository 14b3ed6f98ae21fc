"""Work budgets: what a command may build before it builds it. Each check computes the size of what would
be built (compute actions in a timeline, bars on a Gantt page, GPUs in a topology graph) and refuses, in one
line with the size, the limit and the option that raises it, anything past the limit.

Defaults keep an accepted run well under 2 GiB of memory (benchmarks/budgets.py measures the peak at each
limit; on the development machine: 0.76 GiB for compare at 4M actions, 0.65 GiB for simulate at 4M, 0.38 GiB
for a 250,000-bar Gantt page, 0.19 GiB for a 32,768-GPU topology). A Gantt page takes about 430 bytes of
HTML per bar.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pipesim.errors import InputError

if TYPE_CHECKING:
    from pipesim.specs.layout import Layout

__all__ = [
    "MAX_ACTIONS",
    "MAX_BARS",
    "MAX_BUCKETS",
    "MAX_GPUS",
    "MAX_PLAN_VPP",
    "MAX_TOP_K",
    "check_actions",
    "check_bars",
    "check_buckets",
    "check_gpus",
    "layout_timeline",
    "timeline_actions",
]

MAX_ACTIONS = 4_000_000  # compute actions in one command's timelines
MAX_BARS = 250_000  # compute bars on one Gantt page (about 110 MB of HTML)
MAX_GPUS = 32_768  # GPUs in one topology graph (4,096 eight-GPU servers)
MAX_TOP_K = 1_024  # layouts plan simulates on the full timeline
MAX_PLAN_VPP = 64  # chunks per rank plan tries unless --vpp names them (Megatron-LM runs use a few)
# Gradient-reduction buckets of one step (stages x buckets per stage, each a span on the DP stream): 40M
# parameters a bucket (Megatron-LM's DDP bucket size), so the limit is 40 trillion parameters per tensor-parallel
# rank summed over the stages, past any model a GPU can hold; about a second of the engine's time at the limit.
MAX_BUCKETS = 1_000_000


def layout_timeline(layout: Layout) -> tuple[str, int, int, int, bool]:
    """(schedule, ranks, chunks per rank, microbatches, split backward) of a layout's step, as
    :func:`check_actions` counts it."""
    from schedules import get_family

    family = get_family(layout.schedule)
    return (
        layout.schedule,
        layout.pp,
        family.chunks(layout.vpp),
        layout.num_microbatches,
        family.split_backward,
    )


def timeline_actions(ranks: int, chunks_per_rank: int, microbatches: int, split_backward: bool) -> int:
    """Compute actions of one step: every chunk runs each microbatch's forward and backward (backward split
    into input and weight gradients for the split-backward schedules)."""
    return ranks * chunks_per_rank * microbatches * (3 if split_backward else 2)


# Memory per unit at the limits (module docstring: benchmarks/budgets.py): 0.76 GiB / 4M actions, 0.19 GiB /
# 32,768 topology GPUs, rounded up. Used to say when raising a limit could not run on this machine.
BYTES_PER_ACTION = 210.0
BYTES_PER_GRAPH_GPU = 6_500.0


def _machine_bytes() -> float | None:
    """Physical memory of this machine (bytes), or None where the platform does not say."""
    import os

    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def _check(size: int, limit: int, what: str, detail: str, option: str, unit_bytes: float = 0.0) -> None:
    if size > limit:
        need, ram = size * unit_bytes, _machine_bytes()
        if ram is not None and need > ram:  # raising the limit would not run here: say so, suggest nothing
            raise InputError(
                f"{detail} = {size:,} {what}, over the limit of {limit:,}; that needs about {need / 2**30:,.0f} "
                f"GiB of memory and this machine has {ram / 2**30:,.0f} GiB, so raising {option} cannot help: lower "
                "the sizes"
            )
        raise InputError(
            f"{detail} = {size:,} {what}, over the limit of {limit:,}; lower the sizes or raise the limit "
            f"with {option} {size}"
        )


def check_actions(
    timelines: Iterable[tuple[str, int, int, int, bool]],
    limit: int = MAX_ACTIONS,
    counted: Iterable[tuple[str, int]] = (),
) -> int:
    """Refuse timelines (name, ranks, chunks per rank, microbatches, split backward), and ``counted`` ones
    (label, actions: a schedule file's cells), whose compute actions add up past ``limit`` (--max-actions);
    returns the total."""
    total, parts = 0, []
    for label, n in counted:
        total += n
        parts.append((n, f"{label} ({n:,} cells)"))
    for name, ranks, chunks, microbatches, split in timelines:
        n = timeline_actions(ranks, chunks, microbatches, split)
        total += n
        text = f"{name} {ranks} ranks x {chunks} chunks x {microbatches:,} microbatches x {3 if split else 2}"
        parts.append((n, text))
    if len(parts) > 3:  # name the largest, count the rest
        detail = f"{len(parts)} timelines (largest: {max(parts)[1]})"
    else:
        detail = " + ".join(text for _, text in parts) or "0"
    _check(total, limit, "compute actions", detail, "--max-actions", BYTES_PER_ACTION)
    return total


def check_bars(bars: int, limit: int = MAX_BARS) -> None:
    """Refuse a Gantt page of more than ``limit`` compute bars (--max-bars; its transfers, drawn too, add up
    to about as many again)."""
    if bars > limit:
        raise InputError(
            f"the charts would draw {bars:,} compute bars, over the limit of {limit:,}; lower the sizes or raise "
            f"the limit with --max-bars {bars}"
        )


def check_gpus(nodes: int, gpus_per_node: int, limit: int = MAX_GPUS) -> None:
    """Refuse a topology graph of more than ``limit`` GPUs (--max-gpus)."""
    _check(
        nodes * gpus_per_node,
        limit,
        "GPUs",
        f"{nodes:,} nodes x {gpus_per_node} GPUs",
        "--max-gpus",
        BYTES_PER_GRAPH_GPU,
    )


def check_buckets(stages: int, buckets_per_stage: int, limit: int = MAX_BUCKETS) -> None:
    """Refuse a step whose gradient reduction would be ``stages`` x ``buckets_per_stage`` bucket spans past
    ``limit`` (the model's parameters per stage set the buckets; there is no flag to raise it)."""
    size = stages * buckets_per_stage
    if size > limit:
        raise InputError(
            f"the gradient reduction would be {stages:,} stages x {buckets_per_stage:,} buckets of 40M parameters "
            f"= {size:,} bucket spans, over the limit of {limit:,}; the model is too large per stage "
            "(fewer or smaller layers, or more --pp / --tp)"
        )
