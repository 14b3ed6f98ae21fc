"""Transformer model shapes (:class:`ModelSpec`) and the presets a user can name with ``--model``.

A model is the handful of integers that fix every GEMM, every activation and every parameter of a
decoder-only transformer: layers, hidden size, heads (and key/value heads for grouped-query attention), the
MLP width, vocabulary and sequence length, plus the block's flavour (GeLU MLP with LayerNorm and biases, as in
GPT / Megatron-LM; or SwiGLU MLP with RMSNorm and no biases, as in Llama).

Sources of the presets:

* ``gpt-*``: Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
  Megatron-LM", SC21 (arXiv:2104.04473), Table 1 (heads, hidden, layers; V = 51,200, s = 2048);
* ``gpt3-175b``: SC21 Table 2 / Section 5.3.2 (96 layers, 96 heads, h = 12288); ``megatron-22b``,
  ``mt-nlg-530b``, ``megatron-1t``: Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
  Models", MLSys 2023 (arXiv:2205.05198), Table 3;
* ``llama2-*`` and ``llama3-*``: the Hugging Face ``config.json`` of meta-llama/Llama-2-{7,13,70}b-hf and
  meta-llama/Meta-Llama-3-{8,70}B / Llama-3.1-405B, as quoted in public repositories (secondary sources; e.g.
  the Llama 3.1 model-info tables of oumi-ai/oumi ``configs/recipes/llama3_1/README.md`` and the
  Llama-2-70b-hf config.json copies with ``num_key_value_heads: 8``, ``intermediate_size: 28672``).
  Llama 3.1 405B: h = 16384, ffn = 53248, 126 layers, 128 heads, 8 KV heads, V = 128,256. Sequence length is
  the pre-training length (Llama 2: 4096; Llama 3: 8192, "initially trained with 8192"), not the long-context
  ``max_position_embeddings`` of Llama 3.1.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipesim.errors import InputError

__all__ = ["ModelSpec", "MODEL_PRESETS", "get_model", "model_names", "ACTIVATIONS", "NORMS"]

ACTIVATIONS = ("gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a decoder-only transformer.

    ``ffn_hidden_size`` is the MLP inner width (4h for GPT; for SwiGLU the width of each of the gate and up
    projections). ``num_kv_heads`` < ``num_attention_heads`` means grouped-query attention. ``linear_bias``:
    every linear layer has a bias (GPT) or none (Llama). ``tied_embeddings``: the output layer reuses the
    input embedding. ``learned_positions``: a learned position-embedding table of ``seq_length`` rows (GPT);
    otherwise rotary embeddings without parameters. ``dropout``: hidden and attention dropout are applied
    (GPT-style training, Korthikanti eq. 1 counts their masks); Llama trains without dropout.
    """

    name: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    vocab_size: int
    seq_length: int
    ffn_hidden_size: int
    num_kv_heads: int
    activation: str = "gelu"
    norm: str = "layernorm"
    linear_bias: bool = True
    tied_embeddings: bool = True
    learned_positions: bool = True
    dropout: bool = True
    source: str = ""

    def __post_init__(self) -> None:
        for key in (
            "num_layers",
            "hidden_size",
            "num_attention_heads",
            "vocab_size",
            "seq_length",
            "ffn_hidden_size",
            "num_kv_heads",
        ):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"model {self.name!r}: {key}={value!r} must be a positive integer")
        if self.hidden_size % self.num_attention_heads:
            raise InputError(
                f"model {self.name!r}: hidden_size={self.hidden_size} is not divisible by "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_kv_heads:
            raise InputError(
                f"model {self.name!r}: num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_kv_heads={self.num_kv_heads}"
            )
        if self.activation not in ACTIVATIONS:
            raise InputError(
                f"model {self.name!r}: activation={self.activation!r}; valid: {', '.join(ACTIVATIONS)}"
            )
        if self.norm not in NORMS:
            raise InputError(f"model {self.name!r}: norm={self.norm!r}; valid: {', '.join(NORMS)}")

    # ----------------------------------------------------------------- derived shapes
    @property
    def head_dim(self) -> int:
        """Per-head width h / a."""
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_size(self) -> int:
        """Width of the key (and of the value) projection: num_kv_heads * head_dim (= h without GQA)."""
        return self.num_kv_heads * self.head_dim

    @property
    def gated_mlp(self) -> bool:
        """True for SwiGLU (three MLP matrices), False for GeLU (two)."""
        return self.activation == "swiglu"

    @property
    def mlp_in_width(self) -> int:
        """Output width of the first MLP GEMM: 2 * ffn for SwiGLU (gate and up fused), ffn for GeLU."""
        return (2 if self.gated_mlp else 1) * self.ffn_hidden_size

    # ----------------------------------------------------------------- parameter counts
    def layer_matrix_params(self) -> int:
        """Weights of the GEMMs of one layer: QKV h*(h + 2 kv), projection h*h, MLP (2 or 3) * h * ffn."""
        h = self.hidden_size
        attn = h * (h + 2 * self.kv_size) + h * h
        mlp = (3 if self.gated_mlp else 2) * h * self.ffn_hidden_size
        return attn + mlp

    def layer_params(self) -> int:
        """All parameters of one transformer layer: GEMM weights, biases and the two norms' scales/shifts.

        For GPT (ffn = 4h, no GQA, biases, LayerNorm) this is 12h^2 + 13h, the per-layer part of SC21 eq. (2)
        (QKV 3h^2 + 3h, projection h^2 + h, MLP 8h^2 + 5h, two LayerNorms 4h).
        """
        h = self.hidden_size
        total = self.layer_matrix_params()
        if self.linear_bias:
            total += (h + 2 * self.kv_size) + h + self.mlp_in_width + h
        total += 2 * self.final_norm_params()
        return total

    def final_norm_params(self) -> int:
        """Parameters of one norm: scale and shift (LayerNorm, 2h) or scale only (RMSNorm, h)."""
        return (2 if self.norm == "layernorm" else 1) * self.hidden_size

    def embedding_params(self) -> int:
        """Input embedding V*h plus the learned position table s*h (GPT) if any."""
        pos = self.seq_length * self.hidden_size if self.learned_positions else 0
        return self.vocab_size * self.hidden_size + pos

    def output_params(self) -> int:
        """Final norm plus, for untied embeddings, the output projection V*h."""
        head = 0 if self.tied_embeddings else self.vocab_size * self.hidden_size
        return self.final_norm_params() + head

    def num_params(self) -> int:
        """Total unique parameters: layers + embeddings + final norm (+ untied output layer).

        For GPT this is SC21 eq. (2), 12lh^2 (1 + 13/(12h) + (V+s)/(12lh)), plus the final LayerNorm's 2h.
        """
        return self.num_layers * self.layer_params() + self.embedding_params() + self.output_params()


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
