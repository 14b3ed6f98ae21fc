"""Gantt series, figure and page without a browser, and ``pipesim gantt``'s command line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import invoke
from hypothesis import given
from hypothesis import strategies as st

from pipesim.figures.gantt import LABEL_LIMIT, gantt_figure, gantt_page, summary_table
from pipesim.figures.page import Page, Table, render_page
from pipesim.sim.compare import CompareRequest
from pipesim.sim.engine import OpCosts, SpanKind, simulate
from pipesim.sim.metrics import pipeline_metrics
from pipesim.sim.series import gantt_series, simulate_series
from schedules import Action, Op, Schedule, build_schedule

GIB = 2**30


def series_of(name: str, pp: int, m: int, v: int = 1, costs: OpCosts | None = None):  # type: ignore[no-untyped-def]
    s = build_schedule(name, pp, m, v)
    c = costs or OpCosts.uniform(s.num_stages, 1e-3 / v, 2e-3 / v, p2p_s=5e-5, activation_bytes=GIB / v)
    tl = simulate(s, c)
    return gantt_series(s, c, tl, pipeline_metrics(s, c, tl))


@given(name=st.sampled_from(["gpipe", "1f1b", "interleaved-1f1b"]), pp=st.integers(1, 6), k=st.integers(1, 3))
def test_memory_series_peaks_equal_the_metrics(name: str, pp: int, k: int) -> None:
    v = 2 if name == "interleaved-1f1b" else 1
    series = series_of(name, pp, pp * k, v)
    assert series.memory.peak_bytes() == pytest.approx(series.metrics.peak_activation_bytes_per_rank)
    for t, b in zip(series.memory.time_s, series.memory.bytes, strict=True):
        assert np.all(np.diff(t) >= 0) and b[0] == 0 and b[-1] == pytest.approx(0.0, abs=1e-3)


def test_memory_of_1f1b_rank0_rises_one_microbatch_per_forward() -> None:
    # 1F1B on p=4 holds at most p microbatches on rank 0 (Narayanan et al. 2021, SC21 Section 2.2.1):
    # 4 forwards of 1 GiB each before the first backward.
    series = series_of("1f1b", 4, 8)
    b = series.memory.bytes[0]
    assert list(b[:5] / GIB) == [0, 1, 2, 3, 4] and b.max() == 4 * GIB


def test_groups_cover_every_span_of_the_timeline() -> None:
    series = series_of("interleaved-1f1b", 4, 8, 2)
    tl = series.timeline
    keys = {SpanKind.F: "F", SpanKind.B: "B", SpanKind.SEND_ACTIVATION: "SEND_ACTIVATION",
            SpanKind.SEND_GRAD: "SEND_GRAD"}  # fmt: skip
    for kind, key in keys.items():
        group = series.group(key)
        assert group is not None
        mask = tl.kind == kind
        assert group.size == int(mask.sum())
        assert sorted(group.start_s.tolist()) == sorted(tl.start_s[mask].tolist())
        assert np.all(np.diff(group.rank) >= 0)  # sorted by rank
        assert np.allclose(group.duration_s, group.end_s - group.start_s)
    assert series.num_bars == tl.num_spans


def test_recompute_and_tp_strips_sit_inside_their_passes() -> None:
    s = build_schedule("1f1b", 2, 2)
    c = OpCosts(
        forward_s=(1e-3, 1e-3), backward_s=(2e-3, 2e-3), recompute_s=(0.5e-3, 0.5e-3),
        tp_comm_forward_s=(0.2e-3, 0.2e-3), tp_comm_backward_s=(0.3e-3, 0.3e-3),
        dp_reduce_s=(1e-3, 1e-3), optimizer_s=1e-3, p2p_s=(1e-4,),
    )  # fmt: skip
    tl = simulate(s, c)
    series = gantt_series(s, c, tl, pipeline_metrics(s, c, tl))
    rec, tp, b = series.group("RECOMPUTE"), series.group("TP"), series.group("B")
    assert rec is not None and tp is not None and b is not None
    # Recompute starts with each backward and lasts recompute_s.
    assert rec.size == b.size == 4
    assert np.allclose(rec.start_s, b.start_s) and np.allclose(rec.duration_s, 0.5e-3)
    # TP strips end with their pass: 4 forwards (0.2 ms) and 4 backwards (0.3 ms).
    assert sorted(np.round(tp.duration_s * 1e4).tolist()) == [2] * 4 + [3] * 4
    fig = gantt_figure(series, gpu_memory_bytes=80 * GIB)
    kinds = {t.meta["kind"] for t in fig.data if t.meta and t.meta.get("pipesim") == "bars"}
    assert kinds == {"F", "B", "OPT", "RECOMPUTE", "TP", "SEND_ACTIVATION", "SEND_GRAD", "DP_REDUCE"}


def test_figure_uses_one_trace_per_kind_however_many_microbatches() -> None:
    def traces(m: int) -> int:
        return len(gantt_figure(series_of("1f1b", 4, m)).data)

    assert traces(4) == traces(64) == traces(256)


def test_figure_draws_what_it_is_given() -> None:
    series = series_of("1f1b", 4, 8)
    fig = gantt_figure([series], gpu_memory_bytes=80 * GIB)
    assert isinstance(fig, go.Figure)
    memory = [t for t in fig.data if t.meta and t.meta.get("pipesim") == "memory"]
    assert len(memory) == 4
    assert np.allclose(np.asarray(memory[0].y, dtype=float) * GIB, series.memory.bytes[0])
    # 4 GiB of activations at most (1F1B, p=4): an 80 GiB capacity line would flatten the curves, so the axis
    # stays on the data and the title states the headroom; the breakdown beside the chart draws the capacity.
    capacity = [t for t in fig.data if t.meta and t.meta.get("pipesim") == "capacity"]
    assert not capacity and fig.layout.yaxis3.range[1] < 5
    assert "rank 0, 4.0 GiB of 80.0 GiB HBM (76.0 GiB free)" in "".join(
        a.text for a in fig.layout.annotations
    )
    line = [t for t in fig.data if t.meta and t.meta.get("pipesim") == "breakdown-capacity"]
    assert line and list(line[0].x) == [80.0, 80.0]
    near = gantt_figure([series], gpu_memory_bytes=4.2 * GIB)
    capacity = [t for t in near.data if t.meta and t.meta.get("pipesim") == "capacity"]
    assert capacity and list(capacity[0].y) == [4.2, 4.2]
    hover = [t for t in fig.data if t.meta and t.meta.get("pipesim") == "hover" and t.meta["kind"] == "F"][0]
    f = series.group("F")
    assert f is not None
    cd = np.asarray(hover.customdata)
    assert np.allclose(cd[:, 3], f.start_s * 1e3) and np.allclose(cd[:, 5], f.duration_s * 1e3)
    assert "microbatch" in hover.hovertemplate and "duration" in hover.hovertemplate
    assert hover.mode == "text" and list(hover.text[:2]) == [str(v) for v in f.microbatch[:2]]
    # Zoom and pan move time only: rank labels stay put.
    assert fig.layout.yaxis.fixedrange and list(fig.layout.yaxis.ticktext) == [f"rank {r}" for r in range(4)]


def test_labels_are_dropped_on_large_figures() -> None:
    series = series_of("1f1b", 8, LABEL_LIMIT // 8)  # 2 * LABEL_LIMIT compute bars
    fig = gantt_figure(series)
    assert {t.mode for t in fig.data if t.meta and t.meta.get("pipesim") == "hover"} == {"none"}


def test_page_is_self_contained_and_deterministic() -> None:
    panels = simulate_series(CompareRequest(schedules=("1f1b",), pp=4, microbatches=8))
    a = gantt_page(panels, [("pp", "4")], gpu_memory_bytes=80 * GIB)
    b = gantt_page(panels, [("pp", "4")], gpu_memory_bytes=80 * GIB)
    assert a == b
    assert "<script src" not in a and "plotly.js v" in a
    assert "step ms" in a and "p2p exposed ms" in a and "bubble" in a


def test_summary_table_values() -> None:
    # 1F1B, p=4, m=8, F=1 ms, B=2 ms, p2p 0: step (m+p-1)(F+B) = 11 * 3 ms = 33 ms; bubble (p-1)/(m+p-1) = 3/11
    # (SC21 Section 2.2.1).
    panels = simulate_series(CompareRequest(schedules=("1f1b",), pp=4, microbatches=8, p2p_s=0.0))
    row = summary_table(panels).rows[0]
    assert row[4] == "33.000" and row[5] == f"{3 / 11:.1%}"


def test_render_page_escapes_and_embeds() -> None:
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="</script><b>x"))
    html = render_page(Page(title="<t>", scenario=(("a&b", "<c>"),), tables=(Table(("x",), (("<y>",),)),),
                            figures=(fig,)))  # fmt: skip
    assert "<title>&lt;t&gt;</title>" in html and "a&amp;b" in html and "&lt;y&gt;" in html
    assert "</script><b>x" not in html  # the trace name cannot close the data element


def test_split_backward_memory_frees_at_i_and_w() -> None:
    # Hand-written split-backward schedule on one rank: F0 I0 W0; activation 4 bytes, stash 1 byte.
    s = Schedule.from_actions(
        "split", 1, 1, (0,), [[Action(0, Op.F, 0), Action(0, Op.I, 0), Action(0, Op.W, 0)]]
    )
    c = OpCosts(forward_s=(1.0,), backward_s=(2.0,), weight_s=(1.0,), activation_bytes=(4.0,),
                weight_stash_bytes=(1.0,))  # fmt: skip
    tl = simulate(s, c)
    series = gantt_series(s, c, tl, pipeline_metrics(s, c, tl))
    assert list(series.memory.time_s[0]) == [0.0, 0.0, 2.0, 3.0, 3.0]
    assert list(series.memory.bytes[0]) == [0.0, 4.0, 1.0, 0.0, 0.0]


def test_cli_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "timeline.html"
    code, stdout, _ = invoke(
        "gantt", "--schedules", "1f1b,interleaved-1f1b", "--pp", "8", "--microbatches", "16", "-o", str(out)
    )
    assert code == 0 and "wrote" in stdout
    html = out.read_text()
    assert "interleaved-1f1b" in html and "GPU memory" in html
    assert os.listdir(tmp_path) == ["timeline.html"]  # no temporary files left


def test_cli_needs_an_output() -> None:
    code, _, err = invoke("gantt", "--pp", "4")
    assert code == 2 and err.count("\n") == 1 and "nothing to write" in err


def test_cli_missing_directory_leaves_nothing(tmp_path: Path) -> None:
    code, _, err = invoke(
        "gantt", "-o", str(tmp_path / "nope" / "t.html"), "--trace", str(tmp_path / "t.json")
    )
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    assert os.listdir(tmp_path) == []  # checked before anything is written, trace included


def test_cli_unwritable_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, who can write anywhere; make the directory read-only to os.access instead.
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    code, _, err = invoke("gantt", "-o", str(locked / "t.html"))
    assert code == 2 and err.count("\n") == 1 and "not writable" in err
    assert os.listdir(locked) == []


def test_cli_bad_image_suffix_and_missing_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = invoke("gantt", "-o", str(tmp_path / "t.html"), "--image", str(tmp_path / "t.gif"))
    assert code == 2 and err.count("\n") == 1 and ".png, .svg, .pdf" in err
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-browser"))  # where kaleido looks first
    code, _, err = invoke("gantt", "-o", str(tmp_path / "t.html"), "--image", str(tmp_path / "t.png"))
    assert code == 2 and err.count("\n") == 1 and "need Chrome or Chromium" in err
    assert os.listdir(tmp_path) == []


def test_cli_bad_gpu_memory_and_bad_schedule(tmp_path: Path) -> None:
    code, _, err = invoke("gantt", "-o", str(tmp_path / "t.html"), "--gpu-memory-gib", "0")
    assert code == 2 and "--gpu-memory-gib" in err
    code, _, err = invoke("gantt", "-o", str(tmp_path / "t.html"), "--schedules", "nope")
    assert code == 2 and err.count("\n") == 1 and "unknown schedule" in err
    assert os.listdir(tmp_path) == []


def test_gantt_takes_every_compare_option() -> None:
    from pipesim.cli.compare import compare_cmd
    from pipesim.cli.gantt import gantt_cmd

    compare_opts = {p.name for p in compare_cmd.params} - {"as_json", "wide"}  # output flags of compare
    assert compare_opts <= {p.name for p in gantt_cmd.params}


def test_model_page_header_counts_chunks_as_the_table(tmp_path: Path) -> None:
    out = tmp_path / "g.html"
    code, _, err = invoke("gantt", "--model", "gpt-1.7b", "--gpu", "a100-80gb", "--tp", "2", "--pp", "2",
                          "--global-batch-size", "8", "--schedules", "1f1b,zb-v", "-o", str(out))  # fmt: skip
    assert code == 0, err
    html = out.read_text()
    # ZB-V's V-shape holds 2 chunks per rank (stages r and 2p-1-r); 80 GB of HBM is 74.5 GiB.
    assert "<b>vpp</b>1f1b 1, zb-v 2" in html and "<b>GPU memory</b>74.5 GiB (80 GB)" in html


def test_dualpipe_pairs_are_bars_of_their_own() -> None:
    # Review 3: an overlapped F&B pair (DeepSeek-V3 report, arXiv:2412.19437, s3.2.1) was drawn as a forward
    # lasting the whole pair, its backward a zero-length bar nobody saw. Now each pair is one "FB" bar naming
    # both passes, and the forwards and backwards left are the unpaired ones.
    from pipesim.figures.gantt_bars import _hover

    request = CompareRequest(schedules=("dualpipe-v",), pp=4, microbatches=8, vpp=2, fb_s=2.5e-3)
    series = simulate_series(request)[0]
    tl, pairs = series.timeline, series.group("FB")
    assert pairs is not None and pairs.pair_microbatch is not None
    n_pairs = pairs.size
    # --fb-time is per whole stage, like --forward-time: a V rank's chunk pairs last half of it, 1.25 ms.
    assert n_pairs > 0 and np.allclose(pairs.duration_s, 2.5e-3 / 2)
    forwards, backwards = series.group("F"), series.group("B")
    assert forwards is not None and backwards is not None
    assert forwards.size == int((tl.kind == SpanKind.F).sum()) - n_pairs
    assert backwards.size == int((tl.kind == SpanKind.B).sum()) - n_pairs  # the pairs' zero-length halves
    _, template = _hover(pairs, "dualpipe-v")
    assert "F: stage %{customdata[1]}" in template and "B: stage %{customdata[3]}" in template
