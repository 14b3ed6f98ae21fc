"""pipesim's command line. click lives here and only here; each command parses, builds specs, calls one
pipesim function and renders the result."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from pipesim.compare import CompareRequest, compare_schedules
from pipesim.errors import InputError
from pipesim.metrics import PipelineMetrics
from schedules import ScheduleError, schedule_names
from topologies import TopologyError

# Errors that are the user's input, not our bug: printed as one line, exit status 2.
USER_ERRORS: tuple[type[Exception], ...] = (InputError, ScheduleError, TopologyError)

GIB = 2**30


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


class PipesimGroup(click.Group):
    """A click group that turns bad-input exceptions into one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            fail(str(exc))


def emit_json(data: object) -> None:
    """Print ``data`` as indented JSON (keys in insertion order, so output is byte-for-byte stable)."""
    click.echo(json.dumps(data, indent=2))


def console() -> Console:
    """A rich console writing to click's stdout (so CliRunner captures it), without colour when not a tty."""
    return Console(file=click.get_text_stream("stdout"), width=140, soft_wrap=False)


@click.group(cls=PipesimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipesim")
def main() -> None:
    """pipesim: simulate pipeline-parallel training schedules on GPU clusters.

    Step time, pipeline bubbles, activation memory and communication for GPipe, 1F1B, interleaved 1F1B and
    more, before you spend the GPU-hours.
    """


def _split_names(text: str | None) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def _ms(value: float, flag: str) -> float:
    if not value >= 0:
        raise InputError(f"{flag}={value} must be >= 0 (milliseconds)")
    return value / 1000.0


def scenario_request(
    *,
    pp: int,
    microbatches: int,
    vpp: int,
    schedules_opt: str | None,
    forward_time: float,
    backward_time: float,
    weight_time: float | None,
    memory_limit: float | None,
    p2p_time: float,
    activation_bytes: float,
    schedule_files: Sequence[str],
) -> CompareRequest:
    """The scenario of ``compare``'s options (``gantt`` takes the same options and calls this too)."""
    names = _split_names(schedules_opt)
    if not names and not schedule_files:
        names = ["gpipe", "1f1b", "interleaved-1f1b"]
    if activation_bytes < 0:
        raise InputError(f"--activation-bytes={activation_bytes} must be >= 0")
    return CompareRequest(
        schedules=tuple(names),
        schedule_files=tuple(schedule_files),
        pp=pp,
        microbatches=microbatches,
        vpp=vpp,
        forward_s=_ms(forward_time, "--forward-time"),
        backward_s=_ms(backward_time, "--backward-time"),
        weight_s=_weight_s(weight_time, backward_time),
        memory_limit=memory_limit,
        p2p_s=_ms(p2p_time, "--p2p-time"),
        activation_bytes=activation_bytes,
    )


COMPARE_HELP = """Compare pipeline schedules side by side on one scenario.

With no flags: GPipe, 1F1B and interleaved 1F1B (vpp 2) on 4 ranks and 8 microbatches, forward 1 ms and
backward 2 ms per microbatch for a whole stage, 0.05 ms per transfer.

\b
Definitions:
  step time      end of the last span of the step
  bubble         idle fraction of the pipeline phase: 1 - busy / (ranks x time);
                 (p-1)/(m+p-1) for GPipe/1F1B, (p-1)/(v*m+p-1) interleaved
  bubble/ideal   Megatron-LM's form: idle / busy; (p-1)/m, interleaved (p-1)/(v*m)
  peak act       most activations a rank holds, in microbatches of one whole stage
                 (an interleaved chunk counts 1/v) and in bytes (GiB = 2^30 bytes)
  p2p / exposed  total transfer time / idle time that only transfers caused

\b
Split backward (zb-h1, zb-h2, zb-v, dualpipe-v, zb-1p, zb-2p): the full backward B
runs as I (input gradients, B - W) then W (--weight-time). Without --weight-time
W = B/2 (ZB paper Table 1: I and W each cost about 24*s*b*h^2 FLOPs per layer).
zb-1p/zb-2p are built greedily from these times under --memory-limit.
"""


@main.command("compare", help=COMPARE_HELP)
@click.option("--pp", type=int, default=4, show_default=True, help="Pipeline stages (ranks).")
@click.option("--microbatches", "-m", type=int, default=8, show_default=True, help="Microbatches per step.")
@click.option(
    "--vpp", type=int, default=2, show_default=True, help="Model chunks per rank (interleaved schedules)."
)
@click.option(
    "--schedules",
    "schedules_opt",
    default=None,
    help=f"Comma list of schedules [default: gpipe,1f1b,interleaved-1f1b]. Known: {', '.join(schedule_names())}.",
)
@click.option(
    "--forward-time", type=float, default=1.0, show_default=True, help="ms per microbatch, whole stage."
)
@click.option(
    "--backward-time",
    type=float,
    default=2.0,
    show_default=True,
    help="ms per microbatch, whole stage, full backward.",
)
@click.option(
    "--weight-time",
    type=float,
    default=None,
    help="ms per microbatch, whole stage: the weight-gradient part W of the full backward, so I = B - W "
    "(split-backward schedules only). [default: half of --backward-time]",
)
@click.option(
    "--memory-limit",
    type=float,
    default=None,
    help="Activation cap for the greedy zb-1p/zb-2p orders, in microbatches of one stage per rank "
    "(>= 1). [default: pp for zb-1p, 2*pp for zb-2p]",
)
@click.option(
    "--p2p-time", type=float, default=0.05, show_default=True, help="ms per transfer between ranks."
)
@click.option(
    "--activation-bytes",
    type=float,
    default=float(GIB),
    show_default=True,
    help="Activation bytes per microbatch per whole stage.",
)
@click.option(
    "--schedule-file",
    "schedule_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A PyTorch per-rank schedule CSV to simulate (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list with one object per schedule.")
def compare_cmd(
    pp: int,
    microbatches: int,
    vpp: int,
    schedules_opt: str | None,
    forward_time: float,
    backward_time: float,
    weight_time: float | None,
    memory_limit: float | None,
    p2p_time: float,
    activation_bytes: float,
    schedule_files: Sequence[str],
    as_json: bool,
) -> None:
    request = scenario_request(
        pp=pp,
        microbatches=microbatches,
        vpp=vpp,
        schedules_opt=schedules_opt,
        forward_time=forward_time,
        backward_time=backward_time,
        weight_time=weight_time,
        memory_limit=memory_limit,
        p2p_time=p2p_time,
        activation_bytes=activation_bytes,
        schedule_files=schedule_files,
    )
    results = compare_schedules(request)
    if as_json:
        emit_json([r.as_dict() for r in results])
        return
    console().print(compare_table(results, request))


def _weight_s(weight_time: float | None, backward_time: float) -> float:
    """--weight-time in seconds: half the backward when not given; never more than the backward."""
    if weight_time is None:
        return _ms(backward_time, "--backward-time") / 2
    if weight_time > backward_time:
        raise InputError(
            f"--weight-time={weight_time:g} exceeds --backward-time={backward_time:g}: W is part of the full "
            f"backward B (I = B - W); valid: 0 to {backward_time:g}"
        )
    return _ms(weight_time, "--weight-time")


def compare_table(results: Sequence[PipelineMetrics], request: CompareRequest) -> Table:
    """The side-by-side table of ``pipesim compare``."""
    table = Table(
        title=(
            f"pp={request.pp}  microbatches={request.microbatches}  F={request.forward_s * 1e3:g} ms  "
            f"B={request.backward_s * 1e3:g} ms  W={request.weight_s * 1e3:g} ms  p2p={request.p2p_s * 1e3:g} ms  (per whole stage)"
        ),
        title_justify="left",
    )
    table.add_column("schedule", no_wrap=True)
    for col in (
        "pp",
        "vpp",
        "m",
        "step ms",
        "bubble",
        "bubble/ideal",
        "peak act mb",
        "peak act GiB",
        "p2p ms",
    ):
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    table.add_column("p2p exposed ms", justify="right", no_wrap=True, min_width=14)
    for r in results:
        table.add_row(
            r.schedule,
            str(r.pp),
            str(r.vpp),
            str(r.microbatches),
            f"{r.step_time_s * 1e3:.3f}",
            f"{r.bubble_ratio:.1%}",
            f"{r.bubble_over_ideal:.3f}",
            f"{r.peak_activation_microbatches:g}",
            f"{r.peak_activation_bytes / GIB:.2f}",
            f"{r.p2p_time_s * 1e3:.3f}",
            f"{r.p2p_exposed_s * 1e3:.3f}",
        )
    return table


# --- pipesim gantt -------------------------------------------------------------------------------------------

GANTT_HELP = """Draw Gantt charts of simulated steps: one self-contained HTML page (opens offline) and/or a
Chrome trace (opens in Perfetto) and/or a static PNG/SVG.

Takes the same scenario flags as compare. The page shows one chart per schedule on a shared time axis: a lane
per rank with its communication lane under it, bars coloured by op and labelled with the microbatch, hover
with stage, microbatch, start, end and duration, grey gaps for bubbles, and under each chart the activation
memory of every rank over time (with the GPU's capacity when --gpu-memory-gib is given).
"""

# The scenario options are compare's own Parameter objects, so the two commands never drift apart.
SCENARIO_PARAMS = [p for p in compare_cmd.params if p.name != "as_json"]


@main.command("gantt", help=GANTT_HELP)
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), help="HTML page to write.")
@click.option(
    "--trace", "trace_path", type=click.Path(dir_okay=False), help="Chrome-trace JSON to write (Perfetto)."
)
@click.option(
    "--image",
    "image_path",
    type=click.Path(dir_okay=False),
    help="Static figure to write, .png or .svg (needs Chromium or Chrome).",
)
@click.option(
    "--gpu-memory-gib", type=float, default=None, help="GPU memory capacity in GiB (2^30 B), drawn as a line."
)
def gantt_cmd(
    output: str | None,
    trace_path: str | None,
    image_path: str | None,
    gpu_memory_gib: float | None,
    **scenario: Any,
) -> None:
    from pipesim.figures.gantt import gantt_page
    from pipesim.figures.static import check_image_target, export_image
    from pipesim.fileio import atomic_write_text, check_output_path
    from pipesim.timeseries import simulate_series
    from pipesim.trace import chrome_trace_json

    if not (output or trace_path or image_path):
        raise InputError(
            "nothing to write: give -o PAGE.html, --trace TRACE.json and/or --image FIG.png|.svg"
        )
    if gpu_memory_gib is not None and not gpu_memory_gib > 0:
        raise InputError(f"--gpu-memory-gib={gpu_memory_gib} must be > 0 (GiB = 2^30 bytes)")
    # Check every target before simulating, so a bad path fails fast and nothing is half-written.
    for path in (output, trace_path):
        if path:
            check_output_path(path)
    if image_path:
        check_image_target(image_path)
    request = scenario_request(**scenario)
    panels = simulate_series(request)
    capacity = gpu_memory_gib * GIB if gpu_memory_gib is not None else None
    scenario_rows = [
        ("schedules", ", ".join(p.name for p in panels)),
        ("pp", str(request.pp)),
        ("microbatches", str(request.microbatches)),
        ("vpp", str(request.vpp)),
        ("F", f"{request.forward_s * 1e3:g} ms"),
        ("B", f"{request.backward_s * 1e3:g} ms"),
        ("p2p", f"{request.p2p_s * 1e3:g} ms"),
        ("activations", f"{request.activation_bytes / GIB:g} GiB"),
        ("GPU memory", f"{gpu_memory_gib:g} GiB" if gpu_memory_gib is not None else "not given"),
        ("times", "per microbatch, whole stage"),
    ]
    page = gantt_page(panels, scenario_rows, gpu_memory_bytes=capacity) if (output or image_path) else ""
    if output:
        atomic_write_text(output, page)
        click.echo(f"wrote {output} ({len(page.encode()) / 1e6:.1f} MB, {len(panels)} schedules)")
    if trace_path:
        atomic_write_text(trace_path, chrome_trace_json([(p.name, p.num_stages, p.timeline) for p in panels]))
        click.echo(f"wrote {trace_path} (Chrome trace; open in https://ui.perfetto.dev)")
    if image_path:
        export_image(page, image_path)
        click.echo(f"wrote {image_path}")


