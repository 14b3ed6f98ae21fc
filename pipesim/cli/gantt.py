"""``pipesim gantt``: Gantt charts of simulated steps as an HTML page, a Chrome trace and/or a static image."""

from __future__ import annotations

import click

from pipesim.cli.compare import (
    check_schedule_files,
    check_synthetic_flags_used,
    check_vpp_used,
    compare_on_model,
    file_actions,
    scenario_options,
    synthetic_timelines,
)
from pipesim.cli.group import short_help
from pipesim.cli.options import (
    ClusterFlags,
    Hardware,
    LayoutFlags,
    SyntheticFlags,
    plain_options,
)
from pipesim.cli.render import GIB
from pipesim.cli.synthetic import refuse_model_flags
from pipesim.cli.targets import check_targets
from pipesim.errors import InputError
from pipesim.io.units import counted
from pipesim.sim.budget import check_actions, check_bars, layout_timeline, timeline_actions
from pipesim.specs.layout import Layout

__all__ = ["gantt_cmd"]

GANTT_HELP = """Draw Gantt charts of simulated steps: one self-contained HTML page (opens offline) and/or a
Chrome trace (opens in Perfetto) and/or a static PNG/SVG/PDF.

Takes the same scenario flags as compare. The page shows one chart per schedule on a shared time axis: a lane
per rank with its communication lane under it, bars coloured by op and labelled with the microbatch (s3·m5:
stage and microbatch where a rank holds several chunks, drawn lighter), hover with stage, microbatch, start,
end and duration, grey gaps for bubbles. Beside each chart the memory per GPU of every rank at its peak
(weights, gradients, optimizer state, activations, transient, reserve: the numbers simulate prints) against
HBM; under it that memory over time. With synthetic costs only activations are known and drawn. The trace
names slices as PyTorch does (0F3), with a memory counter per rank and the bytes of each transfer.
With --ep / --cp both show each pass's expert all-to-alls and context-parallel key/value exchanges on the
ranks' communication lanes with the bytes they move, and the memory bars split dense from expert parameters.

--iterations N draws N consecutive iterations: under --optimizer sync each one starts after the previous one's
last span (the global barrier); under --optimizer post-validation they run back to back, the next iteration's
warm-up overlapping this one's tail (at least 2 are drawn; the default draws the 4 the steady state is measured
on). The metrics shown are per iteration.
"""


def _moe_cp(layout: Layout) -> str:
    """`` cp=.. ep=.. etp=..`` for the parallel sizes above 1 (the page's layout row)."""
    return "".join(
        f" {n}={v}" for n, v in (("cp", layout.cp), ("ep", layout.ep), ("etp", layout.etp)) if v > 1
    )


