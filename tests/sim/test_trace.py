"""Chrome-trace output checked against the Trace Event Format: required keys, complete events with a
duration, timestamps monotonic on every thread, flow starts and ends paired by id and bound to the right
slices, one process per rank and one thread per stream."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import invoke
from hypothesis import given
from hypothesis import strategies as st

from pipesim.sim.compare import CompareRequest
from pipesim.sim.engine import OpCosts, SpanKind, Stream, simulate
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.sim.series import report_series, simulate_series
from pipesim.sim.trace import PID_STRIDE, TP_TID, chrome_trace, chrome_trace_json
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model
from schedules import build_schedule

REQUIRED = {"ph", "ts", "pid", "tid", "name"}


def validate(trace: dict) -> dict[str, int]:
    """Assert the trace is well-formed; return counts of events per phase."""
    events = trace["traceEvents"]
    assert isinstance(events, list) and events
    last_ts: dict[tuple[int, int], float] = {}
    slices: dict[tuple[int, int], list[tuple[float, float]]] = defaultdict(list)
    flows: dict[int, dict[str, dict]] = defaultdict(dict)
    phases: dict[str, int] = defaultdict(int)
    for e in events:
        assert set(e) >= REQUIRED, e
        assert e["ph"] in {"X", "M", "s", "f", "C"}, e
        phases[e["ph"]] += 1
        key = (e["pid"], e["tid"])
        assert e["ts"] >= last_ts.get(key, float("-inf")), ("timestamps go back on", key, e)
        last_ts[key] = e["ts"]
        if e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0, e
            slices[key].append((e["ts"], e["ts"] + e["dur"]))
        elif e["ph"] == "C":  # a counter's args are its series: name -> number
            assert e["args"] and all(isinstance(v, (int, float)) for v in e["args"].values()), e
        elif e["ph"] in "sf":
            assert e["id"] not in flows or e["ph"] not in flows[e["id"]], ("duplicate flow", e)
            flows[e["id"]][e["ph"]] = e
    # Slices on one thread nest or follow each other; they never partly overlap (the format's stack rule).
    for key, spans in slices.items():
        stack: list[tuple[float, float]] = []
        for a, b in sorted(spans, key=lambda ab: (ab[0], -ab[1])):
            while stack and a >= stack[-1][1] - 1e-3:
                stack.pop()
            assert not stack or b <= stack[-1][1] + 1e-3, ("partial overlap on", key, stack[-1], (a, b))
            stack.append((a, b))
    for fid, pair in flows.items():
        assert set(pair) == {"s", "f"}, ("unpaired flow", fid)
        s, f = pair["s"], pair["f"]
        assert f["ts"] >= s["ts"] and f.get("bp") == "e"
        # Both ends lie inside a slice on their thread (the send; the consuming action).
        for end in (s, f):
            assert any(a <= end["ts"] <= b for a, b in slices[(end["pid"], end["tid"])]), end
    return dict(phases)


def test_trace_of_the_issue_example_is_valid_and_complete() -> None:
    panels = simulate_series(CompareRequest(schedules=("1f1b", "interleaved-1f1b"), pp=8, microbatches=16))
    trace = chrome_trace([(p.name, p.num_stages, p.timeline) for p in panels])
    phases = validate(trace)
    spans = sum(p.timeline.num_spans for p in panels)
    sends = sum(int((p.timeline.stream == Stream.P2P).sum()) for p in panels)
    assert phases["X"] == spans
    assert phases["s"] == phases["f"] == sends  # one arrow per send
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert names == {f"{s} rank {r}" for s in ("1f1b", "interleaved-1f1b") for r in range(8)}
    with_stages = chrome_trace(panels)
    validate(with_stages)
    names = {e["args"]["name"] for e in with_stages["traceEvents"] if e["name"] == "process_name"}
    assert "1f1b rank 3 · stage 3" in names and "interleaved-1f1b rank 3 · stages 3, 11" in names
    slices = {e["name"] for e in with_stages["traceEvents"] if e["ph"] == "X"}
    assert {"0F0", "15B15", "0SEND_F0", "15SEND_B15"} <= slices  # PyTorch's action names
    threads = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert threads == {"compute", "p2p send"}


def test_flow_arrows_go_from_the_sender_to_the_consumer_of_the_data() -> None:
    s = build_schedule("1f1b", 4, 4)
    tl = simulate(s, OpCosts.uniform(4, 1e-3, 2e-3, p2p_s=1e-4))
    trace = chrome_trace([("1f1b", 4, tl)])
    events = trace["traceEvents"]
    by_id = defaultdict(dict)
    for e in events:
        if e["ph"] in "sf":
            by_id[e["id"]][e["ph"]] = e
    sends = [e for e in events if e["ph"] == "X" and e["tid"] == Stream.P2P]
    for pair in by_id.values():
        send = next(x for x in sends if x["pid"] == pair["s"]["pid"] and x["ts"] == pair["s"]["ts"])
        # The arrow ends on the receiving rank, at or after the transfer has arrived.
        assert pair["f"]["pid"] == send["args"]["to_rank"]
        assert pair["f"]["ts"] >= send["ts"] + send["dur"] - 1e-6
        consumer = next(
            x for x in events
            if x["ph"] == "X" and x["pid"] == pair["f"]["pid"] and x["tid"] == 0 and x["ts"] == pair["f"]["ts"]
        )  # fmt: skip
        st, mb = send["args"]["stage"], send["args"]["microbatch"]
        if send["name"] == f"{st}SEND_F{mb}":
            assert consumer["name"] == f"{st + 1}F{mb}" and consumer["args"]["stage"] == st + 1
        else:
            assert send["name"] == f"{st}SEND_B{mb}"
            assert consumer["name"] == f"{st - 1}B{mb}" and consumer["args"]["stage"] == st - 1
        assert consumer["args"]["microbatch"] == send["args"]["microbatch"]


@given(
    name=st.sampled_from(["gpipe", "1f1b", "interleaved-1f1b"]),
    pp=st.integers(1, 5),
    m=st.integers(1, 7),
    dp=st.sampled_from([0.0, 3e-4]),
    opt=st.sampled_from([0.0, 5e-4]),
)
def test_trace_is_valid_for_any_schedule(name: str, pp: int, m: int, dp: float, opt: float) -> None:
    v = 2 if name == "interleaved-1f1b" and m % pp == 0 else 1
    if name == "interleaved-1f1b" and v == 1:
        name = "1f1b"
    s = build_schedule(name, pp, m, v)
    base = OpCosts.uniform(s.num_stages, 1e-3, 2e-3, p2p_s=5e-5)
    costs = OpCosts(
        forward_s=base.forward_s, backward_s=base.backward_s, p2p_s=base.p2p_s,
        dp_reduce_s=(dp,) * s.num_stages, optimizer_s=opt,
    )  # fmt: skip
    tl = simulate(s, costs)
    trace = json.loads(chrome_trace_json([(name, s.num_stages, tl), (name + "-again", s.num_stages, tl)]))
    phases = validate(trace)
    assert phases["X"] == 2 * tl.num_spans
    pids = {e["pid"] for e in trace["traceEvents"]}
    assert pids == set(range(pp)) | {PID_STRIDE + r for r in range(pp)}
    dp_events = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["name"].endswith("REDUCE_GRAD")]
    assert len(dp_events) == 2 * int((tl.kind == SpanKind.DP_REDUCE).sum())
    assert all(e["tid"] == Stream.DP for e in dp_events)


def test_trace_is_deterministic() -> None:
    panels = simulate_series(CompareRequest(schedules=("interleaved-1f1b",), pp=4, microbatches=8))
    triples = [(p.name, p.num_stages, p.timeline) for p in panels]
    assert chrome_trace_json(triples) == chrome_trace_json(triples)


def test_cli_writes_the_trace(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    code, stdout, stderr = invoke("gantt", "--schedules", "1f1b", "--pp", "4", "--trace", str(out))
    assert code == 0, stdout + stderr
    validate(json.loads(out.read_text()))
    assert not list(tmp_path.glob("*.html"))  # only what was asked for


@pytest.mark.parametrize("bad", ["missing/out.json", "file.txt/out.json"])
def test_cli_trace_bad_directory(tmp_path: Path, bad: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    code, _, err = invoke("gantt", "--trace", str(tmp_path / bad))
    assert code == 2
    assert err.count("\n") == 1 and "does not exist" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file.txt"]


def test_model_trace_has_tp_slices_bytes_and_memory_counters() -> None:
    # gpt-1.7b (h = 2304, s = 2048, V = 51200, 24 layers, tied embeddings), tp 2, pp 2, dp 2, micro batch 1,
    # bf16, no SP. Forward TP all-reduces of s b h x 2 bytes = 9,437,184 B each (SC21 Section 3.2): two per
    # layer, 12 layers per stage, plus the vocab-parallel embedding's one on stage 0 and the loss's three
    # fp32 all-reduces of s b x 4 bytes on the last stage (Megatron-LM's cross entropy).
    lay = Layout(tp=2, pp=2, dp=2, global_batch_size=8)
    report = simulate_scenario(Scenario(get_model("gpt-1.7b"), get_gpu("a100-80gb"), lay))
    trace = chrome_trace([report_series(report)])
    validate(trace)
    events = trace["traceEvents"]
    sbh2 = 2048 * 2304 * 2
    computes = {(e["pid"], e["name"]): e for e in events if e["ph"] == "X" and e["tid"] == 0}
    assert computes[(0, "0F0")]["args"]["tp_bytes"] == 12 * 2 * sbh2 + sbh2
    assert computes[(1, "1F0")]["args"]["tp_bytes"] == 12 * 2 * sbh2 + 3 * 4 * 2048
    assert computes[(0, "0B0")]["args"]["tp_bytes"] == 12 * 2 * sbh2
    # Exposed TP time is a slice on the TP thread ending with its pass; the backward's collectives are all
    # hidden behind the weight-gradient GEMMs (tp_comm_overlap, the default), so they have none.
    tp = [e for e in events if e["ph"] == "X" and e["tid"] == TP_TID]
    assert all(re.fullmatch(r"[01]F\d+ TP", e["name"]) for e in tp) and len(tp) == 2 * lay.num_microbatches
    f0 = next(e for e in tp if e["name"] == "0F0 TP")
    host = computes[(0, "0F0")]
    assert f0["ts"] + f0["dur"] == pytest.approx(host["ts"] + host["dur"], abs=1e-3)
    assert f0["dur"] == pytest.approx(report.costs.tp_comm_forward_s[0] * 1e6, abs=1e-3)
    assert f0["args"]["bytes"] == host["args"]["tp_bytes"]
    # Sends carry s b h x 2 / t (scatter/gather, SC21 Section 4.1); DP reductions the fp32 gradients, plus
    # the tied embedding's gradient V h / t x 4 bytes on the first and last stage.
    send = next(e for e in events if e["ph"] == "X" and e["name"] == "0SEND_F0")
    assert send["args"]["bytes"] == sbh2 / 2
    red = next(e for e in events if e["ph"] == "X" and e["name"] == "1REDUCE_GRAD")
    assert red["args"]["collective"] == "all-reduce"
    assert red["args"]["bytes"] == pytest.approx(report.memory[1].grads + 51200 * 2304 / 2 * 4, rel=1e-12)
    # One memory counter track per rank, peaking at the reported peak memory per GPU.
    for r in range(2):
        values = [e["args"]["GiB"] for e in events if e["ph"] == "C" and e["pid"] == r]
        assert values and max(values) == pytest.approx(report.memory[r].peak / 2**30, abs=1e-4)
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert "TP collectives" in names
