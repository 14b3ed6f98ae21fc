"""Gantt charts of simulated steps: draws :class:`~pipesim.sim.series.GanttSeries`, computes nothing.

One chart per schedule on a shared time axis (milliseconds): a row per rank holding its compute lane (F, B, I,
W, optimizer; recompute and the TP share of a pass as a strip on the lower edge of the bar) and, just under
it, its communication lane (sends; DP gradient reduction in a sub-lane of its own when present). Idle time
(bubbles) shows as the grey lane background. Under each chart, the activation memory of every rank over time
and, when known, the GPU's memory capacity as a dashed line.

Scale: every kind of bar is one SVG ``scatter`` trace drawn as line segments separated by NaN gaps (one path
element per kind, however many bars), with numpy arrays sent as plotly's base64 typed arrays; hover comes
from one invisible point per bar at its middle. Microbatch numbers are written on the bars only when a figure
has at most :data:`LABEL_LIMIT` compute bars. The y axes are fixed (zoom and pan move time only), so rank
labels stay readable at any zoom.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from pipesim.figures.page import Page, Table, render_page
from pipesim.sim.series import GanttSeries, Lane, SpanGroup

__all__ = ["COLOURS", "LABEL_LIMIT", "gantt_figure", "gantt_page", "summary_table", "lane_y"]

GIB = 2**30
MS = 1e3  # seconds -> milliseconds, for display

# Colour per kind of bar (Tableau 10-like, distinguishable in print and for common colour-vision deficiencies).
COLOURS: dict[str, str] = {
    "F": "#4c78a8",
    "B": "#54a24b",
    "I": "#72b7b2",
    "W": "#e4b300",
    "OPT": "#79706e",
    "RECOMPUTE": "#b279a2",
    "TP": "#ff9da6",
    "SEND_ACTIVATION": "#9d755d",
    "SEND_GRAD": "#f58518",
    "DP_REDUCE": "#e45756",
}
TEXT_COLOURS: dict[str, str] = {"W": "#1f2430", "I": "#1f2430"}
IDLE_COLOUR = "#eceef2"
CAPACITY_COLOUR = "#d62728"
LABEL_LIMIT = 4000
PLOT_WIDTH_PX = 1300  # typical plot width, to decide whether labels fit

# A rank's row is ROW y units tall (rank r's row spans r*ROW - ROW/2 .. r*ROW + ROW/2, rank 0 at the top).
# Each lane: (centre offset, thickness as a fraction of the row). Integer y keeps the arrays int16.
ROW = 100
LANES: dict[str, tuple[int, float]] = {
    Lane.COMPUTE: (-12, 0.56),
    Lane.DETAIL: (8, 0.16),
    Lane.P2P: (31, 0.20),
}
LANES_WITH_COLLECTIVES: dict[str, tuple[int, float]] = {
    Lane.COMPUTE: (-12, 0.56),
    Lane.DETAIL: (8, 0.16),
    Lane.P2P: (27, 0.11),
    Lane.COLLECTIVE: (39, 0.09),
}
MEMORY_PX = 170
BAR_EDGE_PX = 0.6  # white edge that separates touching bars ...
EDGE_LIMIT = 20000  # ... drawn up to this many bars (stroking doubles the drawing time)
GAP_PX = 64


def _row_px(num_ranks: int) -> int:
    """Pixels per rank row: roomy for a few ranks, compact (still labelled) for many."""
    return int(max(14, min(44, 480 // max(num_ranks, 1))))


def _labels_fit(group: SpanGroup, t_end_ms: float) -> bool:
    """Whether the microbatch numbers of ``group`` fit inside its shortest bar at the initial zoom (a plot
    about :data:`PLOT_WIDTH_PX` wide, 6 px per digit plus margins)."""
    if not group.size:
        return False
    digits = len(str(int(group.microbatch.max())))
    shortest_px = float(group.duration_s.min()) * MS / t_end_ms * PLOT_WIDTH_PX
    return shortest_px >= 6 * digits + 3


def lane_y(series: GanttSeries, lane: str) -> tuple[int, float]:
    """(y offset within a rank row, thickness fraction) of ``lane`` in ``series``'s chart."""
    lanes = LANES_WITH_COLLECTIVES if series.group("DP_REDUCE") is not None else LANES
    return lanes[lane]


