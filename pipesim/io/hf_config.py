"""Hugging Face ``config.json`` -> :class:`pipesim.specs.model.ModelSpec`, one reader per ``model_type``.

Families read (the Transformers configuration classes of the same name define each key): ``llama``,
``mistral``, ``mixtral``, ``qwen2``, ``qwen2_moe``, ``qwen3``, ``qwen3_moe``, ``deepseek_v2``, ``deepseek_v3``,
``gemma2``, ``gemma3`` / ``gemma3_text``, ``phi3``, ``phimoe`` (Phi-3.5-MoE), ``phi`` (Phi-2), ``gpt2``,
``gpt_neox``, ``gptj``, ``llama4`` / ``llama4_text`` (a multimodal config's ``text_config`` is read). A config
without ``model_type`` is read as Llama-style (or GPT-2-style when it has ``n_embd``).

Every key that changes FLOPs, parameters or memory is modelled: shapes, GQA, a decoupled ``head_dim``, the
biases each family's modelling code creates (Qwen2: Q/K/V; GPT-NeoX and Phi-2: every linear layer; GPT-J: MLP
and output layer), QK-norm (Qwen3, Gemma 3), the MLP kind (``hidden_act`` / ``hidden_activation``: SiLU ->
SwiGLU, GeLU-tanh -> GeGLU for Gemma, GeLU MLPs for GPT-2/NeoX/J/Phi-2), LayerNorm or RMSNorm, parallel blocks
(``use_parallel_residual``, GPT-J, Phi-2), sliding windows (Mistral / Phi-3 ``sliding_window``; Gemma 2's
alternation; Gemma 3's ``sliding_window_pattern`` / ``layer_types``; Llama 4's chunked attention, counted as a
window of ``attention_chunk_size`` keys on its RoPE layers), experts (``num_local_experts`` / ``num_experts`` /
``n_routed_experts``, ``num_experts_per_tok``, ``moe_intermediate_size``, shared experts, ``first_k_dense_replace``,
``moe_layer_freq`` / ``decoder_sparse_step`` / ``interleave_moe_layer_step``), multi-head latent attention and
DeepSeek-V3's ``num_nextn_predict_layers``. A key with a value the model does not represent (an irregular
``mlp_only_layers`` list, Qwen's ``use_sliding_window`` with ``max_window_layers``, an irregular ``layer_types``)
is refused in one line naming the key and the model type. Dropout rates set pipesim's dropout switch (GPT-2,
GPT-J, GPT-NeoX, Phi-2, Phi-3); Qwen2-MoE's ``qkv_bias`` and Phi-2's ``qk_layernorm`` are read.

Which keys a config may hold is an explicit allow-list per ``model_type`` (:mod:`pipesim.io.hf_keys`): the keys
the family's reader reads, and keys known not to change FLOPs, parameters or memory, each with its reason
(token ids, RoPE bases and scaling, norm epsilons, initialisation, routing losses and scores, soft-capping,
dtype and other run settings, generation defaults; a multimodal config's ``vision_config``: the text decoder is
what pipesim times). Any other key (``num_experts`` in a Llama config, ``sliding_window`` where the family has
none, a misspelt key) is refused in one line naming the file and the key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipesim.errors import InputError
from pipesim.io.hf_keys import check_keys, check_wrapper_keys
from pipesim.io.hf_keys import dropout_on as _dropout
from pipesim.io.hf_keys import int0 as _int0
from pipesim.io.hf_keys import period as _period
from pipesim.io.hf_keys import refuse as _refuse
from pipesim.io.values import read_text, req_bool, req_int, req_str
from pipesim.specs.model import ModelSpec

__all__ = ["load_hf_config", "model_from_hf_dict", "HF_FAMILIES"]

Config = Mapping[str, Any]


def _seq(src: str, cfg: Config, default: int = 2048) -> int:
    """Pre-training length: ``rope_scaling.original_max_position_embeddings`` when the context was extended,
    else ``max_position_embeddings``."""
    seq = req_int(src, cfg, "max_position_embeddings", default)
    if cfg.get("original_max_position_embeddings"):  # Phi-3's long-context configs keep it at the top level
        seq = req_int(src, cfg, "original_max_position_embeddings")
    scaling = cfg.get("rope_scaling")
    if isinstance(scaling, Mapping) and scaling.get("original_max_position_embeddings"):
        seq = req_int(src, scaling, "original_max_position_embeddings")
    return seq


def _all_full(src: str, mtype: str, cfg: Config) -> None:
    """Qwen's ``layer_types``: every layer global (sliding layers need use_sliding_window, refused)."""
    types = cfg.get("layer_types")
    if types is not None and (not isinstance(types, list) or any(t != "full_attention" for t in types)):
        raise _refuse(src, mtype, "layer_types", "[...]", "only every layer full_attention")


