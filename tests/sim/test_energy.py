"""The energy and cost model: arithmetic, validation, determinism, GPU TOML overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import invoke

from pipesim.cost.roofline import ridge_point
from pipesim.errors import InputError
from pipesim.io.readers import resolve_gpu
from pipesim.io.units import parse_count
from pipesim.sim.energy import (
    DEFAULT_PUE,
    busy_fraction,
    gpu_power_w,
    run_energy,
    simulation_energy,
    steps_for_tokens,
)
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.specs.gpu import GPUSpec, get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model


def test_gpu_power_is_linear_between_idle_and_tdp() -> None:
    # H100 SXM TDP 700 W (published.md s7); idle 15% of TDP = 105 W (assumption).
    assert gpu_power_w(700.0, 0.0) == pytest.approx(105.0)
    assert gpu_power_w(700.0, 1.0) == pytest.approx(700.0)
    assert gpu_power_w(700.0, 0.5) == pytest.approx(105.0 + 0.5 * 595.0)  # 402.5 W


def test_run_energy_arithmetic() -> None:
    # 16 H100 (2 nodes of 8), 10 s steps fully busy, 1 kW per node, PUE 1.5, 1000 steps, 2.5 per GPU-hour:
    # IT power = 16 x 700 + 2 x 1000 = 13,200 W; facility 19,800 W; per step 19,800 x 10 / 3.6e6 = 0.055 kWh;
    # run 1000 x 0.055 kWh = 0.055 MWh; GPU-hours 16 x 10,000 s / 3600 = 44.44; cost 111.11.
    e = run_energy(
        get_gpu("h100-sxm"),
        16,
        10.0,
        1.0,
        steps=1000,
        pue=1.5,
        node_overhead_w=1000.0,
        price_per_gpu_hour=2.5,
    )
    assert e.num_nodes == 2
    assert e.it_power_w == pytest.approx(13_200.0)
    assert e.facility_power_w == pytest.approx(19_800.0)
    assert e.kwh_per_step == pytest.approx(0.055)
    assert e.mwh_per_run == pytest.approx(0.055)
    assert e.gpu_hours == pytest.approx(16 * 10_000 / 3600)
    assert e.cost == pytest.approx(16 * 10_000 / 3600 * 2.5)
    # A partial node counts as a node: 17 GPUs -> 3 nodes.
    assert run_energy(get_gpu("h100-sxm"), 17, 1.0, 0.5).num_nodes == 3


def test_energy_scales_with_utilisation_and_pue() -> None:
    gpu = get_gpu("a100-80gb")
    low = run_energy(gpu, 8, 1.0, 0.2)
    high = run_energy(gpu, 8, 1.0, 0.9)
    assert high.kwh_per_step > low.kwh_per_step
    assert run_energy(gpu, 8, 1.0, 0.5, pue=1.5).kwh_per_step == pytest.approx(
        run_energy(gpu, 8, 1.0, 0.5, pue=1.0).kwh_per_step * 1.5
    )
    assert low.cost is None and low.as_dict()["cost"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pue": 0.9}, r"--pue=0.9 must be >= 1"),
        ({"price_per_gpu_hour": -1.0}, r"--price-per-gpu-hour=-1.0 must be a number >= 0"),
        ({"busy_fraction": 1.5}, r"busy fraction 1.5 must be in \[0, 1\]"),
        ({"node_overhead_w": -5.0}, r"node overhead -5.0 W must be >= 0"),
    ],
)
def test_bad_inputs_are_one_line_errors(kwargs: dict[str, float], message: str) -> None:
    args: dict[str, float] = {"busy_fraction": 0.5, **kwargs}
    busy = args.pop("busy_fraction")
    with pytest.raises(InputError, match=message) as exc:
        run_energy(get_gpu("h100-sxm"), 8, 1.0, busy, **args)  # type: ignore[arg-type]
    assert "\n" not in str(exc.value)


def test_gpu_without_tdp_keeps_time_and_cost_and_says_how_to_add_it() -> None:
    gpu = GPUSpec("mine", {"bf16": 1e15}, hbm_bytes=80e9, hbm_Bps=3e12)
    e = run_energy(gpu, 8, 2.0, 0.5, steps=3600, price_per_gpu_hour=2.0)
    # 3,600 steps of 2 s on 8 GPUs = 16 GPU-hours, 32 at 2 per GPU-hour; energies unknown, not guessed.
    assert e.gpu_hours == pytest.approx(16.0) and e.cost == pytest.approx(32.0)
    assert e.kwh_per_step is None and e.mwh_per_run is None and e.facility_power_w is None
    assert "mine has no board power" in e.assumptions()[0] and "tdp_W" in e.assumptions()[0]
    assert e.as_dict()["mwh_per_run"] is None


def test_energy_only_flags_are_refused_without_a_tdp() -> None:
    # gb200 has no TDP in published.md: --tokens (days, GPU-hours) works, --pue (energy only) is refused.
    code, out, err = invoke(
        "simulate", "--model", "gpt-1.7b", "--gpu", "gb200", "--global-batch-size", "8", "--tokens", "1B"
    )
    assert code == 0, err
    assert "GPU-hours" in out and "unknown" in out and "gb200 has no board power" in out
    code, _, err = invoke(
        "simulate", "--model", "gpt-1.7b", "--gpu", "gb200", "--global-batch-size", "8", "--pue", "1.3"
    )
    assert code == 2 and "--pue sets the energy model, which needs the GPU's board power: gpu 'gb200'" in err


def test_tokens_within_one_step_show_a_run_of_one_step() -> None:
    # 5 tokens < one step of 8 x 2048 = 16,384 tokens: ceil(5 / 16384) = 1 step, shown (it was dropped).
    code, out, err = invoke("simulate", "--model", "gpt-1.7b", "--global-batch-size", "8", "--tokens", "5")
    assert code == 0, err
    assert "run (1 step)" in out


def test_parse_count_and_steps() -> None:
    assert parse_count("2T") == 2e12
    assert parse_count("300B") == 3e11
    assert parse_count("15m") == 15e6
    assert parse_count("1.5e12") == 1.5e12
    for bad in ("2X", "", "-1T", "T"):
        with pytest.raises(InputError, match="--tokens="):
            parse_count(bad)
    # 2T tokens at 512 sequences of 8192 tokens per step: 2e12 / 4,194,304 = 476,837.16 -> 476,838 steps.
    assert steps_for_tokens(2e12, 512 * 8192) == 476_838
    assert steps_for_tokens(4096, 1024) == 4


def test_assumptions_are_printed_and_output_is_deterministic() -> None:
    a = run_energy(get_gpu("h100-sxm"), 64, 3.0, 0.6, steps=10, price_per_gpu_hour=2.0)
    b = run_energy(get_gpu("h100-sxm"), 64, 3.0, 0.6, steps=10, price_per_gpu_hour=2.0)
    assert a.as_dict() == b.as_dict() and a.assumptions() == b.assumptions()
    text = " ".join(a.assumptions())
    assert "TDP 700 W" in text and "assumption" in text and f"PUE {DEFAULT_PUE:g}" in text


def test_simulation_energy_uses_the_reports_busy_fraction() -> None:
    model = get_model("gpt-1.7b")
    layout = Layout(tp=2, pp=2, dp=2, micro_batch_size=1, global_batch_size=16)
    report = simulate_scenario(Scenario(model, get_gpu("a100-80gb"), layout))
    bd0 = report.breakdown
    u = busy_fraction(bd0.compute, bd0.optimizer, report.step_time_s)
    bd = report.breakdown
    assert 0.0 < u < 1.0
    assert u == pytest.approx((bd.compute + bd.optimizer) / report.step_time_s)
    e = simulation_energy(report, tokens=1e9, price_per_gpu_hour=1.0)
    assert e.steps == steps_for_tokens(1e9, 16 * 2048)
    assert e.gpu_hours == pytest.approx(8 * e.steps * report.step_time_s / 3600)
    assert e.busy_fraction == u


def test_gpu_toml_overrides_tdp_and_peaks(tmp_path: Path) -> None:
    path = tmp_path / "h100-capped.toml"
    path.write_text('base = "h100-sxm"\ntdp_W = 500\n[peak_TFLOPS]\nfp8 = 1500\n', encoding="utf-8")
    gpu = resolve_gpu(str(path))
    base = get_gpu("h100-sxm")
    assert gpu.tdp_w == 500.0 and gpu.peak("fp8") == 1500e12
    assert gpu.peak("bf16") == base.peak("bf16") and gpu.hbm_Bps == base.hbm_Bps
    assert ridge_point(gpu, "fp8") == pytest.approx(1500e12 / 3.35e12)
    assert run_energy(gpu, 8, 1.0, 1.0).it_power_w == pytest.approx(8 * 500 + 2000)
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "h900"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.toml: key 'base': unknown gpu 'h900'"):
        resolve_gpu(str(bad))


def test_plan_and_simulate_report_the_same_busy_fraction_for_the_same_layout() -> None:
    # One busy-fraction function (pipesim.sim.energy.busy_fraction): the plan's winner and a simulation of
    # the same layout must agree exactly (they used to differ: plan counted TP communication as busy).
    from pipesim.plan.search import PlanCluster, PlanRequest, SearchSpace, plan, scenario_of

    req = PlanRequest(
        get_model("gpt-1.7b"),
        PlanCluster(get_gpu("a100-80gb"), 1, 8),
        64,
        seq_length=2048,
        space=SearchSpace(schedules=("1f1b",)),
    )
    best = plan(req).best
    report = simulate_scenario(scenario_of(req, best.candidate))
    bd = report.breakdown
    assert best.step_time_s == pytest.approx(report.step_time_s, rel=1e-12)
    assert best.busy_fraction == pytest.approx(
        busy_fraction(bd.compute, bd.optimizer, report.step_time_s), rel=1e-12
    )
