"""Chrome trace-event JSON of simulated steps (opens in Perfetto and chrome://tracing).

Format: the Trace Event Format's JSON object form, ``{"traceEvents": [...], "displayTimeUnit": "ms"}``.
Each rank of each schedule is a process (``pid``), named ``<schedule> rank <r> · stages <s, ...>``; each of
its streams a thread (``tid``: 0 compute, 1 p2p send, 2 DP reduce, 3 optimizer, the values of
:class:`pipesim.sim.engine.Stream`; 4 the TP collectives inside the passes). Every span is a complete event
(``ph: "X"``, ``ts`` and ``dur`` in microseconds) named as PyTorch's pipelining names its actions
(``torch.distributed.pipelining`` ``_Action``: stage, computation type, microbatch): ``0F3``, ``2B1``,
``3I0``, ``3W0``, ``1SEND_F3`` (activation), ``2SEND_B1`` (gradient), ``3REDUCE_GRAD``; stage, microbatch,
the receiving rank and, when the scenario is known, the bytes moved are in ``args``.

The TP collectives of a pass run on the compute stream (see :class:`~pipesim.sim.engine.OpCosts`): they are
drawn on thread 4 as one slice per pass, as long as their exposed share of it and ending with it, as the
Gantt chart draws them (where inside the pass they fall is not modelled; collectives hidden behind compute by
``tp_comm_overlap`` have no slice). Every pass's ``args`` carry ``tp_bytes``, the bytes of all its TP
collectives, hidden or not (:mod:`pipesim.cost.traffic`). Each rank has a counter track (``ph: "C"``) of
its memory per GPU over time (the whole of it when the scenario is known, else its activations), in GiB.

Expert-parallel token all-to-alls (dispatch and combine) and context-parallel key/value exchanges run inside
the passes too: with a real model each pass that has them gets one slice per kind on thread 5 (``EP
all-to-all``) and 6 (``CP key/value exchange``), named after the pass (``0F3 EP``, ``1B2 CP``), placed by
:func:`pipesim.sim.exchanges.exchange_rows` as the Gantt chart draws them (whole duration; the all-to-alls end
with the pass, the CP exchange just before them). Their ``args`` carry the bytes one GPU moves in them (all
layers of the stage, :mod:`pipesim.cost.traffic`), the collective and, for CP, ``exposed_us``: the part the
attention does not hide.

With ZeRO-3 / FSDP every parameter all-gather and gradient reduce-scatter inside a pass is a slice of its own
on thread 7 (``FSDP collectives``), named after its pass and collective (``0F3 all-gather``, ``0B3
reduce-scatter``), where the prefetch model places it (:func:`pipesim.sim.exchanges.fsdp_rows`, as the Gantt
chart draws it), its ``args`` the bytes one GPU passes to it (nccl-tests buffer size) and the collective.

Each send carries a flow arrow: a flow start (``ph: "s"``) at the send's start on the sender's send thread,
and a flow end (``ph: "f"``, ``bp: "e"``) at the start of the action that consumes it on the receiving rank's
compute thread, sharing an ``id``. Events are sorted by (pid, tid, ts), so timestamps are monotonic on every
thread. Output is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipesim.cost.fsdp import FsdpSpans
from pipesim.cost.traffic import StageTraffic
from pipesim.sim.engine import OpCosts, SpanKind, Stream, Timeline
from pipesim.sim.exchanges import Exchanges, exchange_rows, fsdp_rows
from pipesim.sim.series import GanttSeries, MemorySeries
from schedules.ir import Action, Op, consumer_stage, depends_on, produces

__all__ = [
    "chrome_trace",
    "chrome_trace_json",
    "PID_STRIDE",
    "TP_TID",
    "EP_TID",
    "CP_TID",
    "FSDP_TID",
    "TraceRun",
    "action_name",
]

PID_STRIDE = 100_000  # pid = schedule index * PID_STRIDE + rank
TP_TID = 4  # thread of the TP collectives inside the passes
EP_TID = 5  # thread of the expert all-to-alls inside the passes
CP_TID = 6  # thread of the context-parallel key/value exchanges inside the passes
FSDP_TID = 7  # thread of the FSDP / ZeRO-3 all-gathers and reduce-scatters inside the passes
US = 1e6  # seconds -> microseconds
GIB = 2**30

_OPS = {SpanKind.F: "F", SpanKind.B: "B", SpanKind.I: "I", SpanKind.W: "W"}
_COMM = {SpanKind.SEND_ACTIVATION: "SEND_F", SpanKind.SEND_GRAD: "SEND_B"}
_THREADS: dict[int, str] = {
    Stream.COMPUTE: "compute",
    Stream.P2P: "p2p send",
    Stream.DP: "DP reduce",
    Stream.OPTIMIZER: "optimizer",
    TP_TID: "TP collectives",
    EP_TID: "EP all-to-all",
    CP_TID: "CP key/value exchange",
    FSDP_TID: "FSDP collectives",
}
_EXCHANGE_TID = {"EP": EP_TID, "CP": CP_TID, "FSDP_AG": FSDP_TID, "FSDP_RS": FSDP_TID}
_FSDP_COLLECTIVE = {"FSDP_AG": "all-gather", "FSDP_RS": "reduce-scatter"}


@dataclass(frozen=True, eq=False)
class TraceRun:
    """One schedule's simulated step and what is known about it: the placement (for process names), the
    costs (TP shares of the passes), memory over time, the bytes of each transfer and the expert and
    context-parallel exchanges inside the passes."""

    name: str
    timeline: Timeline
    stage_to_rank: tuple[int, ...] = ()
    costs: OpCosts | None = None
    memory: MemorySeries | None = None
    memory_label: str = "activation memory (GiB)"
    traffic: StageTraffic | None = None
    exchanges: Exchanges | None = None
    fsdp: tuple[FsdpSpans, ...] = ()
    pair_rows: frozenset[int] = frozenset()  # forwards leading overlapped F&B pairs (their slice is the pair)

    @classmethod
    def of(cls, series: GanttSeries) -> TraceRun:
        """Everything :class:`GanttSeries` knows, for the trace."""
        total = series.total_memory()
        return cls(
            name=series.name,
            timeline=series.timeline,
            stage_to_rank=series.stage_to_rank,
            costs=series.costs,
            memory=total or series.memory,
            memory_label="memory per GPU (GiB)" if total is not None else "activation memory (GiB)",
            traffic=series.traffic,
            exchanges=series.exchanges,
            fsdp=series.fsdp,
            pair_rows=frozenset(series.pair_rows),
        )


def action_name(kind: SpanKind, stage: int, microbatch: int) -> str:
    """PyTorch's text form of an action: stage, computation type, microbatch (``0F3``, ``1SEND_F3``,
    ``3REDUCE_GRAD`` without a microbatch); the optimizer step is ``optimizer step``."""
    if kind in _OPS:
        return f"{stage}{_OPS[kind]}{microbatch}"
    if kind in _COMM:
        return f"{stage}{_COMM[kind]}{microbatch}"
    if kind == SpanKind.DP_REDUCE:
        return f"{stage}REDUCE_GRAD"
    return "optimizer step"


def _us(seconds: float) -> float:
    """Seconds to microseconds, rounded to the nanosecond (stable text, no float noise)."""
    return round(seconds * US, 3)


def _consumers(timeline: Timeline) -> np.ndarray:
    """Row of the compute action that consumes each send, by the inverse of the dependency rule
    (:func:`schedules.ir.consumer_stage`: F(s) feeds F(s+1), B or I(s) feeds B or I(s-1)); -1 where none is
    found."""
    n = timeline.num_actions
    kind = timeline.kind.astype(np.int64)
    stage = timeline.stage.astype(np.int64)
    mb = timeline.microbatch.astype(np.int64)
    num_stages = int(stage[:n].max()) + 1 if n else 0
    key_of: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for i in range(n):
        key_of.setdefault((int(stage[i]), int(mb[i])), []).append((int(kind[i]), i))
    out = np.full(timeline.num_spans, -1, dtype=np.int64)
    for row in np.nonzero(timeline.stream == Stream.P2P)[0].tolist():
        s, m = int(stage[row]), int(mb[row])
        producer = Op.F if kind[row] == SpanKind.SEND_ACTIVATION else Op.B
        c = consumer_stage(producer, s, num_stages)
        if c is None:
            continue
        signal = produces(producer)
        for op, i in sorted(key_of.get((c, m), [])):
            if op < len(Op) and any(
                d.cross_stage and d.stage == s and d.signal == signal
                for d in depends_on(Action(c, Op(op), m), num_stages)
            ):
                out[row] = i
                break
    return out


def _process_name(run: TraceRun, rank: int) -> str:
    stages = [s for s, r in enumerate(run.stage_to_rank) if r == rank]
    if not stages:
        return f"{run.name} rank {rank}"
    label = "stage" if len(stages) == 1 else "stages"
    return f"{run.name} rank {rank} · {label} {', '.join(map(str, stages))}"


def _bytes(run: TraceRun, kind: SpanKind, stage: int) -> dict[str, object]:
    """The bytes a span moves (traffic known): sends per stage boundary, DP reduction per stage."""
    t = run.traffic
    if t is None:
        return {}
    if kind == SpanKind.SEND_ACTIVATION and 0 <= stage < len(t.p2p_bytes):
        return {"bytes": t.p2p_bytes[stage]}
    if kind == SpanKind.SEND_GRAD and 0 < stage <= len(t.p2p_bytes):
        return {"bytes": t.p2p_bytes[stage - 1]}
    if kind == SpanKind.DP_REDUCE:
        return {"bytes": t.dp_bytes[stage], "collective": t.dp_collective}
    return {}


def _tp_bytes(t: StageTraffic, kind: SpanKind, stage: int) -> float:
    """Bytes of the TP collectives inside one pass: forward (F), full backward (B), its input-gradient part
    (I) or its weight-gradient part (W)."""
    if kind == SpanKind.F:
        return t.tp_forward_bytes[stage]
    if kind == SpanKind.B:
        return t.tp_backward_bytes[stage]
    if kind == SpanKind.W:
        return t.tp_weight_bytes[stage]
    return t.tp_backward_bytes[stage] - t.tp_weight_bytes[stage]


def _tp_slice(run: TraceRun, kind: SpanKind, stage: int, end_s: float, pid: int) -> dict[str, object] | None:
    """The TP collectives of one pass as a slice ending with it (F: forward share; B and I: backward)."""
    c = run.costs
    if c is None or kind not in (SpanKind.F, SpanKind.B, SpanKind.I):
        return None
    share = c.tp_comm_forward_s[stage] if kind == SpanKind.F else c.tp_comm_backward_s[stage]
    if share <= 0:
        return None
    args: dict[str, object] = {"stage": stage}
    if run.traffic is not None:
        args["bytes"] = _tp_bytes(run.traffic, kind, stage)
    ts = _us(end_s - share)
    return {"ph": "X", "cat": "TP", "pid": pid, "tid": TP_TID, "ts": ts,
            "dur": round(_us(end_s) - ts, 3), "args": args}  # fmt: skip


def _exchange_slices(run: TraceRun, base: int) -> tuple[list[dict[str, object]], set[tuple[int, int]]]:
    """The EP, CP and FSDP slices of ``run`` (see the module docstring) for the ranks from pid ``base``, and
    the (pid, tid) threads they are on."""
    out: list[dict[str, object]] = []
    threads: set[tuple[int, int]] = set()
    bars = exchange_rows(run.timeline, run.exchanges) if run.exchanges is not None else {}
    bars.update(fsdp_rows(run.timeline, run.fsdp))
    for key, rows in bars.items():
        if key in _FSDP_COLLECTIVE:
            collective = _FSDP_COLLECTIVE[key]
        else:
            collective = "all-to-all" if key == "EP" or run.exchanges is None else run.exchanges.cp_collective
        exposed_col = rows.get("exposed_s", rows["start_s"])
        for r, st, mb, kind, t0, t1, moved, exposed in zip(
            rows["rank"].tolist(), rows["stage"].tolist(), rows["microbatch"].tolist(),
            rows["pass_kind"].tolist(), rows["start_s"].tolist(), rows["end_s"].tolist(),
            rows["bytes"].tolist(), exposed_col.tolist(), strict=True,
        ):  # fmt: skip
            ts = _us(t0)
            args: dict[str, object] = {
                "stage": st,
                "microbatch": mb,
                "bytes": moved,
                "collective": collective,
            }
            if key == "CP":
                args["exposed_us"] = _us(exposed)
            label = _FSDP_COLLECTIVE.get(key, key)
            out.append({"ph": "X", "name": f"{action_name(SpanKind(kind), st, mb)} {label}",
                        "cat": "FSDP" if key in _FSDP_COLLECTIVE else key,
                        "pid": base + r, "tid": _EXCHANGE_TID[key], "ts": ts, "dur": round(_us(t1) - ts, 3),
                        "args": args})  # fmt: skip
            threads.add((base + r, _EXCHANGE_TID[key]))
    return out, threads


def _as_run(item: TraceRun | GanttSeries | tuple[str, int, Timeline]) -> TraceRun:
    if isinstance(item, TraceRun):
        return item
    if isinstance(item, GanttSeries):
        return TraceRun.of(item)
    name, _num_stages, timeline = item
    return TraceRun(name=name, timeline=timeline)


def chrome_trace(runs: Sequence[TraceRun | GanttSeries | tuple[str, int, Timeline]]) -> dict[str, object]:
    """The trace-event object of ``runs``: :class:`TraceRun` or :class:`GanttSeries` values, or bare
    (schedule name, number of stages, timeline) triples (no names of stages, memory, TP or bytes)."""
    events: list[dict[str, object]] = []
    flow_id = 0
    for index, run in enumerate(map(_as_run, runs)):
        base = index * PID_STRIDE
        tl = run.timeline
        for r in range(tl.num_ranks):
            pid = base + r
            events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "ts": 0,
                           "args": {"name": _process_name(run, r)}})  # fmt: skip
            events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "ts": 0,
                           "args": {"sort_index": pid}})  # fmt: skip
            for stream in sorted({int(s) for s in tl.stream[tl.rank == r]}):
                events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": stream, "ts": 0,
                               "args": {"name": _THREADS[Stream(stream)]}})  # fmt: skip
            if run.memory is not None:
                counter: dict[float, float] = {}  # ts -> value held from then (the last change at a ts wins)
                for t, v in zip(run.memory.time_s[r].tolist(), run.memory.bytes[r].tolist(), strict=True):
                    counter[_us(t)] = round(v / GIB, 4)
                last = None
                for ts, value in counter.items():
                    if value != last:
                        events.append({"ph": "C", "name": run.memory_label, "pid": pid, "tid": 0,
                                       "ts": ts, "args": {"GiB": value}})  # fmt: skip
                        last = value
        consumer = _consumers(tl)
        tp_threads: set[int] = set()
        for row in range(tl.num_spans):
            kind = SpanKind(int(tl.kind[row]))
            pid, tid = base + int(tl.rank[row]), int(tl.stream[row])
            stage, mb = int(tl.stage[row]), int(tl.microbatch[row])
            ts = _us(float(tl.start_s[row]))
            args: dict[str, object] = {}
            if stage >= 0:
                args["stage"] = stage
            if mb >= 0:
                args["microbatch"] = mb
            if int(tl.peer[row]) >= 0:
                args["to_rank"] = int(tl.peer[row])
            args.update(_bytes(run, kind, stage))
            if run.traffic is not None and kind in (SpanKind.F, SpanKind.B, SpanKind.I, SpanKind.W):
                args["tp_bytes"] = _tp_bytes(run.traffic, kind, stage)
            name = action_name(kind, stage, mb)
            if row in run.pair_rows:  # DualPipe's F&B: this slice is the pair, its backward a 0-length mark
                paired = action_name(
                    SpanKind(int(tl.kind[row + 1])), int(tl.stage[row + 1]), int(tl.microbatch[row + 1])
                )
                name = f"{name}&{paired}"
                args["overlapped_with"] = paired
            events.append({"ph": "X", "name": name, "cat": _THREADS[Stream(tid)], "pid": pid,
                           "tid": tid, "ts": ts, "dur": round(_us(float(tl.end_s[row])) - ts, 3),
                           "args": args})  # fmt: skip
            tp = _tp_slice(run, kind, stage, float(tl.end_s[row]), pid) if tid == Stream.COMPUTE else None
            if tp is not None:
                tp["name"] = f"{name} TP"
                events.append(tp)
                tp_threads.add(pid)
            target = int(consumer[row])
            if target >= 0:
                flow_id += 1
                events.append({"ph": "s", "name": "transfer", "cat": "p2p", "id": flow_id, "pid": pid,
                               "tid": tid, "ts": ts})  # fmt: skip
                events.append({"ph": "f", "bp": "e", "name": "transfer", "cat": "p2p", "id": flow_id,
                               "pid": base + int(tl.rank[target]), "tid": int(Stream.COMPUTE),
                               "ts": _us(float(tl.start_s[target]))})  # fmt: skip
        exchanges, extra = _exchange_slices(run, base)
        events += exchanges
        for pid, tid in sorted({(pid, TP_TID) for pid in tp_threads} | extra):
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "ts": 0,
                           "args": {"name": _THREADS[tid]}})  # fmt: skip
    # Metadata first on each thread, then by time; flow ends after the slice they bind to at the same ts.
    order = {"M": 0, "C": 1, "X": 1, "s": 2, "f": 2}
    events.sort(key=lambda e: (e["pid"], e["tid"], order[str(e["ph"])], e["ts"]) if e["ph"] == "M"
                else (e["pid"], e["tid"], 1, e["ts"], order[str(e["ph"])]))  # fmt: skip
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"generator": "pipesim"}}


def chrome_trace_json(runs: Sequence[TraceRun | GanttSeries | tuple[str, int, Timeline]]) -> str:
    """:func:`chrome_trace` as compact JSON text."""
    return json.dumps(chrome_trace(runs), separators=(",", ":")) + "\n"
