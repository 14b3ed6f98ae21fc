"""What every result of the Python API offers: ``to_dict()``, ``to_pandas()`` (pandas optional) and a table
for notebooks (``_repr_html_``).

A result class (a frozen dataclass) mixes in :class:`Result` and defines ``as_dict()`` (its JSON form, the one
the CLI's ``--json`` prints) and, where one row per item reads better than one row in all, ``table_rows()``.
Nothing is recomputed here: the tables show the numbers of ``as_dict()``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from pipesim.errors import InputError

__all__ = ["Result", "flatten", "html_table"]

HTML_ROW_LIMIT = 40  # rows a notebook shows (to_pandas() has them all)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars of a nested dict with dotted keys (``layout.tp``); lists are left out."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif not isinstance(value, (list, tuple)):
            out[name] = value
    return out


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.4e}"
    return str(value)


def html_table(rows: list[dict[str, Any]], caption: str = "") -> str:
    """A small HTML table of ``rows`` (dicts with the same keys), at most :data:`HTML_ROW_LIMIT` of them."""
    columns = list(rows[0]) if rows else []
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append(
        "<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr></thead><tbody>"
    )
    for row in rows[:HTML_ROW_LIMIT]:
        out.append("<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>")
    out.append("</tbody></table>")
    if len(rows) > HTML_ROW_LIMIT:
        out.append(f"<p>{len(rows) - HTML_ROW_LIMIT} more rows: .to_pandas() has them all</p>")
    return "".join(out)


class Result:
    """Mixin of the API's result dataclasses (see the module docstring)."""

    def as_dict(self) -> dict[str, Any]:  # pragma: no cover - every result defines it
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready Python values (what ``--json`` prints)."""
        return self.as_dict()

    def table_rows(self) -> list[dict[str, Any]]:
        """Rows of the result's table: by default one row, the scalars of :meth:`to_dict`."""
        return [flatten(self.to_dict())]

    def to_pandas(self) -> Any:
        """:meth:`table_rows` as a ``pandas.DataFrame`` (needs pandas: ``pip install pipesim[pandas]``)."""
        try:
            import pandas as pd
        except ImportError:
            raise InputError("to_pandas() needs pandas: pip install 'pipesim[pandas]'") from None
        return pd.DataFrame(self.table_rows())

    def _repr_html_(self) -> str:
        """The table a notebook shows for the result."""
        return html_table(self.table_rows(), type(self).__name__)