def _activation(src: str, mtype: str, cfg: Config, key: str, default: str, gated: bool) -> str:
    act = req_str(src, cfg, key, default)
    if act in ("silu", "swish") and gated:
        return "swiglu"
    if "gelu" in act:
        return "geglu" if gated else "gelu"
    if act == "relu2" and not gated:
        return "squared_relu"
    raise _refuse(src, mtype, key, act, "supported: silu (gated), gelu variants")


def _base(src: str, mtype: str, cfg: Config, label: str, *, tied: bool, gated: bool = True) -> dict[str, Any]:
    """The keys every Llama-style config shares."""
    hidden = req_int(src, cfg, "hidden_size")
    heads = req_int(src, cfg, "num_attention_heads")
    head_dim = _int0(src, cfg, "head_dim")
    if head_dim == 0 and cfg.get("head_dim") is not None:  # absent or null: hidden / heads; 0 is no width
        raise InputError(f"{src}: key 'head_dim' = 0 must be a positive integer (or absent: hidden / heads)")
    act_key = "hidden_activation" if cfg.get("hidden_activation") else "hidden_act"
    fields: dict[str, Any] = dict(
        name=label,
        num_layers=req_int(src, cfg, "num_hidden_layers"),
        hidden_size=hidden,
        num_attention_heads=heads,
        vocab_size=req_int(src, cfg, "vocab_size"),
        seq_length=_seq(src, cfg),
        ffn_hidden_size=req_int(src, cfg, "intermediate_size", 4 * hidden),
        num_kv_heads=req_int(src, cfg, "num_key_value_heads", heads),
        activation=_activation(src, mtype, cfg, act_key, "silu", gated),
        norm="rmsnorm",
        linear_bias=False,
        tied_embeddings=req_bool(src, cfg, "tie_word_embeddings", tied),
        learned_positions=False,
        dropout=False,
        kv_channels=head_dim if head_dim and head_dim * heads != hidden else 0,
        source=src,
    )
    if req_bool(src, cfg, "attention_bias", False):  # Llama / Mistral / Qwen3: Q, K, V and output biases
        fields.update(qkv_bias=True, proj_bias=True)
    if req_bool(src, cfg, "mlp_bias", False):
        fields["mlp_bias"] = True
    window = _int0(src, cfg, "sliding_window")
    if window and req_bool(src, cfg, "use_sliding_window", True):
        fields["sliding_window"] = window
    return fields


def _no_qwen_window(src: str, mtype: str, cfg: Config) -> None:
    if cfg.get("use_sliding_window"):
        raise _refuse(src, mtype, "use_sliding_window", True, "Qwen's max_window_layers split")
    _all_full(src, mtype, cfg)


def _qwen_moe(src: str, mtype: str, cfg: Config, f: dict[str, Any]) -> None:
    only = cfg.get("mlp_only_layers") or []
    if only:
        raise _refuse(src, mtype, "mlp_only_layers", only, "only a uniform decoder_sparse_step is modelled")
    f.update(
        num_experts=req_int(src, cfg, "num_experts"),
        moe_top_k=req_int(src, cfg, "num_experts_per_tok"),
        moe_ffn_hidden_size=req_int(src, cfg, "moe_intermediate_size"),
        moe_layer_freq=req_int(src, cfg, "decoder_sparse_step", 1),
    )


