"""Terminal output: rich consoles that fit the terminal, print no trailing spaces, and colour verdicts.

* Width: ``COLUMNS`` when set, else the terminal's when standard output is one, else :data:`PIPE_WIDTH`
  columns so piped and captured output is stable; ``wide`` (the CLI's ``--wide``) or a table that needs more
  widens it to fit the table whole.
* No character is cut and no header is split mid-word: a table wider than the terminal takes short headers
  and a compact frame, leaves out its least needed columns if even those do not fit (saying so), and folds
  cells (:class:`FittingConsole`).
* No line ends in spaces: rich pads titles and wrapped text to the console width; :class:`StripTrailing`
  drops those spaces (before any colour reset code) as the text is written.
* Colour only where rich detects a terminal that takes it (and ``NO_COLOR`` is unset); :func:`verdict` is
  ``fits`` or a red ``OUT OF MEMORY``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from typing import IO, Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = ["PIPE_WIDTH", "StripTrailing", "make_console", "verdict"]

PIPE_WIDTH = 140  # columns when standard output is not a terminal
WIDE_WIDTH = 1000  # --wide without a table to measure: wide enough for any table pipesim prints
_TRAILING = re.compile(r"[ \t]+((?:\x1b\[[0-9;]*m)*)$")


class StripTrailing:
    """A text stream that writes to ``target`` with the spaces at the end of every line removed."""

    def __init__(self, target: IO[str]) -> None:
        self.target = target
        self._pending = ""

    def write(self, text: str) -> int:
        """Write whole lines now (stripped), keep a partial last line until its end arrives."""
        data = self._pending + text
        lines = data.split("\n")
        self._pending = lines.pop()
        if lines:
            self.target.write("\n".join(_TRAILING.sub(r"\1", line) for line in lines) + "\n")
        return len(text)

    def flush(self) -> None:
        """Write a pending partial line and flush ``target``."""
        if self._pending:
            self.target.write(_TRAILING.sub(r"\1", self._pending))
            self._pending = ""
        self.target.flush()

    def isatty(self) -> bool:
        """Whether ``target`` is a terminal (rich decides colour and width by it)."""
        return bool(getattr(self.target, "isatty", lambda: False)())

    def fileno(self) -> int:
        """``target``'s descriptor (rich asks for the terminal size through it)."""
        return int(self.target.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


# Short forms of column headers, for tables wider than the terminal (units kept: they are said once, here).
ABBREVIATIONS: dict[str, str] = {
    "schedule": "sched",
    "recompute": "recomp",
    "bubble/ideal": "bub/ideal",
    "peak act microbatches": "peak act m",
    "peak act GiB": "act GiB",
    "p2p exposed ms": "p2p exp ms",
    "DP hidden ms": "DP hid ms",
    "DP exposed ms": "DP exp ms",
    "tokens/s": "tok/s",
    "TFLOP/s/GPU": "TF/s/GPU",
    "TFLOP/s": "TF/s",
    "peak GiB": "pk GiB",
    "verdict": "fits?",
    "weights": "wgt",
    "optimizer": "optim",
    "activations": "act",
    "transient": "trans",
    "reserve": "rsv",
    "experts (w+g+opt)": "experts",
    "% of step": "% step",
    "compute": "comp",
}
# Columns a table too narrow for every header may leave out, first to go first (--wide prints them all).
HIDE_FIRST: tuple[str, ...] = (
    "TFLOP/s",
    "DO/SP",
    "GPU-h",
    "p2p exposed ms",
    "DP hidden ms",
    "bubble/ideal",
    "TFLOP/s/GPU",
    "vpp",
    "mbs",
    "recompute",
    "tokens/s",
    "p2p ms",
    "peak act microbatches",
)


def _words(header: object) -> int:
    """The longest word of a header: the narrowest its column gets (headers wrap between words only)."""
    return max((len(w) for w in str(header).split()), default=1)


class FittingConsole(Console):
    """A console whose tables never lose characters and whose headers are never cut mid-word: a table wider
    than the console takes its headers' short forms (:data:`ABBREVIATIONS`) and a compact frame; if the
    headers' words still do not fit it leaves out columns in :data:`HIDE_FIRST` order and says which; then
    cells too wide for their column fold onto more lines (a number continues on the next line) instead of
    being cut to ``…``."""

    def _need(self, table: Table) -> int:
        return Measurement.get(self, self.options.update(max_width=10_000), table).maximum

    def _natural(self, column: Any) -> int:
        """The width ``column`` needs to print its header and every cell on one line each."""
        unbounded = self.options.update(max_width=10_000)
        cells = [column.header, *column.cells]
        return max(Measurement.get(self, unbounded, c).maximum for c in cells)

    def _fit(self, table: Table) -> list[str]:
        """Shrink ``table`` to the console's width; the full headers of the columns left out."""
        if self._need(table) <= self.width:
            return []
        full = {id(c): str(c.header) for c in table.columns}
        for column in table.columns:
            column.header = ABBREVIATIONS.get(str(column.header), column.header)
        if self._need(table) <= self.width:
            return []
        # A rule under the header and one space between columns, no frame.
        table.box, table.show_edge, table.pad_edge, table.padding = box.SIMPLE_HEAD, False, False, (0, 0)

        def room() -> int:
            return self.width - (len(table.columns) - 1)

        def floors(cells_whole: bool) -> list[int]:
            # Headers break between words only; with cells_whole every cell but the first column's (labels,
            # which may fold) keeps its line.
            return [
                max(_words(c.header), self._natural(c) if cells_whole and i else 0)
                for i, c in enumerate(table.columns)
            ]

        hidden = []
        for name in HIDE_FIRST:
            if sum(floors(True)) <= room():
                break
            for column in list(table.columns[1:]):
                if full[id(column)] == name:
                    table.columns.remove(column)
                    hidden.append(name)
        floor = floors(True)
        if sum(floor) > room():
            floor = floors(False)  # numbers fold too
        if sum(floor) > room():
            floor = [1] * len(floor)  # even the headers' words: nothing is cut
        widths = [max(self._natural(c), f) for c, f in zip(table.columns, floor, strict=True)]
        while sum(widths) > room():  # narrow the widest column that can give, one character at a time
            give = [i for i, w in enumerate(widths) if w > floor[i]]
            if not give:
                break
            widest = max(give, key=lambda i: widths[i])
            widths[widest] -= 1
        for column, width in zip(table.columns, widths, strict=True):
            column.width, column.min_width, column.overflow, column.no_wrap = width, None, "fold", False
        return hidden

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """rich's ``print``, after fitting the tables that are wider than the console (:meth:`_fit`)."""
        notes = []
        for obj in objects:
            if isinstance(obj, Table):
                hidden = self._fit(obj)
                if hidden:
                    notes.append(
                        f"(not shown at {self.width} columns: {', '.join(hidden)}; --wide shows all)"
                    )
        super().print(*objects, **kwargs)
        for note in notes:
            super().print(note, highlight=False)


def _terminal_width(stream: IO[str]) -> int | None:
    """``COLUMNS`` when set (the width asked for, piped or not), else the terminal's, else None (a pipe)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    isatty = getattr(stream, "isatty", None)
    if not (callable(isatty) and isatty()):
        return None
    return shutil.get_terminal_size((PIPE_WIDTH, 24)).columns


def make_console(stream: IO[str] | None = None, fit: Any = None, wide: bool = False) -> Console:
    """A rich console on ``stream`` (default standard output), as wide as the terminal (or
    :data:`PIPE_WIDTH` when not one), widened to ``fit``'s whole width when ``wide`` or when ``fit`` needs
    more than a pipe's width; lines never end in spaces."""
    out = stream if stream is not None else sys.stdout
    width = _terminal_width(out) or PIPE_WIDTH
    if fit is not None:
        probe = Console(width=1000)
        need = Measurement.get(probe, probe.options, fit).maximum
        if wide or _terminal_width(out) is None:
            width = max(width, need)
    elif wide:
        width = max(width, WIDE_WIDTH)
    colour = None if not os.environ.get("NO_COLOR") else "no_color"
    return FittingConsole(
        file=StripTrailing(out),  # type: ignore[arg-type]
        width=width,
        soft_wrap=False,
        no_color=colour is not None,
    )


def verdict(fits: bool, short: bool = False) -> Text:
    """``fits``, or ``OUT OF MEMORY`` (``OOM`` when ``short``) in bold red where colour is on."""
    if fits:
        return Text("fits")
    return Text("OOM" if short else "OUT OF MEMORY", style="bold red")
