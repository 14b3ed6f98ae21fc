"""Static PNG, SVG and PDF pictures of plotly figures, drawn by plotly's own exporter, kaleido.

Kaleido (https://github.com/plotly/Kaleido, version 1) renders a figure in a headless Chrome or Chromium
that it finds on the machine (``$BROWSER_PATH``, then the usual names on ``PATH``); nothing is downloaded and
no network is used. PNG is drawn at :data:`PNG_SCALE` times the CSS pixel size. Without a browser,
:func:`check_image_target` raises :class:`~pipesim.errors.InputError` with one line saying so, before any
work; the HTML pages need none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipesim.errors import InputError
from pipesim.io.atomic import atomic_write_bytes, check_output_path

__all__ = [
    "IMAGE_FORMATS",
    "PNG_SCALE",
    "check_image_target",
    "export_figure",
    "figure_bytes",
    "find_browser",
]

IMAGE_FORMATS = ("png", "svg", "pdf")
PNG_SCALE = 2
DEFAULT_WIDTH_PX = 1400
DEFAULT_HEIGHT_PX = 900  # for figures that do not set their own height


def find_browser() -> str | None:
    """The Chrome or Chromium kaleido would use (``$BROWSER_PATH`` first), or None."""
    from choreographer.browsers.chromium import Chromium

    path = Chromium.find_browser(skip_local=False)
    return path if path and Path(path).is_file() else None


def check_image_target(path: str | Path) -> tuple[Path, str]:
    """Validate an image output path before any work: its directory, its suffix (.png, .svg or .pdf) and
    that a browser for kaleido exists. Returns (path, format)."""
    p = check_output_path(path)
    fmt = p.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise InputError(f"cannot export {p}: suffix {p.suffix or '(none)'!r} is not one of .png, .svg, .pdf")
    if find_browser() is None:
        raise InputError(
            f"cannot export {p}: static pictures need Chrome or Chromium (kaleido draws them) and none was "
            "found (install chromium, or set BROWSER_PATH=/path/to/chrome); the HTML page needs no browser"
        )
    return p, fmt


def figure_bytes(
    fig: Any, path: str | Path, width: int = DEFAULT_WIDTH_PX, height: int | None = None
) -> bytes:
    """The bytes of plotly figure ``fig`` drawn by kaleido in the format of ``path``'s suffix (.png, .svg or
    .pdf); nothing is written (so a command can render every output before writing any). The height is the
    figure's own when it sets one."""
    import plotly.io as pio

    p, fmt = check_image_target(path)
    h = height or fig.layout.height or DEFAULT_HEIGHT_PX
    try:
        data = pio.to_image(fig, format=fmt, width=width, height=h, scale=PNG_SCALE if fmt == "png" else 1)
    except Exception as exc:  # kaleido's and the browser's errors come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot export {p}: kaleido failed ({first})") from None
    return bytes(data)


def export_figure(
    fig: Any, path: str | Path, width: int = DEFAULT_WIDTH_PX, height: int | None = None
) -> None:
    """Draw plotly figure ``fig`` to ``path`` (.png, .svg or .pdf), written atomically
    (:func:`figure_bytes`)."""
    atomic_write_bytes(path, figure_bytes(fig, path, width, height))
