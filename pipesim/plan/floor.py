"""The plan's up-front refusals: a model whose training state cannot fit on the cluster however it is laid
out, and hybrid-FSDP shard sizes no layout of the cluster can take.

Every layout keeps each parameter's 16-bit weight, its gradient and its Adam state somewhere. The least any
layout can hold is ZeRO-3's 2 + 2 + 12 = 16 bytes per parameter (Rajbhandari et al., ZeRO, SC20, Section 3.1,
K = 12, with fp16 gradient partitions) sharded over every GPU, plus the fixed reserve of
:mod:`pipesim.cost.memory`. When even that exceeds HBM the search could only confirm it, layout by layout
(minutes for an absurd model), so :func:`state_floor_message` says so before enumerating anything.
"""

from __future__ import annotations

import math

from pipesim.cost.memory import OPTIMIZER_BYTES, RESERVE_BYTES, WEIGHT_BYTES
from pipesim.plan.request import PlanRequest
from pipesim.specs.layout import divisors

__all__ = ["MIN_STATE_BYTES_PER_PARAM", "shard_size_message", "state_floor_bytes", "state_floor_message"]

GIB = 2**30
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
