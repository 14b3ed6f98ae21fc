"""Which keys of a Hugging Face ``config.json`` pipesim takes, per ``model_type``: the keys its reader reads
(:data:`READS`, each family's architecture keys as the Transformers configuration class of that name defines
them) and the keys known not to change FLOPs, parameters or memory (:data:`NO_COST`, with the reason for each).
Any other key is refused in one line naming the file and the key (:func:`check_keys`): a key pipesim does not
know may change the architecture (``num_experts`` in a dense family, a sliding window where the family has none),
and reading past it would give a silently wrong model.

Some keys are harmless only at some values (:data:`ONLY_WHEN`): pruned heads, cross-attention, Gemma 3's
bidirectional attention, or attention dropout in the families that apply dropout to attention probabilities
alone (pipesim's one dropout switch also times hidden and embedding dropout, which they lack).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipesim.errors import InputError

__all__ = [
    "NO_COST",
    "READS",
    "ONLY_WHEN",
    "WRAPPER_KEYS",
    "check_keys",
    "check_wrapper_keys",
    "dropout_on",
    "int0",
    "period",
    "refuse",
]

_RUN = "a setting of a run, not of the architecture (the command's flags set precision, recompute, attention)"
_TOKENS = "token ids and labels: the vocabulary size is what costs"
_GEN = "a generation default: inference only"
_NUMERICS = "numerics or initialisation: the same operations on the same shapes"
_HEAD = "a task head pipesim does not train (sequence classification / summary)"
_ROUTER = "routing loss, noise or score normalisation: the same router GEMM and expert GEMMs"

# Keys known not to change FLOPs, parameters or memory of a training step, with the reason.
NO_COST: dict[str, str] = {
    **dict.fromkeys(("architectures", "auto_map", "transformers_version", "_commit_hash"), "metadata"),
    **dict.fromkeys(("name_or_path", "model_type", "_name_or_path"), "metadata (names the model)"),
    **dict.fromkeys(
        ("torch_dtype", "dtype", "use_bfloat16", "quantization_config", "gradient_checkpointing"), _RUN
    ),
    **dict.fromkeys(("attn_implementation", "_attn_implementation", "_attn_implementation_autoset"), _RUN),
    **dict.fromkeys(("use_cache", "cache_implementation", "for_llm_compressor", "tf_legacy_loss"), _RUN),
    **dict.fromkeys(("return_dict", "output_hidden_states", "output_attentions", "torchscript"), _RUN),
    **dict.fromkeys(("output_router_logits", "chunk_size_feed_forward", "is_decoder"), _RUN),
    **dict.fromkeys(("tie_encoder_decoder", "ep_size", "pretraining_tp"), _RUN),
    **dict.fromkeys(
        ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id"), _TOKENS
    ),
    **dict.fromkeys(("id2label", "label2id", "num_labels", "problem_type", "finetuning_task"), _TOKENS),
    **dict.fromkeys(("tokenizer_class", "prefix", "task_specific_params"), _TOKENS),
    **dict.fromkeys(
        (
            "max_length",
            "min_length",
            "do_sample",
            "early_stopping",
            "num_beams",
            "num_beam_groups",
            "diversity_penalty",
            "temperature",
            "top_k",
            "top_p",
            "typical_p",
            "repetition_penalty",
            "length_penalty",
            "no_repeat_ngram_size",
            "encoder_no_repeat_ngram_size",
            "bad_words_ids",
            "num_return_sequences",
            "output_scores",
            "return_dict_in_generate",
            "forced_bos_token_id",
            "forced_eos_token_id",
            "remove_invalid_values",
            "exponential_decay_length_penalty",
            "suppress_tokens",
            "begin_suppress_tokens",
        ),  # fmt: skip
        _GEN,
    ),
    **dict.fromkeys(
        (
            "initializer_range",
            "rms_norm_eps",
            "layer_norm_eps",
            "layer_norm_epsilon",
            "query_pre_attn_scalar",
        ),
        _NUMERICS,
    ),
    **dict.fromkeys(
        ("attn_logit_softcapping", "final_logit_softcapping", "scale_attn_weights", "attn_scale"), _NUMERICS
    ),
    **dict.fromkeys(
        ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "attn_temperature_tuning"), _NUMERICS
    ),
    "floor_scale": _NUMERICS,
    # Positional encodings: RoPE rotates query and key elements in place, at any base, fraction or scaling.
    **dict.fromkeys(
        ("rope_theta", "rope_local_base_freq", "rope_interleave", "partial_rotary_factor", "rotary_pct"),
        "positional encoding only: RoPE's base, fraction or layout change no FLOPs or bytes",
    ),
    **dict.fromkeys(("rotary_emb_base", "rotary_dim"), "positional encoding only (RoPE base / width)"),
    "rope_scaling": "positional encoding only (RoPE scaling: YaRN, linear, dynamic, llama3, longrope change no "
    "FLOPs or bytes); its original_max_position_embeddings is read as the pre-training length",
    "max_window_layers": "Qwen: only with use_sliding_window, which is refused",
    **dict.fromkeys(
        (
            "router_aux_loss_coef",
            "router_jitter_noise",
            "input_jitter_noise",
            "aux_loss_alpha",
            "seq_aux",
            "norm_topk_prob",
            "routed_scaling_factor",
            "scoring_func",
        ),  # fmt: skip
        _ROUTER,
    ),
    **dict.fromkeys(
        ("classifier_dropout", "summary_first_dropout", "summary_type", "summary_use_proj"), _HEAD
    ),
    **dict.fromkeys(("summary_activation", "summary_proj_to_labels"), _HEAD),
    "use_qk_norm": "Llama 4's parameter-free L2 norm of queries and keys: no weights, one elementwise pass "
    "over q and k not timed (a few microseconds a layer)",
    # Harmless only at their default (ONLY_WHEN checks the value).
    "pruned_heads": "no pruned heads (checked)",
    "add_cross_attention": "no cross-attention (checked)",
    "cross_attention_hidden_size": "no cross-attention (checked)",
    "is_encoder_decoder": "decoder-only (checked)",
}

_CORE = frozenset(
    {
        "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
        "head_dim", "hidden_act", "vocab_size", "max_position_embeddings", "tie_word_embeddings",
    }
)  # fmt: skip
_QWEN = _CORE | {
    "sliding_window",
    "use_sliding_window",
    "max_window_layers",
    "layer_types",
    "attention_dropout",
}
_QWEN_MOE = {
    "num_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
    "decoder_sparse_step",
    "mlp_only_layers",
}
_DEEPSEEK = (_CORE - {"head_dim"}) | {
    "attention_bias", "attention_dropout", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
    "v_head_dim", "n_routed_experts", "moe_intermediate_size", "num_experts_per_tok", "n_shared_experts",
    "first_k_dense_replace", "moe_layer_freq", "topk_method", "n_group", "topk_group", "num_nextn_predict_layers",
}  # fmt: skip
_GEMMA = _CORE | {"hidden_activation", "attention_bias", "attention_dropout", "sliding_window", "layer_types"}
_GPT2 = frozenset(
    {
        "n_embd", "n_layer", "n_head", "n_inner", "n_positions", "n_ctx", "vocab_size", "activation_function",
        "tie_word_embeddings", "resid_pdrop", "embd_pdrop", "attn_pdrop",
    }
)  # fmt: skip

# The keys each family's reader reads (pipesim.io.hf_config), as its Transformers configuration class names
# them: a key another family reads (num_experts for llama, sliding_window for llama or DeepSeek, whose
# modelling code ignores it) is not in the set.
READS: dict[str, frozenset[str]] = {
    "llama": _CORE | {"attention_bias", "mlp_bias", "attention_dropout"},
    "mistral": _CORE | {"sliding_window", "attention_dropout"},
    "phi3": _CORE
    | {"sliding_window", "attention_dropout", "resid_pdrop", "embd_pdrop"}
    | {"original_max_position_embeddings"},
    "mixtral": _CORE | {"sliding_window", "attention_dropout", "num_local_experts", "num_experts_per_tok"},
    "phimoe": _CORE
    | {"sliding_window", "attention_dropout", "num_local_experts", "num_experts_per_tok"}
    | {"attention_bias", "lm_head_bias"},
    "qwen2": _QWEN,
    "qwen2_moe": _QWEN | _QWEN_MOE | {"shared_expert_intermediate_size", "qkv_bias"},
    "qwen3": _QWEN | {"attention_bias"},
    "qwen3_moe": _QWEN | {"attention_bias"} | _QWEN_MOE,
    "deepseek_v2": _DEEPSEEK | {"mlp_bias"},
    "deepseek_v3": _DEEPSEEK,
    "gemma2": _GEMMA,
    "gemma3_text": _GEMMA | {"sliding_window_pattern", "use_bidirectional_attention"},
    "llama4_text": _CORE
    | {"attention_bias", "attention_dropout", "intermediate_size_mlp", "num_local_experts"}
    | {"num_experts_per_tok", "moe_layers", "interleave_moe_layer_step", "attention_chunk_size"}
    | {"no_rope_layers", "no_rope_layer_interval", "layer_types"},
    "gpt2": _GPT2,
    "gptj": _GPT2,
    "gpt_neox": (_CORE - {"head_dim"})
    | {"attention_bias", "use_parallel_residual"}
    | {"attention_dropout", "hidden_dropout"},
    "phi": _CORE | {"resid_pdrop", "embd_pdrop", "attention_dropout", "qk_layernorm"},
}

# A multimodal config's top level (its text_config is read as the model): the vision tower is not simulated,
# pipesim times the text decoder (the model presets say so too).
WRAPPER_KEYS = frozenset(
    {
        "text_config", "vision_config", "boi_token_index", "eoi_token_index", "image_token_index",
        "mm_tokens_per_image", "tie_word_embeddings",
    }
)  # fmt: skip

# Families whose modelling code drops out attention probabilities only (no hidden or embedding dropout).
_ATTENTION_DROPOUT_ONLY = frozenset(
    {
        "llama", "mistral", "mixtral", "phimoe", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "deepseek_v2",
        "deepseek_v3", "gemma2", "gemma3_text", "llama4_text",
    }
)  # fmt: skip


def _zero(v: object) -> bool:
    return v is None or v == 0


# key -> (whether a value is harmless, what is accepted), for keys harmless only at some values.
ONLY_WHEN: dict[str, tuple[Callable[[object], bool], str]] = {
    "pruned_heads": (lambda v: not v, "no pruned heads ({} or null)"),
    "add_cross_attention": (lambda v: not v, "false: decoder-only, no cross-attention"),
    "cross_attention_hidden_size": (lambda v: v is None, "null: no cross-attention"),
    "use_bidirectional_attention": (lambda v: not v, "false: causal attention"),
    "rope_scaling": (lambda v: v is None or isinstance(v, Mapping), "an object (RoPE scaling) or null"),
}


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_keys(src: str, mtype: str, cfg: Mapping[str, Any], reads: frozenset[str] | None = None) -> None:
    """Refuse, in one line naming ``src`` and the key, the first key of ``cfg`` that the ``mtype`` reader does
    not read (:data:`READS`) and that is not known to leave the cost unchanged (:data:`NO_COST`), and a known
    key at a value that would change the cost (:data:`ONLY_WHEN`, attention dropout where pipesim cannot time
    it alone)."""
    read = READS[mtype] if reads is None else reads
    for key, value in cfg.items():
        if key not in read and key not in NO_COST:
            raise InputError(
                f"{src}: key {key!r} = {_shown(value)} of model_type {mtype!r} is not modelled: pipesim does not "
                f"read it for this family and does not know it to leave FLOPs, parameters and memory unchanged "
                f"(keys read: {', '.join(sorted(read))})"
            )
        rule = ONLY_WHEN.get(key)
        if rule is not None and not rule[0](value):
            raise InputError(
                f"{src}: key {key!r} = {_shown(value)} of model_type {mtype!r} is not modelled (accepted: {rule[1]})"
            )
    if mtype in _ATTENTION_DROPOUT_ONLY and not _zero(cfg.get("attention_dropout")):
        raise InputError(
            f"{src}: key 'attention_dropout' = {_shown(cfg['attention_dropout'])} of model_type {mtype!r} is not "
            "modelled (pipesim's dropout also drops hidden states and embeddings, which this family does not; "
            "accepted: 0)"
        )


def check_wrapper_keys(src: str, mtype: str, cfg: Mapping[str, Any]) -> None:
    """:func:`check_keys` for the top level of a multimodal config (``llama4``, ``gemma3``)."""
    check_keys(src, mtype, cfg, WRAPPER_KEYS)


def refuse(src: str, mtype: str, key: str, value: object, why: str) -> InputError:
    """The one-line error for ``key`` = ``value`` of ``mtype`` that pipesim does not model (``why``: what is)."""
    return InputError(f"{src}: key {key!r} = {_shown(value)} of model_type {mtype!r} is not modelled ({why})")


def int0(src: str, cfg: Mapping[str, Any], key: str) -> int:
    """A non-negative integer key, 0 when absent or null."""
    value = cfg.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{src}: key {key!r} = {value!r} must be a non-negative integer")
    return value


def dropout_on(src: str, cfg: Mapping[str, Any], keys: tuple[str, ...], default: float) -> bool:
    """Whether the model trains with dropout: any of the rates ``keys`` (each ``default`` when absent) above 0.
    pipesim has one dropout switch (hidden states, attention probabilities, embeddings), so a family that
    drops out some of them is timed as dropping all: a few elementwise kernels a layer."""
    on = False
    for key in keys:
        value = cfg.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InputError(f"{src}: key {key!r} = {value!r} must be a dropout rate in [0, 1]")
        on = on or value > 0
    return on


def period(src: str, mtype: str, key: str, flags: object, layers: int) -> int:
    """The period p of a per-layer list whose entry i is true iff (i + 1) % p != 0 (every p-th layer special);
    refuses other patterns."""
    if not isinstance(flags, list) or len(flags) != layers:
        raise refuse(src, mtype, key, flags, f"expected a list of {layers} per-layer entries")
    for p in range(1, layers + 1):
        if all(bool(f) == ((i + 1) % p != 0) for i, f in enumerate(flags)):
            return p
    raise refuse(src, mtype, key, "[...]", "only every-p-th-layer patterns are modelled")
