"""One-screen facts about a cluster graph: devices, links by kind, per-GPU and bisection bandwidth."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import networkx as nx

from topologies.graph import gpu_nodes, link, links_by_kind

__all__ = ["TopologySummary", "summarize", "bisection_Bps"]


@dataclass(frozen=True)
class TopologySummary:
    """Line rates (B/s per direction) unless noted. ``links`` maps edge kind to (physical links, total line
    bandwidth per direction)."""

    name: str
    description: str
    nodes: int
    gpus: int
    gpus_per_node: int
    fabric: str
    oversubscription: float
    links: dict[str, tuple[int, float]]
    nvlink_per_gpu_Bps: float
    pcie_per_gpu_Bps: float
    network_per_gpu_Bps: float
    bisection_Bps: float
    in_switch_reduction: bool

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form with unit suffixes in the keys."""
        return {
            "name": self.name,
            "description": self.description,
            "nodes": self.nodes,
            "gpus": self.gpus,
            "gpus_per_node": self.gpus_per_node,
            "fabric": self.fabric,
            "oversubscription": self.oversubscription,
            "links": {k: {"count": c, "bandwidth_Bps": bw} for k, (c, bw) in self.links.items()},
            "nvlink_per_gpu_Bps": self.nvlink_per_gpu_Bps,
            "pcie_per_gpu_Bps": self.pcie_per_gpu_Bps,
            "network_per_gpu_Bps": self.network_per_gpu_Bps,
            "bisection_Bps": self.bisection_Bps,
            "in_switch_reduction": self.in_switch_reduction,
        }


def _gpu_bw(g: nx.Graph, gpu: str, kind: str) -> float:
    return sum(link(g, gpu, nb).bandwidth_Bps for nb in g[gpu] if link(g, gpu, nb).kind == kind)


def bisection_Bps(g: nx.Graph) -> float:
    """Line-rate bandwidth (B/s, one direction) across the cheapest cut separating the first half of the GPUs
    from the rest: the max flow between the halves (Ford-Fulkerson / min-cut). On one server the cut runs
    through the server's own links; between servers each server is contracted to one vertex joined to the
    fabric by its NIC ports (first half = servers 0 .. nodes//2 - 1), which keeps the flow problem small."""
    nodes = int(g.graph.get("nodes", 1))
    flow = nx.DiGraph()
    if nodes == 1:
        gpus = gpu_nodes(g)
        half = len(gpus) // 2
        if half == 0:
            return 0.0
        for u, v in g.edges:
            bw = link(g, u, v).bandwidth_Bps
            flow.add_edge(u, v, capacity=bw)
            flow.add_edge(v, u, capacity=bw)
        for x in gpus[:half]:
            flow.add_edge("_src", x)  # no capacity attribute = unbounded
        for x in gpus[half:]:
            flow.add_edge(x, "_dst")
    else:
        cap: dict[tuple[str, str], float] = defaultdict(float)
        for u, v in g.edges:
            ku, kv = g.nodes[u]["kind"], g.nodes[v]["kind"]
            if ku == "nic" and kv == "switch":
                cap[(u.split("/")[0], v)] += link(g, u, v).bandwidth_Bps
            elif kv == "nic" and ku == "switch":
                cap[(v.split("/")[0], u)] += link(g, u, v).bandwidth_Bps
            elif ku == "switch" and kv == "switch":
                cap[(u, v)] += link(g, u, v).bandwidth_Bps
        for (u, v), bw in cap.items():
            flow.add_edge(u, v, capacity=bw)
            flow.add_edge(v, u, capacity=bw)
        for s in range(nodes):
            if s < nodes // 2:
                flow.add_edge("_src", f"node{s}")
            else:
                flow.add_edge(f"node{s}", "_dst")
    value, _ = nx.maximum_flow(flow, "_src", "_dst")
    return float(value)


def summarize(g: nx.Graph) -> TopologySummary:
    """Summary of a built cluster (see :class:`TopologySummary`)."""
    gpus = gpu_nodes(g)
    first = gpus[0]
    server = first.split("/")[0] + "/"
    nic_bw = sum(
        float(a.get("bandwidth_Bps", 0.0))
        for n, a in g.nodes(data=True)
        if a.get("kind") == "nic" and n.startswith(server)
    )
    per = int(g.graph.get("gpus_per_node", len(gpus)))
    return TopologySummary(
        name=str(g.graph.get("name", "?")),
        description=str(g.graph.get("description", "")),
        nodes=int(g.graph.get("nodes", 1)),
        gpus=len(gpus),
        gpus_per_node=per,
        fabric=str(g.graph.get("fabric", "none")),
        oversubscription=float(g.graph.get("oversubscription", 1.0)),
        links=links_by_kind(g),
        nvlink_per_gpu_Bps=_gpu_bw(g, first, "nvlink"),
        pcie_per_gpu_Bps=_gpu_bw(g, first, "pcie"),
        network_per_gpu_Bps=nic_bw / per,
        bisection_Bps=bisection_Bps(g),
        in_switch_reduction=any(bool(a.get("in_switch_reduction")) for _, a in g.nodes(data=True)),
    )
