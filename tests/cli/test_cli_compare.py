"""`pipesim compare` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke

from schedules import build_schedule, dumps_csv

REQUIRED = {
    "schedule",
    "pp",
    "vpp",
    "microbatches",
    "step_time_s",
    "bubble_ratio",
    "bubble_over_ideal",
    "peak_activation_microbatches",
    "peak_activation_microbatches_per_rank",
    "peak_activation_bytes",
    "p2p_time_s",
}


def test_default_compares_three_schedules() -> None:
    code, out, _ = invoke("compare")
    assert code == 0
    for name in ("gpipe", "1f1b", "interleaved-1f1b"):
        assert name in out
    assert "bubble" in out and "GiB" in out


def test_json_has_required_keys_and_formula_values() -> None:
    code, out, _ = invoke("compare", "--json", "--pp", "4", "-m", "8", "--vpp", "2", "--p2p-time", "0")
    assert code == 0
    rows = json.loads(out)
    assert [r["schedule"] for r in rows] == ["gpipe", "1f1b", "interleaved-1f1b"]
    for r in rows:
        assert set(r) >= REQUIRED
    # (p-1)/(m+p-1) = 3/11; interleaved (p-1)/(v*m+p-1) = 3/19 (SC21 Sections 2.2.1-2.2.2).
    assert rows[1]["bubble_ratio"] == pytest.approx(3 / 11)
    assert rows[2]["bubble_ratio"] == pytest.approx(3 / 19)
    assert rows[1]["peak_activation_microbatches_per_rank"] == [4, 3, 2, 1]


def test_times_are_milliseconds_per_whole_stage() -> None:
    code, out, _ = invoke(
        "compare",
        "--json",
        "--schedules",
        "1f1b",
        "--pp",
        "2",
        "-m",
        "1",
        "--forward-time",
        "10",
        "--backward-time",
        "20",
        "--p2p-time",
        "0",
    )
    assert code == 0
    (row,) = json.loads(out)
    assert row["step_time_s"] == pytest.approx(2 * 0.030)


def test_output_is_deterministic() -> None:
    assert invoke("compare", "--json")[1] == invoke("compare", "--json")[1]


def test_schedule_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(dumps_csv(build_schedule("1f1b", 4, 8)))
    code, out, _ = invoke("compare", "--json", "--schedule-file", str(path))
    assert code == 0
    (row,) = json.loads(out)
    assert row["schedule"] == "mine" and row["pp"] == 4 and row["microbatches"] == 8


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--pp", "0"), "pp=0 must be >= 1"),
        (("--microbatches", "0"), "microbatches=0 must be >= 1"),
        (("--schedules", "interleaved-1f1b", "--vpp", "0"), "vpp=0 must be >= 1"),
        (("--schedules", "nope"), "unknown schedule 'nope'; valid: gpipe, 1f1b, interleaved-1f1b"),
        (("--schedules", "interleaved-1f1b", "-m", "6"), "valid nearby: 4, 8"),
        (("--forward-time", "-1"), "--forward-time=-1.0 must be >= 0"),
    ],
)
def test_bad_input_one_line_exit_2(args: tuple[str, ...], needle: str) -> None:
    code, out, err = invoke("compare", *args)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_malformed_csv_names_file_row_cell(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("0F0,0B0\n1F0,1Q0\n")
    code, _, err = invoke("compare", "--schedule-file", str(path))
    assert code == 2
    assert f"{path}: row 2 (rank 1), cell 2" in err


def test_deadlocking_csv_prints_grid(tmp_path: Path) -> None:
    path = tmp_path / "dead.csv"
    path.write_text("0F0,0B0,0F1,0B1\n1B1,1F0,1B0,1F1\n")
    code, _, err = invoke("compare", "--schedule-file", str(path))
    assert code == 2
    assert "deadlocks" in err and "[1B1]" in err


def test_python_dash_m(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "pipesim", "compare", "--json", "--schedules", "1f1b"],
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["schedule"] == "1f1b"


def test_dp_time_reports_hidden_and_exposed_reduction() -> None:
    args = ("compare", "--schedules", "1f1b", "--pp", "8", "-m", "24", "--forward-time", "10",
            "--backward-time", "16", "--p2p-time", "0", "--dp-time", "20")  # fmt: skip
    code, out, _ = invoke(*args, "--json")
    assert code == 0
    (row,) = json.loads(out)
    # Four 5 ms buckets, ready every 4 ms through each rank's last 16 ms backward: reduced back to back from
    # 4 ms into it, so each rank hides 12 ms (x 8 ranks = 96) and the last one ends 8 ms after its B.
    assert row["dp_comm_s"] == pytest.approx(8 * 0.020)
    assert row["dp_hidden_s"] == pytest.approx(8 * 0.012)
    assert row["dp_exposed_s"] == pytest.approx(0.008)
    code, text, _ = invoke(*args)
    assert code == 0 and "DP hidden ms" in text and "DP exposed ms" in text and "4 buckets" in text
    code, _, err = invoke(*args, "--dp-buckets", "0")
    assert code == 2 and "--dp-buckets=0 must be >= 1" in err


@pytest.mark.parametrize(
    ("args", "needle", "where"),
    [
        (
            ("compare", "--pp", "x"),
            "Invalid value for '--pp': 'x' is not a valid integer.",
            "pipesim compare",
        ),
        (("compare", "--nope"), "No such option '--nope'", "pipesim compare"),
        (("plan", "--gpu", "h100-sxm"), "Missing option '--model'.", "pipesim plan"),
        (("simulate", "--model", "gpt-1.7b"), "Missing option '--global-batch-size'.", "pipesim simulate"),
        (("topo", "show", "--nope"), "No such option '--nope'", "pipesim topo show"),
        (("frobnicate",), "No such command 'frobnicate'.", "pipesim"),
        (("--nope",), "No such option '--nope'", "pipesim"),
    ],
)
def test_click_usage_errors_are_one_line_with_the_help_pointer(
    args: tuple[str, ...], needle: str, where: str
) -> None:
    """Issue 15 part 5: a usage error is one line, its message and a pointer to the command's help."""
    code, out, err = invoke(*args, prog_name="pipesim")  # as the console script names it
    assert code == 2 and out == ""
    (first,) = err.strip().splitlines()
    assert first.startswith("error: ") and needle in first
    assert first.endswith(f"(see '{where} --help')")
    assert "Usage:" not in err + out
