"""The Gantt page in a real browser: headless Chromium, network off. No console errors, no request leaves
the machine, every bar of the timeline is drawn on its rank's lane, hover shows a bar's details, the F colour
is on every rank lane of a screenshot, and static export writes real PNG/SVG files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke

from pipesim.figures.gantt import COLOURS, EDGE_LIMIT, gantt_page
from pipesim.figures.memory_panel import CAPACITY_COLOUR
from pipesim.sim.compare import CompareRequest
from pipesim.sim.engine import SpanKind, Stream
from pipesim.sim.series import GanttSeries, simulate_series
from tests.browser import decode_png, drawn_bars, hex_rgb, hover_text, lane_pixels, open_page
from tests.chromium import Chromium

pytestmark = pytest.mark.browser

KIND_KEYS = {
    SpanKind.F: "F",
    SpanKind.B: "B",
    SpanKind.SEND_ACTIVATION: "SEND_ACTIVATION",
    SpanKind.SEND_GRAD: "SEND_GRAD",
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium(timeout_s=60) as b:
        yield b


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[GanttSeries]]:
    """The issue's example: 1F1B and interleaved 1F1B, pp 8, 16 microbatches, through the CLI."""
    path = tmp_path_factory.mktemp("gantt") / "timeline.html"
    code, out, err = invoke(
        "gantt", "--schedules", "1f1b,interleaved-1f1b", "--pp", "8", "--microbatches", "16", "-o", str(path),
        "--gpu-memory-gib", "8",
    )  # fmt: skip
    assert code == 0, out + err
    panels = simulate_series(CompareRequest(schedules=("1f1b", "interleaved-1f1b"), pp=8, microbatches=16))
    return path, panels


def expected_counts(panel: GanttSeries) -> dict[str, dict[int, int]]:
    """Bars per kind and rank straight from the timeline (spans of non-zero length)."""
    tl = panel.timeline
    out: dict[str, dict[int, int]] = {}
    for kind, key in KIND_KEYS.items():
        mask = (tl.kind == kind) & (tl.end_s > tl.start_s)
        ranks, counts = np.unique(tl.rank[mask], return_counts=True)
        out[key] = {int(r): int(c) for r, c in zip(ranks, counts, strict=True)}
    return out


def test_page_loads_offline_without_errors(browser: Chromium, small: tuple[Path, list[GanttSeries]]) -> None:
    path, _ = small
    text = path.read_text()
    assert "<script src" not in text and "<link" not in text  # nothing loaded from elsewhere
    with open_page(browser, path) as tab:
        assert tab.console_errors() == []
        urls = tab.requested_urls()
        assert urls and all(u.startswith(("file:", "data:", "blob:", "about:")) for u in urls), urls
        assert tab.evaluate("typeof Plotly") == "object"
        assert "1f1b" in tab.evaluate("document.querySelector('table').innerText")


def test_drawn_bars_per_rank_match_the_timeline(
    browser: Chromium, small: tuple[Path, list[GanttSeries]]
) -> None:
    path, panels = small
    with open_page(browser, path) as tab:
        drawn = drawn_bars(tab)
    for panel in panels:
        for key, per_rank in expected_counts(panel).items():
            assert drawn[(panel.name, key)] == per_rank, (panel.name, key)
    # 1F1B, pp 8, m 16: every rank draws 16 F and 16 B.
    assert drawn[("1f1b", "F")] == {r: 16 for r in range(8)}


def test_hover_shows_stage_microbatch_start_end_duration(
    browser: Chromium, small: tuple[Path, list[GanttSeries]]
) -> None:
    path, panels = small
    tl = panels[0].timeline
    # Rank 2's first B: its row, its middle.
    row = int(np.nonzero((tl.rank == 2) & (tl.kind == SpanKind.B) & (tl.stream == Stream.COMPUTE))[0][0])
    mid_ms = (tl.start_s[row] + tl.end_s[row]) / 2 * 1e3
    with open_page(browser, path) as tab:
        y, _, _ = lane_pixels(tab, "1f1b", "B", 8)[2]
        text = hover_text(tab, mid_ms, y)
    start, end = tl.start_s[row] * 1e3, tl.end_s[row] * 1e3
    assert "rank 2" in text
    assert f"stage {int(tl.stage[row])}, microbatch {int(tl.microbatch[row])}" in text
    assert f"start {start:.3f} ms" in text and f"end {end:.3f} ms" in text
    assert f"duration {end - start:.3f} ms" in text


