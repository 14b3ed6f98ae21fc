"""The documentation's Python examples run, block after block, as a notebook runs them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: Path) -> list[str]:
    """The ```python fenced blocks of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def test_python_api_page_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = python_blocks(DOCS / "python-api.md")
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)  # the page writes gantt.html
    namespace: dict[str, object] = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"python-api.md block {i}", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "fastest that fits: " in out and "best of " in out
    assert (tmp_path / "gantt.html").stat().st_size > 10_000
