"""The bars of a Gantt chart: colours, lanes within a rank's row, outlines, hover data and labels.

Pure array work for :mod:`pipesim.figures.gantt` (which assembles the figure); nothing here computes a
simulation quantity.
"""

from __future__ import annotations

import numpy as np

from pipesim.sim.series import GROUP_ORDER, GanttSeries, Lane, SpanGroup

MS = 1e3  # seconds -> milliseconds, for display
MB = 1e6  # bytes per MB (SI), for display

# Colour per kind of bar (Tableau 10-like, distinguishable in print and for common colour-vision deficiencies).
COLOURS: dict[str, str] = {
    "F": "#4c78a8",
    "B": "#54a24b",
    "FB": "#2e7d6b",
    "I": "#72b7b2",
    "W": "#e4b300",
    "OPT": "#79706e",
    "RECOMPUTE": "#b279a2",
    "TP": "#ff9da6",
    "SEND_ACTIVATION": "#9d755d",
    "SEND_GRAD": "#f58518",
    "CP": "#17becf",
    "EP": "#8c6bb1",
    "FSDP_AG": "#b6992d",
    "FSDP_RS": "#3b3b98",
    "DP_REDUCE": "#e45756",
}
TEXT_COLOURS: dict[str, str] = {"W": "#1f2430", "I": "#1f2430"}
IDLE_COLOUR = "#eceef2"
LABEL_LIMIT = 4000
PLOT_WIDTH_PX = 1300  # typical plot width, to decide whether labels fit
LEGEND_RANK = {key: 10 * (i + 1) for i, (key, _, _) in enumerate(GROUP_ORDER)}  # legend in GROUP_ORDER
TIME_WIDTH = 0.8  # share of the width for the time axis; the rest shows memory per rank

# A rank's row is ROW y units tall (rank r's row spans r*ROW - ROW/2 .. r*ROW + ROW/2, rank 0 at the top).
# Each lane: (centre offset, thickness as a fraction of the row). Integer y keeps the arrays int16. The
# communication lane under the compute lane holds one to three sub-lanes, in COMM_ORDER, as present.
ROW = 100
LANES: dict[str, tuple[int, float]] = {
    Lane.COMPUTE: (-12, 0.56),
    Lane.DETAIL: (8, 0.16),
}
COMM_ORDER = (Lane.P2P, Lane.EXCHANGE, Lane.COLLECTIVE)
COMM_SLOTS: dict[int, tuple[tuple[int, float], ...]] = {
    1: ((31, 0.20),),
    2: ((27, 0.11), (39, 0.09)),
    3: ((25, 0.08), (34, 0.08), (43, 0.08)),
}
MEMORY_PX = 170
BAR_EDGE_PX = 0.6  # white edge that separates touching bars ...
EDGE_LIMIT = 20000  # ... drawn up to this many bars (stroking doubles the drawing time)
GAP_PX = 64


