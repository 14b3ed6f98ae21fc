"""Model presets a user can name with ``--model`` (shapes: :class:`pipesim.specs.shape.ModelSpec`).

Sources of the presets:

* ``gpt-*``: Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
  Megatron-LM", SC21 (arXiv:2104.04473), Table 1 (heads, hidden, layers; V = 51,200, s = 2048);
* ``gpt3-175b``: SC21 Table 2 / Section 5.3.2 (96 layers, 96 heads, h = 12288); ``megatron-22b``,
  ``mt-nlg-530b``, ``megatron-1t``: Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
  Models", MLSys 2023 (arXiv:2205.05198), Table 3;
* ``llama2-*``, ``llama3-*`` and ``llama3.1-*``: the Hugging Face ``config.json`` of meta-llama/Llama-2-{7,13,70}b-hf,
  meta-llama/Meta-Llama-3-{8,70}B and meta-llama/Llama-3.1-{8,70,405}B, as quoted in public repositories
  (secondary sources). Llama 3.1 405B: h = 16384, ffn = 53248, 126 layers, 128 heads, 8 KV heads,
  V = 128,256. Sequence length is the pre-training length (Llama 2: 4096; Llama 3: 8192, "initially trained
  with 8192"), not the long-context ``max_position_embeddings`` of Llama 3.1;
* ``nemotron4-15b`` / ``nemotron4-340b``: Parmar et al., "Nemotron-4 15B Technical Report" (arXiv:2402.16819),
  Table 1, and NVIDIA, "Nemotron-4 340B Technical Report" (arXiv:2406.11704), Table 1 (squared-ReLU MLP, GQA
  with 8 KV heads, untied embeddings, no biases, V = 256,000, s = 4096);
* mixture-of-experts models: the Hugging Face ``config.json`` of each checkpoint (deepseek-ai/DeepSeek-V3,
  mistralai/Mixtral-8x7B-v0.1 and Mixtral-8x22B-v0.1, Qwen/Qwen3-30B-A3B and Qwen3-235B-A22B,
  meta-llama/Llama-4-Maverick-17B-128E ``text_config``; copies under ``tests/data/``) and for Grok-1 the
  model code of xai-org/grok-1 (``run.py``: 64 layers, 48 query / 8 KV heads of 128, h = 6144, 8 experts
  top-2, widening factor 8 -> ffn 32768, V = 131,072, s = 8192).
"""

from __future__ import annotations

from dataclasses import replace

from pipesim.errors import InputError
from pipesim.specs.shape import ACTIVATIONS, GATED, NORMS, LayerKind, ModelSpec

__all__ = [
    "ModelSpec",
    "LayerKind",
    "MODEL_PRESETS",
    "get_model",
    "model_names",
    "ACTIVATIONS",
    "GATED",
    "NORMS",
]


def _gpt(name: str, layers: int, hidden: int, heads: int, source: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        vocab_size=51200,
        seq_length=2048,
        ffn_hidden_size=4 * hidden,
        num_kv_heads=heads,
        source=source,
    )


def _llama(
    name: str, layers: int, hidden: int, heads: int, kv: int, ffn: int, vocab: int, seq: int, source: str
) -> ModelSpec:
    return ModelSpec(
        name=name,
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        vocab_size=vocab,
        seq_length=seq,
        ffn_hidden_size=ffn,
        num_kv_heads=kv,
        activation="swiglu",
        norm="rmsnorm",
        linear_bias=False,
        tied_embeddings=False,
        learned_positions=False,
        dropout=False,
        source=source,
    )


_SC21_T1 = "Narayanan et al., SC21 (arXiv:2104.04473), Table 1"
_KORTH_T3 = "Korthikanti et al., MLSys 2023 (arXiv:2205.05198), Table 3"
_LLAMA2 = "meta-llama/Llama-2-{}-hf config.json (secondary: public copies of the HF config)"
_LLAMA3 = "meta-llama/{} config.json (secondary: public copies of the HF config)"
_HF = "{} config.json on Hugging Face (copy in tests/data/)"
_NEMOTRON4_15B = "Parmar et al., Nemotron-4 15B Technical Report (arXiv:2402.16819), Table 1"
_NEMOTRON4_340B = "NVIDIA, Nemotron-4 340B Technical Report (arXiv:2406.11704), Table 1"
_GROK1 = "xai-org/grok-1 run.py / model.py (64 layers, h 6144, 48/8 heads, 8 experts top-2, V 131072)"