def _outline(group: SpanGroup, offset: int, frac: float) -> tuple[np.ndarray, np.ndarray]:
    """x (ms, float32) and y (int) of one closed outline that fills exactly the bars of ``group``.

    With plotly's ``hv`` line shape, the points (s, top), (e, base) draw a bar: along the base to s, up, across
    to e, down. Each rank's lane starts and ends at (0, base); moving to the next lane is a vertical step at
    x = 0 that the last point retraces, so every edge outside the bars is walked once each way and encloses
    no area. One path element for any number of bars, two points per bar, no NaN gaps (plotly draws a gap
    as a separate element per segment, which does not scale).
    """
    half = max(int(round(frac * ROW / 2)), 1)
    centre = group.rank.astype(np.int32) * ROW + offset
    n = group.size
    bx = np.empty(2 * n, dtype=np.float32)
    bx[0::2] = group.start_s * MS
    bx[1::2] = group.end_s * MS
    by = np.empty(2 * n, dtype=np.int32)
    by[0::2] = centre - half
    by[1::2] = centre + half
    ranks, first = np.unique(group.rank, return_index=True)
    bounds = np.append(first, n)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for r, lo, hi in zip(ranks, bounds[:-1], bounds[1:], strict=True):
        base = int(r) * ROW + offset + half
        xs += [np.zeros(1, np.float32), bx[2 * lo : 2 * hi], np.zeros(1, np.float32)]
        ys += [np.full(1, base, np.int32), by[2 * lo : 2 * hi], np.full(1, base, np.int32)]
    if n:
        xs.append(np.zeros(1, np.float32))
        ys.append(np.full(1, int(ranks[0]) * ROW + offset + half, np.int32))
    x = np.concatenate(xs) if xs else np.zeros(0, np.float32)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int32)
    return x, y.astype(np.int16 if y.size == 0 or y.max() < 2**15 else np.int32)


def _hover(group: SpanGroup, schedule: str) -> tuple[np.ndarray, str]:
    """Per-bar hover data (float32 columns) and the template that shows it."""
    cols: list[np.ndarray] = [group.rank, group.stage, group.microbatch]
    head = "<b>%{fullData.name}</b> · " + schedule + "<br>rank %{customdata[0]}"
    body = "" if group.key == "OPT" else ", stage %{customdata[1]}, microbatch %{customdata[2]}"
    if group.lane == Lane.P2P:
        cols.append(group.peer)
        body += " → rank %{customdata[3]}"
    k = len(cols)
    cols += [group.start_s * MS, group.end_s * MS, group.duration_s * MS]
    times = (
        f"<br>start %{{customdata[{k}]:.3f}} ms<br>end %{{customdata[{k + 1}]:.3f}} ms"
        f"<br>duration %{{customdata[{k + 2}]:.3f}} ms"
    )
    return np.stack(cols, axis=1).astype(np.float32), head + body + times + "<extra></extra>"


