"""Hugging Face config.json families: real configs (tests/data/hf, sources in SOURCES.md) and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from pipesim.errors import InputError
from pipesim.io.hf_config import model_from_hf_dict
from pipesim.io.readers import load_hf_config, load_model_toml
from pipesim.specs.model import get_model

DATA = Path(__file__).parents[1] / "data" / "hf"


def _load(name: str) -> object:
    return load_hf_config(DATA / name)


@pytest.mark.parametrize(
    ("file", "total_b", "active_b", "rel"),
    [
        # DeepSeek-V3 report (arXiv:2412.19437): 671B total, 37B activated (R1 shares V3's architecture).
        ("deepseek-r1.json", 671.0, 37.0, 0.016),
        # DeepSeek-V2 report (arXiv:2405.04434), abstract: 236B total, 21B activated per token.
        ("deepseek-v2.5.json", 236.0, 21.0, 0.018),
        # Mixtral of Experts (arXiv:2401.04088) / Mistral AI: 46.7B total, 12.9B active.
        ("mixtral-8x7b-v0.1.json", 46.7, 12.9, 0.005),
        # Qwen3 Technical Report (arXiv:2505.09388) Table 2: 30.5B / 3.3B; Qwen3-8B model card: 8.2B.
        ("qwen3-30b-a3b.json", 30.5, 3.3, 0.017),
        ("qwen3-8b.json", 8.2, 8.2, 0.005),
        # Llama 3 Herd (arXiv:2407.21783) Table 3: 70B.
        ("llama-3.1-70b-instruct.json", 70.0, 70.0, 0.01),
        # Meta's Llama 4 announcement: Maverick 400B total, 17B active (text model; vision encoder not counted).
        ("llama-4-maverick-17b-128e.json", 400.0, 17.0, 0.011),
        # Phi-3.5-MoE model card: 16 x 3.8B experts, 6.6B active, 42B total.
        ("phi-3.5-moe-instruct.json", 42.0, 6.6, 0.01),
    ],
)
def test_real_configs_match_published_totals(file: str, total_b: float, active_b: float, rel: float) -> None:
    m = _load(file)
    assert m.num_params() / 1e9 == pytest.approx(total_b, rel=rel)  # type: ignore[attr-defined]
    assert m.num_params(active=True) / 1e9 == pytest.approx(active_b, rel=rel)  # type: ignore[attr-defined]


def test_gemma3_text_model_matches_its_report() -> None:
    # Gemma 3 Technical Report (arXiv:2503.19786) Table 1, 12B: 10,759M non-embedding parameters.
    m = _load("gemma-3-12b-it.json")
    non_embedding = m.num_params() - m.vocab_size * m.hidden_size  # type: ignore[attr-defined]
    assert non_embedding / 1e6 == pytest.approx(10759, rel=1e-3)
    assert (m.kv_channels, m.qk_norm, m.norms_per_layer, m.activation) == (256, True, 4, "geglu")  # type: ignore[attr-defined]
    assert m.sliding_window == 1024 and m.sliding_window_pattern == 6  # type: ignore[attr-defined]
    assert [k.sliding for k in m.layer_kinds()[:6]] == [True] * 5 + [False]  # type: ignore[attr-defined]


def test_configs_equal_the_presets_they_describe() -> None:
    for file, preset in (
        ("deepseek-r1.json", "deepseek-v3"),
        ("mixtral-8x7b-v0.1.json", "mixtral-8x7b"),
        ("llama-4-maverick-17b-128e.json", "llama4-maverick"),
        ("llama-3.1-70b-instruct.json", "llama3.1-70b"),
    ):
        m, p = _load(file), get_model(preset)
        assert m.num_params(mtp=True) == p.num_params(mtp=True), file  # type: ignore[attr-defined]
        assert m.layer_kinds() == p.layer_kinds(), file  # type: ignore[attr-defined]


BASE = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 4, "vocab_size": 100}


@pytest.mark.parametrize(
    ("config", "expect"),
    [
        ({"model_type": "qwen2", "intermediate_size": 128}, {"qkv_bias": True, "proj_bias": False}),
        (
            {
                "model_type": "qwen2_moe",
                "num_experts": 8,
                "num_experts_per_tok": 2,
                "moe_intermediate_size": 32,
            }
            | {"shared_expert_intermediate_size": 128},
            {"shared_expert_gate": True, "shared_expert_ffn_hidden_size": 128, "num_experts": 8},
        ),
        ({"model_type": "gemma2", "head_dim": 32, "sliding_window": 16}, {"sliding_window_pattern": 2}),
        (
            {"model_type": "phi3", "sliding_window": 2047},
            {"sliding_window": 2047, "sliding_window_pattern": 0},
        ),
        ({"model_type": "mistral", "sliding_window": 4096}, {"sliding_window": 4096}),
        (
            {"model_type": "gpt_neox", "use_parallel_residual": True, "hidden_act": "gelu"},
            {"parallel_block": True, "linear_bias": True, "norm": "layernorm", "activation": "gelu"},
        ),
        ({"model_type": "phi", "hidden_act": "gelu_new"}, {"norms_per_layer": 1, "output_bias": True}),
    ],
)
def test_family_keys_are_modelled(config: dict[str, object], expect: dict[str, object]) -> None:
    m = model_from_hf_dict({**BASE, **config}, "cfg.json")
    for key, value in expect.items():
        assert getattr(m, key) == value, key


def test_gptj_biases_and_parallel_block() -> None:
    cfg = {
        "model_type": "gptj",
        "n_embd": 64,
        "n_layer": 2,
        "n_head": 4,
        "vocab_size": 100,
        "n_positions": 32,
    }
    m = model_from_hf_dict(cfg, "gptj.json")
    # GPT-J: q/k/v/out without bias; fc_in / fc_out with bias; one LayerNorm per layer; lm_head with bias.
    h = 64
    layer = 4 * h * h + (2 * h * 4 * h + 4 * h + h) + 2 * h
    assert m.num_params() == 2 * layer + 100 * h + (2 * h + 100 * h + 100)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"model_type": "qwen2", "use_sliding_window": True},
            "key 'use_sliding_window' = True of model_type 'qwen2'",
        ),
        (
            {
                "model_type": "qwen3_moe",
                "num_experts": 4,
                "num_experts_per_tok": 1,
                "moe_intermediate_size": 8,
            }
            | {"mlp_only_layers": [0, 2]},
            "key 'mlp_only_layers' = \\[0, 2\\] of model_type 'qwen3_moe' is not modelled",
        ),
        ({"model_type": "mamba"}, "model_type 'mamba' is not supported; supported: llama, mistral"),
        # Without model_type the file is read as Llama-style; a key Llama lacks says so (review 5).
        (
            {"sliding_window": None},
            "the file has no 'model_type', so it was read as llama-style: add its model_type",
        ),
        ({"model_type": "qwen3", "head_dim": 0}, "key 'head_dim' = 0 must be a positive integer"),
        (
            {"model_type": "gemma3_text", "sliding_window": 8, "layer_types": ["full_attention"] * 3 + ["x"]},
            "key 'layer_types' = 'x' of model_type 'gemma3_text'",
        ),
        (
            {"model_type": "gemma3_text", "sliding_window": 8}
            | {"layer_types": ["sliding_attention", "full_attention", "full_attention", "sliding_attention"]},
            "key 'layer_types' = '\\[...\\]' of model_type 'gemma3_text' is not modelled",
        ),
        ({"model_type": "llama", "hidden_act": "relu"}, "key 'hidden_act' = 'relu' of model_type 'llama'"),
        ({"model_type": "t5", "is_encoder_decoder": True}, "is_encoder_decoder"),
        (
            {"model_type": "mixtral", "num_local_experts": 4, "num_experts_per_tok": 5},
            "moe_top_k=5 must be in 1..num_experts=4",
        ),
        (
            {"model_type": "deepseek_v3", "kv_lora_rank": 16},
            "missing key 'qk_nope_head_dim'",
        ),
    ],
)
def test_unmodelled_keys_are_refused_in_one_line(config: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        model_from_hf_dict({**BASE, **config}, "cfg.json")
    assert "\n" not in str(err.value)


def test_model_toml_takes_the_new_fields(tmp_path: Path) -> None:
    p = tmp_path / "moe.toml"
    p.write_text(
        "num_layers = 4\nhidden_size = 64\nnum_attention_heads = 4\nvocab_size = 100\nseq_length = 32\n"
        'activation = "swiglu"\nnum_experts = 8\nmoe_top_k = 2\nmoe_ffn_hidden_size = 32\nfirst_k_dense_layers = 1\n'
        "moe_capacity_factor = 1.25\n"
    )
    m = load_model_toml(p)
    assert (m.num_experts, m.moe_top_k, m.moe_ffn_hidden_size, m.moe_capacity_factor) == (8, 2, 32, 1.25)
    assert [k.moe for k in m.layer_kinds()] == [False, True, True, True]


def test_simulate_prints_total_and_active_parameters(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(json.loads((DATA / "qwen3-30b-a3b.json").read_text())))
    args = ["simulate", "--model", str(cfg), "--gpu", "h100-sxm", "--dp", "8", "--ep", "8"]
    args += ["--seq-length", "4096", "--global-batch-size", "16", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["parameters"] == pytest.approx(30.53e9, rel=1e-3)
    assert out["active_parameters"] == pytest.approx(3.35e9, rel=1e-2)
    assert out["layout"]["ep"] == 8 and out["time_breakdown_s"]["ep_comm"]["total"] > 0
    text = CliRunner().invoke(main, args[:-1]).stdout
    assert "30.53 B total, 3.35 B active per token" in text and "EP all-to-all" in text
