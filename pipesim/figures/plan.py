"""The ``pipesim plan -o plan.html`` chart: step time against peak memory per GPU for every feasible layout,
coloured by schedule, with the Pareto front (no other layout is both faster and smaller) drawn as a line and
the winner starred. One self-contained HTML page through :mod:`pipesim.figures.page` (plotly.js embedded,
works offline), with the best layouts as a table above the chart."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import plotly.graph_objects as go

from pipesim.figures.page import Page, Table, render_page, write_page
from pipesim.io.units import counted
from pipesim.plan.search import PlanEntry, PlanResult

__all__ = ["pareto_front", "plan_figure", "plan_page", "write_plan_html"]

GIB = 2**30


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points on the lower-left Pareto front of (memory, time): no other point has both
    less-or-equal memory and less-or-equal time with one strictly less. Sorted by memory."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1], i))
    front: list[int] = []
    best_time = float("inf")
    for i in order:
        if points[i][1] < best_time:
            front.append(i)
            best_time = points[i][1]
    return front


def _hover(e: PlanEntry) -> str:
    c = e.candidate
    src = "simulated" if e.simulated else "estimated"
    return (
        f"tp={c.tp} pp={c.pp} dp={c.dp} vpp={c.vpp} mbs={c.micro_batch_size}<br>"
        f"{c.schedule}, recompute {c.recompute}, dist-opt {'on' if c.distributed_optimizer else 'off'}, "
        f"sp {'on' if c.sequence_parallel else 'off'}<br>"
        f"step {e.step_time_s:.3f} s ({src}), {e.tokens_per_s:,.0f} tokens/s, MFU {e.mfu:.1%}<br>"
        f"peak {e.peak_memory_bytes / GIB:.1f} GiB per GPU"
    )


def plan_figure(result: PlanResult) -> go.Figure:
    """The scatter of every feasible layout (x: peak GiB per GPU, y: step seconds)."""
    entries = result.entries
    fig = go.Figure()
    by_schedule: dict[str, list[PlanEntry]] = {}
    for e in entries:
        by_schedule.setdefault(e.candidate.schedule, []).append(e)
    for name, group in by_schedule.items():
        fig.add_trace(
            go.Scattergl(
                x=[e.peak_memory_bytes / GIB for e in group],
                y=[e.step_time_s for e in group],
                mode="markers",
                name=name,
                marker={"size": 6, "opacity": 0.6},
                hovertext=[_hover(e) for e in group],
                hoverinfo="text",
            )
        )
    pts = [(e.peak_memory_bytes, e.step_time_s) for e in entries]
    front = [entries[i] for i in pareto_front(pts)]
    fig.add_trace(
        go.Scatter(
            x=[e.peak_memory_bytes / GIB for e in front],
            y=[e.step_time_s for e in front],
            mode="lines+markers",
            name="Pareto front",
            line={"color": "black", "shape": "hv"},
            marker={"size": 8, "color": "black"},
            hovertext=[_hover(e) for e in front],
            hoverinfo="text",
        )
    )
    best = result.best
    fig.add_trace(
        go.Scatter(
            x=[best.peak_memory_bytes / GIB],
            y=[best.step_time_s],
            mode="markers",
            name="winner",
            marker={"symbol": "star", "size": 16, "color": "gold", "line": {"color": "black", "width": 1}},
            hovertext=[_hover(best)],
            hoverinfo="text",
        )
    )
    req = result.request
    hbm = req.cluster.gpu.hbm_bytes / GIB
    fig.add_vline(x=hbm, line_dash="dash", annotation_text=f"HBM {hbm:.1f} GiB")
    fig.update_layout(
        title=(
            f"{req.model.name} on {req.cluster.num_gpus} x {req.cluster.gpu.name}: {result.feasible} feasible "
            f"layouts of {result.candidates} candidates (global batch {req.global_batch_size}, seq {req.seq})"
        ),
        xaxis_title="peak memory per GPU (GiB = 2^30 bytes)",
        yaxis_title="step time (s)",
        template="plotly_white",
        legend_title="schedule",
    )
    return fig


def plan_page(result: PlanResult) -> Page:
    """The offline page: the scenario, the ten best layouts as a table, the chart."""
    req = result.request
    rows = []
    for i, e in enumerate(result.entries[:10], start=1):
        c = e.candidate
        rows.append(
            (
                str(i),
                f"{c.tp}/{c.pp}/{c.dp}/{c.vpp}",
                str(c.micro_batch_size),
                c.schedule,
                c.recompute,
                f"{'on' if c.distributed_optimizer else 'off'}/{'on' if c.sequence_parallel else 'off'}",
                f"{e.step_time_s:.3f}" + ("" if e.simulated else "*"),
                f"{e.tokens_per_s:,.0f}",
                f"{e.mfu:.1%}",
                f"{e.peak_memory_bytes / GIB:.1f}",
            )
        )
    table = Table(
        (
            "#",
            "tp/pp/dp/vpp",
            "mbs",
            "schedule",
            "recompute",
            "DO/SP",
            "step s",
            "tokens/s",
            "MFU",
            "peak GiB",
        ),
        tuple(rows),
        caption="Best layouts (* estimated, others simulated; GiB = 2^30 bytes)",
        numeric=(True, False, True, False, False, False, True, True, True, True),
    )
    cl = req.cluster
    scenario = (
        ("model", req.model.name),
        (
            "cluster",
            f"{cl.num_gpus} x {cl.gpu.name}"
            + (f" ({cl.topology}, {counted(cl.nodes, 'node')})" if cl.topology else ""),
        ),
        ("global batch", str(req.global_batch_size)),
        ("sequence", str(req.seq)),
        (
            "candidates",
            f"{result.candidates:,} estimated, {result.feasible:,} fit, {result.simulated} simulated",
        ),
    )
    return Page(
        title=f"pipesim plan: {req.model.name}",
        scenario=scenario,
        tables=(table,),
        figures=(plan_figure(result),),
        notes=("Pareto front: no other feasible layout is both faster and smaller in peak memory per GPU.",),
        figure_names=("step time vs peak memory",),
    )


def write_plan_html(result: PlanResult, path: str | Path, plotlyjs: str = "embed") -> None:
    """Write the page as one HTML file (by default self-contained: plotly.js embedded, opens offline; see
    :func:`pipesim.figures.page.render_page` for ``plotlyjs``)."""
    write_page(path, render_page(plan_page(result), plotlyjs), plotlyjs)
