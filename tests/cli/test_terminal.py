"""Terminal output fits the terminal, keeps every character, has no trailing spaces, and colours OOM red."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console
from rich.table import Table

from pipesim.terminal import PIPE_WIDTH, StripTrailing, make_console, verdict


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def wide_table() -> Table:
    t = Table(title="Memory per GPU by pipeline rank")
    for name in ("rank", "weights", "gradients", "optimizer", "activations", "transient", "reserve", "peak"):
        t.add_column(name, justify="right")
    t.add_row("0", "16.43", "32.85", "98.56", "59.53", "0.00", "2.00", "1365.16")
    return t


def test_strip_trailing_keeps_colour_codes() -> None:
    out = io.StringIO()
    w = StripTrailing(out)
    w.write("title   \nred \x1b[1;31mOOM\x1b[0m   \x1b[0m\npartial  ")
    w.flush()
    assert out.getvalue() == "title\nred \x1b[1;31mOOM\x1b[0m\x1b[0m\npartial"


def test_pipes_get_a_fixed_width_and_the_whole_table() -> None:
    out = io.StringIO()
    con = make_console(out, fit=wide_table())
    assert con.width >= PIPE_WIDTH
    con.print(wide_table())
    text = out.getvalue()
    assert "1365.16" in text and "…" not in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_a_narrow_terminal_shortens_headers_and_cuts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import Counter

    for columns in (60, 50, 30):
        monkeypatch.setenv("COLUMNS", str(columns))
        out = FakeTTY()
        con = make_console(out)
        assert con.width == columns
        con.print(wide_table())
        plain = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # a terminal gets colour codes
        lines = plain.splitlines()
        assert max(len(line) for line in lines) <= columns
        assert "…" not in plain
        # Every character of every cell and header is printed (folded cells continue on the next line).
        cells = "".join(["0", "16.43", "32.85", "98.56", "59.53", "0.00", "2.00", "1365.16"])
        assert not Counter(cells) - Counter(plain)
        if columns == 60:  # short headers, the numbers on one line each
            assert "wgt" in plain and "act" in plain and "1365.16" in plain and "activations" not in plain
    # --wide: as wide as the table needs
    wide = make_console(FakeTTY(), fit=wide_table(), wide=True)
    assert wide.width > 50


def test_verdict_is_red_only_when_out_of_memory() -> None:
    con = Console(file=io.StringIO(), force_terminal=True, color_system="standard")
    con.print(verdict(False))
    con.print(verdict(True))
    text = con.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[1;31mOUT OF MEMORY" in text and "fits" in text
    assert verdict(False, short=True).plain == "OOM"
