"""The shape of a decoder-only transformer (:class:`ModelSpec`) and its parameter counts.

A model is the handful of integers that fix every GEMM, every activation and every parameter: layers, hidden
size, heads (key/value heads for grouped-query attention, a per-head width that may differ from h / a), the MLP
width and kind, vocabulary and sequence length; optionally mixture-of-experts layers, multi-head latent
attention, sliding-window attention and multi-token-prediction modules.

Shapes follow Megatron-Core's names where it has one (``kv_channels`` for the head width,
``moe_ffn_hidden_size``, ``moe_router_topk``, ``moe_shared_expert_intermediate_size``, ``q_lora_rank``,
``kv_lora_rank``, ``qk_head_dim``, ``qk_pos_emb_head_dim``, ``v_head_dim``, ``mtp_num_layers``). Parameter
counts are those of the Hugging Face checkpoints of the same architectures (each GEMM's weight, its bias if any,
the norms' scales and shifts); the formulas are written out on each method.

Layers need not all be alike: DeepSeek-V2/V3 keep the first ``first_k_dense_layers`` layers dense, Llama 4
alternates dense and MoE layers (``moe_layer_freq``), and Gemma 2/3 alternate sliding-window and global
attention (``sliding_window_pattern``). :meth:`ModelSpec.layer_kinds` lists each layer's :class:`LayerKind`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pipesim.errors import InputError
from pipesim.specs.layer_counts import LayerPattern
from pipesim.specs.shape_checks import ACTIVATIONS, GATED, NORMS, check_shape

__all__ = ["ModelSpec", "LayerKind", "ACTIVATIONS", "GATED", "NORMS"]


@dataclass(frozen=True)
class LayerKind:
    """What distinguishes one layer from another: a mixture-of-experts MLP (``moe``) or a dense one, and
    sliding-window (``sliding``) or global attention."""

    moe: bool = False
    sliding: bool = False

    @property
    def label(self) -> str:
        """Short text: ``moe`` / ``dense``, plus ``+swa`` for sliding-window attention."""
        return ("moe" if self.moe else "dense") + ("+swa" if self.sliding else "")


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a decoder-only transformer.

    Dense part: ``ffn_hidden_size`` is the MLP inner width (4h for GPT; for gated MLPs the width of each of
    the gate and up projections). ``num_kv_heads`` < ``num_attention_heads`` means grouped-query attention.
    ``kv_channels``: per-head width when it is not h / a (Qwen3, Gemma; 0 = h / a). ``linear_bias``: every
    linear layer has a bias (GPT); otherwise ``qkv_bias`` (Qwen2), ``proj_bias`` (the attention output), ``mlp_bias``
    (GPT-J's MLP) and ``output_bias`` (a bias on the output layer: GPT-J, Phi) add them piecemeal. ``qk_norm``: a norm
    over each query and key head (Qwen3, OLMo 2). ``norms_per_layer``: 2 (pre-attention, pre-MLP), 1 for a
    parallel block sharing its norm (GPT-J, Phi-2), 4 for Gemma 2/3's pre- and post-norms.
    ``parallel_block``: attention and MLP read the same input and their outputs are added (GPT-J, GPT-NeoX,
    Phi-2). ``tied_embeddings``: the output layer reuses the input embedding. ``learned_positions``: a
    learned position table of ``seq_length`` rows (GPT); otherwise rotary. ``dropout``: hidden and attention
    dropout are applied (GPT-style training; Llama-style models train without).

    Mixture of experts (``num_experts`` > 0): ``moe_top_k`` routed experts per token, each an MLP of width
    ``moe_ffn_hidden_size`` of the same kind as the dense MLP; shared experts that every token passes through,
    ``shared_expert_ffn_hidden_size`` wide in total (DeepSeek: n_shared x moe width; Qwen2-MoE: its own
    width) with a sigmoid gate of h weights if ``shared_expert_gate`` (Qwen2-MoE); a linear router of h x E
    weights. ``first_k_dense_layers`` leading layers are dense, and after them every ``moe_layer_freq``-th
    layer is MoE (1: all; Llama 4 Maverick: 2, layers 1, 3, 5, ...). ``moe_capacity_factor``: None =
    dropless (every token reaches its experts); otherwise each expert takes at most factor x its fair share
    of tokens and the rest are dropped (GShard / Switch Transformer capacity). Group-limited routing
    (Megatron-Core ``moe_router_num_groups`` / ``moe_router_group_topk``; Hugging Face ``n_group`` /
    ``topk_group``): the experts form ``moe_router_num_groups`` equal groups and each token picks its top-k
    experts inside its best ``moe_router_group_topk`` groups (DeepSeek-V3 report, arXiv:2412.19437, Section
    2.1.2, node-limited routing, M = 4 of 8; DeepSeek-V2's device-limited routing, M = 3); 0 = no limit. It
    leaves FLOPs, parameters and, under the all-to-all dispatcher pipesim times, the expected all-to-all bytes
    unchanged (:mod:`pipesim.cost.moe_ops`).

    Multi-head latent attention (DeepSeek-V2/V3, ``kv_lora_rank`` > 0): queries through a rank-``q_lora_rank``
    bottleneck (0 = a plain projection), keys and values from a shared ``kv_lora_rank`` latent, per-head
    query/key width ``qk_nope_head_dim + qk_rope_head_dim`` and value width ``v_head_dim``.

    ``sliding_window`` > 0: local attention over that many past tokens, on every layer when
    ``sliding_window_pattern`` is 0, otherwise every ``sliding_window_pattern``-th layer is global (Gemma 2: 2;
    Gemma 3: 6). ``mtp_layers``: DeepSeek-V3 multi-token-prediction modules, each one more transformer layer
    of the last layer's kind plus a 2h x h projection and two norms, sharing the embedding and output head.
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
    kv_channels: int = 0
    qkv_bias: bool = False
    proj_bias: bool = False
    mlp_bias: bool = False
    output_bias: bool = False
    qk_norm: bool = False
    norms_per_layer: int = 2
    parallel_block: bool = False
    num_experts: int = 0
    moe_top_k: int = 0
    moe_ffn_hidden_size: int = 0
    shared_expert_ffn_hidden_size: int = 0
    shared_expert_gate: bool = False
    first_k_dense_layers: int = 0
    moe_layer_freq: int = 1
    moe_capacity_factor: float | None = None
    moe_router_num_groups: int = 0
    moe_router_group_topk: int = 0
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    sliding_window: int = 0
    sliding_window_pattern: int = 0
    mtp_layers: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        check_shape(self)

    # ----------------------------------------------------------------- derived shapes
    @property
    def mla(self) -> bool:
        """True for multi-head latent attention (``kv_lora_rank`` > 0)."""
        return self.kv_lora_rank > 0

    @property
    def moe(self) -> bool:
        """True when the model has mixture-of-experts layers."""
        return self.num_experts > 0

    @property
    def head_dim(self) -> int:
        """Per-head width of values and (non-MLA) queries and keys: ``kv_channels`` or h / a; MLA: v_head_dim."""
        if self.mla:
            return self.v_head_dim
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @property
    def qk_head_dim(self) -> int:
        """Per-head width of queries and keys: :attr:`head_dim`, or nope + rope dims with MLA."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim if self.mla else self.head_dim

    @property
    def q_size(self) -> int:
        """Width of all query heads: a x qk_head_dim (= h for GPT and Llama)."""
        return self.num_attention_heads * self.qk_head_dim

    @property
    def attn_out_size(self) -> int:
        """Width of the attention output (input of the output projection): a x head_dim."""
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Width of the key (and of the value) projection without MLA: num_kv_heads x head_dim."""
        return self.num_kv_heads * self.head_dim

    @property
    def gated_mlp(self) -> bool:
        """True for SwiGLU / GeGLU (three MLP matrices), False for GeLU / squared ReLU (two)."""
        return self.activation in GATED

    @property
    def mlp_in_width(self) -> int:
        """Output width of the first dense MLP GEMM: 2 x ffn gated (gate and up fused), ffn otherwise."""
        return (2 if self.gated_mlp else 1) * self.ffn_hidden_size

    @property
    def expert_ffn(self) -> int:
        """Inner width of one routed expert (``moe_ffn_hidden_size``, default the dense width)."""
        return self.moe_ffn_hidden_size or self.ffn_hidden_size

    def layer_kind(self, index: int) -> LayerKind:
        """Kind of layer ``index`` (0-based): MoE when the model has experts, the index is past the leading
        dense layers and (index - first_k_dense_layers + 1) is a multiple of moe_layer_freq (Llama 4's
        interleave step: with step 2 layers 1, 3, 5, ... are MoE); sliding-window unless the pattern makes it a
        global layer (Gemma 2/3: every pattern-th layer, 1-based, is global)."""
        moe = self.moe and index >= self.first_k_dense_layers
        if moe and self.moe_layer_freq > 1:
            moe = (index - self.first_k_dense_layers + 1) % self.moe_layer_freq == 0
        sliding = self.sliding_window > 0
        if sliding and self.sliding_window_pattern:
            sliding = (index + 1) % self.sliding_window_pattern != 0
        return LayerKind(moe, sliding)

    def layer_kinds(self) -> tuple[LayerKind, ...]:
        """Kind of every layer, in order."""
        return _layer_kinds(self)

    def kind_counts(self, start: int = 0, stop: int | None = None) -> dict[LayerKind, int]:
        """How many layers of each kind layers ``start`` .. ``stop - 1`` hold (default: all)."""
        return dict(_kind_counts(self, start, self.num_layers if stop is None else stop))

    @property
    def uniform(self) -> bool:
        """True when every layer has the same kind."""
        return len(_kind_counts(self, 0, self.num_layers)) == 1

    def main_kind(self) -> LayerKind:
        """The kind of the last layer (the one multi-token-prediction modules copy)."""
        return self.layer_kind(self.num_layers - 1)

    def resolve_kind(self, kind: LayerKind | None) -> LayerKind:
        """``kind``, or the only layer kind of a uniform model (InputError for a mixed one)."""
        if kind is not None:
            return kind
        if not self.uniform:
            raise InputError(
                f"model {self.name!r} has layers of several kinds "
                f"({', '.join(sorted(k.label for k in self.kind_counts()))}); this path needs a layer kind"
            )
        return self.layer_kind(0)

    def attention_window(self, kind: LayerKind, seq: int) -> int:
        """Keys one query attends to at most: the sequence, or the sliding window on a sliding layer."""
        return min(seq, self.sliding_window) if kind.sliding else seq

    # ----------------------------------------------------------------- parameter counts
    def norm_params(self, width: int | None = None) -> int:
        """Parameters of one norm over ``width`` (default h): scale and shift (LayerNorm) or scale (RMSNorm)."""
        return (2 if self.norm == "layernorm" else 1) * (self.hidden_size if width is None else width)

    def attention_matrix_params(self) -> int:
        """GEMM weights of the attention block. Plain / GQA: h x (a d_qk + 2 kv) for QKV plus a d x h for the
        output projection. MLA (DeepSeek-V2 report, arXiv:2405.04434, Section 2.1): h x q_lora + q_lora x a d_qk
        (or h x a d_qk without the query bottleneck), h x (kv_lora + d_rope), kv_lora x a (d_nope + d_v), and
        a d_v x h."""
        h, a = self.hidden_size, self.num_attention_heads
        if self.mla:
            q = h * self.q_lora_rank + self.q_lora_rank * self.q_size if self.q_lora_rank else h * self.q_size
            kv = h * (self.kv_lora_rank + self.qk_rope_head_dim)
            kv += self.kv_lora_rank * a * (self.qk_nope_head_dim + self.v_head_dim)
            return q + kv + self.attn_out_size * h
        return h * (self.q_size + 2 * self.kv_size) + self.attn_out_size * h

    def attention_params(self) -> int:
        """The attention block's weights plus its biases (QKV bias; all-linear bias adds the output's h),
        QK-norm scales (one norm over d_qk each for queries and keys) and MLA's latent norms."""
        h = self.hidden_size
        total = self.attention_matrix_params()
        if (self.linear_bias or self.qkv_bias) and not self.mla:
            total += self.q_size + 2 * self.kv_size
        if self.linear_bias or self.proj_bias:
            total += h
        if self.qk_norm:
            total += 2 * self.norm_params(self.qk_head_dim)
        if self.mla:
            total += self.norm_params(self.kv_lora_rank) + (
                self.norm_params(self.q_lora_rank) if self.q_lora_rank else 0
            )
        return total

    def mlp_params(self, width: int, bias: bool | None = None) -> int:
        """One MLP of inner width ``width``: (3 gated, 2 otherwise) x h x width, plus biases (first GEMM's
        output and the second's h) when the model has linear biases."""
        h = self.hidden_size
        total = (3 if self.gated_mlp else 2) * h * width
        if (self.linear_bias or self.mlp_bias) if bias is None else bias:
            total += (2 if self.gated_mlp else 1) * width + h
        return total

    def moe_params(self) -> tuple[int, int]:
        """(total, active per token) parameters of one MoE block: router h x E, E experts, the shared experts
        (and their h-weight gate); active counts top-k experts."""
        h, e = self.hidden_size, self.num_experts
        shared = (
            self.mlp_params(self.shared_expert_ffn_hidden_size) if self.shared_expert_ffn_hidden_size else 0
        )
        if self.shared_expert_gate:
            shared += h
        expert = self.mlp_params(self.expert_ffn)
        router = h * e
        return router + e * expert + shared, router + self.moe_top_k * expert + shared

    def layer_params(self, kind: LayerKind | None = None, active: bool = False) -> int:
        """All parameters of one layer of ``kind`` (default: the only kind of a uniform model): attention,
        dense MLP or MoE block (``active``: top-k experts only), and the layer's norms.

        For GPT (ffn = 4h, no GQA, biases, LayerNorm) this is 12h^2 + 13h, the per-layer part of SC21 eq. (2)
        (QKV 3h^2 + 3h, projection h^2 + h, MLP 8h^2 + 5h, two LayerNorms 4h)."""
        k = self.resolve_kind(kind)
        if k.moe:
            total, act = self.moe_params()
            mlp = act if active else total
        else:
            mlp = self.mlp_params(self.ffn_hidden_size)
        return self.attention_params() + mlp + self.norms_per_layer * self.norm_params()

    def expert_layer_params(self) -> int:
        """Parameters of one MoE layer that expert parallelism shards: the routed experts (router and shared
        experts are replicated like dense weights)."""
        return self.num_experts * self.mlp_params(self.expert_ffn) if self.moe else 0

    def layer_matrix_params(self, kind: LayerKind | None = None, active: bool = True) -> int:
        """GEMM weights one token passes through in one layer: attention, and the dense MLP or the router,
        top-k experts and shared experts (``active``; False: every expert)."""
        k = self.resolve_kind(kind)
        if not k.moe:
            return self.attention_matrix_params() + self.mlp_params(self.ffn_hidden_size, bias=False)
        n = self.moe_top_k if active else self.num_experts
        shared = (
            self.mlp_params(self.shared_expert_ffn_hidden_size, bias=False)
            if self.shared_expert_ffn_hidden_size
            else 0
        )
        experts = n * self.mlp_params(self.expert_ffn, bias=False)
        return self.attention_matrix_params() + self.hidden_size * self.num_experts + experts + shared

    def final_norm_params(self) -> int:
        """Parameters of the final norm (one norm over h)."""
        return self.norm_params()

    def embedding_params(self) -> int:
        """Input embedding V x h plus the learned position table s x h (GPT) if any."""
        pos = self.seq_length * self.hidden_size if self.learned_positions else 0
        return self.vocab_size * self.hidden_size + pos

    def output_params(self) -> int:
        """Final norm plus, for untied embeddings, the output projection V x h."""
        head = 0 if self.tied_embeddings else self.vocab_size * self.hidden_size
        return self.final_norm_params() + head + (self.vocab_size if self.output_bias else 0)

    def mtp_params(self, active: bool = False) -> int:
        """Unique parameters of the multi-token-prediction modules (DeepSeek-V3 report, arXiv:2412.19437,
        Section 2.2): per module two norms over h, the 2h x h projection, one layer of the last layer's kind
        and its final norm; embedding and output head are shared with the main model."""
        per = 2 * self.norm_params() + 2 * self.hidden_size**2 + self.layer_params(self.main_kind(), active)
        return self.mtp_layers * (per + self.norm_params())

    def num_params(self, active: bool = False, mtp: bool = False) -> int:
        """Parameters of the main model: layers + embeddings + final norm (+ untied output layer); ``active``:
        those one token uses (top-k routed experts); ``mtp``: plus the MTP modules' unique parameters.

        For GPT this is SC21 eq. (2), 12lh^2 (1 + 13/(12h) + (V+s)/(12lh)), plus the final LayerNorm's 2h.
        """
        layers = sum(n * self.layer_params(k, active) for k, n in self.kind_counts().items())
        total = layers + self.embedding_params() + self.output_params()
        return total + (self.mtp_params(active) if mtp else 0)


@lru_cache(maxsize=256)
def _layer_kinds(model: ModelSpec) -> tuple[LayerKind, ...]:
    return tuple(model.layer_kind(i) for i in range(model.num_layers))


@lru_cache(maxsize=4096)
def _kind_counts(model: ModelSpec, start: int, stop: int) -> tuple[tuple[LayerKind, int], ...]:
    """(kind, layers) of layers ``start`` .. ``stop - 1`` in the order the kinds first appear, counted by
    arithmetic (:mod:`pipesim.specs.layer_counts`): the cost does not grow with the layer count."""
    pattern = LayerPattern(
        model.moe,
        model.first_k_dense_layers,
        model.moe_layer_freq,
        model.sliding_window > 0,
        model.sliding_window_pattern,
    )
    start, stop = max(0, start), min(stop, model.num_layers)
    counts = pattern.counts(start, stop)
    order = sorted(counts, key=lambda k: pattern.first(k, start, stop))
    return tuple((LayerKind(*k), counts[k]) for k in order)
