"""Static PNG/SVG export of a page's figure, drawn by a headless Chromium where the machine has one.

The page is loaded from a temporary file (offline), then plotly.js's own ``Plotly.toImage`` renders the first
figure as SVG or PNG (PNG at twice the CSS pixel size). Without a browser, :func:`export_image` raises
:class:`~pipesim.errors.InputError` with one line saying so; the HTML page needs none.
"""

from __future__ import annotations

import base64
import tempfile
import urllib.parse
from pathlib import Path

from pipesim.errors import InputError
from pipesim.figures.chromium import CANDIDATES, CHROMIUM_ENV, BrowserError, Chromium, find_chromium
from pipesim.io.atomic import atomic_write_bytes, check_output_path

__all__ = ["IMAGE_FORMATS", "check_image_target", "export_image", "render_image"]

IMAGE_FORMATS = ("png", "svg")
PNG_SCALE = 2


def check_image_target(path: str | Path) -> tuple[Path, str]:
    """Validate an image output path before any work: its directory, its suffix (.png or .svg) and that a
    Chromium exists. Returns (path, format)."""
    p = check_output_path(path)
    fmt = p.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise InputError(f"cannot export {p}: suffix {p.suffix or '(none)'!r} is not one of .png, .svg")
    if find_chromium() is None:
        raise InputError(
            f"cannot export {p}: static export needs a Chromium or Chrome and none was found "
            f"(looked for {', '.join(CANDIDATES)} on PATH; set {CHROMIUM_ENV}=/path/to/chrome); "
            "the HTML page needs no browser"
        )
    return p, fmt


def export_image(page_html: str, path: str | Path, width: int = 1400, timeout_s: float = 120.0) -> None:
    """Render the first figure of ``page_html`` (from :func:`pipesim.figures.page.render_page`) to ``path``
    (.png or .svg), written atomically."""
    atomic_write_bytes(path, render_image(page_html, path, width, timeout_s))


def render_image(page_html: str, path: str | Path, width: int = 1400, timeout_s: float = 120.0) -> bytes:
    """The bytes of the first figure of ``page_html`` as an image in the format of ``path``'s suffix (.png or
    .svg), rendered by a headless Chromium; nothing is written."""
    p, fmt = check_image_target(path)
    with tempfile.TemporaryDirectory(prefix="pipesim-export-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(page_html, encoding="utf-8")
        try:
            with Chromium(timeout_s=timeout_s) as browser:
                tab = browser.new_tab(width, 900)
                tab.go_offline()
                tab.navigate(page.as_uri())
                tab.evaluate("window.pipesimReady")
                url = tab.evaluate(
                    "(function () { var gd = document.querySelector('.js-plotly-plot');"
                    f" return Plotly.toImage(gd, {{format: '{fmt}', width: gd.offsetWidth,"
                    f" height: gd.offsetHeight, scale: {PNG_SCALE if fmt == 'png' else 1}}}); }})()"
                )
        except BrowserError as exc:
            raise InputError(f"cannot export {p}: Chromium failed ({exc})") from None
    head, _, body = str(url).partition(",")
    return base64.b64decode(body) if head.endswith(";base64") else urllib.parse.unquote(body).encode("utf-8")
