"""Issue 15 part 6: drive the CLI with random flags and values (hypothesis). Every run exits 0 or 2, never
prints a traceback, and a run that fails leaves no file behind. The work budgets are lowered so that every
accepted run is quick; the fuzz cannot raise them."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from conftest import invoke
from hypothesis import given, settings
from hypothesis import strategies as st

from pipesim.cli.group import COMMANDS, main

LIMITS = {"--max-actions": "20000", "--max-bars": "5000", "--max-gpus": "64"}
FIXED = {
    "compare": [],
    "simulate": ["--model", "gpt-1.7b", "--global-batch-size", "8"],
    "gantt": ["-o", "page.html"],
    "roofline": ["--model", "gpt-1.7b"],
    "plan": [
        "--model",
        "gpt-1.7b",
        "--nodes",
        "1",
        "--global-batch-size",
        "16",
        "--workers",
        "1",
        "--top-k",
        "1",
    ],
    "collective": ["all-reduce", "-t", "dgx-a100"],
    "topo show": ["dgx-a100"],
    "gpu show": ["h100-sxm"],
    "calibrate": [
        str(Path(__file__).parents[1] / "data" / "calibrate_fuzz.csv"),
        "--gpu",
        "a100-80gb",
        "--folds",
        "0",
    ],
}
SKIP = {"--help", "--workers", "--dask-scheduler", "--top-k", "--image", "--max-days", *LIMITS}
VALUES = [
    "0", "1", "2", "3", "4", "8", "-1", "7", "64", "1000000000000", "0.5", "-3.5", "inf", "nan", "-inf",
    "1e400", "", "x", "1f1b", "interleaved-1f1b,zb-h1", "gpipe", "gpt-1.7b", "llama3-8b", "h100-sxm",
    "dgx-h100", "dgx-a100", "nope", "/nonexistent/file.toml", ".", "out/", "-", "tp-dp-pp", "dp-tp-pp",
    "full", "selective", "fp8", "fp32", "unfused", "2T", "1K", "8G", "both", "on",
]  # fmt: skip


def _command(path: str) -> click.Command:
    ctx = click.Context(main)
    cmd: click.Command | None = main
    for part in path.split():
        assert isinstance(cmd, click.Group)
        cmd = cmd.get_command(ctx, part)
    assert cmd is not None
    return cmd


def _flags(path: str) -> list[tuple[str, bool]]:
    """(option string, is a boolean flag) of a command, budgets and slow or external options left out."""
    out = []
    for p in _command(path).params:
        if isinstance(p, click.Option):
            for opt in p.opts + p.secondary_opts:
                if opt.startswith("--") and opt not in SKIP:
                    out.append((opt, bool(p.is_flag)))
    return sorted(out)


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    path = draw(st.sampled_from(sorted(FIXED)))
    flags = _flags(path)
    args = [*path.split(), *FIXED[path]]
    own = {p.opts[0] for p in _command(path).params if isinstance(p, click.Option)}
    for opt, value in LIMITS.items():
        if opt in own:
            args += [opt, value]
    for opt, is_flag in draw(st.lists(st.sampled_from(flags), max_size=4)):
        args.append(opt)
        if not is_flag:
            args.append(draw(st.sampled_from(VALUES)))
    return args


def test_every_command_is_fuzzed() -> None:
    assert {p.split()[0] for p in FIXED} == set(COMMANDS)


@settings(max_examples=120)
@given(args=command_lines())
def test_random_command_lines_exit_0_or_2_and_leave_nothing_on_failure(
    args: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    before = Path.cwd()
    os.chdir(work)
    try:
        code, out, err = invoke(*args)
    finally:
        os.chdir(before)
    assert code in (0, 2), (args, code, err)
    assert "Traceback" not in out + err, (args, err)
    if code == 2:
        assert err.startswith("error: ") and len(err.splitlines()) == 1, (args, err)
        assert list(work.iterdir()) == [], (args, sorted(work.iterdir()))
