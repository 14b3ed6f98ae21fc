"""GPU efficiency profiles: shipped data with a source per value, user TOML overrides, and the settings the
profiles carry (fixed cost per step, TP overlap in both directions, overlapped parameter all-gather)."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from pipesim.comm.base import LevelCommModel
from pipesim.cost.times import layer_detail, param_gather_exposed_s
from pipesim.errors import InputError
from pipesim.io.readers import load_gpu_toml
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.specs.efficiency import DEFAULT_EFFICIENCY, EFFICIENCY_KEYS, EFFICIENCY_RULES, Efficiency
from pipesim.specs.gpu import GPU_PRESETS, get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model

H100 = get_gpu("h100-sxm")
COMM = LevelCommModel()


def test_every_preset_has_a_profile_with_a_source_per_value() -> None:
    for gpu in GPU_PRESETS.values():
        assert gpu.efficiency is not None, gpu.name
        for key in EFFICIENCY_KEYS:
            assert gpu.efficiency.sources.get(key), (gpu.name, key)
    assert GPU_PRESETS["h100-sxm"].efficiency != GPU_PRESETS["a100-80gb"].efficiency
    assert GPU_PRESETS["h200"].efficiency == GPU_PRESETS["h100-sxm"].efficiency  # same GH100 compute


def test_gpu_spec_with_profile_pickles() -> None:
    again = pickle.loads(pickle.dumps(H100))
    assert again == H100 and again.efficiency == H100.efficiency
    assert again.efficiency is not None and again.efficiency.sources == H100.profile.sources


def test_user_toml_overrides_the_base_profile(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text('base = "h100-sxm"\n[efficiency]\ngemm_max_fp8 = 0.6\n[source]\ngemm_max_fp8 = "my runs"\n')
    gpu = load_gpu_toml(f)
    assert gpu.profile.gemm_max_fp8 == 0.6 and gpu.profile.sources["gemm_max_fp8"] == "my runs"
    assert gpu.profile.attention == H100.profile.attention  # the rest is the preset's
    assert gpu.profile.sources["attention"] == H100.profile.sources["attention"]


def test_user_toml_without_profile_uses_the_default(tmp_path: Path) -> None:
    f = tmp_path / "plain.toml"
    f.write_text("memory_GB = 80\nhbm_bandwidth_GBps = 2000\n[peak_TFLOPS]\nbf16 = 300\n")
    assert load_gpu_toml(f).profile == DEFAULT_EFFICIENCY


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[efficiency]\ngemm_maxx = 0.6\n", "unknown key 'efficiency.gemm_maxx'"),
        ("[efficiency]\nsm_count = 1.5\n", "must be an integer"),
        ("[efficiency]\nhbm = 1.5\n", r"'efficiency.hbm' = 1.5 must be a finite number in \[0.001, 1\]"),
        ("efficiency = 3\n", "must be a table"),
        ("[efficiency]\ncomm_sms = 108\n", "'efficiency.comm_sms' = 108 must be below sm_count=108"),
        ("[efficiency]\ncomm_sms = -1\n", r"'efficiency.comm_sms' = -1 must be an integer in \[0, "),
        ("[efficiency]\ncomm_sms = 2.5\n", "must be an integer"),
    ],
)
def test_bad_profile_tables_are_refused(tmp_path: Path, body: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('base = "a100-80gb"\n' + body)
    with pytest.raises(InputError, match=message):
        load_gpu_toml(f)


def _scenario(gpu_eff: object = None, **kw: object) -> Scenario:
    lay: dict[str, object] = {"tp": 2, "dp": 4, "micro_batch_size": 1, "global_batch_size": 8}
    lay.update(kw)
    gpu = H100 if gpu_eff is None else replace(H100, efficiency=gpu_eff)
    return Scenario(get_model("llama2-7b"), gpu, Layout(**lay), COMM)  # type: ignore[arg-type]


def test_scenario_defaults_to_the_gpus_profile() -> None:
    assert _scenario().efficiency is H100.efficiency
    explicit = Scenario(get_model("llama2-7b"), H100, Layout(), COMM, DEFAULT_EFFICIENCY)
    assert explicit.efficiency is DEFAULT_EFFICIENCY


def test_step_overhead_adds_once_per_step() -> None:
    base = replace(H100.profile, step_overhead_s=0.0)
    t0 = simulate_scenario(_scenario(base)).step_time_s
    t1 = simulate_scenario(_scenario(replace(base, step_overhead_s=0.25))).step_time_s
    assert t1 - t0 == pytest.approx(0.25)
    # It is its own part of the breakdown, not the optimizer's: the optimizer step is the same Adam step
    # with or without it, and the exposed parts still add up to the step time.
    r0, r1 = (
        simulate_scenario(_scenario(base)),
        simulate_scenario(_scenario(replace(base, step_overhead_s=0.25))),
    )
    assert r0.breakdown.fixed == 0.0 and r1.breakdown.fixed == 0.25
    assert r1.breakdown.optimizer == pytest.approx(r0.breakdown.optimizer)
    parts = r1.breakdown.as_dict()
    assert sum(p["exposed"] for k, p in parts.items() if k != "recompute") == pytest.approx(r1.step_time_s)
    # Host work between steps, so the energy model counts it idle: the busy fraction is (compute + Adam)
    # over the step (pipesim.sim.energy.busy_fraction), 0.25 s longer at the same busy seconds.
    from pipesim.sim.energy import simulation_energy

    busy0 = simulation_energy(r0).busy_fraction * r0.step_time_s
    busy1 = simulation_energy(r1).busy_fraction * r1.step_time_s
    assert busy1 == pytest.approx(busy0)


def test_forward_tp_overlap_hides_up_to_the_fraction_of_the_gemm() -> None:
    m = get_model("llama2-7b")
    lay = Layout(tp=8, sequence_parallel=True, tp_comm_overlap_forward=True)
    ranks = list(range(8))
    for frac in (1.0, 0.5):
        eff = replace(H100.profile, tp_overlap=frac)
        full = {
            t.name: t
            for t in layer_detail(m, replace(lay, tp_comm_overlap_forward=False), H100, eff, COMM, ranks)
        }
        over = {t.name: t for t in layer_detail(m, lay, H100, eff, COMM, ranks)}
        for comm, gemm in (("tp.ag1", "qkv"), ("tp.out1", "proj"), ("tp.ag2", "fc1"), ("tp.out2", "fc2")):
            expect = max(0.0, full[comm].time_s - frac * full[gemm].time_s)
            assert over[comm].time_s == pytest.approx(expect) and over[comm].bound == "comm-overlapped"


def test_param_gather_overlap_rule() -> None:
    assert param_gather_exposed_s(1.0, 0.1, 0.3, False) == 1.0
    assert param_gather_exposed_s(1.0, 0.1, 0.3, True) == pytest.approx(0.7)
    assert param_gather_exposed_s(1.0, 0.1, 5.0, True) == pytest.approx(0.1)  # one bucket always waits
    on = simulate_scenario(_scenario(distributed_optimizer=True, overlap_param_gather=True)).step_time_s
    off = simulate_scenario(_scenario(distributed_optimizer=True)).step_time_s
    assert on < off


def test_fp8_recipe_is_checked() -> None:
    with pytest.raises(InputError, match="fp8-recipe"):
        Layout(fp8_recipe="mx")


# --------------------------------------------------------------------------- the range of every efficiency key
def _gpu_file(tmp_path: Path, line: str, base: bool = True) -> Path:
    f = tmp_path / "g1.toml"
    head = (
        'base = "h100-sxm"\n'
        if base
        else "memory_GB = 80\nhbm_bandwidth_GBps = 2000\n[peak_TFLOPS]\nbf16 = 300\n"
    )
    f.write_text(f"{head}[efficiency]\n{line}\n")
    return f


def _out_of_range(key: str) -> list[object]:
    rule = EFFICIENCY_RULES[key]
    low = (
        rule.low if rule.open_low else (rule.low - 1 if rule.integer else rule.low / 2 if rule.low else -1e-9)
    )
    high = rule.high + 1 if rule.integer else rule.high * 1.5
    return [low, high] + ([] if rule.integer else [math.inf, -math.inf, math.nan])


@pytest.mark.parametrize("key", EFFICIENCY_KEYS)
@pytest.mark.parametrize("base", [True, False])
def test_every_efficiency_value_out_of_its_range_is_refused_at_read_time(
    tmp_path: Path, key: str, base: bool
) -> None:
    rule = EFFICIENCY_RULES[key]
    for value in _out_of_range(key):
        text = repr(value) if isinstance(value, float) else str(value)  # inf, -inf, nan: TOML's spellings
        f = _gpu_file(tmp_path, f"{key} = {text}", base)
        with pytest.raises(InputError) as err:
            load_gpu_toml(f)
        msg = str(err.value)
        assert msg.count(str(f)) == 1, msg  # the file once
        assert f"key 'efficiency.{key}' = " in msg, msg  # the key and the value, quoted alike for every key
        if key != "comm_sms" or value != rule.high + 1:
            assert rule.text in msg, msg  # the range
        assert "\n" not in msg


@pytest.mark.parametrize("key", EFFICIENCY_KEYS)
def test_the_constructor_refuses_what_the_reader_refuses(key: str) -> None:
    for value in _out_of_range(key):
        with pytest.raises(InputError, match=f"efficiency {key}="):
            Efficiency(**{key: value})  # type: ignore[arg-type]


def test_the_gpu_file_is_named_once_and_every_message_quotes_its_value(tmp_path: Path) -> None:
    for line, needle in (
        ("gemm_max = 1.5", "key 'efficiency.gemm_max' = 1.5 must be"),
        ("tile_m = 0", "key 'efficiency.tile_m' = 0 must be an integer in [1, 65,536]"),
        (
            "gemm_half_dim = inf",
            "key 'efficiency.gemm_half_dim' = inf must be a finite number in [0, 1,000,000]",
        ),
    ):
        for base in (True, False):
            f = _gpu_file(tmp_path, line, base)
            with pytest.raises(InputError) as err:
                load_gpu_toml(f)
            assert str(err.value) == f"{f}: {needle}{str(err.value).split(needle)[1]}", str(err.value)


def test_an_experiment_files_gpu_names_its_efficiency_keys_with_the_table(tmp_path: Path) -> None:
    from pipesim.io.scenario_file import parse_experiment

    for head in (
        'base = "h100-sxm"\n',
        "memory_GB = 80\nhbm_bandwidth_GBps = 2000\n[gpu.peak_TFLOPS]\nbf16 = 3\n",
    ):
        text = f"[gpu]\n{head}[gpu.efficiency]\nlaunch_s = nan\n"
        with pytest.raises(InputError) as err:
            parse_experiment(text, "exp.toml", {})
        assert str(err.value).startswith("exp.toml: key 'gpu.efficiency.launch_s' = nan must be"), str(
            err.value
        )
        assert str(err.value).count("exp.toml") == 1


@pytest.mark.parametrize("key", EFFICIENCY_KEYS)
def test_every_efficiency_value_at_the_ends_of_its_range_gives_a_finite_step(key: str) -> None:
    rule = EFFICIENCY_RULES[key]
    ends = [rule.high, 1e-300 if rule.open_low else rule.low]
    for value in ends:
        if key == "comm_sms" and value:
            continue  # comm_sms must stay below sm_count: its own test above
        v = int(value) if rule.integer else float(value)
        eff = replace(H100.profile, **{key: v, **({"comm_sms": 0} if key == "sm_count" and not v else {})})
        step = simulate_scenario(_scenario(eff, pp=2, dp=2, global_batch_size=8)).step_time_s
        assert 0 < step < math.inf, (key, v, step)
