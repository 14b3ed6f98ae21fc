"""Interactive drawing of a cluster topology (``pipesim topo draw``): one self-contained HTML file.

Servers sit side by side; inside each, the NVSwitch plane on top, GPUs, then PCIe switches, CPU sockets and
NICs; leaf switches and the spine below. Links are coloured by kind with hover text giving the line rate;
devices hover with their name.
"""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx
import plotly.graph_objects as go

from pipesim.figures.page import Page, render_page, write_page
from topologies.graph import EDGE_KINDS, link

__all__ = ["topology_figure", "layout", "write_topology_html"]

EDGE_COLORS = {
    "nvlink": "#76b900",
    "pcie": "#1f77b4",
    "upi": "#9467bd",
    "infiniband": "#d62728",
    "ethernet": "#ff7f0e",
}
NODE_STYLE = {
    "gpu": ("square", "#76b900", 14),
    "nvswitch": ("diamond", "#2c7a00", 16),
    "pcie_switch": ("triangle-up", "#1f77b4", 11),
    "cpu": ("hexagon", "#9467bd", 14),
    "nic": ("circle", "#d62728", 9),
    "switch": ("diamond-wide", "#444444", 14),
}
ROW = {"nvswitch": 2.0, "gpu": 1.0, "pcie_switch": 0.0, "cpu": -1.0, "nic": -2.0}


def layout(g: nx.Graph) -> dict[str, tuple[float, float]]:
    """Deterministic 2-D positions for every device."""
    per = max(1, int(g.graph.get("gpus_per_node", 1)))
    width = per + 2.0
    pos: dict[str, tuple[float, float]] = {}
    counts: dict[tuple[int, str], int] = {}
    for n, kind in g.nodes(data="kind"):
        if n.startswith("node"):
            s = int(n.split("/")[0][4:])
            counts[(s, kind)] = counts.get((s, kind), 0) + 1
    for n, a in g.nodes(data=True):
        kind = a["kind"]
        if not n.startswith("node"):
            continue
        s = int(n.split("/")[0][4:])
        total = counts[(s, kind)]
        idx = int(a.get("index", 0))
        x = s * width + (per - 1) / 2 if kind == "nvswitch" else s * width + (idx + 0.5) * per / total - 0.5
        pos[n] = (x, ROW.get(kind, 0.0))
    leaves = sorted(n for n, a in g.nodes(data=True) if a["kind"] == "switch" and a.get("tier") == "leaf")
    servers = int(g.graph.get("nodes", 1))
    span = servers * width
    for i, n in enumerate(leaves):
        pos[n] = ((i + 0.5) * span / max(1, len(leaves)) - 1, -4.0)
    for n, a in g.nodes(data=True):
        if a["kind"] == "switch" and a.get("tier") != "leaf":
            pos[n] = (span / 2 - 1, -6.0)
    return pos


def _fmt_Bps(bw: float) -> str:
    return f"{bw / 1e9:g} GB/s"


def topology_figure(g: nx.Graph) -> go.Figure:
    """A plotly figure of ``g``: links by kind (width grows with bandwidth), devices by kind."""
    pos = layout(g)
    fig = go.Figure()
    top = max((link(g, u, v).bandwidth_Bps for u, v in g.edges), default=1.0)
    for kind in EDGE_KINDS:
        xs: list[float | None] = []
        ys: list[float | None] = []
        hx: list[float] = []
        hy: list[float] = []
        text: list[str] = []
        widest = 0.0
        for u, v in sorted(g.edges, key=lambda e: (str(e[0]), str(e[1]))):
            lk = link(g, u, v)
            if lk.kind != kind:
                continue
            widest = max(widest, lk.bandwidth_Bps)
            (x0, y0), (x1, y1) = pos[u], pos[v]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
            hx.append((x0 + x1) / 2)
            hy.append((y0 + y1) / 2)
            count = f" x{lk.count}" if lk.count > 1 else ""
            text.append(
                f"{u} - {v}<br>{kind}{count}: {_fmt_Bps(lk.bandwidth_Bps)} per direction, "
                f"{lk.latency_s * 1e6:g} us"
            )
        if not xs:
            continue
        w = 1.0 + 3.0 * math.log10(1 + 9 * widest / top)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"color": EDGE_COLORS[kind], "width": w},
                name=kind,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=hx,
                y=hy,
                mode="markers",
                marker={"size": 6, "color": EDGE_COLORS[kind], "opacity": 0.0},
                text=text,
                hoverinfo="text",
                showlegend=False,
                name=f"{kind} links",
            )
        )
    for kind, (symbol, color, size) in NODE_STYLE.items():
        names = sorted(n for n, k in g.nodes(data="kind") if k == kind)
        if not names:
            continue
        fig.add_trace(
            go.Scatter(
                x=[pos[n][0] for n in names],
                y=[pos[n][1] for n in names],
                mode="markers",
                marker={
                    "symbol": symbol,
                    "color": color,
                    "size": size,
                    "line": {"width": 1, "color": "white"},
                },
                text=names,
                hoverinfo="text",
                name=kind,
            )
        )
    title = f"{g.graph.get('name', 'topology')}: {g.graph.get('nodes', 1)} node(s)"
    desc = g.graph.get("description")
    fig.update_layout(
        title={"text": f"{title}<br><sup>{desc}</sup>" if desc else title},
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
        plot_bgcolor="white",
        legend={"title": {"text": "GB/s = 1e9 B/s per direction"}},
        hovermode="closest",
    )
    return fig


def write_topology_html(g: nx.Graph, path: str | Path, plotlyjs: str = "embed") -> None:
    """Write the figure as one self-contained HTML page (the offline page machinery of
    :mod:`pipesim.figures.page`: plotly.js embedded, a header naming the cluster), atomically."""
    info = g.graph
    scenario = tuple(
        (label, str(info[key]))
        for label, key in (
            ("preset", "name"),
            ("nodes", "nodes"),
            ("GPUs per node", "gpus_per_node"),
            ("NICs per node", "nics_per_node"),
            ("fabric", "fabric"),
            ("oversubscription", "oversubscription"),
        )
        if key in info
    )
    page = Page(
        title=f"pipesim topology: {info.get('name', 'cluster')}",
        scenario=scenario,
        notes=(str(info.get("description", "")),) if info.get("description") else (),
        figures=(topology_figure(g),),
        figure_names=("pipesim-topology",),
    )
    write_page(path, render_page(page, plotlyjs), plotlyjs)
