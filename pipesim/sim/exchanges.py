"""The expert all-to-alls and context-parallel key/value exchanges inside a simulated step's passes.

Both run on the compute stream inside a pass (:mod:`pipesim.cost.moe_ops`, timed by
:func:`pipesim.cost.times.pass_times`): per MoE layer the token dispatch and combine all-to-alls over the
expert-parallel group (Megatron-Core's all-to-all token dispatcher), per layer the key/value exchange over the
context-parallel group (a ring of cp - 1 send/receive rounds overlapped with the attention, Liu et al. 2023
"Ring Attention with Blockwise Transformers", arXiv:2310.01889; or Llama 3's all-gather, arXiv:2407.21783
Section 3.3.2). :class:`Exchanges` holds, per stage and microbatch, their seconds (whole duration, and for CP
the part the attention does not hide) and bytes (:mod:`pipesim.cost.traffic`) in the forward and in the
backward (whose exchanges all run in its input-gradient phase I, recomputed forward included).

:func:`exchange_rows` places them in a timeline, one bar per pass and kind, the rule the Gantt chart
(:mod:`pipesim.sim.series`) and the Chrome trace (:mod:`pipesim.sim.trace`) both draw: the all-to-alls as long
as their duration and ending with the pass, the CP exchange just before them (a layer's attention precedes its
MLP), each clamped to the pass. Where inside the pass the layers' exchanges fall is not modelled.

FSDP / ZeRO-3 parameter all-gathers and gradient reduce-scatters (:mod:`pipesim.cost.fsdp`) are placed where
the prefetch model puts them: :func:`fsdp_rows` gives one bar per collective (one per unit: a layer for FSDP,
a weight-holding submodule for DeepSpeed ZeRO-3, the embedding, the head) at its offset from the start of its
pass (:class:`pipesim.cost.fsdp.FsdpSpans`), the forward's gathers in each F, the backward's gathers and
reduce-scatters in each B (or I, when the schedule splits the backward; clamped to it). They share one
communication stream in the model, so a rank's bars never overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipesim.cost.fsdp import FsdpSpans, Span
from pipesim.cost.times import PassTimes
from pipesim.cost.traffic import StageTraffic
from pipesim.sim.engine import SpanKind, Timeline

__all__ = ["EXCHANGE_KEYS", "FSDP_KEYS", "Exchanges", "exchange_rows", "fsdp_rows"]

EXCHANGE_KEYS = ("CP", "EP")  # bar groups, in the order they sit inside a pass
FSDP_KEYS = ("FSDP_AG", "FSDP_RS")  # parameter all-gathers, gradient reduce-scatters

Rows = dict[str, npt.NDArray]


@dataclass(frozen=True)
class Exchanges:
    """Per global stage, for one microbatch's forward (``*_forward_*``) and backward (``*_backward_*``): the
    seconds of its expert all-to-alls (``ep_*_s``; never hidden, so all exposed) and of its context-parallel
    key/value exchanges (``cp_*_s`` whole, ``cp_*_exposed_s`` not hidden behind the attention), and the bytes
    one GPU moves in them. ``cp_collective`` names the CP exchange (``ring-p2p`` or ``all-gather``)."""

    ep_forward_s: tuple[float, ...]
    ep_backward_s: tuple[float, ...]
    cp_forward_s: tuple[float, ...]
    cp_backward_s: tuple[float, ...]
    cp_forward_exposed_s: tuple[float, ...]
    cp_backward_exposed_s: tuple[float, ...]
    ep_forward_bytes: tuple[float, ...]
    ep_backward_bytes: tuple[float, ...]
    cp_forward_bytes: tuple[float, ...]
    cp_backward_bytes: tuple[float, ...]
    cp_collective: str = "ring-p2p"

    @classmethod
    def of(cls, passes: Sequence[PassTimes], traffic: StageTraffic, cp_comm: str) -> Exchanges | None:
        """The exchanges of stages with pass times ``passes`` and bytes ``traffic`` (``cp_comm``: the layout's
        ``ring`` or ``all-gather``); None when the step has none (ep = cp = 1)."""
        if not any(p.ep_comm_s > 0 or p.cp_comm_full_s > 0 for p in passes):
            return None
        return cls(
            ep_forward_s=tuple(p.ep_forward_s for p in passes),
            ep_backward_s=tuple(p.ep_comm_s - p.ep_forward_s for p in passes),
            cp_forward_s=tuple(p.cp_forward_full_s for p in passes),
            cp_backward_s=tuple(p.cp_comm_full_s - p.cp_forward_full_s for p in passes),
            cp_forward_exposed_s=tuple(p.cp_forward_s for p in passes),
            cp_backward_exposed_s=tuple(p.cp_comm_s - p.cp_forward_s for p in passes),
            ep_forward_bytes=traffic.ep_forward_bytes,
            ep_backward_bytes=traffic.ep_backward_bytes,
            cp_forward_bytes=traffic.cp_forward_bytes,
            cp_backward_bytes=traffic.cp_backward_bytes,
            cp_collective="ring-p2p" if cp_comm == "ring" else "all-gather",
        )


def _per_pass(
    op: npt.NDArray, stage: npt.NDArray, forward: Sequence[float], backward: Sequence[float]
) -> npt.NDArray:
    """``forward[stage]`` on F rows, ``backward[stage]`` on B and I rows, 0 elsewhere (W, optimizer)."""
    f = np.asarray(forward, dtype=np.float64)[stage]
    b = np.asarray(backward, dtype=np.float64)[stage]
    back = (op == SpanKind.B) | (op == SpanKind.I)
    return np.where(op == SpanKind.F, f, np.where(back, b, 0.0))


def exchange_rows(timeline: Timeline, ex: Exchanges) -> dict[str, Rows]:
    """The EP and CP bars of ``timeline`` (module docstring): for each key of :data:`EXCHANGE_KEYS` with a bar,
    parallel arrays ``rank``, ``stage``, ``microbatch``, ``peer`` (-1), ``pass_kind`` (the host pass's
    :class:`SpanKind`), ``start_s``, ``end_s``, ``bytes`` and ``exposed_s``, in timeline order. Zero-length bars
    are left out."""
    n = timeline.num_actions
    op = timeline.kind[:n].astype(np.int64)
    stage = np.maximum(timeline.stage[:n].astype(np.int64), 0)
    start, end = timeline.start_s[:n], timeline.end_s[:n]
    ep = _per_pass(op, stage, ex.ep_forward_s, ex.ep_backward_s)
    cp = _per_pass(op, stage, ex.cp_forward_s, ex.cp_backward_s)
    ep_start = np.maximum(end - ep, start)
    cp_start = np.maximum(ep_start - cp, start)
    bars = {
        "CP": (
            cp_start,
            ep_start,
            _per_pass(op, stage, ex.cp_forward_bytes, ex.cp_backward_bytes),
            _per_pass(op, stage, ex.cp_forward_exposed_s, ex.cp_backward_exposed_s),
        ),
        "EP": (ep_start, end, _per_pass(op, stage, ex.ep_forward_bytes, ex.ep_backward_bytes), ep),
    }
    out: dict[str, Rows] = {}
    for key in EXCHANGE_KEYS:
        lo, hi, moved, exposed = bars[key]
        mask = hi > lo
        if mask.any():
            out[key] = {
                "rank": timeline.rank[:n][mask],
                "stage": timeline.stage[:n][mask],
                "microbatch": timeline.microbatch[:n][mask],
                "peer": np.full(int(mask.sum()), -1, dtype=np.int32),
                "pass_kind": op[mask],
                "start_s": lo[mask],
                "end_s": hi[mask],
                "bytes": moved[mask],
                "exposed_s": exposed[mask],
            }
    return out


def _placed(timeline: Timeline, rows: npt.NDArray, spans: Sequence[Sequence[Span]]) -> Rows:
    """One bar per (row, span of its stage): ``spans[stage]`` offset from the row's start, clamped to it."""
    stage = timeline.stage[rows].astype(np.int64)
    pick: list[npt.NDArray] = []
    off_lo: list[npt.NDArray] = []
    off_hi: list[npt.NDArray] = []
    moved: list[npt.NDArray] = []
    for s, per_stage in enumerate(spans):
        here = rows[stage == s]
        if not per_stage or here.size == 0:
            continue
        lo, hi, b = (np.asarray(c, dtype=np.float64) for c in zip(*per_stage, strict=True))
        pick.append(np.repeat(here, lo.size))
        off_lo.append(np.tile(lo, here.size))
        off_hi.append(np.tile(hi, here.size))
        moved.append(np.tile(b, here.size))
    idx = np.concatenate(pick) if pick else np.zeros(0, dtype=np.int64)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    start, end = timeline.start_s[idx], timeline.end_s[idx]
    lo_s, hi_s = np.minimum(start + cat(off_lo), end), np.minimum(start + cat(off_hi), end)
    keep = hi_s > lo_s
    idx = idx[keep]
    return {
        "rank": timeline.rank[idx],
        "stage": timeline.stage[idx],
        "microbatch": timeline.microbatch[idx],
        "peer": np.full(idx.size, -1, dtype=np.int32),
        "pass_kind": timeline.kind[idx].astype(np.int64),
        "start_s": lo_s[keep],
        "end_s": hi_s[keep],
        "bytes": cat(moved)[keep],
    }


