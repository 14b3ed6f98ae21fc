"""The Gantt figure's memory panels show the memory ``simulate`` reports, and chunks and time units read well."""

from __future__ import annotations

import numpy as np
import pytest

from pipesim.figures.gantt import gantt_figure, time_unit
from pipesim.sim.engine import OpCosts, simulate
from pipesim.sim.metrics import pipeline_metrics
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.sim.series import gantt_series, report_series, stage_chunks
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model
from schedules import build_schedule

GIB = 2**30


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    lay = Layout(tp=2, pp=4, vpp=2, global_batch_size=8, recompute="selective", schedule="interleaved-1f1b")
    return simulate_scenario(Scenario(get_model("gpt-1.7b"), get_gpu("a100-80gb"), lay))


def test_total_memory_peaks_are_the_reported_rank_memory(report) -> None:  # type: ignore[no-untyped-def]
    series = report_series(report)
    total = series.total_memory()
    assert total is not None
    assert total.peak_bytes() == pytest.approx([m.peak for m in report.memory], rel=1e-12)
    # Before the first forward a rank holds everything but activations.
    for m, b in zip(report.memory, total.bytes, strict=True):
        assert b[0] == pytest.approx(m.weights + m.grads + m.optimizer + m.transient + m.reserve)


def test_breakdown_bars_stack_the_reported_components(report) -> None:  # type: ignore[no-untyped-def]
    fig = gantt_figure(report_series(report), gpu_memory_bytes=report.scenario.gpu.hbm_bytes)
    bars = {t.meta["component"]: t for t in fig.data if t.meta and t.meta.get("pipesim") == "breakdown"}
    assert {"weights", "grads", "optimizer", "activations", "reserve"} <= set(bars)
    stacked = sum(np.asarray(t.x, dtype=float) for t in bars.values()) * GIB
    assert stacked == pytest.approx([m.peak for m in report.memory], rel=1e-6)
    # Each bar starts where the one below it ends.
    assert np.allclose(bars["grads"].base, np.asarray(bars["weights"].x, dtype=float))
    free = next(t for t in fig.data if t.meta and t.meta.get("pipesim") == "breakdown-free")
    hbm = report.scenario.gpu.hbm_bytes
    assert list(free.text) == [f" {(hbm - m.peak) / GIB:.1f} free" for m in report.memory]
    legends = {t.legend for t in fig.data if t.meta and t.meta.get("pipesim") == "memory"}
    assert legends == {"legend2"}
    names = [t.name for t in fig.data if t.meta and t.meta.get("pipesim") == "memory"]
    assert names == [f"rank {r}" for r in range(4)]


def test_out_of_memory_is_said_in_red() -> None:
    s = build_schedule("1f1b", 2, 4)
    c = OpCosts.uniform(2, 1e-3, 2e-3, activation_bytes=GIB)
    tl = simulate(s, c)
    fig = gantt_figure(gantt_series(s, c, tl, pipeline_metrics(s, c, tl)), gpu_memory_bytes=1.5 * GIB)
    free = next(t for t in fig.data if t.meta and t.meta.get("pipesim") == "breakdown-free")
    assert list(free.text) == [" OOM +0.5", " 0.5 free"]  # rank 0 holds 2 microbatches, rank 1 one
    assert free.textfont.color[0] == "#d62728"
    assert "OUT OF MEMORY by 0.5 GiB" in "".join(a.text for a in fig.layout.annotations)


def test_chunks_of_interleaved_and_v_placements() -> None:
    assert stage_chunks(build_schedule("interleaved-1f1b", 4, 8, 2).stage_to_rank) == (0,) * 4 + (1,) * 4
    # V-shape: rank r holds stages r and 2p-1-r (zero-bubble ZB-V).
    v = build_schedule("zb-v", 4, 8)
    assert v.stage_to_rank == (0, 1, 2, 3, 3, 2, 1, 0)
    assert stage_chunks(v.stage_to_rank) == (0, 0, 0, 0, 1, 1, 1, 1)


def test_later_chunks_are_shaded_and_labelled_by_stage() -> None:
    s = build_schedule("interleaved-1f1b", 2, 2, 2)
    c = OpCosts.uniform(4, 0.5, 1.0)
    tl = simulate(s, c)
    fig = gantt_figure(gantt_series(s, c, tl, pipeline_metrics(s, c, tl)))
    f = [t for t in fig.data if t.meta and t.meta.get("pipesim") == "bars" and t.meta["kind"] == "F"]
    assert [t.meta["chunk"] for t in f] == [0, 1] and f[0].fillcolor != f[1].fillcolor
    hover = [t for t in fig.data if t.meta and t.meta.get("pipesim") == "hover" and t.meta["kind"] == "F"]
    texts = set(hover[1].text)  # chunk 1 holds stages 2 (rank 0) and 3 (rank 1)
    assert texts == {"s2·m0", "s2·m1", "s3·m0", "s3·m1"}
    # Seconds-long steps get a time axis in seconds: F 0.5 s, B 1 s.
    assert fig.layout.xaxis.ticksuffix == " s"


def test_time_unit() -> None:
    assert time_unit(2.99) == ("s", 1.0) and time_unit(0.033) == ("ms", 1e3)


def test_breakdown_separates_expert_from_dense_parameters() -> None:
    lay = Layout(tp=2, ep=4, pp=2, dp=2, global_batch_size=8, seq_length=4096)
    report = simulate_scenario(Scenario(get_model("mixtral-8x7b"), get_gpu("h100-sxm"), lay))
    fig = gantt_figure(report_series(report), gpu_memory_bytes=report.scenario.gpu.hbm_bytes)
    bars = {t.meta["component"]: t for t in fig.data if t.meta and t.meta.get("pipesim") == "breakdown"}
    for key in ("weights", "grads", "optimizer"):
        expert = np.asarray(bars["expert_" + key].x, dtype=float) * GIB
        dense = np.asarray(bars[key].x, dtype=float) * GIB
        assert expert == pytest.approx([getattr(m, "expert_" + key) for m in report.memory], rel=1e-6)
        assert dense + expert == pytest.approx([getattr(m, key) for m in report.memory], rel=1e-6)
        assert np.all(expert > dense)  # mixtral: the experts are 96% of the parameters
        assert bars[key].name.endswith("(dense)") and bars["expert_" + key].name.endswith("(experts)")
        assert bars["expert_" + key].marker.pattern.shape == "/"
    stacked = sum(np.asarray(t.x, dtype=float) for t in bars.values()) * GIB
    assert stacked == pytest.approx([m.peak for m in report.memory], rel=1e-6)
