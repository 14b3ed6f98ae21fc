"""Gantt charts of simulated steps: draws :class:`~pipesim.sim.series.GanttSeries`, computes nothing.

One chart per schedule on a shared time axis (ms, or s for second-long steps): a row per rank holding its compute lane (F, B, I,
W, optimizer; recompute and the TP share of a pass as a strip on the lower edge of the bar) and, just under
it, its communication lane (sends; DP gradient reduction in a sub-lane of its own when present). Idle time
(bubbles) shows as the grey lane background; a rank's later model chunks are lighter. Beside each chart, the
memory per GPU of every rank at its peak by component, and under it that memory over time
(:mod:`pipesim.figures.memory_panel`). Bars and lanes: :mod:`pipesim.figures.gantt_bars`.

Scale: every kind of bar is one SVG ``scatter`` trace drawn as line segments separated by NaN gaps (one path
element per kind, however many bars), with numpy arrays sent as plotly's base64 typed arrays; hover comes
from one invisible point per bar at its middle. Microbatch numbers are written on the bars only when a figure
has at most :data:`LABEL_LIMIT` compute bars. The y axes are fixed (zoom and pan move time only), so rank
labels stay readable at any zoom.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pipesim.figures.gantt_bars import (
    BAR_EDGE_PX,
    COLOURS,
    EDGE_LIMIT,
    GAP_PX,
    IDLE_COLOUR,
    LABEL_LIMIT,
    LEGEND_RANK,
    MEMORY_PX,
    PLOT_WIDTH_PX,
    ROW,
    TEXT_COLOURS,
    TIME_WIDTH,
    _hover,
    _labels,
    _outline,
    _pieces,
    _row_px,
    _shade,
    lane_y,
    time_unit,
)
from pipesim.figures.memory_panel import add_memory_breakdown, add_memory_over_time, memory_title
from pipesim.figures.page import Page, Table, render_page
from pipesim.sim.exchanges import EXCHANGE_KEYS, FSDP_KEYS
from pipesim.sim.series import GanttSeries, Lane

__all__ = ["COLOURS", "LABEL_LIMIT", "gantt_figure", "gantt_page", "summary_table", "lane_y", "time_unit"]

Figure: TypeAlias = go.Figure  # what gantt_figure returns, for type hints outside pipesim.figures
GIB = 2**30
MS = 1e3  # seconds -> milliseconds, for display


def gantt_figure(
    series: GanttSeries | Sequence[GanttSeries],
    gpu_memory_bytes: float | None = None,
    title: str | None = None,
    labels: bool | None = None,
) -> go.Figure:
    """A plotly Figure with one Gantt chart and one memory chart per schedule, on a shared time axis.

    ``series`` come from :func:`pipesim.sim.series.gantt_series` (or ``simulate_series``, ``report_series``);
    ``gpu_memory_bytes`` is the HBM the memory panels measure against; ``labels`` forces bar labels on or off
    (default: on when the figure has at most :data:`LABEL_LIMIT` compute bars, on each bar they fit). A rank's
    later model chunks (interleaved, V-shape) are drawn in lighter shades and labelled ``s<stage>·m<mb>``.
    Next to each Gantt chart, the memory per GPU of every rank at its peak, by component (see
    :mod:`pipesim.figures.memory_panel`). Displays inline in a notebook.
    """
    panels = [series] if isinstance(series, GanttSeries) else list(series)
    if not panels:
        raise ValueError("gantt_figure needs at least one schedule's series")
    compute_bars = sum(g.size for s in panels for g in s.groups if g.lane == Lane.COMPUTE)
    show_labels = compute_bars <= LABEL_LIMIT if labels is None else labels
    edges = sum(s.num_bars for s in panels) <= EDGE_LIMIT
    t_end_s = max(s.timeline.step_time_s for s in panels)  # all iterations drawn
    unit, scale = time_unit(t_end_s)
    t_end = t_end_s * scale
    px_per_unit = PLOT_WIDTH_PX * TIME_WIDTH / (t_end * 1.01)
    heights = []
    for s in panels:
        heights += [s.num_ranks * _row_px(s.num_ranks), MEMORY_PX]
    total_px = sum(heights) + GAP_PX * (len(heights) - 1) + 150
    plot_px = sum(heights) + GAP_PX * (len(heights) - 1)
    titles = []
    for s in panels:
        m = s.metrics
        step = f"{m.step_time_s * scale:.3f} {unit}"
        chunks = " · lighter: later chunks on a rank" if s.num_stages > s.num_ranks else ""
        titles += [
            f"<b>{s.name}</b>  ·  pp {m.pp}, vpp {m.vpp}, {m.microbatches} microbatches  ·  "
            f"step {step}  ·  bubble {m.bubble_ratio:.1%}{chunks}",
            "memory at peak" if s.rank_memory else "activations at peak",
            memory_title(s, gpu_memory_bytes),
        ]
    specs: list[list[dict[str, object] | None]] = []
    for _ in panels:
        specs += [[{}, {}], [{}, None]]
    fig = make_subplots(
        rows=len(heights),
        cols=2,
        specs=specs,
        shared_xaxes=True,
        column_widths=[TIME_WIDTH, 1 - TIME_WIDTH],
        horizontal_spacing=0.02,
        row_heights=heights,
        vertical_spacing=GAP_PX / plot_px if len(heights) > 1 else 0.0,
        subplot_titles=titles,
    )
    shown: set[str] = set()
    for i, s in enumerate(panels):
        row = 2 * i + 1
        row_px = _row_px(s.num_ranks)
        ranks = np.arange(s.num_ranks, dtype=np.int32)
        cy, cw = lane_y(s, Lane.COMPUTE)
        # Idle background of every compute lane: what is not covered by a bar is bubble.
        idle_x = np.empty(3 * s.num_ranks, dtype=np.float32)
        idle_x[0::3], idle_x[1::3], idle_x[2::3] = 0.0, s.timeline.step_time_s * scale, np.nan
        fig.add_trace(
            go.Scatter(
                x=idle_x,
                y=np.repeat(ranks * ROW + cy, 3).astype(np.int16),
                mode="lines",
                line={"color": IDLE_COLOUR, "width": cw * row_px, "simplify": False},
                name="idle (bubble)",
                legendgroup="idle",
                showlegend="idle" not in shown,
                hoverinfo="skip",
            ),
            row=row,
            col=1,
        )
        shown.add("idle")
        for whole in s.groups:
            offset, frac = lane_y(s, whole.lane)
            for chunk, g in _pieces(s, whole):
                x, y = _outline(g, offset, frac, scale)
                colour = _shade(COLOURS[g.key], chunk)
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=y,
                        mode="lines" if edges else "none",
                        fill="toself",
                        fillcolor=colour,
                        line={"shape": "hv", "simplify": False, "width": BAR_EDGE_PX, "color": "white"},
                        name=g.label,
                        legendgroup=g.key,
                        legendrank=LEGEND_RANK[g.key],
                        showlegend=g.key not in shown,
                        hoverinfo="skip",
                        hoveron="points",
                        meta={
                            "pipesim": "bars",
                            "kind": g.key,
                            "chunk": chunk,
                            "schedule": s.name,
                            "row": ROW,
                            "offset": offset,
                            "top": offset - max(int(round(frac * ROW / 2)), 1),
                        },
                    ),
                    row=row,
                    col=1,
                )
                shown.add(g.key)
                custom, template = _hover(g, s.name, scale, unit)
                label = show_labels and g.lane == Lane.COMPUTE and g.key != "OPT" and g.size > 0
                text = _labels(g, s.chunks, s.num_stages > s.num_ranks, px_per_unit, scale) if label else None
                fig.add_trace(
                    go.Scatter(
                        x=((g.start_s + g.end_s) * (scale / 2)).astype(np.float32),
                        y=(g.rank.astype(np.int32) * ROW + offset).astype(
                            np.int16 if s.num_ranks < 300 else np.int32
                        ),
                        mode="text" if text and any(text) else "none",
                        text=text if text and any(text) else None,
                        textfont={
                            "size": max(8, min(11, int(row_px * 0.36))),
                            "color": TEXT_COLOURS.get(g.key, "white"),
                        },
                        customdata=custom,
                        hovertemplate=template,
                        hoverlabel={"bgcolor": colour},
                        name=g.label,
                        legendgroup=g.key,
                        showlegend=False,
                        meta={"pipesim": "hover", "kind": g.key, "chunk": chunk, "schedule": s.name},
                    ),
                    row=row,
                    col=1,
                )
        yaxis = {
            "range": [s.num_ranks * ROW - ROW / 2, -ROW / 2],
            "tickvals": (ranks * ROW + cy).tolist(),
            "ticktext": [f"rank {r}" for r in range(s.num_ranks)],
            "tickfont": {"size": max(9, min(12, int(row_px * 0.6)))},
            "fixedrange": True,
            "showgrid": False,
            "zeroline": False,
            "ticks": "",
        }
        fig.update_yaxes(yaxis, row=row, col=1)
        add_memory_breakdown(fig, s, row, 2, ranks * ROW + cy, cw * ROW, gpu_memory_bytes, shown)
        fig.update_yaxes({**yaxis, "showticklabels": False}, row=row, col=2)
        fig.update_xaxes(
            fixedrange=True,
            showticklabels=True,
            tickfont={"size": 9},
            showgrid=True,
            gridcolor="#e3e6eb",
            row=row,
            col=2,
        )
        # Memory over time, one step line per rank, with its own legend (by rank) beside the panel.
        legend = f"legend{i + 2}"
        add_memory_over_time(fig, s, row + 1, 1, scale, unit, t_end, gpu_memory_bytes, legend)
        domain = fig.get_subplot(row + 1, 1).yaxis.domain
        fig.update_layout(
            {
                legend: {
                    "x": TIME_WIDTH + 0.03,
                    "xanchor": "left",
                    "y": domain[1],
                    "yanchor": "top",
                    "font": {"size": 10},
                    "tracegroupgap": 0,
                }
            }
        )
    fig.update_xaxes(
        range=[0.0, t_end * 1.01],
        showticklabels=True,
        showgrid=True,
        gridcolor="#e3e6eb",
        zeroline=False,
        ticksuffix=f" {unit}",
        exponentformat="none",
        tickfont={"size": 10},
        col=1,
    )
    fig.update_xaxes(title_text=f"time ({unit})", row=len(heights), col=1)
    for annotation in fig.layout.annotations:
        x0 = 0.0 if annotation.x < TIME_WIDTH else TIME_WIDTH + 0.02
        annotation.update(xanchor="left", x=x0, font={"size": 13 if x0 == 0.0 else 11})
    fig.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0.0, "xanchor": "left"} if title else None,
        height=total_px,
        margin={"l": 80, "r": 24, "t": 110 if title else 86, "b": 48},
        legend={"orientation": "h", "yanchor": "bottom", "x": 0.0, "xanchor": "left", "y": 1 + 40 / plot_px},
        barmode="overlay",
        hovermode="closest",
        hoverdistance=40,
        dragmode="zoom",
        font={"family": "DejaVu Sans, Arial, sans-serif", "size": 12, "color": "#1f2430"},
        plot_bgcolor="white",
        uirevision="pipesim",
    )
    if gpu_memory_bytes is None:
        fig.add_annotation(
            text="GPU memory capacity not given: no capacity line",
            xref="paper",
            yref="paper",
            x=1.0,
            y=1 + 64 / plot_px,  # above the legend's row, inside the top margin
            xanchor="right",
            yanchor="bottom",
            showarrow=False,
            font={"size": 11, "color": "#5b6372"},
        )
    return fig


def summary_table(panels: Sequence[GanttSeries]) -> Table:
    """One row per schedule: step time, bubble, peak activation memory and communication time per kind (with
    EP all-to-alls, CP exchanges and FSDP all-gathers and reduce-scatters, when a schedule has them: the sums of
    their bars' durations)."""
    columns: tuple[str, ...] = (
        "schedule", "pp", "vpp", "microbatches", "step ms", "bubble", "bubble/ideal", "peak act GiB",
        "peak act microbatches", "p2p ms", "p2p exposed ms", "TP ms", "DP ms", "DP exposed ms", "recompute ms",
    )  # fmt: skip
    extra = [k for k in EXCHANGE_KEYS + FSDP_KEYS if any(s.group(k) is not None for s in panels)]
    columns += tuple(f"{k} ms" for k in extra)
    rows = []
    for s in panels:
        m = s.metrics
        sums = tuple(f"{float(g.duration_s.sum()) * MS:.3f}" if (g := s.group(k)) else "0.000" for k in extra)
        rows.append(
            (
                m.schedule,
                str(m.pp),
                str(m.vpp),
                str(m.microbatches),
                f"{m.step_time_s * MS:.3f}",
                f"{m.bubble_ratio:.1%}",
                f"{m.bubble_over_ideal:.3f}",
                f"{m.peak_activation_bytes / GIB:.2f}",
                f"{m.peak_activation_microbatches:g}",
                f"{m.p2p_time_s * MS:.3f}",
                f"{m.p2p_exposed_s * MS:.3f}",
                f"{m.tp_comm_s * MS:.3f}",
                f"{m.dp_comm_s * MS:.3f}",
                f"{m.dp_exposed_s * MS:.3f}",
                f"{m.recompute_s * MS:.3f}",
            )
            + sums
        )
    return Table(
        columns=columns,
        rows=tuple(rows),
        caption="Summary (ms = 10^-3 s; GiB = 2^30 bytes; comm times are sums over all ranks)",
        numeric=(False,) + (True,) * (len(columns) - 1),
    )


NOTES = (
    "bubble: idle fraction of the pipeline phase, 1 - busy / (ranks x pipeline time); "
    "bubble/ideal: Megatron-LM's idle / busy.",
    "peak act: most activation memory a rank holds at once; peak act microbatches counts it in microbatches "
    "of one whole stage.",
    "p2p exposed: idle time of receivers caused only by transfers; DP exposed: reduction time after the "
    "last backward.",
    "Drag to zoom time, double-click to reset, click a legend entry to hide a kind; hover a bar's middle for "
    "its stage, microbatch, start, end and duration.",
)


def gantt_page(
    panels: Sequence[GanttSeries],
    scenario: Sequence[tuple[str, str]] = (),
    gpu_memory_bytes: float | None = None,
    title: str = "pipesim timeline",
    plotlyjs: str = "embed",
) -> str:
    """The HTML page of ``pipesim gantt``: scenario header, summary table, the Gantt figure (plotly.js
    embedded unless ``plotlyjs`` says otherwise, see :func:`pipesim.figures.page.render_page`)."""
    fig = gantt_figure(panels, gpu_memory_bytes=gpu_memory_bytes)
    page = Page(
        title=title,
        scenario=tuple(scenario),
        tables=(summary_table(panels),),
        figures=(fig,),
        notes=NOTES,
        figure_names=("Gantt chart and memory per rank",),
    )
    return render_page(page, plotlyjs)
