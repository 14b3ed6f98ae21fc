"""`pipesim roofline` and the energy flags of `pipesim simulate`, through click's CliRunner."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import invoke

ROOF = ("roofline", "--model", "llama3-70b", "--gpu", "h100-sxm", "--tp", "8", "--micro-batch-size", "1")
SIM = ("simulate", "--model", "gpt-1.7b", "--gpu", "a100-80gb", "--tp", "2", "--pp", "2", "--dp", "2")
GBS = ("--global-batch-size", "16")


def test_roofline_json_has_per_op_fields_and_adds_up() -> None:
    code, out, _ = invoke(*ROOF, "--seq-length", "8192", "--json")
    assert code == 0
    data = json.loads(out)
    (table,) = data["tables"]
    assert table["precision"] == "bf16"
    names = [op["name"] for op in table["ops"]]
    assert names[:4] == ["norm1", "qkv", "attn.flash", "proj"]
    for op in table["ops"]:
        for key in (
            "flops",
            "bytes",
            "intensity_flops_per_byte",
            "attainable_flops_per_s",
            "predicted_time_s",
        ):
            assert key in op
        assert op["bound"] in ("compute", "memory", "comm", "comm-overlapped")
    fwd = sum(op["predicted_time_s"] for op in table["ops"] if op["phase"] == "F")
    assert fwd == pytest.approx(table["forward_s"])
    assert data["roofs_flops_per_s"]["fp8"] == 1978.9e12


def test_roofline_table_compares_precisions() -> None:
    code, out, _ = invoke(*ROOF, "--seq-length", "4096", "--precision", "bf16,fp8")
    assert code == 0
    assert "bf16: peak 989.4 TFLOP/s, ridge 295 FLOP/byte" in out
    assert "fp8: peak 1978.9 TFLOP/s, ridge 591 FLOP/byte" in out
    assert "fp8 vs bf16: layer" in out and "qkv.dw" in out


def test_roofline_html_is_offline_and_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    assert invoke(*ROOF, "--seq-length", "2048", "--precision", "bf16,fp8", "-o", str(a))[0] == 0
    assert invoke(*ROOF, "--seq-length", "2048", "--precision", "bf16,fp8", "-o", str(b))[0] == 0
    text = a.read_text(encoding="utf-8")
    assert a.read_bytes() == b.read_bytes()
    assert "<script src=" not in text and '<link rel="stylesheet" href' not in text  # nothing fetched
    assert "Plotly.newPlot" in text
    assert "Roofline: llama3-70b on h100-sxm" in text and "attn.flash.bwd" in text
    assert len(text) > 3_000_000  # the plotly.js bundle is in the file


@pytest.mark.browser
def test_roofline_page_draws_in_headless_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    page = tmp_path / "r.html"
    assert invoke(*ROOF, "--seq-length", "2048", "-o", str(page))[0] == 0
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    # plotly drew the chart: its SVG root, a log axis tick and the points' trace class.
    assert 'class="main-svg"' in dom
    assert "scatterlayer" in dom and "barlayer" in dom
    assert "arithmetic intensity (FLOPs per HBM byte)" in dom


def test_fp8_on_a100_is_one_line_naming_gpus_that_have_it() -> None:
    code, out, err = invoke(*ROOF[:3], "--gpu", "a100-80gb", "--tp", "8", "--precision", "fp8")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert "'a100-80gb' has no fp8 peak" in lines[0] and "h100-sxm" in lines[0]
    code, _, err = invoke(*ROOF[:3], "--gpu", "v100", "--tp", "8", "--precision", "fp8")
    assert code == 2 and "'v100' has no fp8 peak" in err


def test_roofline_bad_inputs_exit_2(tmp_path: Path) -> None:
    assert invoke(*ROOF, "--precision", "fp4")[0] == 2
    code, _, err = invoke(*ROOF, "-o", str(tmp_path / "missing" / "r.html"))
    assert code == 2 and "does not exist" in err
    code, _, err = invoke("roofline", "--model", "llama3-70b", "--tp", "3")
    assert code == 2 and "tp=3 does not divide" in err


def test_roofline_unknown_tf32_is_fine_on_h100_but_not_on_h100_pcie() -> None:
    assert invoke(*ROOF, "--seq-length", "1024", "--precision", "tf32")[0] == 0
    code, _, err = invoke(*ROOF[:3], "--gpu", "h100-pcie", "--tp", "8", "--precision", "tf32")
    assert code == 2 and "GPUs with tf32: a100-40gb, a100-80gb, h100-sxm" in err


def test_simulate_reports_energy_and_cost_for_a_run() -> None:
    code, out, _ = invoke(
        *SIM, "--global-batch-size", "16", "--tokens", "1B", "--price-per-gpu-hour", "2.5", "--json"
    )
    assert code == 0
    data = json.loads(out)
    e = data["energy"]
    tokens_per_step = 16 * 2048
    assert e["steps"] == -(-1_000_000_000 // tokens_per_step)
    assert e["gpu_hours"] == pytest.approx(8 * e["steps"] * e["step_time_s"] / 3600)
    assert e["cost"] == pytest.approx(e["gpu_hours"] * 2.5)
    assert e["assumptions"]["pue"] == 1.2
    code, out, _ = invoke(*SIM, "--global-batch-size", "16", "--tokens", "1B", "--price-per-gpu-hour", "2.5")
    assert code == 0
    assert "MWh" in out and "kWh" in out and "GPU-hours" in out and "PUE 1.2" in out and "assumption" in out


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--pue", "0.9", "--pue=0.9 must be >= 1"),
        ("--price-per-gpu-hour", "-2", "--price-per-gpu-hour=-2.0 must be a number >= 0"),
        ("--tokens", "lots", "--tokens='lots' is not a count"),
    ],
)
def test_simulate_bad_energy_flags_exit_2(flag: str, value: str, message: str) -> None:
    code, out, err = invoke(*SIM, *GBS, flag, value)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"error: {err.strip()[len('error: ') :]}"]
    assert message in err