def gantt_figure(
    series: GanttSeries | Sequence[GanttSeries],
    gpu_memory_bytes: float | None = None,
    title: str | None = None,
    labels: bool | None = None,
) -> go.Figure:
    """A plotly Figure with one Gantt chart and one memory chart per schedule, on a shared time axis.

    ``series`` come from :func:`pipesim.sim.series.gantt_series` (or ``simulate_series``);
    ``gpu_memory_bytes`` draws the capacity line on the memory charts; ``labels`` forces microbatch labels on
    or off (default: on when the figure has at most :data:`LABEL_LIMIT` compute bars). Displays inline in a
    notebook.
    """
    panels = [series] if isinstance(series, GanttSeries) else list(series)
    if not panels:
        raise ValueError("gantt_figure needs at least one schedule's series")
    compute_bars = sum(g.size for s in panels for g in s.groups if g.lane == Lane.COMPUTE)
    show_labels = compute_bars <= LABEL_LIMIT if labels is None else labels
    edges = sum(s.num_bars for s in panels) <= EDGE_LIMIT
    heights = []
    for s in panels:
        heights += [s.num_ranks * _row_px(s.num_ranks), MEMORY_PX]
    total_px = sum(heights) + GAP_PX * (len(heights) - 1) + 150
    plot_px = sum(heights) + GAP_PX * (len(heights) - 1)
    titles = []
    for s in panels:
        m = s.metrics
        titles += [
            f"<b>{s.name}</b>  ·  pp {m.pp}, vpp {m.vpp}, {m.microbatches} microbatches  ·  "
            f"step {m.step_time_s * MS:.3f} ms  ·  bubble {m.bubble_ratio:.1%}",
            f"{s.name}: activation memory per rank (GiB = 2^30 bytes)",
        ]
    fig = make_subplots(
        rows=len(heights),
        cols=1,
        shared_xaxes=True,
        row_heights=heights,
        vertical_spacing=GAP_PX / plot_px if len(heights) > 1 else 0.0,
        subplot_titles=titles,
    )
    t_end = max(s.timeline.step_time_s for s in panels) * MS
    shown: set[str] = set()
    for i, s in enumerate(panels):
        row = 2 * i + 1
        row_px = _row_px(s.num_ranks)
        ranks = np.arange(s.num_ranks, dtype=np.int32)
        cy, cw = lane_y(s, Lane.COMPUTE)
        # Idle background of every compute lane: what is not covered by a bar is bubble.
        idle_x = np.empty(3 * s.num_ranks, dtype=np.float32)
        idle_x[0::3], idle_x[1::3], idle_x[2::3] = 0.0, s.timeline.step_time_s * MS, np.nan
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
        for g in s.groups:
            offset, frac = lane_y(s, g.lane)
            x, y = _outline(g, offset, frac)
            colour = COLOURS[g.key]
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
                    showlegend=g.key not in shown,
                    hoverinfo="skip",
                    hoveron="points",
                    meta={
                        "pipesim": "bars",
                        "kind": g.key,
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
            custom, template = _hover(g, s.name)
            label = show_labels and g.lane == Lane.COMPUTE and g.key != "OPT" and _labels_fit(g, t_end)
            fig.add_trace(
                go.Scatter(
                    x=((g.start_s + g.end_s) * (MS / 2)).astype(np.float32),
                    y=(g.rank.astype(np.int32) * ROW + offset).astype(
                        np.int16 if s.num_ranks < 300 else np.int32
                    ),
                    mode="text" if label else "none",
                    text=[str(v) for v in g.microbatch] if label else None,
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
                    meta={"pipesim": "hover", "kind": g.key, "schedule": s.name},
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
        # Memory over time, one step line per rank.
        mrow = row + 1
        palette = sample_colorscale("Viridis", np.linspace(0.0, 0.85, max(s.num_ranks, 2)).tolist())
        for r in range(s.num_ranks):
            fig.add_trace(
                go.Scatter(
                    x=(s.memory.time_s[r] * MS).astype(np.float32),
                    y=(s.memory.bytes[r] / GIB).astype(np.float32),
                    mode="lines",
                    line={"color": palette[r], "width": 1.4, "shape": "hv"},
                    name=f"rank {r}",
                    showlegend=False,
                    hovertemplate=f"{s.name} rank {r}<br>%{{y:.3f}} GiB at %{{x:.3f}} ms<extra></extra>",
                    meta={"pipesim": "memory", "rank": r, "schedule": s.name},
                ),
                row=mrow,
                col=1,
            )
        if gpu_memory_bytes is not None:
            fig.add_trace(
                go.Scatter(
                    x=[0.0, t_end],
                    y=[gpu_memory_bytes / GIB] * 2,
                    mode="lines",
                    line={"color": CAPACITY_COLOUR, "width": 2, "dash": "dash"},
                    name=f"GPU memory {gpu_memory_bytes / GIB:g} GiB",
                    legendgroup="capacity",
                    showlegend="capacity" not in shown,
                    hovertemplate=f"GPU memory capacity {gpu_memory_bytes / GIB:g} GiB<extra></extra>",
                    meta={"pipesim": "capacity", "schedule": s.name},
                ),
                row=mrow,
                col=1,
            )
            shown.add("capacity")
        fig.update_yaxes(
            title_text="GiB", fixedrange=True, rangemode="tozero", row=mrow, col=1, tickfont={"size": 10}
        )
    fig.update_xaxes(
        range=[0.0, t_end * 1.01],
        showticklabels=True,
        showgrid=True,
        gridcolor="#e3e6eb",
        zeroline=False,
        ticksuffix=" ms",
        tickfont={"size": 10},
    )
    fig.update_xaxes(title_text="time (ms)", row=len(heights), col=1)
    for annotation in fig.layout.annotations:
        annotation.update(xanchor="left", x=0.0, font={"size": 13})
    fig.update_layout(
        template="plotly_white",
        title={"text": title, "x": 0.0, "xanchor": "left"} if title else None,
        height=total_px,
        margin={"l": 80, "r": 24, "t": 96 if title else 72, "b": 48},
        legend={"orientation": "h", "yanchor": "bottom", "x": 0.0, "xanchor": "left", "y": 1 + 40 / plot_px},
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
            y=1 + 40 / plot_px,
            xanchor="right",
            yanchor="bottom",
            showarrow=False,
            font={"size": 11, "color": "#5b6372"},
        )
    return fig


def summary_table(panels: Sequence[GanttSeries]) -> Table:
    """One row per schedule: step time, bubble, peak activation memory and communication time per kind."""
    columns = (
        "schedule", "pp", "vpp", "microbatches", "step ms", "bubble", "bubble/ideal", "peak act GiB",
        "peak act mb", "p2p ms", "p2p exposed ms", "TP ms", "DP ms", "DP exposed ms", "recompute ms",
    )  # fmt: skip
    rows = []
    for s in panels:
        m = s.metrics
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
    "peak act: most activation memory a rank holds at once (mb: in microbatches of a whole stage).",
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
) -> str:
    """The self-contained HTML page of ``pipesim gantt``: scenario header, summary table, the Gantt figure."""
    fig = gantt_figure(panels, gpu_memory_bytes=gpu_memory_bytes)
    page = Page(
        title=title,
        scenario=tuple(scenario),
        tables=(summary_table(panels),),
        figures=(fig,),
        notes=NOTES,
        figure_names=("Gantt chart and activation memory per rank",),
    )
    return render_page(page)
