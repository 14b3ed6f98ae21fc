"""HTML pages: a header with the scenario, summary tables and one or more plotly figures.

By default a page is self-contained and opens with no network: plotly.js (about 4.6 MB) is embedded. With
``plotlyjs="directory"`` the page loads ``plotly.min.js`` from its own folder (:func:`write_page` writes it
there once, so many pages share one copy); with ``"cdn"`` from plotly's CDN (needs the network when opened).

Any page of pipesim (timelines now; roofline, plan and topology later) is a :class:`Page`: :func:`render_page`
turns it into one HTML string. Figures travel as JSON in ``<script type="application/json">`` blocks (parsed
with ``JSON.parse``, which is faster than a script literal for large figures; numpy arrays arrive as plotly's
base64 typed arrays) and are drawn by a small boot script. ``window.pipesimReady`` is a promise that resolves
once every figure has been drawn, with the milliseconds that took (browser tests and benchmarks wait on it).

Output is deterministic: element ids are positional and nothing depends on the clock.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs, get_plotlyjs_version

import pipesim
from pipesim.errors import check_choice
from pipesim.figures import PLOTLYJS_MODES
from pipesim.io.atomic import write_outputs

__all__ = ["Table", "Page", "render_page", "write_page", "PLOTLY_CONFIG", "PLOTLYJS_MODES", "PLOTLYJS_FILE"]

PLOTLYJS_FILE = "plotly.min.js"  # the file a "directory" page loads from its own folder

# Plotly's interaction settings for every figure: drag to zoom, wheel to zoom, no logo, SVG from the camera.
PLOTLY_CONFIG: dict[str, object] = {
    "displaylogo": False,
    "responsive": True,
    "scrollZoom": True,
    "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"],
    "toImageButtonOptions": {"format": "svg"},
}


@dataclass(frozen=True)
class Table:
    """A small table of already formatted cells; ``numeric`` columns are right-aligned."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    numeric: tuple[bool, ...] = ()


