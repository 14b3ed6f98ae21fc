"""The one place every command builds its communication model: a :class:`ClusterSpec` (a topology preset or
TOML file with a node count, or the two-level model's parameters) and :func:`build_comm`.

Models are cached per process by (cluster, world size): a topology graph of thousands of GPUs takes a
noticeable fraction of a second to build and its collective costs are cached inside the model, so commands
and planner workers that ask for the same cluster share one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from pipesim.comm.base import CommModel, LevelCommModel
from pipesim.errors import InputError
from pipesim.specs.server import ServerSpec

__all__ = ["ClusterSpec", "build_comm", "server_cluster", "topology_gpus_per_node"]

_LEVEL = LevelCommModel()


@dataclass(frozen=True)
class ClusterSpec:
    """Which cluster times the collectives. With ``topology`` (a :mod:`topologies` preset name or TOML path)
    the topology-graph model on ``nodes`` servers (default: just enough for the layout), optionally with
    another ``fabric`` (rail, fat-tree) or ``oversubscription``; without it the
    two-level model (:class:`pipesim.comm.base.LevelCommModel`) with ``gpus_per_node`` GPUs per node and
    ``intra_node_Bps`` / ``inter_node_Bps`` per GPU per direction (defaults: DGX A100-like, see there)."""

    topology: str | None = None
    nodes: int | None = None
    gpus_per_node: int = _LEVEL.gpus_per_node
    intra_node_Bps: float = _LEVEL.intra_Bps
    inter_node_Bps: float = _LEVEL.inter_Bps
    fabric: str | None = None
    oversubscription: float | None = None

    def __post_init__(self) -> None:
        if self.nodes is not None and self.nodes < 1:
            raise InputError(f"--nodes={self.nodes} must be >= 1")
        if self.topology is None and self.nodes is not None:
            raise InputError("--nodes needs --topology (the servers of which cluster?)")
        if self.gpus_per_node < 1:
            raise InputError(f"--gpus-per-node={self.gpus_per_node} must be >= 1")
        for flag, value in (
            ("--intra-node-GBps", self.intra_node_Bps),
            ("--inter-node-GBps", self.inter_node_Bps),
        ):
            if not (value > 0 and math.isfinite(value)):
                raise InputError(f"{flag}={value / 1e9:g} must be a finite number > 0")

    def node_gpus(self) -> int:
        """GPUs per server: the topology's, or ``gpus_per_node`` of the two-level model."""
        if self.topology is None:
            return self.gpus_per_node
        return topology_gpus_per_node(self.topology)


def server_cluster(server: ServerSpec, nodes: int | None = None) -> ClusterSpec:
    """The cluster of ``nodes`` servers like ``server`` (default: just enough for the layout): its topology
    preset when it has one, else the two-level model with its figures (:mod:`pipesim.specs.server`)."""
    return ClusterSpec(
        server.topology,
        nodes if server.topology is not None else None,
        server.gpus_per_node,
        server.intra_Bps,
        server.inter_Bps,
    )


@lru_cache(maxsize=16)
def topology_gpus_per_node(topology: str) -> int:
    """GPUs per server of a topology preset or TOML file."""
    from topologies import resolve_spec

    return int(resolve_spec(topology).node.gpus)


@lru_cache(maxsize=4)
def build_comm(cluster: ClusterSpec, world_size: int) -> CommModel:
    """The communication model of ``cluster`` for global ranks 0..world_size-1 (rank g on the g-th GPU in
    server-major order, see :func:`pipesim.specs.placement.rank_to_gpu`). Raises :class:`InputError` (or
    :class:`topologies.errors.TopologyError`) when the layout needs more GPUs than the cluster has."""
    if world_size < 1:
        raise InputError(f"world size {world_size} must be >= 1")
    if cluster.topology is None:
        return LevelCommModel(
            gpus_per_node=cluster.gpus_per_node,
            intra_Bps=cluster.intra_node_Bps,
            inter_Bps=cluster.inter_node_Bps,
        )
    from pipesim.comm.topology import TopologyCommModel
    from topologies import build_cluster

    nodes = cluster.nodes
    if nodes is None:
        nodes = -(-world_size // topology_gpus_per_node(cluster.topology))
    graph = build_cluster(
        cluster.topology, nodes, fabric=cluster.fabric, oversubscription=cluster.oversubscription
    )
    return TopologyCommModel.for_cluster(graph, world_size)
