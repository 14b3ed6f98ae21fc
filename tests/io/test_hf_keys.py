"""Hugging Face config.json keys: an explicit allow-list per model_type (pipesim/io/hf_keys.py); every other
key is refused in one line naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke

from pipesim.errors import InputError
from pipesim.io.hf_config import model_from_hf_dict
from pipesim.io.hf_keys import NO_COST, READS
from pipesim.io.readers import load_hf_config

DATA = Path(__file__).parents[1] / "data" / "hf"
LLAMA = json.loads((DATA / "llama-3.1-70b-instruct.json").read_text())
BASE = {"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 4, "vocab_size": 100}

# The __init__ keys of each family's configuration class in Transformers 4.57.1 (configuration_<family>.py),
# PretrainedConfig's own keys aside: a config Transformers writes holds these.
TRANSFORMERS_KEYS: dict[str, tuple[str, ...]] = {
    "llama": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "pretraining_tp",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "attention_bias",
        "attention_dropout",
        "mlp_bias",
        "head_dim",
    ),
    "mistral": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
        "rope_theta",
        "sliding_window",
        "attention_dropout",
    ),
    "mixtral": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
        "rope_theta",
        "sliding_window",
        "attention_dropout",
        "num_experts_per_tok",
        "num_local_experts",
        "output_router_logits",
        "router_aux_loss_coef",
        "router_jitter_noise",
    ),
    "qwen2": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "use_sliding_window",
        "sliding_window",
        "max_window_layers",
        "layer_types",
        "attention_dropout",
    ),
    "qwen2_moe": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "use_sliding_window",
        "sliding_window",
        "max_window_layers",
        "attention_dropout",
        "decoder_sparse_step",
        "moe_intermediate_size",
        "shared_expert_intermediate_size",
        "num_experts_per_tok",
        "num_experts",
        "norm_topk_prob",
        "output_router_logits",
        "router_aux_loss_coef",
        "mlp_only_layers",
        "qkv_bias",
    ),
    "qwen3": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "attention_bias",
        "use_sliding_window",
        "sliding_window",
        "max_window_layers",
        "layer_types",
        "attention_dropout",
    ),
    "qwen3_moe": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "attention_bias",
        "use_sliding_window",
        "sliding_window",
        "attention_dropout",
        "decoder_sparse_step",
        "moe_intermediate_size",
        "num_experts_per_tok",
        "num_experts",
        "norm_topk_prob",
        "output_router_logits",
        "router_aux_loss_coef",
        "mlp_only_layers",
    ),
    "deepseek_v2": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "attention_bias",
        "attention_dropout",
        "mlp_bias",
        "aux_loss_alpha",
        "first_k_dense_replace",
        "kv_lora_rank",
        "q_lora_rank",
        "n_group",
        "n_routed_experts",
        "n_shared_experts",
        "qk_nope_head_dim",
        "qk_rope_head_dim",
        "routed_scaling_factor",
        "seq_aux",
        "topk_group",
        "topk_method",
        "v_head_dim",
        "num_experts_per_tok",
        "norm_topk_prob",
        "moe_intermediate_size",
    ),
    "deepseek_v3": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "moe_intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "n_shared_experts",
        "n_routed_experts",
        "routed_scaling_factor",
        "kv_lora_rank",
        "q_lora_rank",
        "qk_rope_head_dim",
        "v_head_dim",
        "qk_nope_head_dim",
        "n_group",
        "topk_group",
        "num_experts_per_tok",
        "first_k_dense_replace",
        "norm_topk_prob",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "pretraining_tp",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "rope_interleave",
        "attention_bias",
        "attention_dropout",
    ),
    "gemma2": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "hidden_activation",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "pad_token_id",
        "eos_token_id",
        "bos_token_id",
        "tie_word_embeddings",
        "rope_theta",
        "attention_bias",
        "attention_dropout",
        "query_pre_attn_scalar",
        "sliding_window",
        "layer_types",
        "final_logit_softcapping",
        "attn_logit_softcapping",
    ),
    "gemma3_text": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "hidden_activation",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "pad_token_id",
        "eos_token_id",
        "bos_token_id",
        "tie_word_embeddings",
        "rope_theta",
        "attention_bias",
        "attention_dropout",
        "query_pre_attn_scalar",
        "sliding_window",
        "layer_types",
        "final_logit_softcapping",
        "attn_logit_softcapping",
        "rope_scaling",
        "rope_local_base_freq",
        "use_bidirectional_attention",
    ),
    "phi3": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "resid_pdrop",
        "embd_pdrop",
        "attention_dropout",
        "hidden_act",
        "max_position_embeddings",
        "original_max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "partial_rotary_factor",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "sliding_window",
    ),
    "phimoe": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "sliding_window",
        "attention_dropout",
        "num_experts_per_tok",
        "num_local_experts",
        "output_router_logits",
        "router_aux_loss_coef",
        "router_jitter_noise",
        "input_jitter_noise",
        "attention_bias",
        "lm_head_bias",
    ),
    "phi": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "resid_pdrop",
        "embd_pdrop",
        "attention_dropout",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "layer_norm_eps",
        "use_cache",
        "tie_word_embeddings",
        "rope_theta",
        "rope_scaling",
        "partial_rotary_factor",
        "qk_layernorm",
        "bos_token_id",
        "eos_token_id",
    ),
    "gpt2": (
        "vocab_size",
        "n_positions",
        "n_embd",
        "n_layer",
        "n_head",
        "n_inner",
        "activation_function",
        "resid_pdrop",
        "embd_pdrop",
        "attn_pdrop",
        "layer_norm_epsilon",
        "initializer_range",
        "summary_type",
        "summary_use_proj",
        "summary_activation",
        "summary_proj_to_labels",
        "summary_first_dropout",
        "scale_attn_weights",
        "use_cache",
        "bos_token_id",
        "eos_token_id",
        "scale_attn_by_inverse_layer_idx",
        "reorder_and_upcast_attn",
    ),
    "gpt_neox": (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "rotary_pct",
        "rotary_emb_base",
        "attention_dropout",
        "hidden_dropout",
        "classifier_dropout",
        "max_position_embeddings",
        "initializer_range",
        "layer_norm_eps",
        "use_cache",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
        "use_parallel_residual",
        "rope_scaling",
        "attention_bias",
    ),
    "gptj": (
        "vocab_size",
        "n_positions",
        "n_embd",
        "n_layer",
        "n_head",
        "rotary_dim",
        "n_inner",
        "activation_function",
        "resid_pdrop",
        "embd_pdrop",
        "attn_pdrop",
        "layer_norm_epsilon",
        "initializer_range",
        "use_cache",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
    ),
    "llama4_text": (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "intermediate_size_mlp",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "hidden_act",
        "max_position_embeddings",
        "initializer_range",
        "rms_norm_eps",
        "use_cache",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "tie_word_embeddings",
        "rope_theta",
        "attention_dropout",
        "num_experts_per_tok",
        "num_local_experts",
        "moe_layers",
        "interleave_moe_layer_step",
        "use_qk_norm",
        "output_router_logits",
        "router_aux_loss_coef",
        "router_jitter_noise",
        "rope_scaling",
        "no_rope_layers",
        "no_rope_layer_interval",
        "attention_chunk_size",
        "layer_types",
        "attn_temperature_tuning",
        "floor_scale",
        "attn_scale",
    ),
}


@pytest.mark.parametrize("family", sorted(TRANSFORMERS_KEYS))
def test_every_key_transformers_defines_for_a_family_is_read_or_known_harmless(family: str) -> None:
    allowed = READS[family] | set(NO_COST)
    assert [k for k in TRANSFORMERS_KEYS[family] if k not in allowed] == []


def test_every_harmless_key_says_why() -> None:
    assert all(why.strip() for why in NO_COST.values())


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"foo_bar": 3}, "key 'foo_bar' = 3 of model_type 'llama' is not modelled"),
        (
            {"num_experts": 8},
            "key 'num_experts' = 8 of model_type 'llama' is not modelled",
        ),  # was a dense model
        (
            {"sliding_window": 4096},
            "key 'sliding_window' = 4096 of model_type 'llama'",
        ),  # Llama has no window
        ({"rope_scaling": "yarn"}, "key 'rope_scaling' = 'yarn' of model_type 'llama' is not modelled"),
        ({"attention_dropout": 0.1}, "key 'attention_dropout' = 0.1 of model_type 'llama'"),
        ({"pruned_heads": {"0": [1]}}, "key 'pruned_heads'"),
        ({"add_cross_attention": True}, "key 'add_cross_attention' = True"),
    ],
)
def test_a_key_the_model_does_not_represent_is_refused_in_one_line(
    tmp_path: Path, extra: dict[str, Any], needle: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**LLAMA, **extra}))
    with pytest.raises(InputError, match=needle) as err:
        load_hf_config(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)
    code, out, err_text = invoke("simulate", "--model", str(path), "--global-batch-size", "8", "--tp", "8")
    assert code == 2 and err_text.count("\n") == 1 and needle.split(" of ")[0] in err_text


def test_rope_scaling_is_accepted_and_changes_nothing_but_the_pre_training_length() -> None:
    plain = {k: v for k, v in LLAMA.items() if k != "rope_scaling"}
    base = model_from_hf_dict(plain, "a.json", "m")
    yarn = model_from_hf_dict({**plain, "rope_scaling": {"type": "yarn", "factor": 4.0}}, "a.json", "m")
    assert yarn == base
    extended = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}
    assert model_from_hf_dict({**plain, "rope_scaling": extended}, "c.json", "m").seq_length == 4096


def test_tie_word_embeddings_is_honoured_also_on_a_multimodal_configs_top_level() -> None:
    untied = model_from_hf_dict(LLAMA, "a.json")
    tied = model_from_hf_dict({**LLAMA, "tie_word_embeddings": True}, "a.json")
    assert tied.tied_embeddings and not untied.tied_embeddings
    assert untied.num_params() - tied.num_params() == LLAMA["vocab_size"] * LLAMA["hidden_size"]
    maverick = json.loads((DATA / "llama-4-maverick-17b-128e.json").read_text())
    assert not model_from_hf_dict(maverick, "m.json").tied_embeddings
    assert model_from_hf_dict({**maverick, "tie_word_embeddings": True}, "m.json").tied_embeddings


def test_a_multimodal_configs_top_level_is_checked_too() -> None:
    maverick = json.loads((DATA / "llama-4-maverick-17b-128e.json").read_text())
    model_from_hf_dict(
        {**maverick, "vision_config": {"hidden_size": 1408}}, "m.json"
    )  # the tower is not timed
    with pytest.raises(InputError, match="key 'audio_config' = .* of model_type 'llama4' is not modelled"):
        model_from_hf_dict({**maverick, "audio_config": {}}, "m.json")


@pytest.mark.parametrize(
    ("config", "expect"),
    [
        ({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4}, {"dropout": True}),  # rates 0.1
        (
            {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4}
            | {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
            {"dropout": False},
        ),
        ({"model_type": "gptj", "n_embd": 64, "n_layer": 2, "n_head": 4}, {"dropout": False}),  # rates 0.0
        (
            {"model_type": "phi", "hidden_act": "gelu_new", "resid_pdrop": 0.1},
            {"dropout": True, "qk_norm": False},
        ),  # Phi-2's config
        (
            {"model_type": "phi", "hidden_act": "gelu_new", "qk_layernorm": True},
            {"qk_norm": True, "dropout": False},
        ),
        ({"model_type": "gpt_neox", "hidden_act": "gelu", "hidden_dropout": 0.1}, {"dropout": True}),
        ({"model_type": "phi3", "original_max_position_embeddings": 4096}, {"seq_length": 4096}),
        (
            {
                "model_type": "qwen2_moe",
                "num_experts": 4,
                "num_experts_per_tok": 1,
                "moe_intermediate_size": 8,
            }
            | {"qkv_bias": False},
            {"qkv_bias": False},
        ),
        (
            {"model_type": "gemma2", "sliding_window": 8}
            | {
                "layer_types": [
                    "sliding_attention",
                    "sliding_attention",
                    "sliding_attention",
                    "full_attention",
                ]
            },
            {"sliding_window_pattern": 4, "qk_norm": False},
        ),
        ({"model_type": "gemma2", "sliding_window": 8}, {"sliding_window_pattern": 2}),
        ({"model_type": "qwen3", "layer_types": ["full_attention"] * 4}, {"sliding_window": 0}),
    ],
)
def test_keys_that_change_the_cost_are_read(config: dict[str, object], expect: dict[str, object]) -> None:
    cfg = {**BASE, **config}
    if config["model_type"] in ("gpt2", "gptj"):
        cfg = {
            k: v
            for k, v in cfg.items()
            if k not in ("hidden_size", "num_attention_heads", "num_hidden_layers")
        }
    if config["model_type"] == "phi3":
        cfg["max_position_embeddings"] = 131072
    m = model_from_hf_dict(cfg, "cfg.json")
    assert {k: getattr(m, k) for k in expect} == expect


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"model_type": "qwen2", "layer_types": ["sliding_attention"] * 4}, "key 'layer_types'"),
        (
            {"model_type": "gemma3_text", "use_bidirectional_attention": True},
            "key 'use_bidirectional_attention'",
        ),
        (
            {
                "model_type": "llama4_text",
                "num_local_experts": 2,
                "num_experts_per_tok": 1,
                "intermediate_size": 32,
            }
            | {"attention_chunk_size": 8, "layer_types": ["full_attention"] * 4},
            "key 'layer_types' = '\\[...\\]' of model_type 'llama4_text' is not modelled",
        ),
        ({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "resid_pdrop": 2}, "dropout rate"),
        (
            {"model_type": "mistral", "attention_bias": True},
            "key 'attention_bias' = True of model_type 'mistral'",
        ),
        ({"model_type": "deepseek_v3", "sliding_window": 4096}, "key 'sliding_window'"),
    ],
)
def test_values_and_keys_that_would_change_the_cost_unseen_are_refused(
    config: dict[str, object], needle: str
) -> None:
    cfg = {**BASE, **config}
    if config["model_type"] == "gpt2":
        cfg = {
            k: v
            for k, v in cfg.items()
            if k not in ("hidden_size", "num_attention_heads", "num_hidden_layers")
        }
    with pytest.raises(InputError, match=needle) as err:
        model_from_hf_dict(cfg, "cfg.json")
    assert "\n" not in str(err.value)


def test_llama4_layer_types_that_agree_with_the_rope_layers_are_accepted() -> None:
    cfg = {
        **BASE,
        "model_type": "llama4_text",
        "num_local_experts": 2,
        "num_experts_per_tok": 1,
        "intermediate_size": 32,
    }
    cfg |= {"attention_chunk_size": 8, "no_rope_layer_interval": 2}
    cfg["layer_types"] = ["chunked_attention", "full_attention"] * 2
    m = model_from_hf_dict(cfg, "cfg.json")
    assert (m.sliding_window, m.sliding_window_pattern) == (8, 2)
