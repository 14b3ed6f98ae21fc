"""Chrome trace-event JSON of simulated steps (opens in Perfetto and chrome://tracing).

Format: the Trace Event Format's JSON object form, ``{"traceEvents": [...], "displayTimeUnit": "ms"}``.
Each rank of each schedule is a process (``pid``), named ``<schedule> rank <r>``; each of its streams a thread
(``tid``: 0 compute, 1 p2p send, 2 DP reduce, 3 optimizer, the values of :class:`pipesim.sim.engine.Stream`).
Every span is a complete event (``ph: "X"``, ``ts`` and ``dur`` in microseconds) named after its kind, with
stage, microbatch and (for sends) the receiving rank in ``args``. Each send carries a flow arrow: a flow start
(``ph: "s"``) at the send's start on the sender's send thread, and a flow end (``ph: "f"``, ``bp: "e"``) at
the start of the action that consumes it on the receiving rank's compute thread, sharing an ``id``.
Events are sorted by (pid, tid, ts), so timestamps are monotonic on every thread. Output is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from pipesim.sim.engine import SpanKind, Stream, Timeline

__all__ = ["chrome_trace", "chrome_trace_json", "PID_STRIDE"]

PID_STRIDE = 100_000  # pid = schedule index * PID_STRIDE + rank
US = 1e6  # seconds -> microseconds

_NAMES = {
    SpanKind.F: "F",
    SpanKind.B: "B",
    SpanKind.I: "I",
    SpanKind.W: "W",
    SpanKind.SEND_ACTIVATION: "send activation",
    SpanKind.SEND_GRAD: "send gradient",
    SpanKind.DP_REDUCE: "DP reduce",
    SpanKind.OPTIMIZER: "optimizer",
}
_THREADS = {
    Stream.COMPUTE: "compute",
    Stream.P2P: "p2p send",
    Stream.DP: "DP reduce",
    Stream.OPTIMIZER: "optimizer",
}


def _us(seconds: float) -> float:
    """Seconds to microseconds, rounded to the nanosecond (stable text, no float noise)."""
    return round(seconds * US, 3)


def _consumers(timeline: Timeline, num_stages: int) -> np.ndarray:
    """Row of the compute action that consumes each send (F(s+1, m) for an activation, B or I(s-1, m) for a
    gradient); -1 where none is found."""
    n = timeline.num_actions
    kind = timeline.kind.astype(np.int64)
    stage = timeline.stage.astype(np.int64)
    mb = timeline.microbatch.astype(np.int64)
    key_of: dict[tuple[int, int, int], int] = {}
    for i in range(n):
        key_of[(int(kind[i]), int(stage[i]), int(mb[i]))] = i
    out = np.full(timeline.num_spans, -1, dtype=np.int64)
    for row in np.nonzero(timeline.stream == Stream.P2P)[0].tolist():
        s, m = int(stage[row]), int(mb[row])
        if kind[row] == SpanKind.SEND_ACTIVATION:
            out[row] = key_of.get((int(SpanKind.F), s + 1, m), -1)
        else:
            out[row] = key_of.get((int(SpanKind.B), s - 1, m), key_of.get((int(SpanKind.I), s - 1, m), -1))
    return out


def chrome_trace(timelines: Sequence[tuple[str, int, Timeline]]) -> dict[str, object]:
    """The trace-event object of ``timelines``: (schedule name, number of stages, timeline) triples."""
    events: list[dict[str, object]] = []
    flow_id = 0
    for index, (name, num_stages, tl) in enumerate(timelines):
        base = index * PID_STRIDE
        for r in range(tl.num_ranks):
            pid = base + r
            events.append({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "ts": 0,
                           "args": {"name": f"{name} rank {r}"}})  # fmt: skip
            events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "ts": 0,
                           "args": {"sort_index": pid}})  # fmt: skip
            for stream in sorted({int(s) for s in tl.stream[tl.rank == r]}):
                events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": stream, "ts": 0,
                               "args": {"name": _THREADS[Stream(stream)]}})  # fmt: skip
        consumer = _consumers(tl, num_stages)
        for row in range(tl.num_spans):
            kind = SpanKind(int(tl.kind[row]))
            pid, tid = base + int(tl.rank[row]), int(tl.stream[row])
            ts = _us(float(tl.start_s[row]))
            args: dict[str, object] = {}
            if int(tl.stage[row]) >= 0:
                args["stage"] = int(tl.stage[row])
            if int(tl.microbatch[row]) >= 0:
                args["microbatch"] = int(tl.microbatch[row])
            if int(tl.peer[row]) >= 0:
                args["to_rank"] = int(tl.peer[row])
            events.append({"ph": "X", "name": _NAMES[kind], "cat": _THREADS[Stream(tid)], "pid": pid,
                           "tid": tid, "ts": ts, "dur": round(_us(float(tl.end_s[row])) - ts, 3),
                           "args": args})  # fmt: skip
            target = int(consumer[row])
            if target >= 0:
                flow_id += 1
                events.append({"ph": "s", "name": "transfer", "cat": "p2p", "id": flow_id, "pid": pid,
                               "tid": tid, "ts": ts})  # fmt: skip
                events.append({"ph": "f", "bp": "e", "name": "transfer", "cat": "p2p", "id": flow_id,
                               "pid": base + int(tl.rank[target]), "tid": int(Stream.COMPUTE),
                               "ts": _us(float(tl.start_s[target]))})  # fmt: skip
    # Metadata first on each thread, then by time; flow ends after the slice they bind to at the same ts.
    order = {"M": 0, "X": 1, "s": 2, "f": 2}
    events.sort(key=lambda e: (e["pid"], e["tid"], order[str(e["ph"])], e["ts"]) if e["ph"] == "M"
                else (e["pid"], e["tid"], 1, e["ts"], order[str(e["ph"])]))  # fmt: skip
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"generator": "pipesim"}}


def chrome_trace_json(timelines: Sequence[tuple[str, int, Timeline]]) -> str:
    """:func:`chrome_trace` as compact JSON text."""
    return json.dumps(chrome_trace(timelines), separators=(",", ":")) + "\n"
