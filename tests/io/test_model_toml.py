"""Model TOML files: names and sizes refused when the file is read, one line naming the file and the key."""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import invoke

from pipesim.errors import InputError
from pipesim.io.readers import load_gpu_toml, load_model_toml
from pipesim.io.scenario_file import parse_experiment
from pipesim.sim.budget import MAX_BUCKETS, check_buckets
from pipesim.specs.model import ModelSpec

SHAPE = "num_layers = 2\nhidden_size = 64\nnum_attention_heads = 4\nvocab_size = 100\nseq_length = 32\n"


@pytest.mark.parametrize("name", ['""', '"   "', '"a\\tb"', '"a\\nb"'])
def test_an_empty_or_multi_line_model_name_is_refused(tmp_path: Path, name: str) -> None:
    f = tmp_path / "m.toml"
    f.write_text(f"name = {name}\n{SHAPE}")
    with pytest.raises(InputError, match=r"key 'name' = .* must be a non-empty name on one line") as err:
        load_model_toml(f)
    assert str(err.value).startswith(f"{f}: ") and "\n" not in str(err.value)


def test_a_missing_name_is_the_files_stem(tmp_path: Path) -> None:
    f = tmp_path / "tiny.toml"
    f.write_text(SHAPE)
    assert load_model_toml(f).name == "tiny"


def test_an_experiment_files_model_and_gpu_need_names_too(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^exp.toml: key 'model.name' = '' must be a non-empty name"):
        parse_experiment(f'[model]\nname = ""\n{SHAPE}', "exp.toml", {})
    g = tmp_path / "g.toml"
    g.write_text('base = "h100-sxm"\nname = ""\n')
    with pytest.raises(InputError, match=r"key 'name' = '' must be a non-empty name on one line"):
        load_gpu_toml(g)


def test_the_spec_itself_refuses_an_empty_name() -> None:
    with pytest.raises(InputError, match="name must be a non-empty name"):
        ModelSpec("", 2, 64, 4, 100, 16, 256, 4)


# --------------------------------------------------------------------------- cost that does not grow with layers
def _kinds_by_enumeration(m: ModelSpec, start: int, stop: int) -> tuple[tuple[object, int], ...]:
    return tuple(Counter(m.layer_kind(i) for i in range(start, stop)).items())


@pytest.mark.parametrize("layers", [1, 5, 12, 61])
def test_kind_counts_by_arithmetic_equal_the_layer_by_layer_count(layers: int) -> None:
    for fk, freq, window, pattern in itertools.product(
        range(min(layers, 4)), (1, 2, 3, 4), (0, 8), (0, 1, 2, 3, 6)
    ):
        if pattern and not window:
            continue
        moe = dict(num_experts=4, moe_top_k=1, first_k_dense_layers=fk, moe_layer_freq=freq)
        for extra in (moe, {"moe_layer_freq": freq}) if not fk else (moe,):
            m = ModelSpec(
                "x",
                layers,
                64,
                4,
                100,
                16,
                256,
                4,
                sliding_window=window,
                sliding_window_pattern=pattern,
                **extra,  # type: ignore[arg-type]
            )
            for start in range(layers):
                for stop in (start + 1, (start + layers + 1) // 2, layers):
                    if stop > start:  # the kinds in the order they first appear, as Counter gives them
                        want = _kinds_by_enumeration(m, start, stop)
                        assert tuple(m.kind_counts(start, stop).items()) == want, (m, start, stop)


def _deep(tmp_path: Path, hidden: int = 64, extra: str = "") -> Path:
    f = tmp_path / "deep.toml"
    f.write_text(
        f'name = "deep"\nnum_layers = 100000000\nhidden_size = {hidden}\nnum_attention_heads = 4\n'
        f"vocab_size = 1000\nseq_length = 256\n{extra}"
    )
    return f


def test_a_model_of_a_hundred_million_layers_costs_what_a_small_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipesim.specs.shape as shape

    def per_layer(model: ModelSpec) -> None:
        raise AssertionError("the layers were enumerated one by one")

    monkeypatch.setattr(shape, "_layer_kinds", per_layer)  # what made roofline and simulate grow
    moe = "num_experts = 4\nmoe_top_k = 1\nfirst_k_dense_layers = 3\nmoe_layer_freq = 2\n"
    swa = "sliding_window = 64\nsliding_window_pattern = 4\n"
    for extra in ("", moe + swa):
        path = str(_deep(tmp_path, extra=extra))
        t0 = time.perf_counter()
        code, out, err = invoke("roofline", "--model", path)
        assert code == (2 if extra else 0), err  # roofline shows one layer: a mixed model is refused, at once
        args = ("--model", path, "--global-batch-size", "64", "--pp", "8", "--dp", "8", "--gpu", "h100-sxm")
        code, out, err = invoke("simulate", *args, "--json")
        assert code == 0, err
        assert json.loads(out)["step_time_s"] > 0
        assert time.perf_counter() - t0 < 30  # minutes and gigabytes before


def test_gradient_buckets_past_the_limit_are_refused_before_the_engine_runs(tmp_path: Path) -> None:
    path = str(_deep(tmp_path, hidden=1024))
    args = ("simulate", "--model", path, "--global-batch-size", "64", "--pp", "8", "--dp", "8")
    code, out, err = invoke(*args)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "bucket spans, over the limit of 1,000,000" in err and "8 stages x 3,936,321 buckets" in err


def test_check_buckets_states_the_size_and_the_limit() -> None:
    check_buckets(10, 100_000)
    with pytest.raises(InputError, match="= 1,000,001 bucket spans, over the limit of 1,000,000"):
        check_buckets(1, MAX_BUCKETS + 1)


def test_long_moe_patterns_are_a_short_megatron_expression() -> None:
    from pipesim.io.megatron import format_megatron_args
    from pipesim.specs.layout import Layout
    from pipesim.specs.model import get_model

    for name in ("deepseek-v3", "llama4-maverick"):
        preset = get_model(name)
        for layers in (preset.num_layers, 257, 1001, 10**8):
            m = replace(preset, num_layers=layers)
            args = format_megatron_args(m, Layout())
            expr = args.split("--moe-layer-freq '(")[1].split(")'")[0]
            assert len(expr) < max(600, 2 * preset.num_layers + 10)
            if layers < 2000:
                assert eval(expr) == [int(m.layer_kind(i).moe) for i in range(layers)]  # noqa: S307


def test_the_largest_layer_count_toml_holds_is_refused_quickly_with_the_valid_pp(tmp_path: Path) -> None:
    f = tmp_path / "huge.toml"
    f.write_text(SHAPE.replace("num_layers = 2", f"num_layers = {2**63 - 1}"))
    t0 = time.perf_counter()  # the valid-pp list took sqrt(layers) trial divisions: minutes
    code, out, err = invoke(
        "simulate", "--model", str(f), "--global-batch-size", "8", "--pp", "2", "--dp", "4"
    )
    assert code == 2 and "valid pp (with 1 chunk(s) per rank): 1, 7, 49, 73" in err, err
    assert time.perf_counter() - t0 < 10
