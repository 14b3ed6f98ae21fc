"""Why a plan cannot run, in one line each: the up-front refusals (a model whose training state cannot fit on
the cluster however it is laid out, hybrid-FSDP shard sizes no layout of the cluster can take) and, after the
search, no layout passing the rules (the conflict named) or none fitting in memory (the closest layout named).

Every layout keeps each parameter's 16-bit weight, its gradient and its Adam state somewhere. The least any
layout can hold is ZeRO-3's 2 + 2 + 12 = 16 bytes per parameter (Rajbhandari et al., ZeRO, SC20, Section 3.1,
K = 12, with fp16 gradient partitions) sharded over every GPU, plus the fixed reserve of
:mod:`pipesim.cost.memory`. When even that exceeds HBM the search could only confirm it, layout by layout
(minutes for an absurd model), so :func:`state_floor_message` says so before enumerating anything.
"""

from __future__ import annotations

import math

from pipesim.cost.memory import OPTIMIZER_BYTES, RESERVE_BYTES, WEIGHT_BYTES
from pipesim.plan.estimate import MemoryBound, MemoryEstimate
from pipesim.plan.request import PlanRequest, estimator_for
from pipesim.plan.space import GIB, REASONS, Candidate, Rejections
from pipesim.specs.layout import divisors

__all__ = [
    "MIN_STATE_BYTES_PER_PARAM",
    "closest_oom",
    "exact_memory",
    "no_candidate_message",
    "no_fit_message",
    "shard_size_message",
    "state_floor_bytes",
    "state_floor_message",
]

# ZeRO-3's floor: 16-bit weights + 16-bit gradient partitions + fp32 master weights and Adam m, v (SC20 s3.1).
MIN_STATE_BYTES_PER_PARAM = WEIGHT_BYTES + 2.0 + OPTIMIZER_BYTES


def state_floor_bytes(params: float, num_gpus: int) -> float:
    """The least peak memory per GPU of any layout (bytes): 16 bytes per parameter over ``num_gpus`` GPUs plus
    the reserve. A lower bound: activations, working sets and unsharded copies only add to it."""
    return params * MIN_STATE_BYTES_PER_PARAM / num_gpus + RESERVE_BYTES


def state_floor_message(request: PlanRequest) -> str | None:
    """The one-line refusal when the model's state alone cannot fit on ``request``'s cluster, else None. It
    names the floor per GPU, the HBM and the fewest GPUs whose HBM could hold the state."""
    model, gpu = request.model, request.cluster.gpu
    n = request.cluster.num_gpus
    params = float(model.num_params())
    floor = state_floor_bytes(params, n)
    if floor <= gpu.hbm_bytes:
        return None
    per_gpu = gpu.hbm_bytes - RESERVE_BYTES
    fewest = math.ceil(params * MIN_STATE_BYTES_PER_PARAM / per_gpu) if per_gpu > 0 else 0
    enough = f"; at least {fewest:,} GPUs could hold it" if fewest else ""
    return (
        f"{model.name} fits in no layout on {n} x {gpu.name}: its {params:.3g} parameters need at least "
        f"{floor / GIB:,.1f} GiB per GPU for weights, gradients and optimizer state alone (16 bytes each, "
        f"ZeRO-3 over all {n} GPUs, plus {RESERVE_BYTES / GIB:.0f} GiB reserve) against {gpu.hbm_bytes / GIB:.1f} "
        f"GiB{enough}"
    )


def shard_size_message(request: PlanRequest) -> str | None:
    """The one-line refusal of ``--fsdp-shard-size`` values no layout can take, else None: a hybrid shard
    splits a layout's dp x cp group, a divisor of the GPU count, into shards of at least 2 GPUs and fewer
    than the group (PyTorch HSDP), so a size must divide the GPUs and lie between 2 and the GPU count."""
    sizes = request.space.fsdp_shard_sizes
    if not sizes or "hybrid" not in request.space.fsdp:
        return None
    n = request.cluster.num_gpus
    bad = [s for s in sizes if s < 2 or s >= n or n % s]
    if not bad:
        return None
    valid = ", ".join(str(d) for d in divisors(n) if 1 < d < n) or "none (too few GPUs to shard in part)"
    return (
        f"--fsdp-shard-size {bad[0]} cannot shard any layout of {n} GPUs (a shard divides dp x cp, a divisor of "
        f"{n}, into groups of 2 or more, fewer than all); valid: {valid}"
    )


