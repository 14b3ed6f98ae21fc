"""Helpers for the browser tests: load a page in headless Chromium (no network), read what plotly drew, and
decode screenshots with a tiny PNG reader (zlib + the five PNG row filters; no Pillow needed)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tests.chromium import Chromium, Tab

__all__ = ["open_page", "drawn_bars", "lane_pixels", "hover_text", "decode_png", "Image"]


@contextmanager
def open_page(browser: Chromium, path: Path, width: int = 1400, height: int = 900) -> Iterator[Tab]:
    """A tab with the network off that has loaded ``path`` and finished drawing (``window.pipesimReady``)."""
    tab = browser.new_tab(width, height)
    tab.go_offline()
    tab.navigate(path.resolve().as_uri())
    tab.evaluate("window.pipesimReady")
    try:
        yield tab
    finally:
        tab.close()


# For every bars trace: which rank each drawn bar is on, read back from the SVG path plotly rendered. A bar
# of the outline is an upward vertical move ("V" to a smaller pixel y) followed by a horizontal one; the
# pixel y maps back to data y, and (y - top) / row is the rank.
_DRAWN_BARS_JS = """
(function () {
  var gd = document.querySelector('.js-plotly-plot');
  var out = [];
  var scatterIndex = -1;  // bar traces (the memory breakdown) draw in a layer of their own
  gd._fullData.forEach(function (trace) {
    if (trace.type === 'scatter') scatterIndex++;
    if (!trace.meta || trace.meta.pipesim !== 'bars') return;
    var node = gd.querySelectorAll('g.trace.scatter')[scatterIndex];
    var fill = node && node.querySelector('path.js-fill');
    var d = fill ? fill.getAttribute('d') : '';
    var ya = gd._fullLayout[trace.yaxis === 'y' ? 'yaxis' : 'yaxis' + trace.yaxis.slice(1)];
    var tokens = d.match(/[MHVLZ]|-?[0-9.]+(?:e-?[0-9]+)?/g) || [];
    var counts = {}, y = null, cmd = null, pendingUp = null;
    for (var k = 0; k < tokens.length; k++) {
      var t = tokens[k];
      if (/[MHVLZ]/.test(t)) { cmd = t; continue; }
      if (cmd === 'M' || cmd === 'L') { y = parseFloat(tokens[k + 1].replace(/^,/, '')); k++; pendingUp = null; }
      else if (cmd === 'V') {
        var ny = parseFloat(t);
        pendingUp = ny < y - 0.01 ? ny : null; y = ny;
      } else if (cmd === 'H') {
        if (pendingUp !== null) {
          var rank = Math.round((ya.p2c(pendingUp) - trace.meta.top) / trace.meta.row);
          counts[rank] = (counts[rank] || 0) + 1;
        }
        pendingUp = null;
      }
    }
    out.push({schedule: trace.meta.schedule, kind: trace.meta.kind, counts: counts});
  });
  return out;
})()
"""


def drawn_bars(tab: Tab) -> dict[tuple[str, str], dict[int, int]]:
    """{(schedule, kind): {rank: bars drawn}} read from the rendered SVG of the page's first figure (a kind's
    model chunks, drawn as one trace each, summed)."""
    out: dict[tuple[str, str], dict[int, int]] = {}
    for item in tab.evaluate(_DRAWN_BARS_JS):
        counts = out.setdefault((item["schedule"], item["kind"]), {})
        for r, c in item["counts"].items():
            counts[int(r)] = counts.get(int(r), 0) + int(c)
    return out


def lane_pixels(tab: Tab, schedule: str, kind: str, num_ranks: int) -> list[tuple[int, int, int]]:
    """Page-pixel (y, x_left, x_right) of the middle of each rank's lane of ``kind``'s bars in ``schedule``'s
    chart (the plot area's horizontal extent)."""
    js = f"""
    (function () {{
      var gd = document.querySelector('.js-plotly-plot');
      var box = gd.getBoundingClientRect();
      var trace = gd._fullData.find(function (t) {{
        return t.meta && t.meta.pipesim === 'bars' && t.meta.schedule === {schedule!r} && t.meta.kind === {kind!r};
      }});
      var ya = gd._fullLayout[trace.yaxis === 'y' ? 'yaxis' : 'yaxis' + trace.yaxis.slice(1)];
      var xa = gd._fullLayout[trace.xaxis === 'x' ? 'xaxis' : 'xaxis' + trace.xaxis.slice(1)];
      var out = [];
      for (var r = 0; r < {num_ranks}; r++) {{
        var mid = r * trace.meta.row + trace.meta.offset;
        out.push([Math.round(box.top + window.scrollY + ya._offset + ya.c2p(mid)),
                  Math.round(box.left + xa._offset), Math.round(box.left + xa._offset + xa._length)]);
      }}
      return out;
    }})()
    """
    return [tuple(v) for v in tab.evaluate(js)]


def hover_text(tab: Tab, time_ms: float, y: int) -> str:
    """The text of the hover label plotly shows with the mouse at ``time_ms`` on the first chart's time axis
    and at page-pixel height ``y`` (a lane of :func:`lane_pixels`), scrolled so that the point is in view."""
    x = tab.evaluate(
        "(function () { var gd = document.querySelector('.js-plotly-plot'); var xa = gd._fullLayout.xaxis;"
        f" return gd.getBoundingClientRect().left + xa._offset + xa.c2p({time_ms}); }})()"
    )
    tab.evaluate(f"window.scrollTo(0, {y - 300})")
    scroll = tab.evaluate("window.scrollY")
    tab.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y - scroll})
    return str(
        tab.evaluate(
            "new Promise(r => setTimeout(() => r(document.querySelector('.hoverlayer').textContent), 300))"
        )
    )


