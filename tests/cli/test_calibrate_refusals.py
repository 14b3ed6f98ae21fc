"""`pipesim calibrate` refuses bad runs, fits and traces in one line (exit 2, no -o file written), and cites
physical file lines (comment lines counted) in its errors and its residual table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
SAMPLE = ROOT / "pipesim" / "data" / "samples" / "nemo-h100-runs.csv"
HEADER = "model,tp,pp,dp,micro_batch_size,global_batch_size,seq_length,step_time_s\n"
ROW = "gpt-1.7b,1,1,1,1,8,2048,0.9\n"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def refused(tmp_path: Path, csv_text: str, *flags: str) -> str:
    """stderr of a calibrate that must fail in one line and leave no -o file."""
    f = tmp_path / "runs.csv"
    f.write_text(csv_text)
    out = tmp_path / "out.toml"
    code, _, stderr = invoke("calibrate", str(f), "--gpu", "h100-sxm", "-o", str(out), *flags)
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    assert not out.exists()
    return stderr


@pytest.mark.parametrize(
    ("row", "cells"),
    [("gpt-1.7b,2,1,1,1,8,2048,0.5,extra\n", 9), ("gpt-1.7b,2,1,1,1,8,2048\n", 7)],
)
def test_a_row_with_more_or_fewer_cells_than_the_header_is_refused(
    tmp_path: Path, row: str, cells: int
) -> None:
    err = refused(tmp_path, "# a comment\n" + HEADER + ROW + row, "--folds", "0")
    assert f"runs.csv line 4: {cells} cells, but the header (line 2) has 8 columns" in err


def test_errors_cite_physical_file_lines_of_the_shipped_sample(tmp_path: Path) -> None:
    lines = SAMPLE.read_text().splitlines(keepends=True)
    assert lines[8].startswith("llama2-13b,dgx-h100,1,4,")  # physical line 9: the sample's third run
    lines[8] = lines[8].replace("llama2-13b,dgx-h100,1,4,", "llama2-13b,dgx-h100,3,4,", 1)
    err = refused(tmp_path, "".join(lines))
    assert "runs.csv line 9: tp=3" in err


def test_the_residual_table_labels_runs_by_physical_line(tmp_path: Path) -> None:
    f = tmp_path / "runs.csv"
    f.write_text("# one\n# two\n" + HEADER + ROW + "# between the runs\n\n" + "gpt-1.7b,2,1,1,1,8,2048,0.5\n")
    code, stdout, stderr = invoke("calibrate", str(f), "--gpu", "h100-sxm", "--folds", "0")
    assert code == 0, stderr
    labels = [line.split(":")[0] for line in stdout.splitlines() if line.startswith("line ")]
    assert labels == ["line 4", "line 7"]


def test_a_quoted_cell_spanning_lines_keeps_the_physical_line_count(tmp_path: Path) -> None:
    text = 'model,tp,step_time_s\n"gpt-1.7b",1,0.9\n"gpt-1.7b\n",1,0.9\ngpt-1.7b,5,0.5\n'
    err = refused(tmp_path, text, "--folds", "0")
    assert "runs.csv line 5: tp=5" in err  # after the run whose quoted model cell spans lines 3 and 4


@pytest.mark.parametrize("step", ["inf", "nan", "0", "-1", "-inf"])
def test_step_times_that_are_not_finite_and_positive_are_refused(tmp_path: Path, step: str) -> None:
    err = refused(tmp_path, HEADER + ROW + f"gpt-1.7b,2,1,1,1,8,2048,{step}\n", "--folds", "0")
    assert f"runs.csv line 3: step_time_s='{step}' must be a finite number of seconds > 0" in err


@pytest.mark.parametrize(
    ("step", "residual", "bound"),
    [("1e-9", "+17243864488.1%", "gemm_max at its upper bound 1"), ("1e9", "-100.0%", "")],
)
def test_measurements_the_fit_cannot_approach_are_refused(
    tmp_path: Path, step: str, residual: str, bound: str
) -> None:
    err = refused(tmp_path, HEADER + ROW + f"gpt-1.7b,2,1,1,1,8,2048,{step}\n", "--folds", "0")
    assert "the fit cannot reach the measurements: line 3: gpt-1.7b" in err and residual in err
    assert "outside what the model can fit" in err and bound in err


def test_a_fit_within_the_residual_limit_still_writes_its_profile(tmp_path: Path) -> None:
    f = tmp_path / "runs.csv"
    f.write_text(HEADER + ROW + "gpt-1.7b,2,1,1,1,8,2048,0.5\n")
    out = tmp_path / "out.toml"
    code, stdout, stderr = invoke("calibrate", str(f), "--gpu", "h100-sxm", "--folds", "0", "-o", str(out))
    assert code == 0 and out.exists(), stderr
    assert "MAE after the fit: 4.52%" in stdout


@pytest.mark.parametrize(
    ("fit", "message"),
    [
        ("gemm_max,gemm_max", "--fit names 'gemm_max' twice"),
        ("gemm_max_fp8", "cannot fit 'gemm_max_fp8' to these runs: no run uses fp8"),
        ("gemm_max_fp4", "cannot fit 'gemm_max_fp4' to these runs: no run uses fp4"),
        ("nccl", "cannot fit 'nccl' to these runs: no run's predicted step time changes with it"),
        ("gemm_max,", "--fit='gemm_max,': an empty name"),
        ("colour", "cannot fit 'colour'; fittable: gemm_max"),
    ],
)
def test_fit_names_the_runs_cannot_fit_are_refused(tmp_path: Path, fit: str, message: str) -> None:
    # Both runs on one GPU (tp = dp = pp = 1): no collective, so nccl moves nothing.
    err = refused(tmp_path, HEADER + ROW + "gpt-1.7b,1,1,1,2,8,2048,0.9\n", "--fit", fit, "--folds", "0")
    assert message in err


def test_a_duplicated_column_is_refused(tmp_path: Path) -> None:
    err = refused(tmp_path, "model,tp,tp,step_time_s\ngpt-1.7b,1,2,0.9\n", "--folds", "0")
    assert "runs.csv line 1: column 'tp' appears twice (cells 2 and 3)" in err


@pytest.mark.parametrize(
    ("folds", "message"),
    [
        ("-1", "--folds=-1: k of the k-fold holdout must be 0 (no holdout) or 2 to the number of runs"),
        ("1", "--folds=1: k of the k-fold holdout must be 0 (no holdout) or 2 to the number of runs"),
        ("5", "runs.csv holds 2 runs, and each fold needs one; valid: 0 (no holdout) or 2\n"),
    ],
)
def test_fold_counts_outside_the_run_count_are_refused(tmp_path: Path, folds: str, message: str) -> None:
    err = refused(tmp_path, HEADER + ROW + "gpt-1.7b,2,1,1,1,8,2048,0.5\n", "--folds", folds)
    assert err.startswith(f"error: --folds={folds}: ") and message in err


def test_the_default_folds_are_capped_at_the_runs_and_say_so(tmp_path: Path) -> None:
    f = tmp_path / "runs.csv"
    f.write_text(HEADER + ROW + "gpt-1.7b,2,1,1,1,8,2048,0.5\n")
    code, stdout, stderr = invoke("calibrate", str(f), "--gpu", "h100-sxm")
    assert code == 0, stderr
    assert "2-fold holdout MAE: 23.67% (the default 5 folds, capped at the 2 runs)" in stdout


def _trace(tmp_path: Path, edit: str) -> Path:
    data = json.loads((DATA / "kineto_step.json").read_text())
    kernels = [e for e in data["traceEvents"] if e.get("cat") == "kernel"]
    if edit == "nan":
        kernels[3]["dur"] = float("nan")
    elif edit == "no-gemm":
        data["traceEvents"] = [e for e in data["traceEvents"] if not (e in kernels and "gemm" in e["name"])]
    elif edit == "huge":  # 34 s of kernels against the run's 0.17 s step
        total = sum(e["dur"] for e in kernels)
        for e in kernels:
            e["dur"] *= 34e6 / total
    out = tmp_path / "step.json"
    out.write_text(json.dumps(data))  # NaN written as JSON's NaN, as Python's json module reads it
    return out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("nan", "step.json: traceEvents[7] (kernel 'sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x...') "
         "has duration dur=nan; valid: a finite number of microseconds >= 0"),
        ("no-gemm", "step.json: no GEMM kernels (names with gemm, cutlass"),
        ("huge", "at its lower bound"),
    ],
)  # fmt: skip
def test_traces_the_model_cannot_fit_are_refused(tmp_path: Path, edit: str, message: str) -> None:
    trace = _trace(tmp_path, edit)
    out = tmp_path / "traced.toml"
    code, _, stderr = invoke(
        "calibrate", str(DATA / "kineto_step.csv"), "--gpu", "h100-sxm", "--trace", str(trace), "-o", str(out)
    )
    assert code == 2 and message in stderr, stderr
    assert stderr.count("\n") == 1 and not out.exists()
    if edit == "huge":
        assert "outside what the model can fit" in stderr and "34 s of kernels" in stderr


def test_a_trace_constant_that_moves_no_kernel_time_keeps_its_value(tmp_path: Path) -> None:
    # tp = 1, dp = 2: the rank's only NCCL kernels are the gradient all-reduce, which nccl does not scale; the
    # fit used to clamp nccl at its lower bound 0.1 (and call it fitted) when the trace's NCCL time differed.
    from pipesim.calib.trace import fit_trace, step_kernel_times
    from pipesim.cli.calibrate import read_runs_csv
    from pipesim.specs.gpu import get_gpu

    gpu = get_gpu("h100-sxm")
    f = tmp_path / "dp2.csv"
    f.write_text(
        "model,tp,dp,micro_batch_size,global_batch_size,seq_length,attention,step_time_s\n"
        "gpt-1.7b,1,2,1,2,2048,flash,0.2\n"
    )
    run = read_runs_csv(str(f), "h100-sxm")[0]
    before = step_kernel_times(run.model, run.layout, gpu, gpu.profile, run.comm)
    assert before["comm"] > 0
    measured = {k: v * (1.2 if k == "comm" else 1.0) for k, v in before.items()}
    fitted, _ = fit_trace(measured, run.model, run.layout, gpu, gpu.profile, run.comm, "test")
    assert fitted.nccl == gpu.profile.nccl and fitted.sources.get("nccl") != "test"


def test_columns_take_every_flag_spelling_and_excel_bom(tmp_path: Path) -> None:
    # Review 5: the help says the columns are simulate's flags with dashes as underscores, so Megatron-LM's
    # spellings are columns too; Excel's "CSV UTF-8" starts the header with a byte-order mark.
    from pipesim.cli.calibrate import read_runs_csv

    f = tmp_path / "runs.csv"
    f.write_bytes(
        b"\xef\xbb\xbfmodel,tensor_model_parallel_size,pp,num_layers_per_virtual_pipeline_stage,"
        b"global_batch_size,step_time_s\ngpt-1.7b,2,2,6,16,1.0\n"
    )
    run = read_runs_csv(str(f), "a100-80gb")[0]
    assert (run.layout.tp, run.layout.pp, run.layout.vpp) == (2, 2, 2)  # 24 layers / (2 x 6) = 2 chunks
    f.write_text("model,tp,tensor_model_parallel_size,global_batch_size,step_time_s\ngpt-1.7b,2,2,16,1.0\n")
    result = CliRunner().invoke(main, ["calibrate", str(f), "--gpu", "a100-80gb"])
    assert result.exit_code == 2 and "column 'tensor_model_parallel_size' appears twice" in result.output