def no_candidate_message(request: PlanRequest, rej: Rejections, total: int) -> str:
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
        if space.cp is not None:
            if not [c for c in space.cp if n % c == 0]:
                valid = ", ".join(str(c) for c in divisors(n))
                return f"--cp {','.join(map(str, space.cp))} does not divide the {n} GPUs; valid cp: {valid}"
            parts.append(f"cp in {','.join(map(str, space.cp))}")
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
    present = sorted((k for k in REASONS if rej.counts[k]), key=lambda k: -rej.counts[k])
    worst = present[0]
    example = rej.examples.get(worst, "")
    hints = {
        "tp_nvlink": "pass --allow-cross-node-tp or choose tp <= GPUs per node",
        "pp_layers": "pass --uneven-layers or choose pp (x vpp) dividing the layers",
        "vpp_layers": "pass --uneven-layers or choose pp (x vpp) dividing the layers",
        "vpp_pp1": "allow pp > 1 (--pp) or single-chunk schedules",
        "batch": "choose a global batch divisible by micro-batch x dp",
    }
    # Every rule that stood in the way and has a remedy, most frequent first (once each).
    hint = "".join(f"; {h}" for h in dict.fromkeys(hints[k] for k in present if k in hints))
    return (
        f"no layout of {model.name} on {n} GPUs passes the rules ({total} layouts tried; most rejected for "
        f"'{REASONS[worst]}', e.g. {example}){hint}"
    )


def exact_memory(request: PlanRequest, c: Candidate, e: MemoryEstimate | MemoryBound) -> MemoryEstimate:
    """``e`` itself, or for a candidate rejected on a bound its peak memory (the estimate ``plan`` skipped)."""
    if isinstance(e, MemoryEstimate):
        return e
    return estimator_for(request).memory_as(c.layout(request), c.schedule, c.vpp)


def closest_oom(
    request: PlanRequest, oom: list[tuple[Candidate, MemoryEstimate | MemoryBound]]
) -> tuple[Candidate, MemoryEstimate]:
    """The out-of-memory candidate of least peak (the first in enumeration order on ties). Candidates rejected
    on a bound are evaluated only when the bound (at most their peak) could still beat the best so far."""
    known = [(e.peak_memory_bytes, c.index, c, e) for c, e in oom if isinstance(e, MemoryEstimate)]
    best = min(known, key=lambda row: row[:2]) if known else None
    pending = sorted(
        (e.lower_bytes, c.index, c, e)
        for c, e in oom
        if isinstance(e, MemoryBound) and (best is None or e.lower_bytes <= best[0])
    )
    for lower, index, c, e in pending:
        if best is not None and lower > best[0]:
            break
        m = exact_memory(request, c, e)
        if best is None or (m.peak_memory_bytes, index) < best[:2]:
            best = (m.peak_memory_bytes, index, c, m)
    assert best is not None
    return best[2], best[3]


def no_fit_message(
    request: PlanRequest, closest: tuple[Candidate, MemoryEstimate] | None, n: int, rej: Rejections
) -> str:
    """Nothing fits: the closest layout, and what would help (more GPUs, full recompute, a smaller
    micro-batch, the distributed optimizer; ``--uneven-layers`` when deeper pipelines were left out only
    because their pp does not divide the layers)."""
    gpu = request.cluster.gpu
    cap = gpu.hbm_bytes / GIB
    if closest is None:
        return f"no layout of {request.model.name} fits in {gpu.name} memory ({cap:.1f} GiB)"
    c, e = closest
    over = (e.peak_memory_bytes - gpu.hbm_bytes) / GIB
    hints = ["more GPUs"]
    if rej.counts["pp_layers"]:
        layers = request.model.num_layers
        hints.insert(
            0, f"--uneven-layers (pipelines whose pp does not divide the {layers} layers were left out)"
        )
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
