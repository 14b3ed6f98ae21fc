"""Cluster topologies as networkx graphs: builders, TOML presets, validation (networkx + standard library).

The names are imported on first use (PEP 562), so that ``topologies.errors`` and the rest of pipesim's
two-level path do not pay for networkx's import (about 0.3 s) when no graph is built.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from topologies.errors import TopologyError

# public name -> module
_LAZY: dict[str, str] = {
    "build_cluster": "topologies.builders",
    "build_from_spec": "topologies.builders",
    "preset_names": "topologies.builders",
    "resolve_spec": "topologies.builders",
    "EDGE_KINDS": "topologies.graph",
    "NODE_KINDS": "topologies.graph",
    "Link": "topologies.graph",
    "gpu_nodes": "topologies.graph",
    "link": "topologies.graph",
    "links_by_kind": "topologies.graph",
    "node_kind": "topologies.graph",
    "ClusterSpec": "topologies.spec",
    "load_spec": "topologies.spec",
    "parse_spec": "topologies.spec",
}

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

if TYPE_CHECKING:  # pragma: no cover - what static checkers see
    from topologies.builders import build_cluster, build_from_spec, preset_names, resolve_spec
    from topologies.graph import EDGE_KINDS, NODE_KINDS, Link, gpu_nodes, link, links_by_kind, node_kind
    from topologies.spec import ClusterSpec, load_spec, parse_spec


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'topologies' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
