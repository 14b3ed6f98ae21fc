"""The roofline chart and page: every operator of a transformer layer on the GPU's roofline.

Left: a log-log chart of arithmetic intensity (FLOPs per HBM byte) against FLOP/s, with the memory slope
(intensity x HBM bandwidth) and one compute ceiling per precision the GPU has; each operator is a point at
(intensity, predicted FLOP/s), sized by its share of the layer's time, coloured by kind, one marker symbol
per precision shown; hover gives name, FLOPs, bytes, intensity, attainable and predicted FLOP/s, time and
bound. Right: each operator's time (collectives included, which have no place on a roofline), per precision.

The page is self-contained (plotly.js inlined, no CDN) and deterministic (fixed element ids).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pipesim.cost.roofline import RooflineTable
from pipesim.figures.page import Page, Table, render_page

__all__ = ["roofline_figure", "roofline_html", "table_rows", "TABLE_COLUMNS", "TABLE_LEGEND"]

KIND_COLORS = {"gemm": "#1f77b4", "attention": "#9467bd", "elementwise": "#ff7f0e", "comm": "#7f7f7f"}
ROOF_COLORS = {
    "fp4": "#9467bd",
    "fp8": "#d62728",
    "bf16": "#2ca02c",
    "fp16": "#17becf",
    "tf32": "#8c564b",
    "fp32": "#bcbd22",
}
SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x")
TABLE_COLUMNS = (
    "op",
    "ph",
    "kind",
    "GFLOP",
    "HBM MB",
    "FLOP/B",
    "attain TF/s",
    "pred TF/s",
    "time us",
    "bound",
    "share",
)
TABLE_LEGEND = (
    "ph: F forward, I backward for inputs, W backward for weights; FLOP/B: arithmetic intensity; attain: "
    "min(peak, intensity x HBM bandwidth); pred: FLOPs / predicted time; TF/s = 1e12 FLOP/s, MB = 1e6 bytes, "
    "us = 1e-6 s; collectives: (buffer MB, nccl-tests size) in the HBM column; comm*: overlapped with a GEMM, "
    "only the excess counts"
)
_KIND_SHORT = {"elementwise": "eltwise", "attention": "attn"}


def _fmt(x: float | None, scale: float, digits: int) -> str:
    return "-" if x is None else f"{x / scale:,.{digits}f}"


def table_rows(table: RooflineTable) -> list[tuple[str, ...]]:
    """The formatted rows of one roofline table (columns :data:`TABLE_COLUMNS`, legend
    :data:`TABLE_LEGEND`)."""
    out: list[tuple[str, ...]] = []
    for r in table.rows:
        out.append(
            (
                r.name,
                r.phase,
                _KIND_SHORT.get(r.kind, r.kind),
                _fmt(r.flops, 1e9, 1) if r.kind != "comm" else "-",
                _fmt(r.hbm_bytes, 1e6, 1) if r.kind != "comm" else f"({r.comm_bytes / 1e6:,.1f})",
                _fmt(r.intensity_flops_per_byte, 1.0, 1),
                _fmt(r.attainable_flops_per_s, 1e12, 1),
                _fmt(r.predicted_flops_per_s, 1e12, 1),
                f"{r.predicted_time_s * 1e6:,.1f}",
                "comm*" if r.bound == "comm-overlapped" else r.bound,
                f"{r.share:.1%}",
            )
        )
    return out


def _hover(table: RooflineTable) -> list[str]:
    texts = []
    for r in table.rows:
        if r.kind == "comm":
            continue
        texts.append(
            f"<b>{html.escape(r.name)}</b> ({r.phase}, {r.kind}, {table.precision})<br>"
            f"FLOPs {r.flops:.4g}<br>HBM bytes {r.hbm_bytes:.4g}<br>"
            f"intensity {_fmt(r.intensity_flops_per_byte, 1.0, 1)} FLOP/byte<br>"
            f"attainable {_fmt(r.attainable_flops_per_s, 1e12, 1)} TFLOP/s ({r.roof_precision} roof)<br>"
            f"predicted {_fmt(r.predicted_flops_per_s, 1e12, 1)} TFLOP/s<br>"
            f"time {r.predicted_time_s * 1e6:,.1f} us ({r.share:.1%} of the layer)<br>bound {r.bound}"
        )
    return texts


def roofline_figure(tables: Sequence[RooflineTable]) -> go.Figure:
    """The roofline chart (left) and per-operator time bars (right) of one or more tables of the same layer
    and GPU at different precisions."""
    first = tables[0]
    gpu = first.gpu
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.62, 0.38],
        horizontal_spacing=0.14,
        subplot_titles=(
            f"Roofline of {gpu.name} (HBM {gpu.hbm_Bps / 1e12:g} TB/s)",
            "Time per operator, one layer, forward + backward",
        ),
    )
    points = [r for t in tables for r in t.rows if r.intensity_flops_per_byte and r.flops > 0]
    xs = [r.intensity_flops_per_byte for r in points if r.intensity_flops_per_byte]
    roofs = first.roofs
    ridges = [p / gpu.hbm_Bps for p in roofs.values()]
    x_lo = min([0.1, *[x / 2 for x in xs]])
    x_hi = max([1e4, *[x * 2 for x in xs], *[r * 4 for r in ridges]])
    # Memory slope, once (same bandwidth for every precision), then one compute ceiling per precision.
    top = max(roofs.values())
    fig.add_trace(
        go.Scatter(
            x=[x_lo, top / gpu.hbm_Bps],
            y=[x_lo * gpu.hbm_Bps, top],
            mode="lines",
            line={"color": "#444", "width": 2},
            name=f"HBM {gpu.hbm_Bps / 1e12:g} TB/s",
            legendgroup="roofs",
            hovertemplate="memory roof: %{x:.3g} FLOP/byte x bandwidth = %{y:.3s}FLOP/s<extra></extra>",
        ),
        row=1,
        col=1,
    )
    # Precisions with the same peak (bf16 and fp16) share one ceiling.
    ceilings: dict[float, list[str]] = {}
    for prec, peak in roofs.items():
        ceilings.setdefault(peak, []).append(prec)
    for peak, precs in ceilings.items():
        ridge = peak / gpu.hbm_Bps
        label = " / ".join(precs)
        fig.add_trace(
            go.Scatter(
                x=[ridge, x_hi],
                y=[peak, peak],
                mode="lines",
                line={"color": ROOF_COLORS.get(precs[0], "#000"), "width": 2},
                name=f"{label} {peak / 1e12:g} TFLOP/s (ridge {ridge:.0f} FLOP/byte)",
                legendgroup="roofs",
                hovertemplate=f"{label} roof {peak / 1e12:g} TFLOP/s, ridge {ridge:.1f} FLOP/byte<extra></extra>",
            ),
            row=1,
            col=1,
        )
    total_max = max(r.predicted_time_s for t in tables for r in t.rows)
    for i, table in enumerate(tables):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        by_name = dict(zip([r.name for r in table.rows if r.kind != "comm"], _hover(table), strict=True))
        for kind in ("gemm", "attention", "elementwise"):
            rows = [r for r in table.rows if r.kind == kind and r.intensity_flops_per_byte and r.flops > 0]
            if not rows:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[r.intensity_flops_per_byte for r in rows],
                    y=[r.predicted_flops_per_s for r in rows],
                    mode="markers",
                    marker={
                        "symbol": symbol,
                        "color": KIND_COLORS[kind],
                        "size": [8 + 22 * (r.predicted_time_s / total_max) ** 0.5 for r in rows],
                        "line": {"color": "white", "width": 1},
                        "opacity": 0.85,
                    },
                    name=f"{kind} ops ({table.precision})",
                    legendgroup=f"ops-{table.precision}",
                    text=[by_name[r.name] for r in rows],
                    hovertemplate="%{text}<extra></extra>",
                ),
                row=1,
                col=1,
            )
    fig.update_xaxes(type="log", title_text="arithmetic intensity (FLOPs per HBM byte)", row=1, col=1)
    y_lo = x_lo * gpu.hbm_Bps
    decades = range(math.floor(math.log10(y_lo)), math.ceil(math.log10(top)) + 1)
    fig.update_yaxes(
        type="log",
        tickvals=[10.0**d for d in decades],
        ticktext=[_si_flops(10.0**d) for d in decades],
        title_text="FLOP/s (points: predicted; lines: attainable)",
        row=1,
        col=1,
    )
    fig.update_xaxes(exponentformat="SI", row=1, col=1)
    fig.update_xaxes(range=[math.log10(x_lo), math.log10(x_hi)], row=1, col=1)

    # Right panel: time per operator (us), grouped by precision, in layer order (top to bottom).
    labels = [f"{r.name} [{r.phase}]" for r in first.rows]
    for i, table in enumerate(tables):
        fig.add_trace(
            go.Bar(
                y=[f"{r.name} [{r.phase}]" for r in table.rows],
                x=[r.predicted_time_s * 1e6 for r in table.rows],
                orientation="h",
                name=f"time ({table.precision}, layer {table.layer_s * 1e3:.2f} ms)",
                marker={
                    "color": [KIND_COLORS[r.kind] for r in table.rows],
                    "pattern": {"shape": "" if i == 0 else "/"},
                    "opacity": 1.0 if i == 0 else 0.6,
                },
                customdata=[[r.bound, f"{r.share:.1%}"] for r in table.rows],
                hovertemplate=f"%{{y}} ({table.precision}): %{{x:,.1f}} us, %{{customdata[0]}}-bound, "
                "%{customdata[1]} of the layer<extra></extra>",
            ),
            row=1,
            col=2,
        )
    fig.update_yaxes(
        categoryorder="array", categoryarray=list(reversed(labels)), tickfont={"size": 10}, row=1, col=2
    )
    fig.update_xaxes(title_text="time (us = 1e-6 s)", row=1, col=2)
    lay = first.layout
    fig.update_layout(
        barmode="group",
        height=max(720, 18 * len(labels) * len(tables) // 2 + 200),
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0.0, "font": {"size": 11}},
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        title={
            "text": f"{first.model.name}, tp={lay.tp}, micro-batch {lay.micro_batch_size}, seq "
            f"{lay.seq(first.model)}: one transformer layer on one TP rank",
            "x": 0.01,
        },
    )
    return fig


def _si_flops(x: float) -> str:
    for scale, unit in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if x >= scale:
            return f"{x / scale:g} {unit}FLOP/s"
    return f"{x:g} FLOP/s"


def roofline_html(tables: Sequence[RooflineTable], notes: Sequence[str] = (), plotlyjs: str = "embed") -> str:
    """The whole roofline page (the offline page machinery of :mod:`pipesim.figures.page`): a header with the
    scenario and notes, the chart, then one table per precision; plotly.js inlined, byte-for-byte
    deterministic."""
    first = tables[0]
    lay, model, gpu = first.layout, first.model, first.gpu
    scenario = (
        ("model", model.name),
        ("gpu", gpu.name),
        ("tp", str(lay.tp)),
        ("micro-batch", str(lay.micro_batch_size)),
        ("seq", str(lay.seq(model))),
        ("sequence parallel", "on" if lay.sequence_parallel else "off"),
        ("attention", lay.attention),
        ("recompute", lay.recompute),
        ("precision", ", ".join(t.precision for t in tables)),
    )
    return render_page(
        Page(
            title=f"Roofline: {model.name} on {gpu.name}",
            scenario=scenario,
            notes=tuple(notes),
            figures=(roofline_figure(tables),),
            figure_names=("roofline chart",),
            appendix=tuple(_page_table(t) for t in tables),
            appendix_notes=(TABLE_LEGEND,),
        ),
        plotlyjs,
    )


_NUMERIC = (False, False, False, True, True, True, True, True, True, False, True)


def _page_table(table: RooflineTable) -> Table:
    caption = (
        f"{table.precision}: peak {table.gpu.peak(table.precision) / 1e12:g} TFLOP/s, ridge "
        f"{table.ridge_flops_per_byte:.0f} FLOP/byte; layer forward {table.forward_s * 1e3:.3f} ms + backward "
        f"{table.backward_s * 1e3:.3f} ms = {table.layer_s * 1e3:.3f} ms (MB = 1e6 bytes)"
    )
    return Table(tuple(TABLE_COLUMNS), tuple(table_rows(table)), caption=caption, numeric=_NUMERIC)
