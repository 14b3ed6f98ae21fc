"""Model and GPU specs, presets and the file readers (HF config.json, model / GPU TOML)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipesim.cost.flops import sc21_params
from pipesim.errors import InputError
from pipesim.io.readers import load_gpu_toml, load_hf_config, load_model_toml, resolve_gpu, resolve_model
from pipesim.specs.gpu import GPU_PRESETS, get_gpu
from pipesim.specs.model import MODEL_PRESETS, ModelSpec, get_model

# SC21 Table 1 parameter column (billions) and Table 2's 174.6 for GPT-3.
SC21_PARAMS_B = {
    "gpt-1.7b": 1.7,
    "gpt-3.6b": 3.6,
    "gpt-7.5b": 7.5,
    "gpt-18.4b": 18.4,
    "gpt-39.1b": 39.1,
    "gpt-76.1b": 76.1,
    "gpt-145.6b": 145.6,
    "gpt-310.1b": 310.1,
    "gpt-529.6b": 529.6,
    "gpt-1t": 1008.0,
    "gpt3-175b": 174.6,
}


@pytest.mark.parametrize("name", sorted(SC21_PARAMS_B))
def test_gpt_params_match_sc21_eq2_and_table1(name: str) -> None:
    m = get_model(name)
    eq2 = sc21_params(m.num_layers, m.hidden_size, m.vocab_size, m.seq_length)
    # SC21 eq. (2) counts layers and embeddings; pipesim adds the final LayerNorm's 2h.
    assert m.num_params() == pytest.approx(eq2 + 2 * m.hidden_size, rel=1e-12)
    assert round(m.num_params() / 1e9, 1) == SC21_PARAMS_B[name]


def test_sc21_eq2_arithmetic_for_1t() -> None:
    # 12 l h^2 (1 + 13/(12h) + (V+s)/(12lh)) with l=128, h=25600, V=51200, s=2048:
    # 12*128*25600^2 = 1,006,632,960,000; 13*128*25600 = 42,598,400; (51200+2048)*25600 = 1,363,148,800.
    assert sc21_params(128, 25600, 51200, 2048) == pytest.approx(
        1_006_632_960_000 + 42_598_400 + 1_363_148_800, rel=1e-12
    )


def test_llama2_7b_param_count_arithmetic() -> None:
    # Per layer: QKV 4096*(4096+2*4096), out 4096^2, SwiGLU 3*4096*11008, two RMSNorms 2*4096.
    layer = 4096 * 12288 + 4096**2 + 3 * 4096 * 11008 + 2 * 4096
    total = 32 * layer + 2 * 32000 * 4096 + 4096  # untied embedding + head, final norm
    assert get_model("llama2-7b").num_params() == total == 6_738_415_616


def test_llama3_gqa_shapes() -> None:
    m = get_model("llama3-70b")
    assert m.kv_size == 8 * 128  # 8 KV heads of 128
    # QKV weights: h*(h + 2*kv) = 8192*(8192 + 2048)
    assert m.layer_matrix_params() == 8192 * 10240 + 8192**2 + 3 * 8192 * 28672
    assert round(get_model("llama3-405b").num_params() / 1e9) == 406
    assert get_model("llama3-8b").seq_length == 8192 and get_model("llama2-70b").seq_length == 4096


def test_every_preset_is_consistent() -> None:
    for m in MODEL_PRESETS.values():
        assert m.hidden_size % m.num_attention_heads == 0
        assert m.num_params() > m.num_layers * min(
            m.layer_matrix_params(k, active=False) for k in m.kind_counts()
        )
        assert m.source


def test_unknown_model_lists_presets() -> None:
    with pytest.raises(InputError, match="unknown model 'gpt-9'.*gpt3-175b.*llama3-405b"):
        get_model("gpt-9")


def test_model_spec_rejects_bad_shapes() -> None:
    with pytest.raises(InputError, match="not divisible by num_attention_heads=7"):
        ModelSpec("x", 2, 64, 7, 100, 16, 256, 7)
    with pytest.raises(InputError, match="activation='relu'; valid: gelu, squared_relu, swiglu, geglu"):
        ModelSpec("x", 2, 64, 4, 100, 16, 256, 4, activation="relu")


# --------------------------------------------------------------------------- GPUs
def test_gpu_presets_from_published_md_s7() -> None:
    a100 = get_gpu("a100-80gb")
    assert a100.peak("bf16") == 312e12 and a100.peak("fp16") == 312e12  # SC21 s5 / published.md s7
    assert a100.hbm_bytes == 80e9 and a100.hbm_Bps == 2.039e12 and a100.tdp_w == 400
    h100 = get_gpu("h100-sxm")
    assert h100.peak("bf16") == 989.4e12 and h100.peak("fp8") == 1978.9e12 and h100.tdp_w == 700
    assert get_gpu("h200").hbm_bytes == 141e9 and get_gpu("mi300x").peak("fp16") == 1307.4e12
    assert set(GPU_PRESETS) >= {
        "v100",
        "a100-40gb",
        "a100-80gb",
        "h100-sxm",
        "h100-pcie",
        "h200",
        "b200",
        "mi300x",
    }
    assert "unconfirmed" in get_gpu("h100-pcie").status


def test_gpu_missing_precision_is_input_error() -> None:
    with pytest.raises(InputError, match="gpu 'v100' has no bf16 peak; supported for training: fp16"):
        get_gpu("v100").peak("bf16")
    with pytest.raises(InputError, match="unknown gpu 'a200'.*a100-80gb"):
        get_gpu("a200")


def test_gpu_toml_roundtrip(tmp_path: Path) -> None:
    f = tmp_path / "mygpu.toml"
    f.write_text(
        'name = "mygpu"\nmemory_GiB = 64\nhbm_bandwidth_GBps = 1600\ntdp_W = 500\n[peak_TFLOPS]\nbf16 = 400\nfp8 = 800\n'
    )
    g = load_gpu_toml(f)
    assert g.name == "mygpu" and g.hbm_bytes == 64 * 2**30 and g.hbm_Bps == 1.6e12
    assert g.peak("bf16") == 400e12 and g.peak("fp8") == 800e12 and g.tdp_w == 500
    assert resolve_gpu(str(f)) == g


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("memory_GB = 80\nhbm_bandwidth_GBps = 2000\n", "missing table 'peak_TFLOPS'"),
        (
            "memory_GB = 80\nhbm_bandwidth_GBps = 2000\npeak_TFLOPS = 300\n",
            "key 'peak_TFLOPS' = 300 must be a table",
        ),
        ("memory_GB = 80\n[peak_TFLOPS]\nbf16 = 1\n", "missing key 'hbm_bandwidth_GBps'"),
        ("memory_GB = -1\nhbm_bandwidth_GBps = 2\n[peak_TFLOPS]\nbf16 = 1\n", "key 'memory_GB' = -1"),
        (
            "memory_GB = 8\nhbm_bandwidth_GBps = 2\n[peak_TFLOPS]\nint4 = 1\n",
            "'peak_TFLOPS.int4' is not a precision",
        ),
        ("memry_GB = 8\n", "unknown key 'memry_GB'"),
        ("memory_GB = [\n", "not valid TOML"),
    ],
)
def test_bad_gpu_toml_names_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(InputError, match=message) as info:
        load_gpu_toml(f)
    assert str(f) in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- HF config.json
LLAMA3_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "tie_word_embeddings": False,
    "vocab_size": 128256,
}


def test_hf_llama_config_matches_preset(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_text(json.dumps(LLAMA3_8B_CONFIG))
    m = load_hf_config(f)
    preset = get_model("llama3-8b")
    assert m.num_params() == preset.num_params() == 8_030_261_248
    assert (m.num_kv_heads, m.activation, m.norm, m.seq_length) == (8, "swiglu", "rmsnorm", 8192)
    assert resolve_model(str(f)).num_params() == m.num_params()


def test_hf_llama31_uses_original_context(tmp_path: Path) -> None:
    cfg = dict(LLAMA3_8B_CONFIG, max_position_embeddings=131072)
    cfg["rope_scaling"] = {"rope_type": "llama3", "original_max_position_embeddings": 8192}
    f = tmp_path / "config.json"
    f.write_text(json.dumps(cfg))
    assert load_hf_config(f).seq_length == 8192


def test_hf_gpt2_config(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_text(
        json.dumps(
            {
                "model_type": "gpt2",
                "n_embd": 768,
                "n_layer": 12,
                "n_head": 12,
                "n_positions": 1024,
                "vocab_size": 50257,
            }
        )
    )
    m = load_hf_config(f)
    # 12 (12h^2 + 13h) + (V + s) h + 2h = 85,054,464 + 39,383,808 + 1,536 (GPT-2 small's 124.4M)
    assert m.num_params() == 124_439_808
    assert m.ffn_hidden_size == 3072 and m.tied_embeddings and m.learned_positions


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON \\(line 1"),
        (json.dumps({"hidden_size": 64}), "missing key 'num_attention_heads'"),
        (
            json.dumps(dict(LLAMA3_8B_CONFIG, hidden_size="big")),
            "key 'hidden_size' = 'big' must be a positive integer",
        ),
        (json.dumps(dict(LLAMA3_8B_CONFIG, hidden_act="relu")), "key 'hidden_act' = 'relu'"),
        (json.dumps(dict(LLAMA3_8B_CONFIG, num_key_value_heads=5)), "not a multiple of num_kv_heads=5"),
        (json.dumps([1, 2]), "expected a JSON object"),
    ],
)
def test_bad_hf_config_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "config.json"
    f.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_hf_config(f)
    assert str(f) in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file() -> None:
    with pytest.raises(InputError, match="does not exist"):
        resolve_model("no/such/config.json")


def test_model_toml(tmp_path: Path) -> None:
    f = tmp_path / "tiny.toml"
    f.write_text(
        "num_layers = 4\nhidden_size = 256\nnum_attention_heads = 4\nvocab_size = 1000\nseq_length = 128\n"
    )
    m = load_model_toml(f)
    assert m.name == "tiny" and m.ffn_hidden_size == 1024 and m.num_kv_heads == 4
    # 4 (12*256^2 + 13*256) + (1000 + 128) * 256 + 2*256
    assert m.num_params() == 4 * (12 * 256**2 + 13 * 256) + 1128 * 256 + 512
    f.write_text("num_layers = 4\nhidden = 256\n")
    with pytest.raises(InputError, match=f"{f}: unknown key 'hidden'; valid keys: name, num_layers"):
        load_model_toml(f)


def test_gpu_spec_pickles() -> None:
    # Sweeps send specs to worker processes and Dask; the read-only peak mapping must survive the trip.
    import pickle

    from pipesim.specs.gpu import get_gpu

    for name in ("a100-80gb", "h100-sxm", "mi300x"):
        gpu = get_gpu(name)
        back = pickle.loads(pickle.dumps(gpu))
        assert back == gpu and dict(back.peak_flops) == dict(gpu.peak_flops)


def test_bad_gpu_key_names_the_file_once(tmp_path: Path) -> None:
    # The same table reader serves GPU files and an experiment file's [gpu] (keys prefixed with 'gpu.').
    from pipesim.cli.config import section_keys
    from pipesim.io.scenario_file import read_experiment

    gpu = tmp_path / "g.toml"
    gpu.write_text("memory_GB = 80\n[peak_TFLOPS]\nbf16 = 1\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_gpu_toml(gpu)
    assert str(err.value) == f"{gpu}: missing key 'hbm_bandwidth_GBps'"
    scen = tmp_path / "s.toml"
    scen.write_text(
        'model = "gpt-1.7b"\n[gpu]\nname = "x"\nmemory_GB = 80\n[gpu.peak_TFLOPS]\nbf16 = 1\n[layout]\ntp = 1\n',
        encoding="utf-8",
    )
    with pytest.raises(InputError) as err:
        read_experiment(scen, section_keys())
    assert str(err.value) == f"{scen}: missing key 'gpu.hbm_bandwidth_GBps'"
