"""Terminal output: rich consoles that fit the terminal, print no trailing spaces, and colour verdicts.

* Width: the terminal's when standard output is one (``COLUMNS`` or the tty's size), else
  :data:`PIPE_WIDTH` columns so piped and captured output is stable; ``wide`` (the CLI's ``--wide``) or a
  table that needs more widens it to fit the table whole.
* No character is cut: a table wider than the terminal folds its cells (:class:`FittingConsole`).
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


class FittingConsole(Console):
    """A console whose tables never lose characters: a table wider than the console folds its cells onto
    more lines (a number too wide for its column continues on the next line) instead of cutting them to
    ``…``."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """rich's ``print``, after folding the columns of tables that do not fit."""
        for obj in objects:
            unbounded = self.options.update(max_width=10_000)
            if isinstance(obj, Table) and Measurement.get(self, unbounded, obj).maximum > self.width:
                for column in obj.columns:
                    column.overflow = "fold"
                    column.no_wrap = False
        super().print(*objects, **kwargs)


def _terminal_width(stream: IO[str]) -> int | None:
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
