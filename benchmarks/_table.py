"""The plain-text tables of the accuracy reports (accuracy.py, accuracy_nemo.py, accuracy_zero3.py): one
printer, so every report lines its columns up the same way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["print_table"]


def print_table(
    columns: Sequence[tuple[str, str]],
    rows: Iterable[Sequence[object]],
    *,
    indent: str = "",
    header: bool = True,
) -> None:
    """Print ``rows`` under ``columns`` (title, format spec of Python's format mini-language: ``""`` as is,
    ``".1f"``, ``"+.1%"``, ...): each column as wide as its widest cell (and title, when ``header``), text
    columns left-aligned, numbers right-aligned, two spaces between columns, every line after ``indent``; with
    ``header`` the titles first and a rule of dashes under them."""
    table = [list(row) for row in rows]
    cells = [[format(v, spec) for v, (_, spec) in zip(row, columns, strict=True)] for row in table]
    text = [all(isinstance(row[i], str) for row in table) for i in range(len(columns))]
    widths = [
        max([len(row[i]) for row in cells] + [len(title) if header else 0])
        for i, (title, _) in enumerate(columns)
    ]

    def line(parts: Sequence[str]) -> str:
        return (
            indent
            + "  ".join(
                p.ljust(w) if left else p.rjust(w) for p, w, left in zip(parts, widths, text, strict=True)
            ).rstrip()
        )

    if header:
        head = line([t for t, _ in columns])
        print(head)
        print(indent + "-" * (len(head) - len(indent)))
    for row in cells:
        print(line(row))
