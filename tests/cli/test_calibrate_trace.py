"""`pipesim calibrate --trace`: per-op constants fitted to a PyTorch profiler (Kineto) Chrome trace.

tests/data/kineto_step.json is one step of the run in tests/data/kineto_step.csv, made by
tests/data/make_kineto_trace.py from pipesim's op model with known constants (gemm_max 0.62, attention 0.42,
hbm 0.70, nccl 0.80; the H100 profile's are 0.70, 0.35, 0.76, 1.0): the fit must find them back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from pipesim.calib.trace import classify_kernel, fit_trace, read_kineto_trace, step_kernel_times
from pipesim.cli.calibrate import read_runs_csv
from pipesim.errors import InputError
from pipesim.io.readers import load_gpu_toml
from pipesim.specs.gpu import get_gpu

DATA = Path(__file__).resolve().parents[1] / "data"
TRACE, RUN = str(DATA / "kineto_step.json"), str(DATA / "kineto_step.csv")
KNOWN = {"gemm_max": 0.62, "attention": 0.42, "hbm": 0.70, "nccl": 0.80}  # make_kineto_trace.py
H100 = get_gpu("h100-sxm")


def test_kernel_names_map_to_pipesim_operator_kinds() -> None:
    assert classify_kernel("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_cublas") == "gemm"
    assert classify_kernel("void cutlass::Kernel2<cutlass_80_tensorop_bf16_s16816gemm_relu_bf16>") == "gemm"
    assert classify_kernel("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTN") == "gemm"
    assert classify_kernel("flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel") == "attention"
    assert (
        classify_kernel("cudnn_generated_fort_native_sdpa_sm90_knob_7_64x128x128_4x1x1_kernel0_0")
        == "attention"
    )
    assert classify_kernel("ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL(ncclDevComm*)") == "comm"
    assert classify_kernel("ncclDevKernel_SendRecv(ncclDevComm*, unsigned long, ncclWork*)") == "comm"
    assert (
        classify_kernel("void at::native::vectorized_layer_norm_kernel<c10::BFloat16, float>")
        == "elementwise"
    )


def test_the_fit_recovers_the_constants_the_trace_was_made_with() -> None:
    run = read_runs_csv(RUN, "h100-sxm")[0]
    measured = read_kineto_trace(TRACE)
    # Only kernel events count: the trace's cpu_op events (as many as its kernels) are ignored.
    assert set(measured) == {"gemm", "attention", "elementwise", "comm"} and all(
        v > 0 for v in measured.values()
    )
    before = step_kernel_times(run.model, run.layout, H100, H100.profile, run.comm)
    assert before["gemm"] < measured["gemm"]  # the trace's GEMMs ran at 0.62 of peak, not the profile's 0.70
    fitted, rows = fit_trace(measured, run.model, run.layout, H100, H100.profile, run.comm, "test")
    for key, value in KNOWN.items():
        assert getattr(fitted, key) == pytest.approx(value, rel=1e-3), key
        assert fitted.sources[key] == "test"
    for _kind, _key, got, _before, after in rows:
        assert after == pytest.approx(got, rel=1e-4)


def test_cli_writes_a_profile_every_gpu_flag_accepts(tmp_path: Path) -> None:
    out = tmp_path / "traced.toml"
    result = CliRunner().invoke(
        main, ["calibrate", RUN, "--gpu", "h100-sxm", "--trace", TRACE, "-o", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    assert "gemm_max" in result.stdout and "0.62" in result.stdout and f"wrote {out}" in result.stdout
    gpu = load_gpu_toml(str(out))
    assert gpu.profile.nccl == pytest.approx(0.8, rel=1e-3)
    assert "calibrate --trace" in gpu.profile.sources["nccl"]


@pytest.mark.parametrize(
    ("trace", "csv_text", "message"),
    [
        ('{"traceEvents": []}', None, "no GPU kernel events"),
        ("[1, 2", None, "not a JSON Chrome trace"),
        ('{"events": []}', None, "no 'traceEvents' list"),
        (
            '{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "gemm"}]}',
            None,
            "without a name and a duration",
        ),
        (
            None,
            "model,tp,precision,step_time_s\ngpt-1.7b,1,fp8,1.0\n",
            "precision='fp8' is not supported",
        ),
        (None, "model,tp,step_time_s\ngpt-1.7b,1,1.0\ngpt-1.7b,2,1.0\n", "exactly one run"),
    ],
)
def test_bad_traces_and_runs_are_refused_in_one_line(
    tmp_path: Path, trace: str | None, csv_text: str | None, message: str
) -> None:
    t, c = TRACE, RUN
    if trace is not None:
        t = str(tmp_path / "t.json")
        Path(t).write_text(trace)
    if csv_text is not None:
        c = str(tmp_path / "r.csv")
        Path(c).write_text(csv_text)
    result = CliRunner().invoke(main, ["calibrate", c, "--gpu", "h100-sxm", "--trace", t])
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_kineto_trace(str(tmp_path / "missing.json"))
    assert json.loads(Path(TRACE).read_text())["traceEvents"][1]["cat"] == "kernel"
