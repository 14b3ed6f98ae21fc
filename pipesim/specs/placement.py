"""Mapping the (tp, dp, pp) rank grid onto global GPU ranks, and the process groups that follow.

Megatron-LM's default order puts tensor parallel fastest, then data parallel, then pipeline parallel:
global rank = tp_i + tp * (dp_i + dp * pp_i). Global rank g sits on GPU g of the cluster (node g // gpus_per_node),
so with tp <= GPUs per node every TP group stays inside a node.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import networkx as nx

from pipesim.errors import InputError
from topologies.errors import TopologyError
from topologies.graph import gpu_nodes

__all__ = ["RankGrid", "DEFAULT_ORDER", "GroupCrossing", "parse_order", "rank_to_gpu"]

DEFAULT_ORDER: tuple[str, str, str] = ("tp", "dp", "pp")
DIMS = ("tp", "dp", "pp")


def parse_order(text: str) -> tuple[str, str, str]:
    """Parse a rank order such as ``tp-dp-pp`` (fastest-varying first; Megatron-LM's default)."""
    parts = tuple(p.strip().lower() for p in str(text).replace(",", "-").split("-"))
    if sorted(parts) != sorted(DIMS):
        raise InputError(
            f"rank order {text!r} must be a permutation of tp, dp, pp such as tp-dp-pp or tp-pp-dp"
        )
    return (parts[0], parts[1], parts[2])


def rank_to_gpu(graph: nx.Graph, world_size: int) -> list[str]:
    """GPU node names of global ranks 0..world_size-1 on a topology graph: rank g runs on the g-th GPU in
    server-major order (``node{g // gpus_per_node}/gpu{g % gpus_per_node}``). Raises
    :class:`TopologyError` if the cluster is too small."""
    gpus = gpu_nodes(graph)
    if world_size > len(gpus):
        per = int(graph.graph.get("gpus_per_node", 1))
        raise TopologyError(
            f"layout needs {world_size} GPUs but topology {graph.graph.get('name')} with "
            f"{graph.graph.get('nodes')} nodes has {len(gpus)}; use at least {math.ceil(world_size / per)} nodes"
        )
    return gpus[:world_size]


@dataclass(frozen=True)
class GroupCrossing:
    """How the groups of one parallel dimension sit on servers: ``crossing`` of ``groups`` span more than
    one server; ``max_nodes`` is the most servers one group touches."""

    dim: str
    size: int
    groups: int
    crossing: int
    max_nodes: int


@dataclass(frozen=True)
class RankGrid:
    """The rank grid of a layout; ``order`` lists the dimensions fastest-varying first."""

    tp: int
    dp: int
    pp: int
    order: tuple[str, str, str] = DEFAULT_ORDER

    def __post_init__(self) -> None:
        for name in ("tp", "dp", "pp"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be >= 1")
        if sorted(self.order) != ["dp", "pp", "tp"]:
            raise InputError(
                f"rank order {'-'.join(self.order)} must be a permutation of tp, dp, pp (e.g. tp-dp-pp)"
            )

    @property
    def world_size(self) -> int:
        """Number of GPUs the layout needs: tp * dp * pp."""
        return self.tp * self.dp * self.pp

    def strides(self) -> tuple[int, int, int]:
        """Rank distance between neighbours along tp, dp and pp (``order`` fastest-varying first)."""
        return _strides(self.order, self.tp, self.dp, self.pp)

    def rank(self, tp_i: int, dp_i: int, pp_i: int) -> int:
        """Global rank of grid coordinate (tp_i, dp_i, pp_i)."""
        st, sd, sp = self.strides()
        return tp_i * st + dp_i * sd + pp_i * sp

    def tp_group(self, dp_i: int = 0, pp_i: int = 0) -> list[int]:
        """Global ranks of the tensor-parallel group at (dp_i, pp_i)."""
        st, sd, sp = self.strides()
        base = dp_i * sd + pp_i * sp
        return list(range(base, base + self.tp * st, st))

    def dp_group(self, tp_i: int = 0, pp_i: int = 0) -> list[int]:
        """Global ranks of the data-parallel group at (tp_i, pp_i)."""
        st, sd, sp = self.strides()
        base = tp_i * st + pp_i * sp
        return list(range(base, base + self.dp * sd, sd))

    def pp_group(self, tp_i: int = 0, dp_i: int = 0) -> list[int]:
        """Global ranks of the pipeline (stage 0 .. pp-1) at (tp_i, dp_i)."""
        st, sd, sp = self.strides()
        base = tp_i * st + dp_i * sd
        return list(range(base, base + self.pp * sp, sp))

    def groups(self, dim: str) -> list[list[int]]:
        """Every process group of dimension ``dim`` (tp, dp or pp), in a deterministic order."""
        if dim == "tp":
            return [self.tp_group(d, p) for p in range(self.pp) for d in range(self.dp)]
        if dim == "dp":
            return [self.dp_group(t, p) for p in range(self.pp) for t in range(self.tp)]
        if dim == "pp":
            return [self.pp_group(t, d) for d in range(self.dp) for t in range(self.tp)]
        raise InputError(f"unknown dimension {dim!r}; valid: tp, dp, pp")

    def crossings(self, gpus_per_node: int) -> dict[str, GroupCrossing]:
        """Per dimension, how many groups cross server boundaries when rank g sits on node g // gpus_per_node."""
        if gpus_per_node < 1:
            raise InputError(f"gpus_per_node={gpus_per_node} must be >= 1")
        out = {}
        for dim in DIMS:
            gs = self.groups(dim)
            spans = [len({r // gpus_per_node for r in g}) for g in gs]
            out[dim] = GroupCrossing(dim, len(gs[0]), len(gs), sum(1 for s in spans if s > 1), max(spans))
        return out


@functools.lru_cache(maxsize=1024)
def _strides(order: tuple[str, str, str], tp: int, dp: int, pp: int) -> tuple[int, int, int]:
    """(tp, dp, pp) strides of the grid: each dimension's stride is the product of the sizes before it."""
    sizes = {"tp": tp, "dp": dp, "pp": pp}
    stride, out = 1, {}
    for dim in order:
        out[dim] = stride
        stride *= sizes[dim]
    return out["tp"], out["dp"], out["pp"]
