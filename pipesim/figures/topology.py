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

__all__ = ["topology_figure", "layout", "topology_page_html", "write_topology_html"]

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


# One colour per rail (the leaf switch of rail r joins NIC r of every server), D3's qualitative palette.
RAIL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
SPINE_COLOUR = "#7f7f7f"
LABEL_FONT = {"size": 10, "color": "#1f2430"}


def _edge_group(g: nx.Graph, u: str, v: str, kind: str) -> tuple[str, str]:
    """(legend group, colour) of a link: network links by rail (leaf's rail) or to the spine."""
    if kind not in ("infiniband", "ethernet"):
        return kind, EDGE_COLORS[kind]
    tiers = {g.nodes[n].get("tier") for n in (u, v)}
    if "spine" in tiers:
        return f"{kind} to spine", SPINE_COLOUR
    rail = next((g.nodes[n].get("rail") for n in (u, v) if g.nodes[n].get("rail") is not None), None)
    if rail is None:
        return kind, EDGE_COLORS[kind]
    return f"{kind} rail {rail}", RAIL_COLOURS[int(rail) % len(RAIL_COLOURS)]


def _node_label(name: str, attrs: dict[str, object]) -> str:
    """Short text drawn at a device: GPU index, switch's rail or tier; other devices go unlabelled."""
    kind = attrs["kind"]
    if kind == "gpu":
        return str(attrs.get("index", ""))
    if kind == "switch":
        if attrs.get("tier") == "spine":
            return "spine"
        return f"rail {attrs['rail']} leaf" if attrs.get("rail") is not None else name.split("/")[-1]
    if kind == "nvswitch":
        return "NVSwitch"
    return ""


def topology_figure(g: nx.Graph) -> go.Figure:
    """A plotly figure of ``g``: a box per server with its devices (GPUs numbered), links coloured by kind and,
    for a rail-optimized fabric, by rail; the legend and one label per kind of link give the line rate."""
    pos = layout(g)
    fig = go.Figure()
    top = max((link(g, u, v).bandwidth_Bps for u, v in g.edges), default=1.0)
    groups: dict[str, dict[str, object]] = {}
    for u, v in sorted(g.edges, key=lambda e: (str(e[0]), str(e[1]))):
        lk = link(g, u, v)
        name, colour = _edge_group(g, u, v, lk.kind)
        grp = groups.setdefault(
            name,
            {
                "kind": lk.kind,
                "colour": colour,
                "xs": [],
                "ys": [],
                "hx": [],
                "hy": [],
                "text": [],
                "bw": set(),
            },
        )
        (x0, y0), (x1, y1) = pos[u], pos[v]
        grp["xs"] += [x0, x1, None]  # type: ignore[operator]
        grp["ys"] += [y0, y1, None]  # type: ignore[operator]
        grp["hx"].append((x0 + x1) / 2)  # type: ignore[attr-defined]
        grp["hy"].append((y0 + y1) / 2)  # type: ignore[attr-defined]
        count = f" x{lk.count}" if lk.count > 1 else ""
        grp["text"].append(  # type: ignore[attr-defined]
            f"{u} - {v}<br>{lk.kind}{count}: {_fmt_Bps(lk.bandwidth_Bps)} per direction, {lk.latency_s * 1e6:g} us"
        )
        grp["bw"].add(lk.bandwidth_Bps)  # type: ignore[attr-defined]
    labelled: set[str] = set()
    for name in sorted(groups, key=lambda n: (EDGE_KINDS.index(str(groups[n]["kind"])), n)):
        grp = groups[name]
        kind = str(grp["kind"])
        rates = ", ".join(_fmt_Bps(b) for b in sorted(grp["bw"]))  # type: ignore[call-overload]
        widest = max(grp["bw"])  # type: ignore[call-overload]
        w = 1.0 + 3.0 * math.log10(1 + 9 * widest / top)
        network = kind in ("infiniband", "ethernet") and name != kind
        fig.add_trace(
            go.Scatter(
                x=grp["xs"],
                y=grp["ys"],
                mode="lines",
                line={"color": grp["colour"], "width": min(w, 2.0) if network else w},
                opacity=0.8 if network else 1.0,
                name=f"{name}: {rates}",
                legendgroup=name,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=grp["hx"],
                y=grp["hy"],
                mode="markers",
                marker={"size": 6, "color": grp["colour"], "opacity": 0.0},
                text=grp["text"],
                hoverinfo="text",
                showlegend=False,
                legendgroup=name,
                name=f"{name} links",
            )
        )
        if kind not in labelled:  # one label per kind of link, on its first link
            labelled.add(kind)
            fig.add_annotation(
                x=grp["hx"][0],  # type: ignore[index]
                y=grp["hy"][0],  # type: ignore[index]
                text=f"{kind} {_fmt_Bps(widest)}",
                showarrow=False,
                font={"size": 9, "color": str(grp["colour"])},
                bgcolor="rgba(255,255,255,0.85)",
            )
    for kind, (symbol, color, size) in NODE_STYLE.items():
        names = sorted(n for n, k in g.nodes(data="kind") if k == kind)
        if not names:
            continue
        labels = [_node_label(n, g.nodes[n]) for n in names]
        inside = kind == "gpu"
        fig.add_trace(
            go.Scatter(
                x=[pos[n][0] for n in names],
                y=[pos[n][1] for n in names],
                mode="markers+text" if any(labels) else "markers",
                marker={
                    "symbol": symbol,
                    "color": color,
                    "size": 18 if inside else size,
                    "line": {"width": 1, "color": "white"},
                },
                text=labels,
                textposition="middle center"
                if inside
                else "top center"
                if kind == "nvswitch"
                else "bottom center",
                textfont={"size": 9, "color": "white"} if inside else LABEL_FONT,
                hovertext=names,
                hoverinfo="text",
                name=kind,
            )
        )
    _server_boxes(fig, g, pos)
    title = f"{g.graph.get('name', 'topology')}: {g.graph.get('nodes', 1)} node(s)"
    desc = g.graph.get("description")
    servers = int(g.graph.get("nodes", 1))
    fig.update_layout(
        title={"text": f"{title}<br><sup>{desc}</sup>" if desc else title},
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
        plot_bgcolor="white",
        legend={
            "title": {"text": "links, line rate per direction (GB/s = 1e9 B/s)", "side": "top"},
            "font": {"size": 11},
            "orientation": "h",
            "y": -0.02,
            "yanchor": "top",
        },
        hovermode="closest",
        height=max(520, 360 + 40 * min(servers, 8)),
    )
    return fig