def _row_px(num_ranks: int) -> int:
    """Pixels per rank row: roomy for a few ranks, compact (still labelled) for many."""
    return int(max(14, min(44, 480 // max(num_ranks, 1))))


def time_unit(t_end_s: float) -> tuple[str, float]:
    """(unit, factor from seconds) of the time axis: seconds for steps of a second or more, else ms."""
    return ("s", 1.0) if t_end_s >= 1.0 else ("ms", MS)


def _labels(
    group: SpanGroup, chunks: tuple[int, ...], with_stage: bool, px_per_unit: float, scale: float
) -> list[str]:
    """Per-bar text: ``s3·m5`` (stage, microbatch) when the rank holds several stages, else the microbatch,
    on each bar wide enough for it at the initial zoom (6 px per character plus margins); else empty."""
    width_px = group.duration_s * scale * px_per_unit
    out = []
    pair = group.pair_microbatch.tolist() if group.pair_microbatch is not None else None
    for i, (st, mb, w) in enumerate(
        zip(group.stage.tolist(), group.microbatch.tolist(), width_px.tolist(), strict=True)
    ):
        full = f"s{st}·m{mb}" if with_stage else str(mb)
        short = str(mb)
        if pair is not None:  # an F&B pair: both microbatches, forward first
            full = short = f"{mb}+{pair[i]}"
        out.append(full if w >= 6 * len(full) + 3 else short if w >= 6 * len(short) + 3 else "")
    return out


def _shade(colour: str, chunk: int) -> str:
    """``colour`` lightened towards white for a rank's later chunks (chunk 0 unchanged)."""
    if chunk == 0:
        return colour
    t = min(0.22 + 0.14 * (chunk - 1), 0.6)
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * t):02x}" for c in rgb)


def lane_y(series: GanttSeries, lane: str) -> tuple[int, float]:
    """(y offset within a rank row, thickness fraction) of ``lane`` in ``series``'s chart: the compute lane
    and its detail strip, or a sub-lane of the communication lane (sends always; EP/CP exchanges and DP
    reductions or FSDP collectives when the chart has them)."""
    if lane in LANES:
        return LANES[lane]
    present = {g.lane for g in series.groups}
    comm = [x for x in COMM_ORDER if x == Lane.P2P or x in present]
    return COMM_SLOTS[len(comm)][comm.index(lane)]


def _outline(group: SpanGroup, offset: int, frac: float, scale: float = MS) -> tuple[np.ndarray, np.ndarray]:
    """x (time units, float32) and y (int) of one closed outline that fills exactly the bars of ``group``.

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
    bx[0::2] = group.start_s * scale
    bx[1::2] = group.end_s * scale
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


def _hover(group: SpanGroup, schedule: str, scale: float = MS, unit: str = "ms") -> tuple[np.ndarray, str]:
    """Per-bar hover data (float32 columns) and the template that shows it."""
    cols: list[np.ndarray] = [group.rank, group.stage, group.microbatch]
    head = "<b>%{fullData.name}</b> · " + schedule + "<br>rank %{customdata[0]}"
    body = "" if group.key == "OPT" else ", stage %{customdata[1]}, microbatch %{customdata[2]}"
    if group.key == "DP_REDUCE":  # a stage's gradients, all microbatches
        body = ", stage %{customdata[1]} (all microbatches)"
    if group.key == "FB" and group.pair_stage is not None and group.pair_microbatch is not None:
        cols += [group.pair_stage, group.pair_microbatch]
        body = (
            "<br>F: stage %{customdata[1]}, microbatch %{customdata[2]}"
            "<br>B: stage %{customdata[3]}, microbatch %{customdata[4]} (overlapped with the F)"
        )
    if group.lane == Lane.P2P:
        cols.append(group.peer)
        body += " → rank %{customdata[3]}"
    k = len(cols)
    cols += [group.start_s * scale, group.end_s * scale, group.duration_s * scale]
    times = (
        f"<br>start %{{customdata[{k}]:.3f}} {unit}<br>end %{{customdata[{k + 1}]:.3f}} {unit}"
        f"<br>duration %{{customdata[{k + 2}]:.3f}} {unit}"
    )
    if group.exposed_s is not None and group.key == "CP":
        cols.append(group.exposed_s * scale)
        times += f", exposed %{{customdata[{len(cols) - 1}]:.3f}} {unit} (the rest hidden behind attention)"
    if group.bytes is not None:
        cols.append(group.bytes / MB)
        what = "this collective" if group.key.startswith("FSDP") else "all layers of the stage"
        times += f"<br>%{{customdata[{len(cols) - 1}]:.2f}} MB moved per GPU ({what})"
    return np.stack(cols, axis=1).astype(np.float32), head + body + times + "<extra></extra>"


def _pieces(s: GanttSeries, g: SpanGroup) -> list[tuple[int, SpanGroup]]:
    """``g`` split by model chunk (compute bars of ranks that hold several stages), else ``[(0, g)]``."""
    if g.lane != Lane.COMPUTE or g.key == "OPT" or s.num_stages <= s.num_ranks or not s.stage_to_rank:
        return [(0, g)]
    chunk = np.asarray(s.chunks, dtype=np.int32)[g.stage]
    return [(int(c), g.subset(chunk == c)) for c in np.unique(chunk)]
