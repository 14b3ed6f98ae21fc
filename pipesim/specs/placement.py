"""Mapping the (tp, dp, pp) rank grid onto global GPU ranks, and the process groups that follow.

Megatron-LM's default order puts tensor parallel fastest, then data parallel, then pipeline parallel:
global rank = tp_i + tp * (dp_i + dp * pp_i). Global rank g sits on GPU g of the cluster (node g // gpus_per_node),
so with tp <= GPUs per node every TP group stays inside a node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from pipesim.errors import InputError
from topologies.errors import TopologyError

if TYPE_CHECKING:  # networkx takes 0.3 s to import: only a topology graph needs it (rank_to_gpu)
    import networkx as nx

__all__ = ["RankGrid", "RankGroups", "DEFAULT_ORDER", "GroupCrossing", "parse_order", "rank_to_gpu"]

DEFAULT_ORDER: tuple[str, ...] = ("tp", "dp", "pp")
DIMS = ("tp", "dp", "pp")


def parse_order(text: str) -> tuple[str, ...]:
    """Parse a rank order such as ``tp-dp-pp`` or ``tp-cp-dp-pp`` (fastest-varying first; Megatron-LM's
    default is tp-cp-ep-dp-pp, where ep is folded out of cp x dp for the expert layers and so is not a
    dimension of its own here). ``cp`` may be left out: it then follows tp."""
    parts = tuple(p.strip().lower() for p in str(text).replace(",", "-").split("-"))
    if sorted(parts) not in (sorted(DIMS), sorted(DIMS + ("cp",))):
        raise InputError(
            f"rank order {text!r} must be a permutation of tp, dp, pp (and optionally cp) such as tp-dp-pp or "
            "tp-cp-dp-pp"
        )
    return parts


def rank_to_gpu(graph: nx.Graph, world_size: int) -> list[str]:
    """GPU node names of global ranks 0..world_size-1 on a topology graph: rank g runs on the g-th GPU in
    server-major order (``node{g // gpus_per_node}/gpu{g % gpus_per_node}``). Raises
    :class:`TopologyError` if the cluster is too small."""
    from topologies.graph import gpu_nodes

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
    """The rank grid of a layout; ``order`` lists the dimensions fastest-varying first (cp, when not named,
    right after tp: Megatron-Core's tp-cp-dp-pp).

    Expert layers fold the same GPUs differently (Megatron-Core, ``parallel_state``): inside one pipeline
    stage the tp x cp x dp ranks are regrouped as etp x ep x edp, expert-tensor-parallel fastest, then expert
    parallel, then expert data parallel (edp = tp cp dp / (etp ep)). This needs the pipeline dimension
    outermost, as in Megatron-Core's orders."""

    tp: int
    dp: int
    pp: int
    order: tuple[str, ...] = DEFAULT_ORDER
    cp: int = 1
    ep: int = 1
    etp: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "dp", "pp", "cp", "ep", "etp"):
            if getattr(self, name) < 1:
                raise InputError(f"{name}={getattr(self, name)} must be >= 1")
        order = tuple(self.order)
        if sorted(order) not in (sorted(DIMS), sorted(DIMS + ("cp",))):
            raise InputError(
                f"rank order {'-'.join(order)} must be a permutation of tp, dp, pp (e.g. tp-dp-pp)"
            )
        order = self.full_order
        if self.expert_folded and order[-1] != "pp":
            raise InputError(
                f"expert parallelism (ep={self.ep}, etp={self.etp}) needs pp outermost in the rank order, "
                f"got {'-'.join(order)}"
            )
        if (self.tp * self.cp * self.dp) % (self.ep * self.etp):
            raise InputError(
                f"etp x ep = {self.etp} x {self.ep} does not divide tp x cp x dp = {self.tp * self.cp * self.dp}"
            )
        # Hashed once, from integers only (the same in every process, so a pickled grid keeps a valid hash):
        # grids key the cost model's caches, looked up many times per layout.
        object.__setattr__(
            self, "_hash", hash((self.tp, self.dp, self.pp, len(order), self.cp, self.ep, self.etp))
        )

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined]

    @property
    def full_order(self) -> tuple[str, ...]:
        """The order with cp placed (after tp when ``order`` leaves it out)."""
        order = tuple(self.order)
        if "cp" in order:
            return order
        i = order.index("tp") + 1
        return order[:i] + ("cp",) + order[i:]

    @property
    def expert_folded(self) -> bool:
        """True when the expert layers use another grouping than the dense ones (ep > 1 or etp != tp)."""
        return self.ep > 1 or self.etp not in (1, self.tp)

    @property
    def edp(self) -> int:
        """Expert data-parallel size: tp cp dp / (etp ep)."""
        return self.tp * self.cp * self.dp // (self.ep * self.etp)

    @property
    def stage_size(self) -> int:
        """GPUs per pipeline stage: tp x cp x dp."""
        return self.tp * self.cp * self.dp

    @property
    def world_size(self) -> int:
        """Number of GPUs the layout needs: tp * cp * dp * pp."""
        return self.stage_size * self.pp

    @cached_property
    def _strides(self) -> tuple[int, int, int, int]:
        """Rank strides of (tp, dp, pp, cp) in :attr:`full_order`."""
        sizes = {"tp": self.tp, "dp": self.dp, "pp": self.pp, "cp": self.cp}
        out, stride = {}, 1
        for dim in self.full_order:
            out[dim] = stride
            stride *= sizes[dim]
        return out["tp"], out["dp"], out["pp"], out["cp"]

    def rank(self, tp_i: int, dp_i: int, pp_i: int, cp_i: int = 0) -> int:
        """Global rank of grid coordinate (tp_i, dp_i, pp_i, cp_i)."""
        st, sd, sp, sc = self._strides
        return tp_i * st + dp_i * sd + pp_i * sp + cp_i * sc

    def tp_group(self, dp_i: int = 0, pp_i: int = 0, cp_i: int = 0) -> list[int]:
        """Global ranks of the tensor-parallel group at (dp_i, pp_i, cp_i)."""
        return [self.rank(t, dp_i, pp_i, cp_i) for t in range(self.tp)]

    def dp_group(self, tp_i: int = 0, pp_i: int = 0, cp_i: int = 0) -> list[int]:
        """Global ranks of the data-parallel group at (tp_i, pp_i, cp_i)."""
        return [self.rank(tp_i, d, pp_i, cp_i) for d in range(self.dp)]

    def cp_group(self, tp_i: int = 0, dp_i: int = 0, pp_i: int = 0) -> list[int]:
        """Global ranks of the context-parallel group (a ring in rank order) at (tp_i, dp_i, pp_i)."""
        return [self.rank(tp_i, dp_i, pp_i, c) for c in range(self.cp)]

    def dp_cp_group(self, tp_i: int = 0, pp_i: int = 0) -> list[int]:
        """Ranks that hold the same dense weights: data parallel x context parallel (Megatron-Core reduces
        dense gradients over this group)."""
        return [self.rank(tp_i, d, pp_i, c) for d in range(self.dp) for c in range(self.cp)]

    def pp_group(self, tp_i: int = 0, dp_i: int = 0) -> list[int]:
        """Global ranks of the pipeline (stage 0 .. pp-1) at (tp_i, dp_i)."""
        return [self.rank(tp_i, dp_i, p) for p in range(self.pp)]

    def _expert_rank(self, etp_i: int, ep_i: int, edp_i: int, pp_i: int) -> int:
        return pp_i * self.stage_size + etp_i + self.etp * (ep_i + self.ep * edp_i)

    def ep_group(self, pp_i: int = 0, etp_i: int = 0, edp_i: int = 0) -> list[int]:
        """Global ranks of an expert-parallel group (the all-to-all group) in pipeline stage ``pp_i``."""
        if not self.expert_folded:
            return [self.rank(0, 0, pp_i)]
        return [self._expert_rank(etp_i, e, edp_i, pp_i) for e in range(self.ep)]

    def etp_group(self, pp_i: int = 0, ep_i: int = 0, edp_i: int = 0) -> list[int]:
        """Global ranks of an expert-tensor-parallel group in stage ``pp_i``."""
        if not self.expert_folded:
            return self.tp_group(0, pp_i)[: self.etp]
        return [self._expert_rank(t, ep_i, edp_i, pp_i) for t in range(self.etp)]

    def edp_group(self, pp_i: int = 0, etp_i: int = 0, ep_i: int = 0) -> list[int]:
        """Global ranks holding the same expert weights (expert gradients reduce over them)."""
        if not self.expert_folded:
            return self.dp_cp_group(0, pp_i)
        return [self._expert_rank(etp_i, ep_i, d, pp_i) for d in range(self.edp)]

    def groups(self, dim: str) -> list[list[int]]:
        """Every process group of dimension ``dim`` (tp, cp, dp, pp, ep, etp, edp), in a deterministic order."""
        if dim == "tp":
            return [
                self.tp_group(d, p, c) for p in range(self.pp) for d in range(self.dp) for c in range(self.cp)
            ]
        if dim == "dp":
            return [
                self.dp_group(t, p, c) for p in range(self.pp) for t in range(self.tp) for c in range(self.cp)
            ]
        if dim == "cp":
            return [
                self.cp_group(t, d, p) for p in range(self.pp) for d in range(self.dp) for t in range(self.tp)
            ]
        if dim == "pp":
            return [
                [self.rank(t, d, p, c) for p in range(self.pp)]
                for c in range(self.cp)
                for d in range(self.dp)
                for t in range(self.tp)
            ]
        if dim == "ep":
            return [
                self.ep_group(p, t, d)
                for p in range(self.pp)
                for d in range(self.edp)
                for t in range(self.etp)
            ]
        if dim == "etp":
            return [
                self.etp_group(p, e, d)
                for p in range(self.pp)
                for d in range(self.edp)
                for e in range(self.ep)
            ]
        if dim == "edp":
            return [
                self.edp_group(p, t, e)
                for p in range(self.pp)
                for e in range(self.ep)
                for t in range(self.etp)
            ]
        raise InputError(f"unknown dimension {dim!r}; valid: tp, cp, dp, pp, ep, etp, edp")

    def dims(self) -> tuple[str, ...]:
        """The dimensions worth reporting: tp, dp, pp, plus cp and the expert groups when used."""
        out: tuple[str, ...] = ("tp",) + (("cp",) if self.cp > 1 else ()) + ("dp", "pp")
        if self.expert_folded:
            out += ("ep",) + (("etp",) if self.etp > 1 else ()) + (("edp",) if self.edp > 1 else ())
        return out

    def crossings(self, gpus_per_node: int) -> dict[str, GroupCrossing]:
        """Per dimension, how many groups cross server boundaries when rank g sits on node g // gpus_per_node."""
        if gpus_per_node < 1:
            raise InputError(f"gpus_per_node={gpus_per_node} must be >= 1")
        out = {}
        for dim in self.dims():
            gs = self.groups(dim)
            spans = [len({r // gpus_per_node for r in g}) for g in gs]
            out[dim] = GroupCrossing(dim, len(gs[0]), len(gs), sum(1 for s in spans if s > 1), max(spans))
        return out


@dataclass(frozen=True)
class RankGroups:
    """The process groups of one pipeline rank at its first tensor-, data- and context-parallel coordinate, as
    tuples of global ranks: tensor parallel, the cp / ep / etp groups its layers use, dense data parallel
    (dp x cp), data parallel alone, expert data parallel, and the rank's first GPU. Built once per (grid, rank)
    by the cost model, which asks for them for every stage of every layout."""

    tp: tuple[int, ...]
    layer_groups: dict[str, list[int]]
    dp_cp: tuple[int, ...]
    dp: tuple[int, ...]
    edp: tuple[int, ...]
    first: int

    @classmethod
    def of(cls, grid: RankGrid, r: int) -> RankGroups:
        """The groups of pipeline rank ``r`` of ``grid``."""
        return cls(
            tuple(grid.tp_group(0, r)),
            {"cp": grid.cp_group(0, 0, r), "ep": grid.ep_group(r), "etp": grid.etp_group(r)},
            tuple(grid.dp_cp_group(0, r)),
            tuple(grid.dp_group(0, r)),
            tuple(grid.edp_group(r)),
            grid.rank(0, 0, r),
        )