def test_screenshot_has_the_f_colour_on_every_rank_lane(
    browser: Chromium, small: tuple[Path, list[GanttSeries]]
) -> None:
    path, panels = small
    f_rgb = hex_rgb(COLOURS["F"])
    with open_page(browser, path, height=900) as tab:
        image = decode_png(tab.screenshot(full_page=True))
        for panel in panels:
            lanes = lane_pixels(tab, panel.name, "F", panel.num_ranks)
            comm = lane_pixels(tab, panel.name, "SEND_ACTIVATION", panel.num_ranks)
            for rank, ((y, x0, x1), (cy, _, _)) in enumerate(zip(lanes, comm, strict=True)):
                assert image.count(y, x0, x1, f_rgb) >= 5, (panel.name, rank)
                assert image.count(cy, x0, x1, f_rgb) == 0, (panel.name, rank)  # not on the comm lane
    # The memory charts draw the 8 GiB capacity line (dashed, in its colour) under both Gantt charts.
    cap = hex_rgb(CAPACITY_COLOUR)
    rows_with_line = [y for y in range(image.height) if image.count(y, 0, image.width, cap) >= 100]
    assert rows_with_line and rows_with_line[-1] - rows_with_line[0] > 400


def test_many_bars_drawn_without_edges_or_labels(browser: Chromium, tmp_path: Path) -> None:
    """Past EDGE_LIMIT bars the page drops bar edges and labels; every bar is still drawn."""
    panels = simulate_series(CompareRequest(schedules=("interleaved-1f1b",), pp=16, microbatches=256, vpp=2))
    assert panels[0].num_bars > EDGE_LIMIT
    path = tmp_path / "big.html"
    path.write_text(gantt_page(panels))
    with open_page(browser, path) as tab:
        assert tab.console_errors() == []
        drawn = drawn_bars(tab)
        assert tab.evaluate("document.querySelectorAll('g.textpoint').length") == 0
    for key, per_rank in expected_counts(panels[0]).items():
        assert drawn[("interleaved-1f1b", key)] == per_rank, key


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_static_export(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"fig.{suffix}"
    code, stdout, stderr = invoke("gantt", "--schedules", "1f1b", "--pp", "4", "--image", str(out))
    assert code == 0, stdout + stderr
    data = out.read_bytes()
    if suffix == "png":
        image = decode_png(data)
        assert image.width >= 1000 and image.height >= 600
        f_rgb = hex_rgb(COLOURS["F"])
        assert any(image.count(y, 0, image.width, f_rgb) for y in range(0, image.height, 4))
    elif suffix == "svg":
        assert data.lstrip().startswith(b"<svg") and b"rank 3" in data
    else:
        assert data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]


def test_directory_page_draws_from_the_shared_bundle(browser: Chromium, tmp_path: Path) -> None:
    from pipesim.figures.page import write_page

    panels = simulate_series(CompareRequest(schedules=("1f1b",), pp=4, microbatches=8))
    path = tmp_path / "linked.html"
    write_page(path, gantt_page(panels, plotlyjs="directory"), "directory")
    with open_page(browser, path) as tab:
        assert tab.console_errors() == []
        assert tab.evaluate("typeof Plotly") == "object"
        assert any(u.endswith("/plotly.min.js") for u in tab.requested_urls())


def test_moe_page_draws_the_all_to_alls_with_their_bytes(browser: Chromium, tmp_path: Path) -> None:
    """mixtral-8x7b with ep 4: every EP bar of the series is drawn on its rank's communication lane, and
    hovering one shows the MB it moves (16 layers x dispatch + combine of 32 MiB = 1073.74 MB)."""
    from pipesim.sim.scenario import Scenario, simulate_scenario
    from pipesim.sim.series import report_series
    from pipesim.specs.gpu import get_gpu
    from pipesim.specs.layout import Layout
    from pipesim.specs.model import get_model

    path = tmp_path / "moe.html"
    code, out, err = invoke(
        "gantt", "--model", "mixtral-8x7b", "--gpu", "h100-sxm", "--tp", "2", "--ep", "4", "--pp", "2",
        "--dp", "2", "--global-batch-size", "8", "--seq-length", "4096", "--schedules", "1f1b", "-o", str(path),
    )  # fmt: skip
    assert code == 0, out + err
    lay = Layout(tp=2, ep=4, pp=2, dp=2, global_batch_size=8, seq_length=4096)
    series = report_series(simulate_scenario(Scenario(get_model("mixtral-8x7b"), get_gpu("h100-sxm"), lay)))
    ep = series.group("EP")
    assert ep is not None
    with open_page(browser, path) as tab:
        assert tab.console_errors() == []
        drawn = drawn_bars(tab)
        assert drawn[("1f1b", "EP")] == {0: 8, 1: 8}
        assert "ep=4" in tab.evaluate("document.body.innerText")
        # Hover the middle of rank 1's first EP bar.
        i = int(np.nonzero(ep.rank == 1)[0][0])
        mid_ms = (ep.start_s[i] + ep.end_s[i]) / 2 * 1e3
        y, _, _ = lane_pixels(tab, "1f1b", "EP", 2)[1]
        text = hover_text(tab, mid_ms, y)
    assert "EP all-to-all" in text and "rank 1" in text
    assert f"{16 * 2 * 32 * 2**20 / 1e6:.2f} MB moved per GPU" in text
