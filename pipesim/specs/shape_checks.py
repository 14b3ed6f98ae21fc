"""The rules a model shape (:class:`pipesim.specs.shape.ModelSpec`) must follow, checked when it is built:
each broken rule is refused in one line naming the field, its value and what is valid."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipesim.errors import InputError, is_count

if TYPE_CHECKING:  # pragma: no cover
    from pipesim.specs.shape import ModelSpec

__all__ = ["check_shape", "ACTIVATIONS", "GATED", "NORMS"]

# MLP kinds: GeLU (GPT), squared ReLU (Nemotron-4, Primer), and the gated GLU variants SwiGLU (Llama) and GeGLU
# (Gemma) of Shazeer, "GLU Variants Improve Transformer" (arXiv:2002.05202): gated MLPs have three matrices.
ACTIVATIONS = ("gelu", "squared_relu", "swiglu", "geglu")
GATED = ("swiglu", "geglu")
NORMS = ("layernorm", "rmsnorm")

_POSITIVE = (
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "vocab_size",
    "seq_length",
    "ffn_hidden_size",
    "num_kv_heads",
)
_NON_NEGATIVE = (
    "kv_channels",
    "num_experts",
    "moe_top_k",
    "moe_ffn_hidden_size",
    "shared_expert_ffn_hidden_size",
    "first_k_dense_layers",
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "sliding_window",
    "sliding_window_pattern",
    "mtp_layers",
    "moe_router_num_groups",
    "moe_router_group_topk",
)


def check_shape(model: ModelSpec) -> None:
    """Raise :class:`InputError` naming the first field of ``model`` that breaks a rule of the shape (positive
    sizes, divisible heads, known activation and norm, consistent mixture-of-experts, MLA and window keys)."""

    def bad(msg: str) -> InputError:
        return InputError(f"model {model.name!r}: {msg}")

    if not isinstance(model.name, str) or not model.name.strip() or not model.name.isprintable():
        raise bad("name must be a non-empty name on one line")
    for key in _POSITIVE:
        value = getattr(model, key)
        if not is_count(value):
            raise bad(f"{key}={value!r} must be a positive integer")
    for key in _NON_NEGATIVE:
        value = getattr(model, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad(f"{key}={value!r} must be a non-negative integer")
    if not model.kv_channels and not model.mla and model.hidden_size % model.num_attention_heads:
        raise bad(
            f"hidden_size={model.hidden_size} is not divisible by num_attention_heads="
            f"{model.num_attention_heads} (give kv_channels for a decoupled head width)"
        )
    if model.num_attention_heads % model.num_kv_heads:
        raise bad(
            f"num_attention_heads={model.num_attention_heads} is not a multiple of "
            f"num_kv_heads={model.num_kv_heads}"
        )
    if model.activation not in ACTIVATIONS:
        raise bad(f"activation={model.activation!r}; valid: {', '.join(ACTIVATIONS)}")
    if model.norm not in NORMS:
        raise bad(f"norm={model.norm!r}; valid: {', '.join(NORMS)}")
    if model.norms_per_layer not in (1, 2, 4):
        raise bad(f"norms_per_layer={model.norms_per_layer!r}; valid: 1, 2, 4")
    if not isinstance(model.moe_layer_freq, int) or model.moe_layer_freq < 1:
        raise bad(f"moe_layer_freq={model.moe_layer_freq!r} must be a positive integer")
    _check_moe(model, bad)
    if model.mla:
        for key in ("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            if getattr(model, key) < 1:
                raise bad(
                    f"kv_lora_rank={model.kv_lora_rank} (MLA) needs {key} >= 1, got {getattr(model, key)}"
                )
    elif model.q_lora_rank:
        raise bad(f"q_lora_rank={model.q_lora_rank} needs kv_lora_rank >= 1 (multi-head latent attention)")
    if model.sliding_window_pattern and not model.sliding_window:
        raise bad(f"sliding_window_pattern={model.sliding_window_pattern} needs sliding_window >= 1")


def _check_moe(model: ModelSpec, make: Callable[[str], InputError]) -> None:
    if not model.num_experts:
        for key in (
            "moe_top_k",
            "moe_ffn_hidden_size",
            "shared_expert_ffn_hidden_size",
            "first_k_dense_layers",
            "moe_router_num_groups",
            "moe_router_group_topk",
        ):
            if getattr(model, key):
                raise make(f"{key}={getattr(model, key)} needs num_experts >= 1")
        if model.moe_capacity_factor is not None:
            raise make("moe_capacity_factor needs num_experts >= 1")
        return
    if not 1 <= model.moe_top_k <= model.num_experts:
        raise make(f"moe_top_k={model.moe_top_k} must be in 1..num_experts={model.num_experts}")
    if model.first_k_dense_layers >= model.num_layers:
        raise make(
            f"first_k_dense_layers={model.first_k_dense_layers} leaves no MoE layer of num_layers={model.num_layers}"
        )
    groups, best = model.moe_router_num_groups, model.moe_router_group_topk
    if groups or best:
        if not groups or model.num_experts % groups:
            raise make(
                f"moe_router_num_groups={groups} must divide num_experts={model.num_experts} "
                f"(with moe_router_group_topk={best})"
            )
        if not 1 <= best <= groups:
            raise make(f"moe_router_group_topk={best} must be in 1..moe_router_num_groups={groups}")
        if model.moe_top_k > best * (model.num_experts // groups):
            raise make(
                f"moe_top_k={model.moe_top_k} exceeds the {best * (model.num_experts // groups)} experts of "
                f"moe_router_group_topk={best} groups"
            )
    cf = model.moe_capacity_factor
    if cf is not None and (isinstance(cf, bool) or not isinstance(cf, (int, float)) or not cf > 0):
        raise make(f"moe_capacity_factor={cf!r} must be a positive number (or absent: dropless)")