def _server_boxes(fig: go.Figure, g: nx.Graph, pos: dict[str, tuple[float, float]]) -> None:
    """A light box around each server's devices, named like its devices (``node0``)."""
    by_server: dict[str, list[tuple[float, float]]] = {}
    for n in g.nodes:
        if n.startswith("node"):
            by_server.setdefault(n.split("/")[0], []).append(pos[n])
    shapes, labels = [], []
    for server in sorted(by_server, key=lambda s: int(s[4:])):
        xs, ys = zip(*by_server[server], strict=True)
        x0, x1, y0, y1 = min(xs) - 0.6, max(xs) + 0.6, min(ys) - 0.5, max(ys) + 0.5
        shapes.append(
            {"type": "rect", "x0": x0, "x1": x1, "y0": y0, "y1": y1, "line": {"color": "#c9ced6", "width": 1},
             "fillcolor": "rgba(240,242,246,0.5)", "layer": "below"}
        )  # fmt: skip
        labels.append(
            {"x": x0, "y": y1, "text": server, "showarrow": False, "xanchor": "left", "yanchor": "bottom",
             "font": LABEL_FONT}
        )  # fmt: skip
    # In one assignment each: plotly revalidates the whole list on every add_shape / add_annotation, which made
    # a 256-server drawing take 23 s.
    fig.update_layout(shapes=[*fig.layout.shapes, *shapes], annotations=[*fig.layout.annotations, *labels])


def topology_page_html(g: nx.Graph, plotlyjs: str = "embed") -> str:
    """The figure as one HTML page (the offline page machinery of :mod:`pipesim.figures.page`: by default
    plotly.js embedded, a header naming the cluster)."""
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
    return render_page(page, plotlyjs)


def write_topology_html(g: nx.Graph, path: str | Path, plotlyjs: str = "embed") -> None:
    """Write :func:`topology_page_html` to ``path`` atomically."""
    write_page(path, topology_page_html(g, plotlyjs), plotlyjs)
