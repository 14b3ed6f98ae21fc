"""The communication-cost interface, and a simple two-level (intra-node / inter-node) implementation.

Everything that needs a collective or point-to-point time asks a :class:`CommModel`. Ranks are global GPU
ranks (see :mod:`pipesim.specs.placement`); sizes follow nccl-tests' convention: the whole buffer (all-reduce: the
buffer reduced; all-gather: the gathered output; reduce-scatter: the input; all-to-all: the per-rank send
buffer), so algbw = size / time and busbw = algbw x the nccl-tests factor (NVIDIA/nccl-tests
doc/PERFORMANCE.md).

:class:`LevelCommModel` is the fallback when no topology graph is given: bandwidth and latency per level,
ring algorithms. The topology model (:mod:`pipesim.comm.topology`) implements the same protocol on real links.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pipesim.errors import InputError

__all__ = ["CommModel", "LevelCommModel", "COLLECTIVES", "bus_factor"]

COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "broadcast")


class CommModel(Protocol):
    """Times collectives and transfers between global GPU ranks."""

    def collective_s(self, op: str, size_bytes: float, ranks: Sequence[int]) -> float:
        """Seconds for collective ``op`` (one of :data:`COLLECTIVES`) of ``size_bytes`` over ``ranks``."""
        ...

    def p2p_s(self, size_bytes: float, src: int, dst: int) -> float:
        """Seconds to send ``size_bytes`` from rank ``src`` to rank ``dst``."""
        ...


def bus_factor(op: str, n: int) -> float:
    """nccl-tests busbw/algbw factor for ``op`` over ``n`` ranks (NVIDIA/nccl-tests doc/PERFORMANCE.md):
    all-reduce 2(n-1)/n; all-gather, reduce-scatter, all-to-all (n-1)/n; broadcast 1."""
    if op == "all-reduce":
        return 2 * (n - 1) / n
    if op in ("all-gather", "reduce-scatter", "all-to-all"):
        return (n - 1) / n
    if op in ("broadcast", "reduce", "send-recv"):
        return 1.0
    raise InputError(f"unknown collective {op!r}; valid: {', '.join(COLLECTIVES)}")


@dataclass(frozen=True)
class LevelCommModel:
    """Ring collectives on a two-level cluster: ``gpus_per_node`` GPUs per node joined by
    ``intra_Bps`` per GPU per direction, nodes joined by ``inter_Bps`` per GPU per direction (a rail of NICs).

    Time of a ring collective = latency + busbw-bytes / bottleneck bandwidth, where busbw-bytes =
    size x :func:`bus_factor` and the bottleneck is the inter-node bandwidth if the group spans nodes
    (alpha-beta model; Thakur, Rabenseifner & Gropp 2005, ring algorithms). The latency is the ring's hops
    as NCCL's tuning model counts them (NVIDIA/nccl src/graph/tuning.cc, ncclTopoTuneModel; the same form
    as :mod:`pipesim.comm.rings` on a topology graph): of the 2(n-1) steps of an all-reduce (n-1 otherwise)
    over a group on k nodes, 2(k-1) (k-1) cross the network at ``inter_latency_s`` and the rest stay on a
    node at ``intra_latency_s``: a pipelined ring forwards each chunk as it arrives, so a step costs its own
    hop's latency, not the slowest hop's.
    """

    gpus_per_node: int = 8
    intra_Bps: float = 240e9
    inter_Bps: float = 24e9
    intra_latency_s: float = 3e-6
    inter_latency_s: float = 8e-6

    def __post_init__(self) -> None:
        for name in ("gpus_per_node", "intra_Bps", "inter_Bps"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name}={getattr(self, name)} must be > 0")

    def collective_s(self, op: str, size_bytes: float, ranks: Sequence[int]) -> float:
        """Ring time: the latency of its 2(n-1) (all-reduce) or n-1 steps, each at its hop's latency (class
        docstring), plus bus bytes over the bottleneck link."""
        n = len(ranks)
        if n <= 1 or size_bytes <= 0:
            return 0.0
        factor = bus_factor(op, n)
        nodes = len({r // self.gpus_per_node for r in ranks})
        bw = self.inter_Bps if nodes > 1 else self.intra_Bps
        per_step = 2 if op == "all-reduce" else 1
        steps, inter = per_step * (n - 1), per_step * (nodes - 1)
        return (
            (steps - inter) * self.intra_latency_s + inter * self.inter_latency_s + size_bytes * factor / bw
        )

    def p2p_s(self, size_bytes: float, src: int, dst: int) -> float:
        """Latency plus size over the link level joining ``src`` and ``dst`` (0 on the same GPU)."""
        if src == dst or size_bytes <= 0:
            return 0.0
        if src // self.gpus_per_node == dst // self.gpus_per_node:
            return self.intra_latency_s + size_bytes / self.intra_Bps
        return self.inter_latency_s + size_bytes / self.inter_Bps