_PRESET_LIST: tuple[ModelSpec, ...] = (
    # SC21 Table 1 (heads, hidden, layers); V = 51,200 and s = 2048 for all rows.
    _gpt("gpt-1.7b", 24, 2304, 24, _SC21_T1),
    _gpt("gpt-3.6b", 30, 3072, 32, _SC21_T1),
    _gpt("gpt-7.5b", 36, 4096, 32, _SC21_T1),
    _gpt("gpt-18.4b", 40, 6144, 48, _SC21_T1),
    _gpt("gpt-39.1b", 48, 8192, 64, _SC21_T1),
    _gpt("gpt-76.1b", 60, 10240, 80, _SC21_T1),
    _gpt("gpt-145.6b", 80, 12288, 96, _SC21_T1),
    _gpt("gpt-310.1b", 96, 16384, 128, _SC21_T1),
    _gpt("gpt-529.6b", 105, 20480, 128, _SC21_T1),
    _gpt("gpt-1t", 128, 25600, 160, _SC21_T1),
    _gpt("gpt3-175b", 96, 12288, 96, "Narayanan et al., SC21 (arXiv:2104.04473), Section 5.3.2 / Table 2"),
    # Korthikanti et al. Table 3 (seq 2048, vocab 51,200).
    _gpt("megatron-22b", 48, 6144, 64, _KORTH_T3),
    _gpt("mt-nlg-530b", 105, 20480, 128, _KORTH_T3),
    _gpt("megatron-1t", 128, 25600, 160, _KORTH_T3),
    # Llama 2: vocab 32,000, pre-training sequence 4096.
    _llama("llama2-7b", 32, 4096, 32, 32, 11008, 32000, 4096, _LLAMA2.format("7b")),
    _llama("llama2-13b", 40, 5120, 40, 40, 13824, 32000, 4096, _LLAMA2.format("13b")),
    _llama("llama2-70b", 80, 8192, 64, 8, 28672, 32000, 4096, _LLAMA2.format("70b")),
    # Llama 3 / 3.1: vocab 128,256, pre-training sequence 8192, 8 KV heads (GQA).
    _llama("llama3-8b", 32, 4096, 32, 8, 14336, 128256, 8192, _LLAMA3.format("Meta-Llama-3-8B")),
    _llama("llama3-70b", 80, 8192, 64, 8, 28672, 128256, 8192, _LLAMA3.format("Meta-Llama-3-70B")),
    _llama("llama3-405b", 126, 16384, 128, 8, 53248, 128256, 8192, _LLAMA3.format("Llama-3.1-405B")),
    # Llama 3.1: the Llama 3 shapes (only the RoPE scaling of the long context differs).
    _llama("llama3.1-8b", 32, 4096, 32, 8, 14336, 128256, 8192, _LLAMA3.format("Llama-3.1-8B")),
    _llama("llama3.1-70b", 80, 8192, 64, 8, 28672, 128256, 8192, _LLAMA3.format("Llama-3.1-70B")),
    _llama("llama3.1-405b", 126, 16384, 128, 8, 53248, 128256, 8192, _LLAMA3.format("Llama-3.1-405B")),
    replace(
        _llama("nemotron4-15b", 32, 6144, 48, 8, 24576, 256000, 4096, _NEMOTRON4_15B),
        activation="squared_relu",
        norm="layernorm",
    ),
    replace(
        _llama("nemotron4-340b", 96, 18432, 96, 8, 73728, 256000, 4096, _NEMOTRON4_340B),
        activation="squared_relu",
        norm="layernorm",
    ),
    # DeepSeek-V3 (config.json; pre-training sequence 4K, DeepSeek-V3 report arXiv:2412.19437 Section 4.2).
    replace(
        _llama("deepseek-v3", 61, 7168, 128, 128, 18432, 129280, 4096, _HF.format("deepseek-ai/DeepSeek-V3")),
        num_experts=256,
        moe_top_k=8,
        moe_ffn_hidden_size=2048,
        shared_expert_ffn_hidden_size=2048,
        first_k_dense_layers=3,
        q_lora_rank=1536,
        kv_lora_rank=512,
        qk_nope_head_dim=128,
        qk_rope_head_dim=64,
        v_head_dim=128,
        mtp_layers=1,
        moe_router_num_groups=8,  # n_group / topk_group: node-limited routing, M = 4 (report Section 2.1.2)
        moe_router_group_topk=4,
    ),
    # Mixtral (config.json; "trained with a context size of 32k tokens", Jiang et al. arXiv:2401.04088 s2).
    replace(
        _llama(
            "mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, 32768, _HF.format("mistralai/Mixtral-8x7B-v0.1")
        ),
        num_experts=8,
        moe_top_k=2,
    ),
    replace(
        _llama(
            "mixtral-8x22b", 56, 6144, 48, 8, 16384, 32768, 65536, _HF.format("mistralai/Mixtral-8x22B-v0.1")
        ),
        num_experts=8,
        moe_top_k=2,
    ),
    # Qwen3 MoE (config.json; pre-training stage S1 at 4,096 tokens, Qwen3 Technical Report arXiv:2505.09388 s3.2).
    replace(
        _llama("qwen3-30b-a3b", 48, 2048, 32, 4, 6144, 151936, 4096, _HF.format("Qwen/Qwen3-30B-A3B")),
        kv_channels=128,
        qk_norm=True,
        num_experts=128,
        moe_top_k=8,
        moe_ffn_hidden_size=768,
    ),
    replace(
        _llama("qwen3-235b-a22b", 94, 4096, 64, 4, 12288, 151936, 4096, _HF.format("Qwen/Qwen3-235B-A22B")),
        kv_channels=128,
        qk_norm=True,
        num_experts=128,
        moe_top_k=8,
        moe_ffn_hidden_size=1536,
    ),
    # Llama 4 Maverick text model (config.json text_config): dense layers 16384 wide, every 2nd layer MoE with
    # 128 experts of 8192, top-1, one shared expert; chunked attention (8192) on three of every four layers,
    # counted as a sliding window of that size (the same keys per query). Sequence 8192: an assumption.
    replace(
        _llama(
            "llama4-maverick",
            48,
            5120,
            40,
            8,
            16384,
            202048,
            8192,
            _HF.format("meta-llama/Llama-4-Maverick-17B-128E"),
        ),
        kv_channels=128,
        num_experts=128,
        moe_top_k=1,
        moe_ffn_hidden_size=8192,
        shared_expert_ffn_hidden_size=8192,
        moe_layer_freq=2,
        sliding_window=8192,
        sliding_window_pattern=4,
    ),
    # Grok-1 (xai-org/grok-1 run.py / model.py): GeLU-gated experts, four RMSNorms per layer, tied embedding.
    replace(
        _llama("grok-1", 64, 6144, 48, 8, 32768, 131072, 8192, _GROK1),
        activation="geglu",
        norms_per_layer=4,
        tied_embeddings=True,
        num_experts=8,
        moe_top_k=2,
    ),
)

MODEL_PRESETS: dict[str, ModelSpec] = {m.name: m for m in _PRESET_LIST}


def model_names() -> list[str]:
    """Preset model names, in table order."""
    return list(MODEL_PRESETS)


def get_model(name: str) -> ModelSpec:
    """The preset called ``name``; an unknown name raises :class:`InputError` listing the presets."""
    try:
        return MODEL_PRESETS[name]
    except KeyError:
        raise InputError(
            f"unknown model {name!r}; valid presets: {', '.join(MODEL_PRESETS)} (or a path to a config.json / .toml)"
        ) from None
