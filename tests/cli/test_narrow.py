"""Narrow terminals: at COLUMNS=80 and 60 the tables of compare, simulate and plan fit, their headers take
short forms and never break inside a word, numbers keep their line, and ``--wide`` still prints everything."""

from __future__ import annotations

import json
import re

import pytest
from conftest import invoke

from pipesim.terminal import ABBREVIATIONS

PLAN = ["plan", "--model", "gpt-1.7b", "--topology", "dgx-a100", "--nodes", "2", "--global-batch-size", "64",
        "--workers", "1", "--top-k", "2", "--tokens", "20B", "--top", "3"]  # fmt: skip
SIM = ["simulate", "--model", "gpt-1.7b", "--tp", "2", "--pp", "2", "--global-batch-size", "8"]
COMMANDS = {
    "compare": (["compare", "--dp-time", "1"], "step ms"),
    "compare --model": (
        ["compare", *SIM[1:], "--schedules", "1f1b,interleaved-1f1b", "--vpp", "2"],
        "step s",
    ),
    "simulate": (SIM, "peak"),
    "plan": (PLAN, "step s"),
}
# Words a header may print besides those of the full headers (which --wide prints): their short forms.
WORDS = {w for h in ABBREVIATIONS.values() for w in h.split()}


def _run(args: list[str], monkeypatch: pytest.MonkeyPatch, columns: int | None) -> str:
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", str(columns))
    code, out, err = invoke(*args)
    assert code == 0, err
    return out


def _header_lines(out: str) -> list[str]:
    """The header lines of the tables: framed ones' (┃) and compact ones' (above a rule of ─, under the
    title)."""
    lines = out.splitlines()
    heads = [line.replace("┃", " ") for line in lines if line.startswith("┃")]  # framed tables' headers
    for i, line in enumerate(lines):
        if line.strip() and set(line.strip()) == {"─"}:
            j = i - 1
            # Up to the title: its lines carry punctuation (parentheses, =, :, ;) that no short header has.
            while j >= 0 and lines[j] and not any(ch in lines[j] for ch in "()=:;"):
                heads.append(lines[j])
                j -= 1
    return heads


@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_tables_fit_with_whole_header_words(name: str, columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    args, header = COMMANDS[name]
    out = _run(args, monkeypatch, columns)
    assert [line for line in out.splitlines() if len(line) > columns] == []
    assert "…" not in out
    heads = _header_lines(out)
    assert heads, out
    words = WORDS | {
        w for line in _run([*args, "--wide"], monkeypatch, columns).splitlines() for w in line.split()
    }
    for line in heads:
        for word in line.split():
            assert word in words, (word, line)  # a fragment of a word folded over two lines is not
    assert re.search(rf"\b{header.split()[0]}\b", "\n".join(heads))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_wide_prints_every_column_in_full(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    args, _ = COMMANDS[name]
    narrow = _run(args, monkeypatch, 60)
    wide = _run([*args, "--wide"], monkeypatch, 60)
    assert "not shown" not in wide
    assert max(len(line) for line in wide.splitlines()) > 60
    full = {"compare": "peak act microbatches", "compare --model": "TFLOP/s/GPU", "simulate": "activations",
            "plan": "TFLOP/s"}[name]  # fmt: skip
    assert full in "\n".join(_header_lines(wide)) and full not in "\n".join(_header_lines(narrow))


def test_numbers_keep_their_line_when_columns_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _run(["compare", "--dp-time", "1"], monkeypatch, 60)
    rows = json.loads(_run(["compare", "--dp-time", "1", "--json"], monkeypatch, 60))
    for r in rows:
        assert f"{r['step_time_s'] * 1e3:.3f}" in out
    assert "(not shown at 60 columns: " in out and "--wide shows all)" in out
