"""The cluster flags handed to commands (``--topology``, ``--nodes``, the two-level model's GPUs per node and
bandwidths, ``--gpus``) as a typed, checked :class:`ClusterFlags` (kept apart from :mod:`pipesim.cli.specs`,
which holds the other option groups' specs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipesim.cli.specs import flag_defaults
from pipesim.errors import InputError
from pipesim.sim.budget import check_gpus

if TYPE_CHECKING:
    from pipesim.comm.base import CommModel
    from pipesim.comm.factory import ClusterSpec
    from pipesim.plan.search import PlanCluster
    from pipesim.specs.gpu import GPUSpec

__all__ = ["ClusterFlags", "build_cluster_flags"]


# --------------------------------------------------------------------------- cluster and communication
@dataclass(frozen=True)
class ClusterFlags:
    """The cluster flags: a topology graph (``--topology``, ``--nodes``, ``--fabric``, ``--oversubscription``)
    or a two-level model (GPUs per node, per-GPU bandwidths in GB/s); ``gpus`` is the GPU count the user gave,
    if any. Flags left out take the GPU's own server (:mod:`pipesim.specs.server`): commands call
    :meth:`for_gpu` before :meth:`spec`, which is the :class:`pipesim.comm.factory.ClusterSpec` (which checks
    the values)."""

    gpus: int | None
    gpus_per_node: int | None
    intra_node_gbps: float | None
    inter_node_gbps: float | None
    topology: str | None
    nodes: int | None
    rank_order: str
    fabric: str | None
    oversubscription: float | None
    max_gpus: int

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Declared defaults of every cluster flag."""
        return flag_defaults(cls)

    def for_gpu(self, gpu: GPUSpec) -> ClusterFlags:
        """The flags with what the user left out taken from ``gpu``'s server: its topology preset when no
        cluster flag is given (and it has one), and its two-level figures for the two-level flags not given.
        A two-level flag chooses the two-level model (so ``--inter-node-GBps 100`` on an H100 keeps DGX H100's
        NVLink figure and 8 GPUs per node)."""
        from dataclasses import replace

        srv = gpu.server
        two_level = any(
            v is not None for v in (self.gpus_per_node, self.intra_node_gbps, self.inter_node_gbps)
        )
        topology = self.topology if self.topology is not None or two_level else srv.topology
        return replace(
            self,
            topology=topology,
            gpus_per_node=self.gpus_per_node
            if topology is not None
            else self.gpus_per_node or srv.gpus_per_node,
            intra_node_gbps=self.intra_node_gbps if self.intra_node_gbps is not None else srv.intra_Bps / 1e9,
            inter_node_gbps=self.inter_node_gbps if self.inter_node_gbps is not None else srv.inter_Bps / 1e9,
        )

    def spec(self, gpus_per_node: int | None = None) -> ClusterSpec:
        """The cluster (``gpus_per_node`` overrides ``--gpus-per-node`` of the two-level model; ``--nodes``
        counts the topology's servers, and only ``plan`` takes it without one). Needs :meth:`for_gpu` first."""
        from pipesim.comm.factory import ClusterSpec

        if self.topology is not None:  # the two-level figures are unused: the spec's own defaults
            return ClusterSpec(
                self.topology, self.nodes, fabric=self.fabric, oversubscription=self.oversubscription
            )
        per = gpus_per_node or self.gpus_per_node
        if per is None or self.intra_node_gbps is None or self.inter_node_gbps is None:
            raise RuntimeError(
                "ClusterFlags.spec() before for_gpu(): the two-level defaults come from the GPU"
            )
        return ClusterSpec(
            None,
            None,
            per,
            self.intra_node_gbps * 1e9,
            self.inter_node_gbps * 1e9,
            fabric=self.fabric,
            oversubscription=self.oversubscription,
        )

    def comm(self, world_size: int) -> CommModel:
        """The communication model of ranks 0..world_size-1 (:func:`pipesim.comm.factory.build_comm`)."""
        from pipesim.comm.factory import build_comm

        if self.topology is None and self.nodes is not None:
            raise InputError("--nodes needs --topology (the servers of which cluster?)")
        spec = self.spec()
        if spec.topology is not None:
            per = spec.node_gpus()
            check_gpus(spec.nodes if spec.nodes is not None else -(-world_size // per), per, self.max_gpus)
        return build_comm(spec, world_size)

    def world(self) -> int | None:
        """The GPU count the flags name: ``--gpus``, else ``--nodes`` x the topology's GPUs per server."""
        if self.gpus is not None:
            return self.gpus
        if self.topology is not None and self.nodes is not None:
            from topologies import resolve_spec

            return self.nodes * resolve_spec(self.topology).node.gpus
        return None

    def rank_grid(self) -> tuple[str, ...]:
        """``--rank-order`` parsed (fastest-varying axis first)."""
        from pipesim.specs.placement import parse_order

        return parse_order(self.rank_order)

    def plan_cluster(self, gpu: GPUSpec, nodes_optional: bool) -> PlanCluster:
        """The :class:`PlanCluster` of ``plan``: ``--nodes`` or ``--gpus`` (a multiple of the GPUs per node);
        with ``nodes_optional`` (a ``--max-days`` search) one node to start from."""
        from pipesim.comm.base import LevelCommModel
        from pipesim.plan.search import PlanCluster

        spec = self.spec()
        per = spec.node_gpus()
        if self.topology is not None and self.gpus_per_node is not None and self.gpus_per_node != per:
            raise InputError(
                f"--gpus-per-node={self.gpus_per_node} contradicts topology {self.topology} ({per} per node)"
            )
        nodes = self.nodes
        if nodes is not None and self.topology is not None:
            check_gpus(nodes, per, self.max_gpus)
        if self.gpus is not None:
            if nodes is not None:
                raise InputError("give --nodes or --gpus, not both")
            if self.gpus < 1 or self.gpus % per:
                where = f"topology {self.topology}" if self.topology else "the two-level model"
                raise InputError(
                    f"--gpus={self.gpus} must be a positive multiple of the {per} GPUs per node ({where}); "
                    f"valid: {per}, {2 * per}, {3 * per}, ..."
                )
            nodes = self.gpus // per
        if nodes is None:
            if not nodes_optional:
                raise InputError(
                    "give --nodes N or --gpus N (or --max-days with --tokens to find the node count)"
                )
            nodes = 1
        level = LevelCommModel(per, spec.intra_node_Bps, spec.inter_node_Bps)
        return PlanCluster(gpu, nodes, per, self.topology, level)


def build_cluster_flags(**values: Any) -> ClusterFlags:
    """:class:`ClusterFlags`, checked by building its :class:`ClusterSpec` once (on DGX A100 figures for the
    flags left out: the values given are what is checked here; :meth:`ClusterFlags.for_gpu` fills the rest)."""
    from pipesim.specs.gpu import get_gpu

    flags = ClusterFlags(**values)
    if flags.topology is not None:
        given = [f for f, v in (("--intra-node-GBps", flags.intra_node_gbps), ("--inter-node-GBps",
                 flags.inter_node_gbps)) if v is not None]  # fmt: skip
        if given:
            raise InputError(
                f"{given[0]} sets the two-level model, which --topology {flags.topology} replaces: give one "
                "of them (the topology's links are in `pipesim topo show`)"
            )
    flags.for_gpu(get_gpu("a100-80gb")).spec()
    return flags
