"""Pure builders: a :class:`~topologies.spec.ClusterSpec` and a server count in, a networkx graph out.

Each server is built once as a template and stamped ``nodes`` times with its ``node{i}/`` prefix, so a
2048-server cluster builds in well under a second. Servers are joined by the fabric builders:

* :func:`add_rail_fabric` (rail-optimized, as in NVIDIA's DGX SuperPOD designs): NIC j of every server
  plugs into a leaf switch of rail j; rails meet only at the spine tier.
* :func:`add_fat_tree_fabric`: all NICs of a server plug into the same leaf.

In both, a leaf's uplink to the spine tier (one logical switch) carries leaf_ports x NIC bandwidth divided
by the oversubscription ratio (1.0 = full bisection).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import networkx as nx

from topologies.errors import TopologyError
from topologies.graph import check_connected
from topologies.spec import ClusterSpec, FabricSpec, NodeSpec, load_spec

__all__ = [
    "server_template",
    "add_rail_fabric",
    "add_fat_tree_fabric",
    "build_from_spec",
    "build_cluster",
    "resolve_spec",
    "preset_names",
    "PRESET_DIR",
]

PRESET_DIR = Path(__file__).parent / "presets"
MAX_NODES = 100_000

Edge = tuple[str, str, dict[str, Any]]


def server_template(node: NodeSpec) -> tuple[list[tuple[str, dict[str, Any]]], list[Edge]]:
    """Local devices and links of one server (names without the ``node{i}/`` prefix)."""
    nodes: list[tuple[str, dict[str, Any]]] = []
    edges: list[Edge] = []

    def edge(u: str, v: str, kind: str, bw: float, lat: float, count: int = 1) -> None:
        edges.append((u, v, {"kind": kind, "bandwidth_Bps": bw, "latency_s": lat, "count": count}))

    for i in range(node.gpus):
        nodes.append((f"gpu{i}", {"kind": "gpu", "index": i}))
    for c in range(node.cpus):
        nodes.append((f"cpu{c}", {"kind": "cpu", "index": c}))
    for s in range(node.pcie_switches):
        nodes.append((f"pcie{s}", {"kind": "pcie_switch", "index": s}))
    for j in range(node.nics):
        nodes.append((f"nic{j}", {"kind": "nic", "index": j, "bandwidth_Bps": node.nic_bandwidth_Bps}))
    # PCIe tree: GPUs and NICs under switches, switches under CPU sockets (or straight under CPUs).
    for s in range(node.pcie_switches):
        if node.cpus:
            cpu = s * node.cpus // node.pcie_switches
            edge(f"pcie{s}", f"cpu{cpu}", "pcie", node.pcie_bandwidth_Bps, node.pcie_latency_s)
    parents = node.pcie_switches or node.cpus
    prefix = "pcie" if node.pcie_switches else "cpu"
    if parents:
        for i in range(node.gpus):
            edge(
                f"gpu{i}",
                f"{prefix}{i * parents // node.gpus}",
                "pcie",
                node.pcie_bandwidth_Bps,
                node.pcie_latency_s,
            )
        for j in range(node.nics):
            # The NIC's own PCIe link runs at least as fast as the NIC, so the NIC port stays the limit.
            bw = max(node.pcie_bandwidth_Bps, node.nic_bandwidth_Bps)
            edge(f"nic{j}", f"{prefix}{j * parents // node.nics}", "pcie", bw, node.pcie_latency_s)
    for c in range(0, node.cpus - 1, 2):
        edge(f"cpu{c}", f"cpu{c + 1}", "upi", node.upi_bandwidth_Bps, node.upi_latency_s)
    if node.nvswitch is not None:
        sw = node.nvswitch
        nodes.append(
            (
                "nvswitch",
                {
                    "kind": "nvswitch",
                    "generation": sw.generation,
                    "chips": sw.chips,
                    "in_switch_reduction": sw.in_switch_reduction,
                },
            )
        )
        for i in range(node.gpus):
            edge(
                f"gpu{i}",
                "nvswitch",
                "nvlink",
                sw.links_per_gpu * sw.link_bandwidth_Bps,
                sw.latency_s,
                sw.links_per_gpu,
            )
    if node.nvlink is not None:
        nv = node.nvlink
        for a, b, n in nv.pairs:
            edge(f"gpu{a}", f"gpu{b}", "nvlink", n * nv.link_bandwidth_Bps, nv.latency_s, n)
    return nodes, edges


def _leaf_uplink(g: nx.Graph, leaf: str, node: NodeSpec, fabric: FabricSpec) -> None:
    ports = fabric.leaf_ports / fabric.oversubscription
    g.add_edge(
        leaf,
        "fabric/spine",
        kind=node.nic_kind,
        bandwidth_Bps=fabric.leaf_ports * node.nic_bandwidth_Bps / fabric.oversubscription,
        latency_s=fabric.switch_latency_s,
        count=max(1, round(ports)),
    )


def _nic_edge(g: nx.Graph, nic: str, leaf: str, node: NodeSpec, fabric: FabricSpec) -> None:
    g.add_edge(
        nic,
        leaf,
        kind=node.nic_kind,
        bandwidth_Bps=node.nic_bandwidth_Bps,
        latency_s=node.nic_latency_s + fabric.switch_latency_s,
        count=1,
    )


def add_rail_fabric(g: nx.Graph, nodes: int, node: NodeSpec, fabric: FabricSpec) -> None:
    """Rail-optimized leaf/spine: NIC j of server s -> ``fabric/rail{j}/leaf{s // leaf_ports}``; every
    leaf -> ``fabric/spine``."""
    leaves = math.ceil(nodes / fabric.leaf_ports)
    g.add_node("fabric/spine", kind="switch", tier="spine")
    for r in range(node.nics):
        for k in range(leaves):
            leaf = f"fabric/rail{r}/leaf{k}"
            g.add_node(leaf, kind="switch", tier="leaf", rail=r)
            _leaf_uplink(g, leaf, node, fabric)
    for s in range(nodes):
        for r in range(node.nics):
            _nic_edge(g, f"node{s}/nic{r}", f"fabric/rail{r}/leaf{s // fabric.leaf_ports}", node, fabric)


def add_fat_tree_fabric(g: nx.Graph, nodes: int, node: NodeSpec, fabric: FabricSpec) -> None:
    """Fat-tree leaf/spine: all NICs of a server on one leaf (leaf_ports // nics servers per leaf);
    every leaf -> ``fabric/spine``."""
    per_leaf = max(1, fabric.leaf_ports // node.nics)
    g.add_node("fabric/spine", kind="switch", tier="spine")
    for k in range(math.ceil(nodes / per_leaf)):
        leaf = f"fabric/leaf{k}"
        g.add_node(leaf, kind="switch", tier="leaf")
        _leaf_uplink(g, leaf, node, fabric)
    for s in range(nodes):
        for r in range(node.nics):
            _nic_edge(g, f"node{s}/nic{r}", f"fabric/leaf{s // per_leaf}", node, fabric)


def build_from_spec(spec: ClusterSpec, nodes: int = 1) -> nx.Graph:
    """The cluster graph of ``nodes`` copies of ``spec.node`` joined by ``spec.fabric``; checked to be
    connected (a :class:`TopologyError` names a device that is cut off)."""
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 1 <= nodes <= MAX_NODES:
        raise TopologyError(f"nodes={nodes!r} must be an integer from 1 to {MAX_NODES}")
    if nodes > 1 and spec.node.nics == 0:
        raise TopologyError(
            f"{spec.source}: {nodes} nodes need a network, but node.nics = 0; set node.nics >= 1"
        )
    g = nx.Graph(
        name=spec.name,
        description=spec.description,
        nodes=nodes,
        gpus_per_node=spec.node.gpus,
        nics_per_node=spec.node.nics,
        fabric="none" if nodes == 1 else spec.fabric.kind,
        oversubscription=spec.fabric.oversubscription,
        efficiency=dict(spec.efficiency),
        base_latency_s=spec.base_latency_s,
        source=spec.source,
    )
    local_nodes, local_edges = server_template(spec.node)
    for s in range(nodes):
        p = f"node{s}/"
        g.add_nodes_from((p + n, {**a, "server": s}) for n, a in local_nodes)
        g.add_edges_from((p + u, p + v, dict(a)) for u, v, a in local_edges)
    if nodes > 1:
        if spec.fabric.kind == "rail":
            add_rail_fabric(g, nodes, spec.node, spec.fabric)
        else:
            add_fat_tree_fabric(g, nodes, spec.node, spec.fabric)
    # One server is enough to check: every server is a copy, and the fabric reaches every NIC.
    check_connected(
        g if nodes == 1 else nx.Graph(g.subgraph(p0 for p0 in g if p0.startswith("node0/"))), spec.source
    )
    return g


def preset_names() -> list[str]:
    """Names of the bundled presets (``topologies/presets/*.toml``), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml") if not p.stem.startswith("_"))


def resolve_spec(preset_or_path: str | Path) -> ClusterSpec:
    """A preset by name (``dgx-a100``) or a user TOML file by path."""
    key = str(preset_or_path)
    if key in preset_names():
        return load_spec(PRESET_DIR / f"{key}.toml")
    p = Path(key)
    if p.suffix == ".toml" or p.exists():
        return load_spec(p)
    raise TopologyError(
        f"unknown topology {key!r}; valid presets: {', '.join(preset_names())} (or a .toml file)"
    )


def build_cluster(
    preset_or_path: str | Path,
    nodes: int = 1,
    *,
    fabric: str | None = None,
    oversubscription: float | None = None,
) -> nx.Graph:
    """Build ``nodes`` servers of a preset or TOML file, optionally overriding the fabric kind
    (``rail``/``fat-tree``) or its oversubscription ratio."""
    spec = resolve_spec(preset_or_path)
    fab = spec.fabric
    if fabric is not None:
        if fabric not in ("rail", "fat-tree"):
            raise TopologyError(f"fabric={fabric!r} is not valid; valid: rail, fat-tree")
        fab = replace(fab, kind=fabric)
    if oversubscription is not None:
        if not oversubscription >= 1:
            raise TopologyError(f"oversubscription={oversubscription} must be >= 1 (1 = full bisection)")
        fab = replace(fab, oversubscription=float(oversubscription))
    return build_from_spec(replace(spec, fabric=fab), nodes)