def fsdp_rows(timeline: Timeline, spans: Sequence[FsdpSpans]) -> dict[str, Rows]:
    """The FSDP / ZeRO-3 bars of ``timeline`` (module docstring) from each global stage's ``spans``: for
    ``FSDP_AG`` (all-gathers) and ``FSDP_RS`` (reduce-scatters), when there is a bar, the arrays of
    :func:`exchange_rows` less ``exposed_s``, sorted by rank and start."""
    if not spans:
        return {}
    n = timeline.num_actions
    op = timeline.kind[:n].astype(np.int64)
    fwd = np.nonzero(op == SpanKind.F)[0]
    bwd = np.nonzero((op == SpanKind.B) | (op == SpanKind.I))[0]
    parts = {
        "FSDP_AG": [
            _placed(timeline, fwd, [s.forward_gathers for s in spans]),
            _placed(timeline, bwd, [s.backward_gathers for s in spans]),
        ],
        "FSDP_RS": [_placed(timeline, bwd, [s.backward_scatters for s in spans])],
    }
    out: dict[str, Rows] = {}
    for key in FSDP_KEYS:
        rows = {name: np.concatenate([p[name] for p in parts[key]]) for name in parts[key][0]}
        if rows["start_s"].size:
            order = np.lexsort((rows["start_s"], rows["rank"]))
            out[key] = {name: arr[order] for name, arr in rows.items()}
    return out


