"""`pipesim calibrate` (fit a profile to measured runs) and `pipesim gpu show` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from pipesim.io.readers import load_gpu_toml
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


HEADER = "model,tp,dp,micro_batch_size,global_batch_size,seq_length,precision,step_time_s\n"


def _synthetic_runs(tmp_path: Path, gemm_max_fp8: float) -> Path:
    # "Measured" step times made by pipesim itself with a known gemm_max_fp8: the fit must find it back.
    from dataclasses import replace

    gpu = get_gpu("h100-sxm")
    true = replace(gpu, efficiency=replace(gpu.profile, gemm_max_fp8=gemm_max_fp8))
    lines = [HEADER]
    for tp, dp, gbs in ((1, 2, 4), (2, 1, 2), (1, 1, 2)):
        lay = Layout(
            tp=tp, dp=dp, micro_batch_size=1, global_batch_size=gbs, seq_length=1024, precision="fp8"
        )
        step = simulate_scenario(Scenario(get_model("llama2-7b"), true, lay)).step_time_s
        lines.append(f"llama2-7b,{tp},{dp},1,{gbs},1024,fp8,{step!r}\n")
    f = tmp_path / "runs.csv"
    f.write_text("# synthetic runs\n" + "".join(lines))
    return f


def test_calibrate_recovers_a_known_constant_and_writes_a_usable_gpu(tmp_path: Path) -> None:
    runs = _synthetic_runs(tmp_path, 0.6)
    out = tmp_path / "mine.toml"
    code, stdout, stderr = invoke(
        "calibrate", str(runs), "--gpu", "h100-sxm", "-o", str(out), "--fit", "gemm_max_fp8", "--folds", "0"
    )
    assert code == 0, stderr
    gpu = load_gpu_toml(out)
    assert gpu.profile.gemm_max_fp8 == pytest.approx(0.6, abs=0.01)
    assert "fitted by pipesim calibrate" in gpu.profile.sources["gemm_max_fp8"]
    assert "MAE after the fit" in stdout and "line 3: llama2-7b" in stdout
    code, stdout, _ = invoke(
        "simulate",
        "--gpu",
        str(out),
        "--model",
        "llama2-7b",
        "--precision",
        "fp8",
        "--tp",
        "2",
        "--global-batch-size",
        "8",
    )
    assert code == 0 and "mine" in stdout


def test_calibrate_prints_a_kfold_holdout(tmp_path: Path) -> None:
    runs = _synthetic_runs(tmp_path, 0.6)
    code, stdout, stderr = invoke(
        "calibrate", str(runs), "--gpu", "h100-sxm", "--fit", "gemm_max_fp8", "--folds", "3"
    )
    assert code == 0, stderr
    assert "3-fold holdout MAE" in stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model,tp,colour,step_time_s\nllama2-7b,1,red,1.0\n", "unknown column 'colour'"),
        ("model,tp\nllama2-7b,1\n", "missing column 'step_time_s'"),
        ("model,sequence_parallel,step_time_s\nllama2-7b,maybe,1.0\n", "must be true or false"),
        ("model,tp,step_time_s\nllama2-7b,1,fast\n", "must be a number"),
        ("model,tp,step_time_s\nllama2-7b,3,1.0\n", "line 2: tp=3 does not divide"),
        ("model,step_time_s\n", "no rows"),
    ],
)
def test_bad_csv_is_refused_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    code, _, stderr = invoke("calibrate", str(f), "--gpu", "h100-sxm")
    assert code == 2 and message in stderr and stderr.count("\n") == 1


def test_calibrate_starts_from_a_preset(tmp_path: Path) -> None:
    f = tmp_path / "runs.csv"
    f.write_text("model,step_time_s\nllama2-7b,1.0\n")
    code, _, stderr = invoke("calibrate", str(f), "--gpu", "my.toml")
    assert code == 2 and "starts from a preset" in stderr


def test_gpu_show_names_the_source_of_every_value() -> None:
    code, stdout, _ = invoke("gpu", "show", "h100-sxm", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(stdout)}
    assert (rows["peak fp8"]["value"], rows["peak fp8"]["unit"]) == ("1978.9", "TFLOP/s dense")
    assert "NeMo" in rows["gemm_max_fp8"]["source"]
    assert all(r["source"] for r in rows.values())
    code, _, stderr = invoke("gpu", "show", "h999")
    assert code == 2 and "unknown gpu 'h999'" in stderr