class Image:
    """Decoded pixels: ``pixel(x, y)`` -> (r, g, b); ``pixels`` is a (height, width, channels) uint8 array."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.height, self.width, self.channels = pixels.shape

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        r, g, b = (int(v) for v in self.pixels[y, x, :3])
        return r, g, b

    def count(self, y: int, x0: int, x1: int, rgb: tuple[int, int, int]) -> int:
        """How many pixels of row ``y`` between ``x0`` and ``x1`` are exactly ``rgb``."""
        row = self.pixels[y, x0:x1, :3]
        return int(np.all(row == np.asarray(rgb, dtype=np.uint8), axis=1).sum())


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def decode_png(data: bytes) -> Image:
    """Decode an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium's screenshots are). Rows filtered with
    None, Sub or Up are undone with numpy; Average and Paeth rows byte by byte."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if ctype == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif ctype == b"IDAT":
            idat += body
        elif ctype == b"IEND":
            break
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, width * channels + 1)
    out = np.zeros((height, width * channels), dtype=np.uint8)
    prev = np.zeros(width * channels, dtype=np.uint8)
    for y in range(height):
        ftype, line = int(raw[y, 0]), raw[y, 1:]
        if ftype == 0:
            cur = line.copy()
        elif ftype == 1:
            cur = (
                (np.cumsum(line.reshape(width, channels), axis=0, dtype=np.uint64) % 256)
                .astype(np.uint8)
                .ravel()
            )
        elif ftype == 2:
            cur = line + prev
        else:
            buf = bytearray(line.tobytes())
            up = prev.tobytes()
            for i in range(len(buf)):
                a = buf[i - channels] if i >= channels else 0
                c = up[i - channels] if i >= channels else 0
                pred = (a + up[i]) // 2 if ftype == 3 else _paeth(a, up[i], c)
                buf[i] = (buf[i] + pred) & 0xFF
            cur = np.frombuffer(bytes(buf), dtype=np.uint8)
        out[y] = cur
        prev = cur
    return Image(out.reshape(height, width, channels))


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """'#4c78a8' -> (76, 120, 168)."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)
