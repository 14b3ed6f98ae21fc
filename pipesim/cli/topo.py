"""``pipesim topo``: list the topology presets, summarize or draw one cluster."""

from __future__ import annotations

from typing import Any

import click

from pipesim.cli.flags import presets
from pipesim.cli.group import ErrorBoundary, short_help
from pipesim.cli.options import plain_options
from pipesim.cli.render import console, emit_json
from pipesim.cli.targets import check_targets
from pipesim.errors import InputError

__all__ = ["NODES_ONE", "TOPOLOGY_ARG", "topo_group"]

TOPOLOGY_ARG = click.argument("topology", metavar="NAME|FILE.toml", shell_complete=presets("topology"))
NODES_ONE = {"default": 1, "show_default": True, "help": "Servers (racks for nvl72)."}


def _graph(
    topology: str, nodes: int, fabric: str | None, oversubscription: float | None, max_gpus: int
) -> Any:
    """The topology graph, refused before it is built when it would hold more than ``max_gpus`` GPUs."""
    from pipesim.comm.factory import topology_gpus_per_node
    from pipesim.sim.budget import check_gpus
    from topologies import build_cluster

    if nodes < 1:
        raise InputError(f"--nodes={nodes} must be >= 1")
    check_gpus(nodes, topology_gpus_per_node(topology), max_gpus)
    return build_cluster(topology, nodes, fabric=fabric, oversubscription=oversubscription)


def _gbps(bw_Bps: float) -> str:
    return f"{bw_Bps / 1e9:,.1f}"


@click.group("topo", cls=ErrorBoundary, short_help=short_help("topo"))
def topo_group() -> None:
    """Cluster topologies: list the presets, summarize or draw one (a preset name or a TOML file)."""


@topo_group.command("list")
@plain_options("as_json", "wide", as_json={"help": "Print JSON: one object per preset."})
def topo_list_cmd(as_json: bool) -> None:
    """List the bundled topology presets."""
    from pipesim.specs.gpu import GPU_PRESETS
    from topologies import build_cluster, preset_names
    from topologies.summary import summarize

    rows = [summarize(build_cluster(name, 1)) for name in preset_names()]
    # The GPU presets whose default cluster each topology is (pipesim.specs.server).
    default_for = {
        r.name: [g.name for g in GPU_PRESETS.values() if g.server.topology == r.name] for r in rows
    }
    if as_json:
        emit_json(
            [
                {
                    "name": r.name,
                    "gpus_per_node": r.gpus_per_node,
                    "nvlink_per_gpu_Bps": r.nvlink_per_gpu_Bps,
                    "network_per_gpu_Bps": r.network_per_gpu_Bps,
                    "description": r.description,
                    "default_for": default_for[r.name],
                }
                for r in rows
            ]
        )
        return
    from rich.table import Table

    table = Table(title="topology presets (GB/s = 1e9 B/s, per direction, line rate)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("GPUs/node", justify="right")
    table.add_column("NVLink/GPU GB/s", justify="right")
    table.add_column("network/GPU GB/s", justify="right")
    table.add_column("default for")
    table.add_column("description")
    for r in rows:
        table.add_row(
            r.name,
            str(r.gpus_per_node),
            _gbps(r.nvlink_per_gpu_Bps),
            _gbps(r.network_per_gpu_Bps),
            ", ".join(default_for[r.name]) or "-",
            r.description,
        )
    console().print(table)


@topo_group.command("show")
@TOPOLOGY_ARG
@plain_options("nodes", "fabric", "oversubscription", "max_gpus", nodes=NODES_ONE)
@plain_options("as_json", "wide", "config", as_json={"help": "Print the summary as JSON (B/s, SI units)."})
def topo_show_cmd(
    topology: str,
    nodes: int,
    fabric: str | None,
    oversubscription: float | None,
    max_gpus: int,
    as_json: bool,
) -> None:
    """Summarize a cluster: GPUs, links by kind, per-GPU and bisection bandwidth (line rates, GB/s = 1e9 B/s
    per direction; bisection = max flow between the first and second half of the GPUs)."""
    from topologies.summary import summarize

    s = summarize(_graph(topology, nodes, fabric, oversubscription, max_gpus))
    if as_json:
        emit_json(s.as_dict())
        return
    out = click.echo
    out(f"{s.name}: {s.description}" if s.description else s.name)
    fabric_txt = (
        "none (one node)" if s.fabric == "none" else f"{s.fabric}, oversubscription {s.oversubscription:g}:1"
    )
    out(f"nodes {s.nodes}, GPUs {s.gpus} ({s.gpus_per_node} per node), fabric {fabric_txt}")
    out(f"NVLink SHARP (in-switch reduction): {'yes' if s.in_switch_reduction else 'no'}")
    from rich.table import Table

    table = Table(title="links by kind", title_justify="left")
    table.add_column("kind", no_wrap=True)
    table.add_column("links", justify="right")
    table.add_column("total GB/s per direction (line rate; GB/s = 1e9 B/s)", justify="right")
    for kind, (count, bw) in s.links.items():
        table.add_row(kind, str(count), _gbps(bw))
    console().print(table)
    out(
        f"per GPU, GB/s: NVLink {_gbps(s.nvlink_per_gpu_Bps)}, PCIe {_gbps(s.pcie_per_gpu_Bps)}, "
        f"network {_gbps(s.network_per_gpu_Bps)}"
    )
    out(f"bisection, GB/s: {_gbps(s.bisection_Bps)}")


@topo_group.command("draw")
@TOPOLOGY_ARG
@plain_options("nodes", "fabric", "oversubscription", "max_gpus", nodes=NODES_ONE)
@plain_options("output", "image_path", "plotlyjs", "config", output={"help": "HTML page to write."})
def topo_draw_cmd(
    topology: str,
    nodes: int,
    fabric: str | None,
    oversubscription: float | None,
    max_gpus: int,
    output: str | None,
    image_path: str | None,
    plotlyjs: str,
) -> None:
    """Draw a cluster: servers with their devices, links coloured by kind (and rail) with their line rates, as
    an interactive HTML page (-o; hover links for bandwidth and latency) and/or a static picture (--image)."""
    from pipesim.io.atomic import write_outputs

    if not (output or image_path):
        raise InputError("nothing to write: give -o PAGE.html and/or --image FIG.png|.svg|.pdf")
    check_targets({"-o": output or None}, image_path or None)
    g = _graph(topology, nodes, fabric, oversubscription, max_gpus)
    files: list[tuple[str, bytes]] = []
    if output:
        from pipesim.figures.page import page_files
        from pipesim.figures.topology import topology_page_html

        files += page_files(output, topology_page_html(g, plotlyjs), plotlyjs)
    if image_path:
        from pipesim.figures.static import figure_bytes
        from pipesim.figures.topology import topology_figure

        files.append((image_path, figure_bytes(topology_figure(g), image_path)))
    write_outputs(files)  # all rendered first: a failure leaves no file behind
    for path in (output, image_path):
        if path:
            click.echo(f"wrote {path}")