@dataclass(frozen=True)
class Page:
    """The content of one page: a title, the scenario as (label, value) pairs, summary tables and notes (in the
    header), figures, then an appendix of longer tables and notes below the figures."""

    title: str
    scenario: tuple[tuple[str, str], ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[go.Figure, ...] = ()
    notes: tuple[str, ...] = ()
    figure_names: tuple[str, ...] = field(default=())
    appendix: tuple[Table, ...] = ()
    appendix_notes: tuple[str, ...] = ()


_CSS = """
:root { --ink: #1f2430; --muted: #5b6372; --line: #dde1e8; --bg: #fafbfc; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: var(--ink); background: white; }
header { padding: 16px 24px 8px; border-bottom: 1px solid var(--line); background: var(--bg); }
h1 { font-size: 20px; margin: 0 0 8px; }
.scenario { display: flex; flex-wrap: wrap; gap: 6px 8px; margin: 0 0 10px; padding: 0; list-style: none; }
.scenario li { border: 1px solid var(--line); border-radius: 4px; padding: 1px 8px; background: white; }
.scenario b { color: var(--muted); font-weight: 600; margin-right: 4px; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 4px 0 12px; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding-bottom: 4px; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { text-align: left; font-weight: 600; background: white; }
td.num, th.num { text-align: right; }
.notes { color: var(--muted); font-size: 12px; margin: 0; padding-left: 18px; }
main { padding: 4px 8px 24px; }
.figure { width: 100%; }
footer { color: var(--muted); font-size: 12px; padding: 0 24px 16px; }
"""

_BOOT = """
(function () {
  var t0 = performance.now();
  var config = JSON.parse(document.getElementById("pipesim-config").textContent);
  var jobs = Array.prototype.map.call(document.querySelectorAll("script.pipesim-figure"), function (el) {
    var fig = JSON.parse(el.textContent);
    return Plotly.newPlot(el.getAttribute("data-target"), fig.data, fig.layout, config);
  });
  window.pipesimReady = Promise.all(jobs).then(function () {
    return new Promise(function (resolve) {
      requestAnimationFrame(function () { resolve(performance.now() - t0); });
    });
  });
})();
"""


def _script_json(data: object) -> str:
    """JSON safe inside a ``<script>`` element: every ``<`` (which JSON only has inside strings) escaped."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def _table_html(table: Table) -> str:
    numeric = table.numeric or (False,) * len(table.columns)
    out = ['<div class="table-wrap"><table>']
    if table.caption:
        out.append(f"<caption>{html.escape(table.caption)}</caption>")
    out.append(
        "<thead><tr>"
        + "".join(
            f'<th class="{"num" if n else "txt"}">{html.escape(c)}</th>'
            for c, n in zip(table.columns, numeric, strict=True)
        )
        + "</tr></thead><tbody>"
    )
    for row in table.rows:
        out.append(
            "<tr>"
            + "".join(
                f'<td class="{"num" if n else "txt"}">{html.escape(c)}</td>'
                for c, n in zip(row, numeric, strict=True)
            )
            + "</tr>"
        )
    out.append("</tbody></table></div>")
    return "".join(out)


def cdn_url() -> str:
    """plotly's CDN address of the plotly.js bundled with the installed plotly (as ``include_plotlyjs="cdn"``
    of plotly's own ``write_html`` writes it)."""
    return f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"


def check_plotlyjs(mode: str) -> None:
    """Refuse a ``--plotlyjs`` value that is not one of :data:`PLOTLYJS_MODES`."""
    check_choice("--plotlyjs", mode, PLOTLYJS_MODES)


def _plotly_script(mode: str) -> str:
    check_plotlyjs(mode)
    if mode == "directory":
        return f'<script src="{PLOTLYJS_FILE}"></script>'
    if mode == "cdn":
        return f'<script src="{cdn_url()}" crossorigin="anonymous"></script>'
    plotly_js = get_plotlyjs()
    if "</script" in plotly_js.lower():  # pragma: no cover - would break the inline script element
        raise RuntimeError("plotly.js bundle contains </script>; cannot inline it")
    return f"<script>{plotly_js}</script>"


def page_files(path: str | Path, page_html: str, plotlyjs: str = "embed") -> list[tuple[str, bytes]]:
    """The files a page rendered with ``plotlyjs`` needs, as (path, bytes): the page, and for
    ``"directory"`` ``plotly.min.js`` beside it unless the same bundle is already there. Nothing is written,
    so a command can render every output before writing any (:func:`pipesim.io.atomic.write_outputs`)."""
    check_plotlyjs(plotlyjs)
    out = [(str(path), page_html.encode("utf-8"))]
    if plotlyjs == "directory":
        bundle = Path(path).parent / PLOTLYJS_FILE
        js = get_plotlyjs()
        if not bundle.is_file() or bundle.read_text(encoding="utf-8") != js:
            out.append((str(bundle), js.encode("utf-8")))
    return out


def write_page(path: str | Path, page_html: str, plotlyjs: str = "embed") -> None:
    """Write ``page_html`` (rendered with the same ``plotlyjs``) and what it needs (:func:`page_files`)
    all-or-nothing."""
    write_outputs(page_files(path, page_html, plotlyjs))


def render_page(page: Page, plotlyjs: str = "embed") -> str:
    """The whole HTML document of ``page``; plotly.js embedded (offline), loaded from the page's folder
    (``"directory"``) or from plotly's CDN (``"cdn"``)."""
    script = _plotly_script(plotlyjs)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(page.title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        "<header>",
        f"<h1>{html.escape(page.title)}</h1>",
    ]
    if page.scenario:
        parts.append('<ul class="scenario">')
        parts.extend(
            f"<li><b>{html.escape(label)}</b>{html.escape(value)}</li>" for label, value in page.scenario
        )
        parts.append("</ul>")
    parts.extend(_table_html(t) for t in page.tables)
    if page.notes:
        parts.append(
            '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in page.notes) + "</ul>"
        )
    parts.append("</header><main>")
    for i, fig in enumerate(page.figures):
        div_id = f"figure-{i}"
        label = page.figure_names[i] if i < len(page.figure_names) else f"figure {i}"
        parts.append(f'<div class="figure" id="{div_id}" role="img" aria-label="{html.escape(label)}"></div>')
        parts.append(
            f'<script type="application/json" class="pipesim-figure" data-target="{div_id}">'
            + fig.to_json(pretty=False).replace("<", "\\u003c")
            + "</script>"
        )
    parts.extend(_table_html(t) for t in page.appendix)
    if page.appendix_notes:
        parts.append(
            '<ul class="notes">'
            + "".join(f"<li>{html.escape(n)}</li>" for n in page.appendix_notes)
            + "</ul>"
        )
    parts.append("</main>")
    parts.append(f"<footer>pipesim {html.escape(pipesim.__version__)}</footer>")
    parts.append(
        f'<script type="application/json" id="pipesim-config">{_script_json(PLOTLY_CONFIG)}</script>'
    )
    parts.append(script)
    parts.append(f"<script>{_BOOT}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
