"""--plotlyjs: pages embed plotly.js (default, offline), share one copy in their folder, or load it from the CDN."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from pipesim.errors import InputError
from pipesim.figures.gantt import gantt_page
from pipesim.figures.page import PLOTLYJS_FILE, Page, render_page, write_page
from pipesim.sim.compare import CompareRequest
from pipesim.sim.series import simulate_series

PAGE = Page(title="t", figures=(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])),))


def test_embed_is_the_default_and_holds_the_bundle() -> None:
    page = render_page(PAGE)
    assert page == render_page(PAGE, "embed")
    assert get_plotlyjs() in page and "<script src" not in page


def test_directory_pages_share_one_bundle(tmp_path: Path) -> None:
    page = render_page(PAGE, "directory")
    assert f'<script src="{PLOTLYJS_FILE}"></script>' in page and get_plotlyjs() not in page
    for name in ("a.html", "b.html"):
        write_page(tmp_path / name, page, "directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.html", "b.html", PLOTLYJS_FILE]
    assert (tmp_path / PLOTLYJS_FILE).read_text(encoding="utf-8") == get_plotlyjs()


def test_cdn_names_the_installed_plotly_js() -> None:
    page = render_page(PAGE, "cdn")
    assert f'src="https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"' in page
    assert get_plotlyjs() not in page


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(InputError, match="--plotlyjs='inline'; valid: embed, directory, cdn"):
        render_page(PAGE, "inline")


def test_a_gantt_page_without_the_bundle_is_its_figures_only() -> None:
    panels = simulate_series(CompareRequest(schedules=("1f1b",), pp=4, microbatches=8))
    embedded, linked = gantt_page(panels), gantt_page(panels, plotlyjs="directory")
    # The bundle is the whole difference: the 4.6 MB of plotly.js minus the one script element.
    assert len(embedded) - len(linked) == len(f"<script>{get_plotlyjs()}</script>") - len(
        f'<script src="{PLOTLYJS_FILE}"></script>'
    )
    assert len(linked.encode()) < 200_000
