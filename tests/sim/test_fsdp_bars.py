"""FSDP / ZeRO-3 collectives on the pictures: each parameter all-gather and gradient reduce-scatter inside a pass
is its own bar on the rank's communication lane and its own Chrome-trace slice, where the prefetch model of
pipesim.cost.fsdp places it, with its bytes."""

from __future__ import annotations

import numpy as np
import pytest

from pipesim.comm.factory import ClusterSpec, build_comm
from pipesim.cost.fsdp import Step, fsdp_stage_passes
from pipesim.cost.memory import WEIGHT_BYTES
from pipesim.cost.times import PassTimes
from pipesim.figures.gantt import summary_table
from pipesim.sim.engine import SpanKind
from pipesim.sim.scenario import Scenario, SimulationReport, simulate_scenario
from pipesim.sim.series import Lane, report_series
from pipesim.sim.trace import FSDP_TID, chrome_trace
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model

GPT = get_model("gpt-7.5b")  # 36 layers, h 4096


def test_spans_follow_the_prefetch_walk() -> None:
    # c=3, g=1, s=1 per unit, 5 units (the hand walk of tests/cost/test_fsdp.py): g0 0-1, u0 1-4, g1 1-2,
    # s0 4-5, u1 4-7, g2 5-6, s1 7-8, u2 7-10, g3 8-9, s2 10-11, u3 10-13, g4 11-12, s3 13-14, u4 13-16, s4 16-17.
    back = [Step(3.0, 1.0, 1.0, gather_bytes=10.0 + i, scatter_bytes=20.0 + i) for i in range(5)]
    fwd = [Step(3.0, 2.0, gather_bytes=10.0 + i) for i in range(5)]
    total = PassTimes(forward_s=15.0, backward_s=15.0)
    p, busy, exposed, spans = fsdp_stage_passes(total, fwd, back)
    assert (p.forward_s, p.backward_s, busy, exposed) == (17.0, 17.0, 20.0, 4.0)
    assert spans.backward_gathers == tuple(
        (a, b, 10.0 + i) for i, (a, b) in enumerate([(0, 1), (1, 2), (5, 6), (8, 9), (11, 12)])
    )
    assert spans.backward_scatters == tuple(
        (a, b, 20.0 + i) for i, (a, b) in enumerate([(4, 5), (7, 8), (10, 11), (13, 14), (16, 17)])
    )
    # Forward, g=2 < c=3: gather i+1 issued when unit i starts (unit 0 at 2, unit i at 2 + 3 i).
    assert [s[:2] for s in spans.forward_gathers] == [(0, 2), (2, 4), (5, 7), (8, 10), (11, 13)]
    # No gather in the backward (weights kept after the forward): none drawn.
    kept = [Step(3.0, 0.0, 1.0, scatter_bytes=1.0)] * 2
    assert fsdp_stage_passes(total, fwd, kept)[3].backward_gathers == ()


def _report(**kw: object) -> SimulationReport:
    base: dict[str, object] = dict(dp=16, micro_batch_size=1, global_batch_size=32, recompute="full",
                                   precision="fp16", fsdp="full")  # fmt: skip
    base.update(kw)
    lay = Layout(**base)  # type: ignore[arg-type]
    comm = build_comm(ClusterSpec("dgx-a100"), lay.num_gpus)
    return simulate_scenario(Scenario(GPT, get_gpu("a100-80gb"), lay, comm))


@pytest.fixture(scope="module")
def fsdp_report() -> SimulationReport:
    return _report()


def _host(tl, rank: int, t0: float, t1: float) -> int:  # type: ignore[no-untyped-def]
    n = tl.num_actions
    hit = np.nonzero((tl.rank[:n] == rank) & (tl.start_s[:n] <= t0 + 1e-12) & (tl.end_s[:n] >= t1 - 1e-12))[0]
    assert hit.size == 1
    return int(hit[0])


