"""Units once per header: in the tables of every command's output a figure's unit is said in its column
header or row label (or the table's title, for a table of one unit), never after the number in each cell;
and GB vs GiB is explicit wherever either appears."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import invoke

DATA = Path(__file__).resolve().parents[1] / "data"
MODEL = ["--model", "gpt-1.7b", "--gpu", "a100-80gb"]
OUTPUTS = {
    "compare": ["compare", "--dp-time", "1"],
    "compare --model": ["compare", *MODEL, "--tp", "2", "--pp", "2", "--global-batch-size", "8"],
    "simulate": ["simulate", *MODEL, "--tp", "2", "--pp", "2", "--global-batch-size", "8", "--tokens", "1B",
                 "--price-per-gpu-hour", "2"],
    "plan": ["plan", *MODEL, "--nodes", "1", "--global-batch-size", "16", "--workers", "1", "--top-k", "1",
             "--tokens", "1B", "--explain"],
    "roofline": ["roofline", "--model", "gpt-1.7b", "--gpu", "h100-sxm", "--precision", "bf16,fp8"],
    "gpu list": ["gpu", "list"],
    "gpu show": ["gpu", "show", "h100-sxm"],
    "topo list": ["topo", "list"],
    "topo show": ["topo", "show", "dgx-h100", "--nodes", "2"],
    "calibrate": ["calibrate", str(DATA / "calibrate_fuzz.csv"), "--gpu", "a100-80gb", "--folds", "0"],
    "collective": ["collective", "all-reduce", "-t", "dgx-a100", "-e", "1M"],
}  # fmt: skip
UNIT = r"(?:s|ms|us|µs|h|days|B|kB|MB|GB|GiB|TB|TiB|FLOP/s|GFLOP|TFLOP/s|GB/s|TB/s|W|kW|kWh|MWh|tokens/s|samples/s)"
NUMBER_THEN_UNIT = re.compile(rf"\d\s*{UNIT}(?![\w/])")
DEFINITION = re.compile(r"=\s*(?:1e\d+|2\^\d+)\s*B\b")  # "GB = 1e9 B" defines a unit, it is no figure


def _cells(out: str) -> list[str]:
    """The body cells of every table: framed rows split at │, compact rows (under a ─ rule) and the rows
    of the plain-text tables (calibrate's runs, collective's sizes) split at runs of spaces."""
    cells = []
    body = False
    for line in out.splitlines():
        stripped = line.strip()
        if stripped.startswith("│"):
            cells += [c.strip() for c in stripped.strip("│").split("│")]
        elif stripped and set(stripped) == {"─"}:
            body = True
        elif not stripped or stripped.startswith(("(", "+N", "#")) and body:
            body = False
        elif body:
            cells += re.split(r"\s{2,}", stripped)
    if not cells:  # a plain-text table: its rows of three or more fields (comment lines start with #)
        rows = [line.strip() for line in out.splitlines() if not line.startswith("#")]
        cells = [c for r in rows if len(re.split(r"\s{2,}", r)) >= 3 for c in re.split(r"\s{2,}", r)]
    return [c for c in cells if c and len(c.split()) <= 5]  # longer cells are prose (descriptions, sources)


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_no_cell_repeats_a_unit(name: str) -> None:
    code, out, err = (
        invoke(*OUTPUTS[name], "--wide") if name not in ("gpu show", "calibrate") else invoke(*OUTPUTS[name])
    )
    assert code == 0, err
    cells = _cells(out)
    assert cells, out
    bad = [c for c in cells if NUMBER_THEN_UNIT.search(DEFINITION.sub("", c))]
    assert bad == [], bad


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_gb_and_gib_are_explicit(name: str) -> None:
    code, out, err = invoke(*OUTPUTS[name])
    assert code == 0, err
    if re.search(r"\bGiB\b", out):
        assert re.search(r"GiB = 2\^30 (?:bytes|B)", out), "GiB used but not defined"
    if re.search(r"\bGB(?:/s)?\b", out):
        assert re.search(r"GB(?:/s)? = 1e9 B", out) or "(1e9 B/s)" in out, "GB used but not defined"
