"""Typed access to topology graphs.

A topology is an undirected :class:`networkx.Graph`. Nodes carry ``kind`` (one of :data:`NODE_KINDS`) and
have stable names (``node0/gpu3``, ``node0/nvswitch``, ``fabric/rail2/leaf0``); edges carry ``kind`` (one of
:data:`EDGE_KINDS`), ``bandwidth_Bps`` (line rate per direction; links are full duplex) and ``latency_s``.
networkx silently returns defaults for missing attributes, so everything reads edges through :func:`link`,
which raises :class:`TopologyError` instead.

Graph-level attributes (``graph.graph``) written by :func:`topologies.builders.build_cluster`:
``name``, ``nodes`` (servers), ``gpus_per_node``, ``nics_per_node``, ``fabric`` (``none``, ``rail``,
``fat-tree``), ``efficiency`` (link kind -> fraction of line rate NCCL reaches, plus ``nvls``) and
``base_latency_s`` (fixed software cost per collective).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import networkx as nx

from topologies.errors import TopologyError

__all__ = [
    "NODE_KINDS",
    "EDGE_KINDS",
    "Link",
    "link",
    "node_kind",
    "gpu_nodes",
    "efficiency",
    "check_connected",
    "links_by_kind",
]

NODE_KINDS = ("gpu", "nvswitch", "pcie_switch", "cpu", "nic", "switch")
EDGE_KINDS = ("nvlink", "pcie", "upi", "infiniband", "ethernet")


@dataclass(frozen=True)
class Link:
    """One edge: its kind, line bandwidth per direction (B/s), one-way latency (s) and how many physical
    links it bundles (e.g. 12 NVLinks from an A100 to its NVSwitch plane)."""

    kind: str
    bandwidth_Bps: float
    latency_s: float
    count: int = 1


def _require(attrs: dict[str, Any], key: str, what: str) -> Any:
    if key not in attrs:
        raise TopologyError(
            f"{what} has no {key!r} attribute; every edge needs kind, bandwidth_Bps, latency_s"
        )
    return attrs[key]


def link(g: nx.Graph, u: Hashable, v: Hashable) -> Link:
    """The typed attributes of edge (u, v); raises :class:`TopologyError` if the edge or an attribute is
    missing or not positive (networkx itself would silently default a missing weight to 1)."""
    try:
        attrs = g.edges[u, v]
    except KeyError:
        raise TopologyError(f"no link between {u} and {v}") from None
    what = f"link {u} -- {v}"
    kind = _require(attrs, "kind", what)
    bw = float(_require(attrs, "bandwidth_Bps", what))
    lat = float(_require(attrs, "latency_s", what))
    if kind not in EDGE_KINDS:
        raise TopologyError(f"{what} has kind {kind!r}; valid: {', '.join(EDGE_KINDS)}")
    if not bw > 0:
        raise TopologyError(f"{what} has bandwidth_Bps={bw}; it must be > 0")
    if lat < 0:
        raise TopologyError(f"{what} has latency_s={lat}; it must be >= 0")
    return Link(kind, bw, lat, int(attrs.get("count", 1)))


def node_kind(g: nx.Graph, n: Hashable) -> str:
    """The ``kind`` of node ``n``; raises :class:`TopologyError` if the node or its kind is missing."""
    if n not in g:
        raise TopologyError(f"no device named {n!r} in topology {g.graph.get('name', '?')}")
    kind = g.nodes[n].get("kind")
    if kind not in NODE_KINDS:
        raise TopologyError(f"device {n} has kind {kind!r}; valid: {', '.join(NODE_KINDS)}")
    return str(kind)


def _gpu_sort_key(name: str) -> tuple[int, int]:
    server, _, local = name.partition("/")
    return int(server[4:]), int(local[3:])


def gpu_nodes(g: nx.Graph) -> list[str]:
    """GPU node names in global-rank order: by server index, then local GPU index (``node1/gpu0`` is
    rank ``gpus_per_node``)."""
    return sorted((n for n, k in g.nodes(data="kind") if k == "gpu"), key=_gpu_sort_key)


def efficiency(g: nx.Graph, kind: str) -> float:
    """Fraction of line rate NCCL reaches on links of ``kind`` (graph-level calibration data)."""
    table = g.graph.get("efficiency")
    if not isinstance(table, dict) or kind not in table:
        raise TopologyError(f"topology {g.graph.get('name', '?')} has no efficiency for link kind {kind!r}")
    return float(table[kind])


def check_connected(g: nx.Graph, source: str) -> None:
    """Raise :class:`TopologyError` naming a device that cannot reach the first GPU."""
    if g.number_of_nodes() == 0:
        raise TopologyError(f"{source}: the topology has no devices")
    gpus = gpu_nodes(g)
    if not gpus:
        raise TopologyError(f"{source}: the topology has no GPUs (set node.gpus >= 1)")
    reach = nx.node_connected_component(g, gpus[0])
    if len(reach) != g.number_of_nodes():
        lost = sorted(set(g.nodes) - reach)
        raise TopologyError(
            f"{source}: graph is disconnected: {lost[0]} cannot reach {gpus[0]} ({len(lost)} devices cut off); "
            "connect it with node.pcie_switches/node.cpus, node.nvswitch or node.nvlink.pairs"
        )


def links_by_kind(g: nx.Graph) -> dict[str, tuple[int, float]]:
    """Per edge kind: (number of physical links, total line bandwidth per direction in B/s)."""
    count: Counter[str] = Counter()
    bw: dict[str, float] = {}
    for u, v in g.edges:
        lk = link(g, u, v)
        count[lk.kind] += lk.count
        bw[lk.kind] = bw.get(lk.kind, 0.0) + lk.bandwidth_Bps
    return {k: (count[k], bw[k]) for k in sorted(count)}
