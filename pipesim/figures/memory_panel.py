"""The memory parts of a Gantt figure: memory per GPU over time and its breakdown per rank against HBM.

Draws what :class:`~pipesim.sim.series.GanttSeries` carries and computes nothing new: with a real model the
series knows each rank's :class:`~pipesim.cost.memory.RankMemory` (the numbers ``simulate`` and ``plan``
report), so the lines are the whole memory per GPU over time (:meth:`GanttSeries.total_memory`) and the bars
next to the Gantt rows stack weights, gradients, optimizer state, activations (at their peak), the transient
working set and the reserve. For a mixture-of-experts model weights, gradients and optimizer state are each
split into the dense part and the routed experts' part (hatched; ``RankMemory.expert_*``, sharded over the
expert-parallel and expert-data-parallel groups). With synthetic costs only activations are known, and that
is what is drawn (and said).

Axes are scaled to the data: the HBM capacity is drawn when it lies near the data and otherwise stated in
the panel's title, so curves a few GiB apart are not flattened by an 80 GiB range.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from pipesim.sim.series import GanttSeries

__all__ = [
    "COMPONENTS",
    "RANK_LEGEND_LIMIT",
    "add_memory_breakdown",
    "add_memory_over_time",
    "gib_text",
    "memory_title",
]

GIB = 2**30
CAPACITY_COLOUR = "#d62728"
OTHER_RANKS_COLOUR = "#b8bec9"
RANK_LEGEND_LIMIT = 12  # more ranks than this: colour rank 0, the last and the most loaded; others grey

# (RankMemory attribute, legend label, colour) in stacking order, left to right; colours apart from the bars'.
COMPONENTS: tuple[tuple[str, str, str], ...] = (
    ("weights", "weights", "#393b79"),
    ("grads", "gradients", "#5254a3"),
    ("optimizer", "optimizer state", "#9c9ede"),
    ("activations", "activations (peak)", "#d6616b"),
    ("transient", "transient (one layer's backward)", "#e7cb94"),
    ("reserve", "reserve (CUDA context, NCCL)", "#c7c7c7"),
)
EXPERT_SPLIT = ("weights", "grads", "optimizer")  # components with a routed-expert part (RankMemory.expert_*)
EXPERT_PATTERN = {"shape": "/", "fgcolor": "white", "solidity": 0.35}


def gib_text(value_bytes: float, digits: int = 1) -> str:
    """``value_bytes`` in GiB (2^30 bytes) as people read it: ``74.5 GiB``."""
    return f"{value_bytes / GIB:.{digits}f} GiB"


def _rank_colours(series: GanttSeries) -> list[str]:
    """One colour per rank (Viridis); with many ranks only rank 0, the last and the most loaded keep theirs."""
    n = series.num_ranks
    palette = sample_colorscale("Viridis", np.linspace(0.0, 0.85, max(n, 2)).tolist())[:n]
    if n <= RANK_LEGEND_LIMIT:
        return list(palette)
    keep = _highlighted(series)
    return [palette[r] if r in keep else OTHER_RANKS_COLOUR for r in range(n)]


def _peaks(series: GanttSeries) -> list[float]:
    total = series.total_memory()
    return list((total or series.memory).peak_bytes())


def _highlighted(series: GanttSeries) -> set[int]:
    peaks = _peaks(series)
    worst = max(range(series.num_ranks), key=lambda r: (peaks[r], -r))
    return {0, series.num_ranks - 1, worst}


def memory_title(series: GanttSeries, capacity_bytes: float | None) -> str:
    """Title of the memory-over-time panel: what is drawn, and the most loaded rank's headroom."""
    peaks = _peaks(series)
    worst = max(range(series.num_ranks), key=lambda r: (peaks[r], -r))
    what = "memory per GPU" if series.rank_memory else "activation memory"
    text = f"{series.name}: {what} per rank over time · most loaded: rank {worst}, {gib_text(peaks[worst])}"
    if capacity_bytes is not None:
        free = capacity_bytes - peaks[worst]
        verdict = f"{gib_text(free)} free" if free >= 0 else f"OUT OF MEMORY by {gib_text(-free)}"
        text += f" of {gib_text(capacity_bytes)} HBM ({verdict})"
    return text


