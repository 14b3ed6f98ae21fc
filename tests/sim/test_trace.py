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
from pipesim.sim.trace import CP_TID, EP_TID, PID_STRIDE, TP_TID, chrome_trace, chrome_trace_json
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


MIB = 2**20


def _events(trace: dict, tid: int) -> list[dict]:
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e["tid"] == tid]


def test_moe_trace_has_ep_all_to_all_slices_with_their_bytes(tmp_path: Path) -> None:
    # mixtral-8x7b (h = 4096, top-2 of 8 experts, 32 MoE layers), tp 2, ep 4, pp 2, dp 2, micro batch 1,
    # s = 4096, no SP. Megatron-Core's all-to-all dispatcher: each GPU routes its s b / tp = 2048 tokens, so its
    # dispatch and its combine each move every routed copy, 2048 x 2 x h x 2 bytes = 32 MiB (Megatron-Core MoE
    # docs, MoEAlltoAllTokenDispatcher); two per layer forward and two backward, 16 layers per stage: 1 GiB.
    out = tmp_path / "t.json"
    code, stdout, stderr = invoke(
        "gantt", "--model", "mixtral-8x7b", "--gpu", "h100-sxm", "--tp", "2", "--ep", "4", "--pp", "2",
        "--dp", "2", "--global-batch-size", "8", "--seq-length", "4096", "--schedules", "1f1b",
        "--trace", str(out),
    )  # fmt: skip
    assert code == 0, stdout + stderr
    trace = json.loads(out.read_text())
    validate(trace)
    a2a = 2048 * 2 * 4096 * 2
    assert a2a == 32 * MIB
    ep = _events(trace, EP_TID)
    computes = {(e["pid"], e["name"]): e for e in _events(trace, 0)}
    assert len(ep) == 2 * 2 * 4  # 2 ranks x (F + B) x 4 microbatches
    for e in ep:
        assert re.fullmatch(r"[01][FB]\d EP", e["name"]) and e["cat"] == "EP"
        assert e["args"]["bytes"] == 16 * 2 * a2a and e["args"]["collective"] == "all-to-all"
        host = computes[(e["pid"], e["name"][:-3])]  # the pass it runs in: ends with it
        assert e["ts"] >= host["ts"] and e["ts"] + e["dur"] == pytest.approx(
            host["ts"] + host["dur"], abs=2e-3
        )
    # The same run through the Python API: each slice lasts the stage's all-to-all time of its pass.
    lay = Layout(tp=2, ep=4, pp=2, dp=2, global_batch_size=8, seq_length=4096)
    report = simulate_scenario(Scenario(get_model("mixtral-8x7b"), get_gpu("h100-sxm"), lay))
    assert chrome_trace([report_series(report)]) == trace
    f0 = next(e for e in ep if e["name"] == "0F0 EP")
    b1 = next(e for e in ep if e["name"] == "1B0 EP")
    p0, p1 = report.stage_passes
    assert f0["dur"] == pytest.approx(p0.ep_forward_s * 1e6, abs=2e-3) and p0.ep_forward_s > 0
    assert b1["dur"] == pytest.approx((p1.ep_comm_s - p1.ep_forward_s) * 1e6, abs=2e-3)
    # TP bytes no longer include the all-to-alls: per layer the attention's all-reduce and the MoE block's
    # all-gather of the tokens over tp (no SP), s b h x 2 = 32 MiB each, plus the embedding's all-reduce.
    assert computes[(0, "0F0")]["args"]["tp_bytes"] == 16 * 2 * 32 * MIB + 32 * MIB
    names = {(e["pid"], e["args"]["name"]) for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert {(0, "EP all-to-all"), (1, "EP all-to-all")} <= names
    assert not _events(trace, CP_TID)


@pytest.mark.parametrize("cp_comm", ["ring", "all-gather"])
def test_cp_trace_has_key_value_exchange_slices_with_their_bytes(cp_comm: str) -> None:
    # llama3.1-8b (32 layers, 8 KV heads of 128, h 4096), tp 2, cp 2, pp 2, s = 8192: each GPU holds
    # s / cp = 4096 tokens and 8 / tp = 4 KV heads, a key/value block of 4096 x 4 x (128 + 128) x 2 bytes
    # = 8 MiB. Ring (Liu et al. 2023, Ring Attention): cp - 1 = 1 round per layer forward sending the block,
    # backward the block and its gradient (16 MiB). All-gather (Llama 3, arXiv:2407.21783 Section 3.3.2): the
    # gathered buffer cp x 8 MiB forward, an all-gather and a reduce-scatter of it backward.
    lay = Layout(tp=2, cp=2, pp=2, global_batch_size=4, seq_length=8192, cp_comm=cp_comm)
    report = simulate_scenario(Scenario(get_model("llama3.1-8b"), get_gpu("h100-sxm"), lay))
    trace = chrome_trace([report_series(report)])
    validate(trace)
    block = 4096 * 4 * (128 + 128) * 2
    assert block == 8 * MIB
    fwd, bwd = (block, 2 * block) if cp_comm == "ring" else (2 * block, 4 * block)
    cp = _events(trace, CP_TID)
    assert len(cp) == 2 * 2 * lay.num_microbatches
    for e in cp:
        want = 16 * (fwd if "F" in e["name"] else bwd)
        assert e["args"]["bytes"] == want, e
        assert e["args"]["collective"] == ("ring-p2p" if cp_comm == "ring" else "all-gather")
        assert 0 <= e["args"]["exposed_us"] <= e["dur"] + 1e-3
        if cp_comm == "all-gather":  # not overlapped: all of it exposed
            assert e["args"]["exposed_us"] == pytest.approx(e["dur"], abs=2e-3)
    p0 = report.stage_passes[0]
    f0 = next(e for e in cp if e["name"] == "0F0 CP")
    assert f0["dur"] == pytest.approx(p0.cp_forward_full_s * 1e6, abs=2e-3) and f0["dur"] > 0
    assert not _events(trace, EP_TID)


def test_an_overlapped_pair_is_named_as_the_pair() -> None:
    # DualPipe's F&B (DeepSeek-V3 report, arXiv:2412.19437, s3.2.1): the forward's slice lasts the whole pair,
    # so it is named after both passes (0F7&7B3) and says which backward it overlaps; the backward keeps its
    # zero-length slice where both outputs appear.
    from pipesim.sim.compare import CompareRequest
    from pipesim.sim.series import simulate_series

    series = simulate_series(
        CompareRequest(schedules=("dualpipe-v",), pp=4, microbatches=8, vpp=2, fb_s=2.5e-3)
    )[0]
    events = [e for e in chrome_trace([series])["traceEvents"] if e.get("ph") == "X"]
    pairs = [e for e in events if "&" in e["name"]]
    assert len(pairs) == len(series.pair_rows) > 0
    first = pairs[0]
    f, b = first["name"].split("&")
    assert first["args"]["overlapped_with"] == b and "F" in f and ("B" in b or "I" in b)
    assert first["dur"] == pytest.approx(1250.0)  # 2.5 ms per stage, 1.25 ms per chunk pair, in microseconds