@click.command("gantt", help=GANTT_HELP, short_help=short_help("gantt"))
@plain_options("output", "trace_path", "image_path", "plotlyjs", "gpu_memory_gib", "iterations", "config")
@scenario_options
@plain_options("max_actions", "max_bars")
def gantt_cmd(
    output: str | None,
    trace_path: str | None,
    image_path: str | None,
    plotlyjs: str,
    gpu_memory_gib: float | None,
    iterations: int | None,
    max_actions: int,
    max_bars: int,
    synthetic: SyntheticFlags,
    hw: Hardware,
    lay: LayoutFlags,
    cluster: ClusterFlags,
) -> None:
    from pipesim.cli.simulate import communication_text
    from pipesim.figures.gantt import gantt_figure, gantt_page
    from pipesim.figures.page import page_files
    from pipesim.figures.static import figure_bytes
    from pipesim.io.atomic import STDOUT, write_outputs
    from pipesim.sim.series import simulate_series
    from pipesim.sim.trace import chrome_trace_json

    if not (output or trace_path or image_path):
        raise InputError(
            "nothing to write: give -o PAGE.html, --trace TRACE.json and/or --image FIG.png|.svg|.pdf"
        )
    if gpu_memory_gib is not None and not gpu_memory_gib > 0:
        raise InputError(f"--gpu-memory-gib={gpu_memory_gib} must be > 0 (GiB = 2^30 bytes)")
    # Check every target before simulating, so a bad path fails fast and nothing is half-written.
    check_targets({"-o": output or None, "--trace": trace_path or None}, image_path or None)
    if iterations is not None and iterations < 1:
        raise InputError(f"--iterations={iterations} must be >= 1")
    capacity = gpu_memory_gib * GIB if gpu_memory_gib is not None else None
    if hw.model is not None:  # a real model: per-stage costs
        from pipesim.sim.series import report_series

        reports = compare_on_model(synthetic, hw, lay, cluster, max_actions)
        timelines = [layout_timeline(r.scenario.layout) for r in reports]
        if iterations:  # the extra iterations drawn
            timelines = [(n, r, c, m * iterations, sp) for n, r, c, m, sp in timelines]
            check_actions(timelines, max_actions)
        panels = [report_series(r, iterations) for r in reports]
        sc = reports[0].scenario
        if capacity is None:
            capacity = sc.gpu.hbm_bytes
        # Model chunks per rank as the summary table counts them (ZB-V holds 2 whatever the layout's vpp).
        vpps = ", ".join(f"{r.schedule.name} {r.metrics.vpp}" for r in reports)
        scenario_rows = [
            ("schedules", ", ".join(p.name for p in panels)),
            ("model", sc.model.name),
            ("gpu", sc.gpu.name),
            ("layout", f"dp={sc.layout.dp} tp={sc.layout.tp} pp={sc.layout.pp}" + _moe_cp(sc.layout)),
            ("vpp", vpps),
            ("microbatches", str(sc.layout.num_microbatches)),
            ("micro batch", str(sc.layout.micro_batch_size)),
            ("recompute", sc.layout.recompute),
            ("GPU memory", f"{capacity / GIB:.1f} GiB ({capacity / 1e9:.0f} GB)"),
            ("communication", communication_text(sc)),
        ]
    else:
        refuse_model_flags()
        request = synthetic.request(*lay.synthetic_pipeline(), lay.dp_overlap)
        check_vpp_used(request.schedules, request.vpp)
        check_synthetic_flags_used(request)
        timelines = synthetic_timelines(request, iterations)
        in_files = file_actions(request)  # a file's cells, counted before it is parsed
        check_actions(timelines, max_actions, in_files)
        if output or image_path or trace_path:
            bars = sum(timeline_actions(r, c, m, sp) for _, r, c, m, sp in timelines) + sum(
                n for _, n in in_files
            )
            check_bars(bars, max_bars)
        check_schedule_files(request)
        panels = simulate_series(request, iterations)
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
            ("optimizer", request.optimizer),
        ]
    if (
        output or image_path or trace_path
    ):  # registry schedules by their compute actions; CSV schedules once simulated
        bars = sum(timeline_actions(r, c, m, sp) for _, r, c, m, sp in timelines)
        if synthetic.schedule_files and hw.model is None:
            bars = sum(p.timeline.num_spans for p in panels)
        check_bars(bars, max_bars)
    files: list[tuple[str, bytes]] = []
    notes: list[str] = []
    if output:
        page = gantt_page(panels, scenario_rows, gpu_memory_bytes=capacity, plotlyjs=plotlyjs)
        page_out = page_files(output, page, plotlyjs)
        files += page_out
        notes.append(
            f"wrote {output} ({len(page_out[0][1]) / 1e6:.1f} MB, {counted(len(panels), 'schedule')})"
        )
    if trace_path:
        files.append((trace_path, chrome_trace_json(panels).encode("utf-8")))
        notes.append(f"wrote {trace_path} (Chrome trace; open in https://ui.perfetto.dev)")
    if image_path:
        files.append((image_path, figure_bytes(gantt_figure(panels, gpu_memory_bytes=capacity), image_path)))
        notes.append(f"wrote {image_path}")
    write_outputs(files)  # all rendered first: a failure above leaves no file behind
    to_stderr = STDOUT in (output, trace_path, image_path)  # keep a page or trace on stdout clean
    for note in notes:
        click.echo(note, err=to_stderr)
