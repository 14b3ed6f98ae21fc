"""Cluster topologies as networkx graphs: builders, TOML presets, validation (networkx + standard library)."""

from __future__ import annotations

from topologies.builders import build_cluster, build_from_spec, preset_names, resolve_spec
from topologies.errors import TopologyError
from topologies.graph import EDGE_KINDS, NODE_KINDS, Link, gpu_nodes, link, links_by_kind, node_kind
from topologies.spec import ClusterSpec, load_spec, parse_spec

__all__ = [
    "TopologyError",
    "build_cluster",
    "build_from_spec",
    "preset_names",
    "resolve_spec",
    "load_spec",
    "parse_spec",
    "ClusterSpec",
    "EDGE_KINDS",
    "NODE_KINDS",
    "Link",
    "link",
    "node_kind",
    "gpu_nodes",
    "links_by_kind",
]