gantt_cmd.params[len(gantt_cmd.params) :] = SCENARIO_PARAMS


# ---- topologies and collectives ---------------------------------------------------------------------------


def _gbps(bw_Bps: float) -> str:
    return f"{bw_Bps / 1e9:,.1f}"


@main.group("topo")
def topo_group() -> None:
    """Cluster topologies: list the presets, summarize or draw one (a preset name or a TOML file)."""


@topo_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per preset.")
def topo_list_cmd(as_json: bool) -> None:
    """List the bundled topology presets."""
    from topologies import build_cluster, preset_names
    from topologies.summary import summarize

    rows = [summarize(build_cluster(name, 1)) for name in preset_names()]
    if as_json:
        emit_json(
            [
                {
                    "name": r.name,
                    "gpus_per_node": r.gpus_per_node,
                    "nvlink_per_gpu_Bps": r.nvlink_per_gpu_Bps,
                    "network_per_gpu_Bps": r.network_per_gpu_Bps,
                    "description": r.description,
                }
                for r in rows
            ]
        )
        return
    table = Table(title="topology presets (GB/s = 1e9 B/s, per direction, line rate)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("GPUs/node", justify="right")
    table.add_column("NVLink/GPU GB/s", justify="right")
    table.add_column("network/GPU GB/s", justify="right")
    table.add_column("description")
    for r in rows:
        table.add_row(
            r.name,
            str(r.gpus_per_node),
            _gbps(r.nvlink_per_gpu_Bps),
            _gbps(r.network_per_gpu_Bps),
            r.description,
        )
    console().print(table)


TOPOLOGY_ARG = click.argument("topology", metavar="NAME|FILE.toml")
NODES_OPT = click.option("--nodes", type=int, default=1, show_default=True, help="Servers (racks for nvl72).")
FABRIC_OPT = click.option(
    "--fabric", type=click.Choice(["rail", "fat-tree"]), default=None, help="Override the fabric kind."
)
OVERSUB_OPT = click.option(
    "--oversubscription", type=float, default=None, help="Leaf down:up ratio (1 = full bisection)."
)


@topo_group.command("show")
@TOPOLOGY_ARG
@NODES_OPT
@FABRIC_OPT
@OVERSUB_OPT
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (B/s, SI units).")
def topo_show_cmd(
    topology: str, nodes: int, fabric: str | None, oversubscription: float | None, as_json: bool
) -> None:
    """Summarize a cluster: GPUs, links by kind, per-GPU and bisection bandwidth (line rates, GB/s = 1e9 B/s
    per direction; bisection = max flow between the first and second half of the GPUs)."""
    from topologies import build_cluster
    from topologies.summary import summarize

    s = summarize(build_cluster(topology, nodes, fabric=fabric, oversubscription=oversubscription))
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
    table = Table(title="links by kind", title_justify="left")
    table.add_column("kind", no_wrap=True)
    table.add_column("links", justify="right")
    table.add_column("total GB/s per direction (line rate, 1e9 B/s)", justify="right")
    for kind, (count, bw) in s.links.items():
        table.add_row(kind, str(count), _gbps(bw))
    console().print(table)
    out(
        f"per GPU: NVLink {_gbps(s.nvlink_per_gpu_Bps)} GB/s, PCIe {_gbps(s.pcie_per_gpu_Bps)} GB/s, "
        f"network {_gbps(s.network_per_gpu_Bps)} GB/s"
    )
    out(f"bisection: {_gbps(s.bisection_Bps)} GB/s")


@topo_group.command("draw")
@TOPOLOGY_ARG
@NODES_OPT
@FABRIC_OPT
@OVERSUB_OPT
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
def topo_draw_cmd(
    topology: str, nodes: int, fabric: str | None, oversubscription: float | None, output: str
) -> None:
    """Draw a cluster as a self-contained interactive HTML page (hover links for their bandwidth)."""
    from pipesim.figures.topology import write_topology_html
    from topologies import build_cluster

    write_topology_html(
        build_cluster(topology, nodes, fabric=fabric, oversubscription=oversubscription), output
    )
    click.echo(f"wrote {output}")


COLLECTIVE_HELP = """Time a collective on a topology, as an nccl-tests-style sweep over message sizes.

OP is all-reduce, all-gather, reduce-scatter, all-to-all, broadcast or send-recv (rank 0 to the last rank).
Sizes follow nccl-tests: the whole buffer, K/M/G = 2^10/2^20/2^30 bytes; -b 8 -e 8G -f 2 sweeps 8 B to 8 GiB.

\b
  algbw = size / time            (GB/s = 1e9 B/s)
  busbw = algbw x factor         all-reduce 2(n-1)/n; all-gather, reduce-scatter, all-to-all (n-1)/n;
                                 broadcast, send-recv 1   (NVIDIA/nccl-tests doc/PERFORMANCE.md)
"""


@main.command("collective", help=COLLECTIVE_HELP)
@click.argument(
    "op",
    type=click.Choice(["all-reduce", "all-gather", "reduce-scatter", "all-to-all", "broadcast", "send-recv"]),
)
@click.option("--topology", "-t", required=True, metavar="NAME|FILE.toml", help="Preset name or TOML file.")
@NODES_OPT
@click.option("--gpus", "-g", type=int, default=None, help="GPUs in the group (ranks 0..G-1) [default: all].")
@click.option(
    "--algo",
    type=click.Choice(["auto", "ring", "tree", "hierarchical", "nvls", "direct"]),
    default="auto",
    show_default=True,
    help="Algorithm; auto picks the fastest per size, as NCCL does.",
)
@click.option("-b", "--minbytes", default="8", show_default=True, help="Smallest size.")
@click.option("-e", "--maxbytes", default="8G", show_default=True, help="Largest size.")
@click.option("-f", "--stepfactor", type=int, default=2, show_default=True, help="Size multiplier per row.")
@FABRIC_OPT
@OVERSUB_OPT
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one row per size.")
def collective_cmd(
    op: str,
    topology: str,
    nodes: int,
    gpus: int | None,
    algo: str,
    minbytes: str,
    maxbytes: str,
    stepfactor: int,
    fabric: str | None,
    oversubscription: float | None,
    as_json: bool,
) -> None:
    from pipesim.collectives import TopologyCommModel, parse_size, size_sweep
    from topologies import build_cluster

    graph = build_cluster(topology, nodes, fabric=fabric, oversubscription=oversubscription)
    total = graph.graph["nodes"] * graph.graph["gpus_per_node"]
    n = total if gpus is None else gpus
    if n < 2:
        raise InputError(f"--gpus={n} must be >= 2 for a collective")
    model = TopologyCommModel.for_cluster(graph, n)
    ranks = [0, n - 1] if op == "send-recv" else list(range(n))
    sizes = size_sweep(parse_size(minbytes), parse_size(maxbytes), stepfactor)
    if op == "send-recv" and algo == "auto":
        algo = "direct"
    rows = model.sweep(op, ranks, sizes, algo)
    if as_json:
        emit_json(
            [
                {
                    "size_bytes": r.size_bytes,
                    "time_s": r.time_s,
                    "algbw_GBps": r.algbw_GBps,
                    "busbw_GBps": r.busbw_GBps,
                    "algo": r.algo,
                }
                for r in rows
            ]
        )
        return
    out = click.echo
    out(f"# {op} on {graph.graph['name']} x {graph.graph['nodes']} node(s), {len(ranks)} GPUs, algo {algo}")
    out("# size in bytes; time in us; algbw, busbw in GB/s (1 GB/s = 1e9 B/s)")
    out(f"#{'size':>14} {'time':>12} {'algbw':>9} {'busbw':>9}  algo")
    out(f"#{'(B)':>14} {'(us)':>12} {'(GB/s)':>9} {'(GB/s)':>9}")
    for r in rows:
        out(f"{r.size_bytes:>15} {r.time_s * 1e6:>12.2f} {r.algbw_GBps:>9.2f} {r.busbw_GBps:>9.2f}  {r.algo}")
    peak = max(rows, key=lambda r: r.busbw_GBps)
    out(f"# peak busbw {peak.busbw_GBps:.2f} GB/s at {peak.size_bytes} B")


if __name__ == "__main__":  # pragma: no cover
    main()