def pair_rows(
    timeline: Timeline, overlapped: Sequence[Sequence[int]]
) -> tuple[Rows, npt.NDArray[np.int64]] | None:
    """DualPipe's overlapped F&B pairs as bars (``overlapped``: :attr:`schedules.Schedule.overlapped`, run
    overlapped by the engine, :mod:`pipesim.sim.overlap`): each pair's forward row spans the whole pair and
    its backward row has zero length, so the bar is the forward's span, named by the forward's stage and
    microbatch and the backward's (``pair_stage``, ``pair_microbatch``). Returns the rows and the timeline
    rows of the forwards they replace, or None when no pair ran."""
    offsets = timeline.rank_offsets
    first = [int(offsets[r]) + k for r, ks in enumerate(overlapped) for k in ks]
    if not first:
        return None
    f = np.asarray(first, dtype=np.int64)
    rows: Rows = {
        "rank": timeline.rank[f],
        "stage": timeline.stage[f],
        "microbatch": timeline.microbatch[f],
        "peer": np.full(f.size, -1, dtype=np.int32),
        "start_s": timeline.start_s[f],
        "end_s": timeline.end_s[f],
        "pair_stage": timeline.stage[f + 1],
        "pair_microbatch": timeline.microbatch[f + 1],
    }
    return rows, f
