"""Output flags every picture-making command shares: --image (kaleido), --plotlyjs, and --wide for tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import invoke
from plotly.offline import get_plotlyjs

from pipesim.figures.page import PLOTLYJS_FILE

PLAN = ("plan", "--model", "gpt-1.7b", "--gpu", "a100-80gb", "--nodes", "1", "--global-batch-size", "16",
        "--top-k", "1")  # fmt: skip
ROOFLINE = ("roofline", "--model", "gpt-1.7b", "--gpu", "h100-sxm", "--tp", "2")
TOPO = ("topo", "draw", "dgx-h100", "--nodes", "2", "--fabric", "rail")


@pytest.mark.browser
@pytest.mark.parametrize("args", [PLAN, ROOFLINE, TOPO], ids=["plan", "roofline", "topo-draw"])
def test_image_on_every_picture_command(tmp_path: Path, args: tuple[str, ...]) -> None:
    out = tmp_path / "fig.png"
    code, stdout, stderr = invoke(*args, "--image", str(out))
    assert code == 0, stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert f"wrote {out}" in stdout or args[0] == "plan"


@pytest.mark.parametrize("args", [PLAN, ROOFLINE, TOPO], ids=["plan", "roofline", "topo-draw"])
def test_bad_image_suffix_is_refused_before_any_work(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, _, stderr = invoke(*args, "--image", str(tmp_path / "fig.gif"))
    assert code == 2 and stderr.count("\n") == 1 and ".png, .svg, .pdf" in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [PLAN, ROOFLINE, TOPO], ids=["plan", "roofline", "topo-draw"])
def test_plotlyjs_directory_shares_one_bundle(tmp_path: Path, args: tuple[str, ...]) -> None:
    page = tmp_path / "page.html"
    code, _, stderr = invoke(*args, "-o", str(page), "--plotlyjs", "directory")
    assert code == 0, stderr
    assert get_plotlyjs() not in page.read_text() and (tmp_path / PLOTLYJS_FILE).read_text() == get_plotlyjs()


def test_gantt_pages_with_and_without_the_bundle(tmp_path: Path) -> None:
    sizes = {}
    for mode in ("embed", "cdn"):
        page = tmp_path / f"{mode}.html"
        code, _, stderr = invoke("gantt", "--pp", "4", "-o", str(page), "--plotlyjs", mode)
        assert code == 0, stderr
        sizes[mode] = page.stat().st_size
    assert sizes["embed"] - sizes["cdn"] > 4_000_000 and sizes["cdn"] < 200_000  # plotly.js is ~4.6 MB
    code, _, stderr = invoke("gantt", "--pp", "4", "-o", str(tmp_path / "x.html"), "--plotlyjs", "inline")
    assert code == 2 and "--plotlyjs" in stderr


def test_topo_draw_needs_an_output() -> None:
    code, _, stderr = invoke(*TOPO)
    assert code == 2 and "nothing to write" in stderr


def test_wide_prints_tables_whole() -> None:
    args = ("simulate", "--model", "gpt-1.7b", "--gpu", "a100-80gb", "--tp", "2", "--pp", "2",
            "--global-batch-size", "8")  # fmt: skip
    code, narrow, _ = invoke(*args)
    code_w, wide, _ = invoke(*args, "--wide")
    assert code == code_w == 0
    # Piped output is 140 columns; --wide does not wrap the energy notes that run past it.
    assert max(map(len, narrow.splitlines())) <= 140 < max(map(len, wide.splitlines()))
    assert all(line == line.rstrip() for line in wide.splitlines())
