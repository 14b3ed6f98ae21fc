"""Compare schedules on one synthetic scenario: per-stage op times, transfer time and activation bytes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipesim.sim.engine import OpCosts
from pipesim.sim.iterations import run_iterations
from pipesim.sim.metrics import PipelineMetrics
from schedules import Schedule, build_schedule, get_family, read_csv, validate
from schedules.greedy import GreedyTimes
from schedules.timed import TIMED_FAMILIES, build_timed

__all__ = [
    "DEFAULT_SCHEDULES",
    "DEFAULT_STASH_FRACTION",
    "CompareRequest",
    "default_schedule",
    "default_schedules",
    "compare_schedules",
    "synthetic_costs",
]

# What ``pipesim compare`` and ``pipesim gantt`` compare when no schedule is named.
DEFAULT_SCHEDULES: tuple[str, ...] = ("gpipe", "1f1b", "interleaved-1f1b")


def default_schedules(vpp: int) -> list[str]:
    """What ``compare`` runs when no schedule is named: :data:`DEFAULT_SCHEDULES`, less the interleaved one
    at ``vpp`` 1 (there it would be plain 1F1B, which the schedule itself refuses to be)."""
    from schedules import get_family

    return [n for n in DEFAULT_SCHEDULES if vpp > 1 or not get_family(n).uses_vpp]


def default_schedule(vpp: int) -> str:
    """What ``simulate`` runs when no schedule is named: interleaved-1f1b at ``vpp`` > 1, else 1f1b
    (Megatron-LM's schedule for ``--num-layers-per-virtual-pipeline-stage``, and its default)."""
    return "interleaved-1f1b" if vpp > 1 else "1f1b"


# W's share of the activations I needs (Qi et al. 2024, Table 1, with the 5as attention-score term dropped).
DEFAULT_STASH_FRACTION = 32 / 34


@dataclass(frozen=True)
class CompareRequest:
    """What ``pipesim compare`` simulates. Times are seconds per microbatch for a *whole* pipeline stage (one
    rank's share of the model); a chunk of a schedule with v chunks per rank takes 1/v of them, and holds 1/v
    of ``activation_bytes``. ``weight_s`` is the W part of the backward (used by split-backward schedules).
    ``memory_limit`` (microbatches of one stage's activations per rank) caps the ``zb-1p``/``zb-2p`` and
    ``zb-v-half``/``zb-v-min`` orders, which are built from these times; None keeps their defaults (pp and 2 * pp;
    (pp + 2) // 2 and (pp + 4) // 3). ``dp_s`` is the
    data-parallel gradient reduction of a whole stage's parameters, reduced in ``dp_buckets`` buckets, each as
    soon as its gradients exist (``dp_overlap``) or after the rank's compute. ``stash_fraction`` is the share of
    a microbatch's activations that W still needs after I (Qi et al. 2024, Table 1: 32sbh of the sb(34h + 5as)
    bytes per layer; the default 32/34 drops the attention-score term, as flash attention does): I frees the
    rest, W frees it, and the greedy orders are capped with the same accounting. ``optimizer`` is ``sync`` or
    ``post-validation`` (:mod:`pipesim.sim.iterations`). ``fb_s`` is the time of one overlapped F&B pair of a
    whole stage's forward and backward (DualPipe's notation; a chunk's pair takes 1/v); None runs a pair's two
    passes one after the other."""

    schedules: tuple[str, ...] = DEFAULT_SCHEDULES
    schedule_files: tuple[str, ...] = ()
    pp: int = 4
    microbatches: int = 8
    vpp: int = 2
    forward_s: float = 1e-3
    backward_s: float = 2e-3
    weight_s: float = 0.0
    p2p_s: float = 5e-5
    activation_bytes: float = float(2**30)
    memory_limit: float | None = None
    dp_s: float = 0.0
    dp_buckets: int = 4
    dp_overlap: bool = True
    stash_fraction: float = DEFAULT_STASH_FRACTION
    optimizer: str = "sync"
    fb_s: float | None = None


def synthetic_costs(schedule: Schedule, request: CompareRequest) -> OpCosts:
    """Uniform per-chunk costs: each of the v chunks a rank holds of one model copy gets 1/v of the whole-stage
    times and bytes (v = stages per chain / ranks: bidirectional DualPipe's two chunks per rank are whole
    stages of two copies)."""
    v = schedule.chain_length / schedule.num_ranks
    base = OpCosts.uniform(
        schedule.num_stages,
        forward_s=request.forward_s / v,
        backward_s=request.backward_s / v,
        weight_s=request.weight_s / v,
        p2p_s=request.p2p_s,
        activation_bytes=request.activation_bytes / v,
        weight_stash_bytes=request.stash_fraction * request.activation_bytes / v,
    )
    if request.fb_s is not None:
        base = replace(base, fb_pair_s=request.fb_s / v)
    if request.dp_s <= 0:
        return base
    return replace(
        base,
        dp_reduce_s=(request.dp_s / v,) * schedule.num_stages,
        dp_buckets=request.dp_buckets,
        dp_overlap=request.dp_overlap,
    )


def build_requested(request: CompareRequest) -> list[Schedule]:
    """The schedules a request names (registry names first, then files), validated."""
    out: list[Schedule] = []
    for name in request.schedules:
        family = get_family(name)
        if name in TIMED_FAMILIES:  # built from the scenario's real times, not the registry's defaults
            v = family.chunks(request.vpp)  # per chunk: 1/2 of a stage's times for the V families
            times = GreedyTimes(
                request.forward_s / v,
                (request.backward_s - request.weight_s) / v,
                request.weight_s / v,
                request.p2p_s,
            )
            out.append(
                build_timed(
                    name,
                    request.pp,
                    request.microbatches,
                    times,
                    request.memory_limit,
                    request.stash_fraction,
                    request.optimizer,
                )
            )
            continue
        out.append(build_schedule(name, request.pp, request.microbatches, family.chunks(request.vpp)))
    for path in request.schedule_files:
        schedule = read_csv(path)
        validate(schedule)
        out.append(schedule)
    return out


def compare_schedules(request: CompareRequest) -> list[PipelineMetrics]:
    """Simulate every requested schedule and return their metrics, in request order."""
    results = []
    for schedule in build_requested(request):
        costs = synthetic_costs(schedule, request)
        results.append(run_iterations(schedule, costs, request.optimizer).metrics)
    return results
