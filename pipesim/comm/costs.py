"""Alpha-beta costs of collectives on a topology graph: the algorithm table, the cost and sweep-row
records, bottleneck and path-latency helpers, and nccl-tests size parsing."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from pipesim.errors import InputError
from topologies.routing import EdgeKey, Router

__all__ = [
    "ALGORITHMS",
    "CollectiveCost",
    "SweepRow",
    "bottleneck_bw",
    "path_latency",
    "size_sweep",
]

ALGORITHMS: dict[str, tuple[str, ...]] = {
    "all-reduce": ("ring", "tree", "hierarchical", "nvls"),
    "all-gather": ("ring", "hierarchical"),
    "reduce-scatter": ("ring", "hierarchical"),
    "all-to-all": ("direct",),
    "broadcast": ("ring",),
    "send-recv": ("direct",),
}
MAX_RINGS = 16
MAX_CYCLES = 4096


@dataclass(frozen=True)
class CollectiveCost:
    """Alpha-beta cost of one algorithm on one group: ``time_s(size) = latency_s + size * s_per_byte``;
    ``bw_Bps`` is the bottleneck bandwidth the algorithm sees (for reporting)."""

    algo: str
    latency_s: float
    s_per_byte: float
    bw_Bps: float

    def time_s(self, size_bytes: float) -> float:
        """Seconds for a buffer of ``size_bytes``."""
        return self.latency_s + size_bytes * self.s_per_byte


@dataclass(frozen=True)
class SweepRow:
    """One message size of an nccl-tests-style sweep (GB/s = 1e9 B/s)."""

    size_bytes: int
    time_s: float
    algbw_GBps: float
    busbw_GBps: float
    algo: str


def bottleneck_bw(loads: dict[EdgeKey, float], router: Router) -> float:
    """Bottleneck bandwidth: min over links of capacity / load (load in flows)."""
    best = math.inf
    for key, load in loads.items():
        if load > 0:
            best = min(best, router.capacity_Bps(key) / load)
    return best


def path_latency(router: Router, path: Iterable[EdgeKey]) -> float:
    return sum(router.latency_s(k) for k in path)


def size_sweep(begin: int, end: int, factor: int) -> list[int]:
    """Sizes begin, begin*factor, ... up to end (nccl-tests -b/-e/-f)."""
    if begin > end:
        raise InputError(f"begin size {begin} is larger than end size {end}")
    if factor < 2:
        raise InputError(f"step factor {factor} must be >= 2")
    out, s = [], begin
    while s <= end:
        out.append(s)
        s *= factor
    return out