def add_memory_over_time(
    fig: go.Figure,
    series: GanttSeries,
    row: int,
    col: int,
    time_scale: float,
    time_unit: str,
    t_end: float,
    capacity_bytes: float | None,
    legend: str,
) -> None:
    """One step line per rank (legend ``legend``, by rank) and the y axis scaled to the data."""
    memory = series.total_memory() or series.memory
    colours = _rank_colours(series)
    many = series.num_ranks > RANK_LEGEND_LIMIT
    keep = _highlighted(series) if many else set(range(series.num_ranks))
    other_shown = False
    # Grey ranks first so the coloured ones draw on top.
    for r in sorted(range(series.num_ranks), key=lambda r: (r in keep, r)):
        named = r in keep
        fig.add_trace(
            go.Scatter(
                x=(memory.time_s[r] * time_scale).astype(np.float32),
                y=(memory.bytes[r] / GIB).astype(np.float32),
                mode="lines",
                line={"color": colours[r], "width": 1.6 if named else 0.8, "shape": "hv"},
                name=f"rank {r}" if named else "other ranks",
                legend=legend,
                legendgroup=f"{series.name}/rank {r}" if named else f"{series.name}/others",
                showlegend=named or not other_shown,
                hovertemplate=f"{series.name} rank {r}<br>%{{y:.2f}} GiB at %{{x:.3f}} {time_unit}<extra></extra>",
                meta={"pipesim": "memory", "rank": r, "schedule": series.name},
            ),
            row=row,
            col=col,
        )
        other_shown = other_shown or not named
    lo = min(float(b.min()) for b in memory.bytes)
    hi = max(float(b.max()) for b in memory.bytes)
    if not series.rank_memory:
        lo = 0.0
    pad = 0.08 * (hi - lo) if hi > lo else 0.05 * max(hi, GIB)
    top = hi + pad
    if capacity_bytes is not None and capacity_bytes - hi <= 0.5 * (hi - lo) + pad:
        top = max(top, capacity_bytes + pad)
        fig.add_trace(
            go.Scatter(
                x=[0.0, t_end],
                y=[capacity_bytes / GIB] * 2,
                mode="lines",
                line={"color": CAPACITY_COLOUR, "width": 2, "dash": "dash"},
                name=f"HBM {gib_text(capacity_bytes)}",
                legend=legend,
                legendgroup=f"{series.name}/capacity",
                hovertemplate=f"HBM capacity {gib_text(capacity_bytes, 2)}<extra></extra>",
                meta={"pipesim": "capacity", "schedule": series.name},
            ),
            row=row,
            col=col,
        )
    fig.update_yaxes(
        title_text="GiB",
        fixedrange=True,
        range=[max(0.0, lo - pad) / GIB, top / GIB],
        row=row,
        col=col,
        tickfont={"size": 10},
    )


def _breakdown_parts(series: GanttSeries) -> list[tuple[str, str, str, np.ndarray]]:
    """(key, legend label, colour, bytes per rank) of each stacked part, bottom to top: the
    :data:`COMPONENTS`, each of :data:`EXPERT_SPLIT` as its dense part then its ``expert_<key>`` part when a
    rank holds experts; activations only with synthetic costs."""
    mem = series.rank_memory
    if not mem:
        _, label, colour = COMPONENTS[3]
        return [("activations", label, colour, np.array(series.memory.peak_bytes()))]
    moe = any(getattr(m, "expert_" + k) > 0 for m in mem for k in EXPERT_SPLIT)
    parts = []
    for key, label, colour in COMPONENTS:
        values = np.array([getattr(m, key) for m in mem])
        if moe and key in EXPERT_SPLIT:
            expert = np.array([getattr(m, "expert_" + key) for m in mem])
            parts.append((key, f"{label} (dense)", colour, values - expert))
            parts.append(("expert_" + key, f"{label} (experts)", colour, expert))
        else:
            parts.append((key, label, colour, values))
    return parts


def add_memory_breakdown(
    fig: go.Figure,
    series: GanttSeries,
    row: int,
    col: int,
    y_of_rank: np.ndarray,
    bar_width: float,
    capacity_bytes: float | None,
    shown: set[str],
) -> None:
    """Next to each rank's Gantt row: its memory per GPU at peak, stacked by component (dense and expert parts
    apart for a mixture-of-experts model), against HBM."""
    parts = _breakdown_parts(series)
    total = np.zeros(series.num_ranks)
    for key, label, colour, values in parts:
        if not np.any(values > 0):
            continue
        fig.add_trace(
            go.Bar(
                x=values / GIB,
                y=y_of_rank,
                base=total / GIB,
                orientation="h",
                width=bar_width,
                marker={
                    "color": colour,
                    "line": {"width": 0},
                    **({"pattern": EXPERT_PATTERN} if key.startswith("expert_") else {}),
                },
                name=label,
                legendgroup=f"memory/{key}",
                legendrank=1000 + len(shown),
                showlegend=f"memory/{key}" not in shown,
                customdata=np.arange(series.num_ranks),
                hovertemplate=f"rank %{{customdata}} · {label}: %{{x:.2f}} GiB<extra></extra>",
                meta={"pipesim": "breakdown", "component": key, "schedule": series.name},
            ),
            row=row,
            col=col,
        )
        shown.add(f"memory/{key}")
        total = total + values
    right = float(total.max()) if total.size else 0.0
    if capacity_bytes is not None:
        right = max(right, capacity_bytes)
        free = capacity_bytes - total
        fig.add_trace(
            go.Scatter(
                x=[capacity_bytes / GIB] * 2,
                y=[float(y_of_rank.min()) - bar_width, float(y_of_rank.max()) + bar_width],
                mode="lines",
                line={"color": CAPACITY_COLOUR, "width": 1.5, "dash": "dash"},
                showlegend=False,
                hovertemplate=f"HBM capacity {gib_text(capacity_bytes, 2)}<extra></extra>",
                meta={"pipesim": "breakdown-capacity", "schedule": series.name},
            ),
            row=row,
            col=col,
        )
        fig.add_trace(
            go.Scatter(
                x=np.maximum(total, capacity_bytes) / GIB,  # right of the capacity line
                y=y_of_rank,
                mode="text",
                text=[f" {f / GIB:.1f} free" if f >= 0 else f" OOM +{-f / GIB:.1f}" for f in free],
                textposition="middle right",
                textfont={"size": 10, "color": ["#5b6372" if f >= 0 else CAPACITY_COLOUR for f in free]},
                showlegend=False,
                hoverinfo="skip",
                meta={"pipesim": "breakdown-free", "schedule": series.name},
            ),
            row=row,
            col=col,
        )
    fig.update_xaxes(range=[0.0, right * 1.45 / GIB], title_text="GiB", title_standoff=2, row=row, col=col)