def test_fsdp_bars_sit_in_their_passes_with_their_bytes(fsdp_report: SimulationReport) -> None:
    series = report_series(fsdp_report)
    ag, rs = series.group("FSDP_AG"), series.group("FSDP_RS")
    assert ag is not None and rs is not None and ag.lane == rs.lane == Lane.COLLECTIVE
    m = fsdp_report.scenario.layout.num_microbatches  # 32 / 16 = 2
    # FSDP units: embedding, 36 layers, head = 38; a gather each per forward and backward, one
    # reduce-scatter each per backward.
    assert ag.size == 2 * 38 * m and rs.size == 38 * m
    tl = series.timeline
    for g in (ag, rs):
        assert g.bytes is not None and np.all(g.bytes > 0)
        for i in range(g.size):
            row = _host(tl, int(g.rank[i]), float(g.start_s[i]), float(g.end_s[i]))
            assert int(tl.microbatch[row]) == int(g.microbatch[i])
            assert g is ag or SpanKind(int(tl.kind[row])) == SpanKind.B
    # One stream: the collectives of the rank never overlap.
    start = np.concatenate([ag.start_s, rs.start_s])
    end = np.concatenate([ag.end_s, rs.end_s])
    order = np.argsort(start)
    assert np.all(start[order][1:] >= end[order][:-1] - 1e-12)
    # Bytes of one layer's gather: its 16-bit weights, 12 h^2 + 13 h (GPT: QKV, projection, 4h MLP and their
    # biases, two LayerNorms) x 2 bytes = 805.4 MB; fp16 gradients reduce-scatter the same.
    h = 4096
    layer = (12 * h * h + 13 * h) * WEIGHT_BYTES
    assert GPT.layer_params() == 12 * h * h + 13 * h
    assert np.count_nonzero(ag.bytes == layer) == 2 * 36 * m
    assert np.count_nonzero(rs.bytes == layer) == 36 * m
    table = summary_table([series])
    row = dict(zip(table.columns, table.rows[0], strict=True))
    assert row["FSDP_AG ms"] == f"{ag.duration_s.sum() * 1e3:.3f}"


def test_fsdp_bars_add_up_to_the_breakdowns_communication(fsdp_report: SimulationReport) -> None:
    series = report_series(fsdp_report)
    ag, rs = series.group("FSDP_AG"), series.group("FSDP_RS")
    assert ag is not None and rs is not None
    # breakdown.fsdp_comm_total is per rank over the step: sum(zero3_comm_s) x m / ranks (one rank here).
    drawn = float(ag.duration_s.sum() + rs.duration_s.sum())
    assert drawn == pytest.approx(fsdp_report.breakdown.fsdp_comm_total, rel=1e-9)


def test_trace_has_one_slice_per_collective_on_the_fsdp_thread(fsdp_report: SimulationReport) -> None:
    series = report_series(fsdp_report)
    events = chrome_trace([series])["traceEvents"]
    slices = [e for e in events if e["ph"] == "X" and e["tid"] == FSDP_TID]  # type: ignore[index]
    ag, rs = series.group("FSDP_AG"), series.group("FSDP_RS")
    assert ag is not None and rs is not None
    assert len(slices) == ag.size + rs.size
    names = {str(e["name"]).split(" ", 1)[1] for e in slices}  # type: ignore[index]
    assert names == {"all-gather", "reduce-scatter"}
    for e in slices:
        args = e["args"]  # type: ignore[index]
        assert e["cat"] == "FSDP" and args["bytes"] > 0  # type: ignore[index,operator]
        assert args["collective"] == str(e["name"]).split(" ", 1)[1]  # type: ignore[index]
    threads = [e for e in events if e["ph"] == "M" and e["name"] == "thread_name" and e["tid"] == FSDP_TID]
    assert [t["args"]["name"] for t in threads] == ["FSDP collectives"]  # type: ignore[index]


def test_no_reshard_draws_no_backward_gather_and_deepspeed_draws_per_submodule() -> None:
    kept = report_series(_report(reshard_after_forward=False))
    ag = kept.group("FSDP_AG")
    assert ag is not None
    back = np.array(
        [SpanKind(int(kept.timeline.kind[_host(kept.timeline, int(r), float(a), float(b))])) == SpanKind.B
         for r, a, b in zip(ag.rank, ag.start_s, ag.end_s, strict=True)]
    )  # fmt: skip
    assert not back.any() and ag.size == 38 * 2
    # DeepSpeed ZeRO-3 fetches QKV, projection, MLP up and down of each layer: 4 x 36 + embedding + head per
    # forward, and again for the fully recomputed forward and the backward.
    ds = report_series(_report(fsdp="none", zero_stage=3)).group("FSDP_AG")
    # Per microbatch: forward 4 x 36 + 2, recompute 4 x 36, backward 4 x 36 + 2 = 436; m = 2.
    assert ds is not None and ds.size == 2 * (3 * 4 * 36 + 2 * 2)