def _llama(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    return _base(src, mtype, cfg, label, tied=False)


def _phi3(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    f = _base(src, mtype, cfg, label, tied=False)
    f["dropout"] = _dropout(src, cfg, ("resid_pdrop", "embd_pdrop", "attention_dropout"), 0.0)
    return f


def _mixtral(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    f = _base(src, mtype, cfg, label, tied=False)
    f.update(
        num_experts=req_int(src, cfg, "num_local_experts"), moe_top_k=req_int(src, cfg, "num_experts_per_tok")
    )
    return f


def _phimoe(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    f = _mixtral(src, mtype, cfg, label)
    f["norm"] = "layernorm"  # PhiMoE's nn.LayerNorm (weight and bias)
    f["output_bias"] = req_bool(src, cfg, "lm_head_bias", False)
    return f


def _qwen2(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    _no_qwen_window(src, mtype, cfg)
    f = _base(src, mtype, cfg, label, tied=False)
    f.update(qkv_bias=True, sliding_window=0)  # Qwen2's Q, K, V projections always have biases
    if mtype == "qwen2_moe":
        f["qkv_bias"] = req_bool(src, cfg, "qkv_bias", True)
        _qwen_moe(src, mtype, cfg, f)
        shared = _int0(src, cfg, "shared_expert_intermediate_size")
        f.update(shared_expert_ffn_hidden_size=shared, shared_expert_gate=shared > 0)
    return f


def _qwen3(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    _no_qwen_window(src, mtype, cfg)
    f = _base(src, mtype, cfg, label, tied=False)
    f.update(qk_norm=True, sliding_window=0)
    if mtype == "qwen3_moe":
        _qwen_moe(src, mtype, cfg, f)
    return f


# DeepSeek's router kinds: plain top-k, V2's group-limited greedy (device-limited routing), V3's
# auxiliary-loss-free top-k over the best groups (node-limited routing).
_TOPK_METHODS = ("greedy", "group_limited_greedy", "noaux_tc")


def _deepseek(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    f = _base(src, mtype, cfg, label, tied=False)
    f.update(
        kv_channels=0,
        q_lora_rank=_int0(src, cfg, "q_lora_rank"),
        kv_lora_rank=req_int(src, cfg, "kv_lora_rank"),
        qk_nope_head_dim=req_int(src, cfg, "qk_nope_head_dim"),
        qk_rope_head_dim=req_int(src, cfg, "qk_rope_head_dim"),
        v_head_dim=req_int(src, cfg, "v_head_dim"),
    )
    experts = _int0(src, cfg, "n_routed_experts")
    if experts:
        moe_w = req_int(src, cfg, "moe_intermediate_size")
        f.update(
            num_experts=experts,
            moe_top_k=req_int(src, cfg, "num_experts_per_tok"),
            moe_ffn_hidden_size=moe_w,
            shared_expert_ffn_hidden_size=_int0(src, cfg, "n_shared_experts") * moe_w,
            first_k_dense_layers=_int0(src, cfg, "first_k_dense_replace"),
            moe_layer_freq=req_int(src, cfg, "moe_layer_freq", 1),
        )
        method = cfg.get("topk_method", "greedy")
        if method not in _TOPK_METHODS:
            raise _refuse(src, mtype, "topk_method", method, f"known: {', '.join(_TOPK_METHODS)}")
        if method != "greedy":  # group-limited: the best topk_group of n_group expert groups
            f.update(
                moe_router_num_groups=req_int(src, cfg, "n_group"),
                moe_router_group_topk=req_int(src, cfg, "topk_group"),
            )
    f["mtp_layers"] = _int0(src, cfg, "num_nextn_predict_layers")
    return f


def _gemma(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    f = _base(src, mtype, cfg, label, tied=True)
    f["norms_per_layer"] = 4  # pre- and post-norms around attention and MLP
    if mtype == "gemma2" and "layer_types" not in cfg:
        f["sliding_window_pattern"] = 2 if f.get("sliding_window") else 0  # even layers local, odd global
    else:  # Gemma 3: QK-norm; every sliding_window_pattern-th layer global (or as layer_types says)
        f["qk_norm"] = mtype != "gemma2"
        if "layer_types" in cfg:
            types = cfg["layer_types"]
            odd = [t for t in (types if isinstance(types, list) else [types]) if t not in _LAYER_TYPES]
            if odd:
                raise _refuse(src, mtype, "layer_types", odd[0], f"known: {', '.join(_LAYER_TYPES)}")
            flags = [t == "sliding_attention" for t in types]
            f["sliding_window_pattern"] = _period(src, mtype, "layer_types", flags, f["num_layers"])
        else:
            f["sliding_window_pattern"] = req_int(src, cfg, "sliding_window_pattern", 6)
        if f["sliding_window_pattern"] == 1:
            f.update(sliding_window=0, sliding_window_pattern=0)
    return f


_LAYER_TYPES = ("sliding_attention", "full_attention")


def _llama4(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    f = _base(src, mtype, cfg, label, tied=False)
    layers = f["num_layers"]
    step = req_int(src, cfg, "interleave_moe_layer_step", 1)
    moe_layers = cfg.get("moe_layers")
    if moe_layers is not None and list(moe_layers) != list(range(step - 1, layers, step)):
        raise _refuse(
            src, mtype, "moe_layers", "[...]", f"only every {step}-th layer (interleave_moe_layer_step)"
        )
    f.update(
        ffn_hidden_size=req_int(src, cfg, "intermediate_size_mlp", f["ffn_hidden_size"]),
        num_experts=req_int(src, cfg, "num_local_experts"),
        moe_top_k=req_int(src, cfg, "num_experts_per_tok"),
        moe_ffn_hidden_size=req_int(src, cfg, "intermediate_size"),
        shared_expert_ffn_hidden_size=req_int(
            src, cfg, "intermediate_size"
        ),  # one shared expert per MoE layer
        moe_layer_freq=step,
    )
    chunk = _int0(src, cfg, "attention_chunk_size")
    if chunk:  # chunked attention on the RoPE layers; every no_rope_layer_interval-th layer attends globally
        rope = cfg.get("no_rope_layers")
        interval = req_int(src, cfg, "no_rope_layer_interval", 4)
        period = _period(src, mtype, "no_rope_layers", rope, layers) if rope else interval
        types = cfg.get("layer_types")
        if types is not None:  # Transformers derives it from no_rope_layers: it must agree
            ok = isinstance(types, list) and len(types) == layers
            if not ok or types != [
                ("chunked" if (i + 1) % period else "full") + "_attention" for i in range(layers)
            ]:
                raise _refuse(
                    src, mtype, "layer_types", "[...]", f"only every {period}-th layer full_attention"
                )
        f.update(sliding_window=chunk, sliding_window_pattern=period if period > 1 else 0)
    return f


def _gpt2(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    hidden = req_int(src, cfg, "n_embd")
    act = req_str(src, cfg, "activation_function", "gelu_new")
    if "gelu" not in act:
        raise _refuse(src, mtype, "activation_function", act, "supported: gelu, gelu_new")
    f: dict[str, Any] = dict(
        name=label,
        num_layers=req_int(src, cfg, "n_layer"),
        hidden_size=hidden,
        num_attention_heads=req_int(src, cfg, "n_head"),
        vocab_size=req_int(src, cfg, "vocab_size"),
        seq_length=req_int(src, cfg, "n_positions", req_int(src, cfg, "n_ctx", 1024)),
        ffn_hidden_size=req_int(src, cfg, "n_inner", 4 * hidden),
        num_kv_heads=req_int(src, cfg, "n_head"),
        tied_embeddings=req_bool(src, cfg, "tie_word_embeddings", mtype == "gpt2"),
        # GPT2Config's rates default to 0.1, GPTJConfig's to 0.0
        dropout=_dropout(
            src, cfg, ("resid_pdrop", "embd_pdrop", "attn_pdrop"), 0.1 if mtype == "gpt2" else 0.0
        ),
        source=src,
    )
    if (
        mtype == "gptj"
    ):  # GPT-J: no attention biases, biased MLP and output layer, one LayerNorm, parallel block
        f.update(
            linear_bias=False,
            mlp_bias=True,
            output_bias=True,
            learned_positions=False,
            norms_per_layer=1,
            parallel_block=True,
        )
    return f


def _neox(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    f = _base(src, mtype, cfg, label, tied=False, gated=False)
    f.update(
        norm="layernorm",
        linear_bias=req_bool(src, cfg, "attention_bias", True),
        parallel_block=req_bool(src, cfg, "use_parallel_residual", True),
        dropout=_dropout(src, cfg, ("attention_dropout", "hidden_dropout"), 0.0),
    )
    return f


def _phi(src: str, mtype: str, cfg: Config, label: str) -> dict[str, Any]:
    f = _base(src, mtype, cfg, label, tied=False, gated=False)
    f.update(norm="layernorm", linear_bias=True, output_bias=True, norms_per_layer=1, parallel_block=True)
    f.update(
        qk_norm=req_bool(src, cfg, "qk_layernorm", False),  # LayerNorms over each query and key head
        dropout=_dropout(src, cfg, ("resid_pdrop", "embd_pdrop", "attention_dropout"), 0.0),
    )
    return f


HF_FAMILIES: dict[str, Callable[[str, str, Config, str], dict[str, Any]]] = {
    "llama": _llama,
    "mistral": _llama,
    "phi3": _phi3,
    "mixtral": _mixtral,
    "phimoe": _phimoe,
    "qwen2": _qwen2,
    "qwen2_moe": _qwen2,
    "qwen3": _qwen3,
    "qwen3_moe": _qwen3,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "gemma2": _gemma,
    "gemma3_text": _gemma,
    "llama4_text": _llama4,
    "gpt2": _gpt2,
    "gptj": _gpt2,
    "gpt_neox": _neox,
    "phi": _phi,
}
_WRAPPERS = {"llama4": "llama4_text", "gemma3": "gemma3_text"}  # multimodal configs: read their text_config


def model_from_hf_dict(config: Mapping[str, Any], src: str, name: str | None = None) -> ModelSpec:
    """A :class:`ModelSpec` from a parsed Hugging Face config (``src`` names the file in errors)."""
    if not isinstance(config, Mapping):
        raise InputError(f"{src}: expected a JSON object at the top level")
    path = Path(src)
    stem = path.parent.name if path.name == "config.json" and path.parent.name else path.stem
    label = name or str(config.get("_name_or_path") or stem)
    mtype = config.get("model_type")
    if mtype in _WRAPPERS:
        check_wrapper_keys(src, str(mtype), config)
        text = config.get("text_config")
        if not isinstance(text, Mapping):
            raise InputError(f"{src}: model_type {mtype!r} needs a 'text_config' object")
        if "tie_word_embeddings" in config and "tie_word_embeddings" not in text:  # Llama 4 keeps it on top
            text = {**text, "tie_word_embeddings": config["tie_word_embeddings"]}
        config, mtype = text, text.get("model_type") or _WRAPPERS[str(mtype)]
    assumed = mtype is None
    if mtype is None:
        mtype = "gpt2" if "n_embd" in config else "llama"
    if config.get("is_encoder_decoder"):
        raise _refuse(src, str(mtype), "is_encoder_decoder", True, "decoder-only transformers only")
    reader = HF_FAMILIES.get(str(mtype))
    if reader is None:
        raise InputError(f"{src}: model_type {mtype!r} is not supported; supported: {', '.join(HF_FAMILIES)}")
    try:
        check_keys(src, str(mtype), config)
        fields = reader(src, str(mtype), config, label)
    except InputError as exc:
        if not assumed:
            raise
        raise InputError(
            f"{exc}; the file has no 'model_type', so it was read as {mtype}-style: add its model_type "
            f"(supported: {', '.join(HF_FAMILIES)})"
        ) from None
    try:
        return ModelSpec(**fields)
    except InputError as exc:
        raise InputError(f"{src}: {exc}") from None


def _not_a_number(path: Path, name: str) -> float:
    raise InputError(f"{path}: not valid JSON ({name} is not a JSON number; every number must be finite)")


def load_hf_config(path: str | Path) -> ModelSpec:
    """Read a Hugging Face ``config.json`` into a :class:`ModelSpec` (families in the module docstring)."""
    p = Path(path)
    text = read_text(p, "model config")
    try:
        config = json.loads(text, parse_constant=lambda name: _not_a_number(p, name))
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise InputError(f"{p}: not valid JSON for a model config (nested too deeply to read)") from None
    return model_from_hf_dict(config, str(p))
