"""Today's model shapes: parameter counts against published totals, layer kinds, MoE / MLA FLOPs."""

from __future__ import annotations

import pytest

from pipesim.cost.flops import layer_ops, model_flops_per_token
from pipesim.errors import InputError
from pipesim.specs.layout import Layout
from pipesim.specs.model import LayerKind, ModelSpec, get_model

# (preset, total B, active B, relative tolerance, source)
PUBLISHED = [
    # DeepSeek-AI, DeepSeek-V3 Technical Report (arXiv:2412.19437), abstract: "671B total parameters with 37B
    # activated for each token" (main model, MTP module excluded).
    ("deepseek-v3", 671.0, 37.0, 0.016),
    # Jiang et al., Mixtral of Experts (arXiv:2401.04088) / Mistral AI's announcement: 46.7B total, 12.9B per token.
    ("mixtral-8x7b", 46.7, 12.9, 0.005),
    # Mistral AI, "Cheaper, Better, Faster, Stronger" (Mixtral 8x22B announcement): 141B total, 39B active.
    ("mixtral-8x22b", 141.0, 39.0, 0.005),
    # Qwen Team, Qwen3 Technical Report (arXiv:2505.09388), Table 2: 30.5B total / 3.3B activated; 235B / 22B.
    ("qwen3-30b-a3b", 30.5, 3.3, 0.017),
    ("qwen3-235b-a22b", 235.0, 22.0, 0.01),
    # Meta, "The Llama 4 herd" (Llama 4 announcement): Maverick 17B active, 128 experts, 400B total.
    ("llama4-maverick", 400.0, 17.0, 0.011),
]


@pytest.mark.parametrize(("name", "total_b", "active_b", "rel"), PUBLISHED)
def test_moe_parameter_counts_match_published(name: str, total_b: float, active_b: float, rel: float) -> None:
    m = get_model(name)
    assert m.num_params() / 1e9 == pytest.approx(total_b, rel=rel)
    assert m.num_params(active=True) / 1e9 == pytest.approx(active_b, rel=rel)


def test_deepseek_v3_arithmetic_and_mtp_module() -> None:
    m = get_model("deepseek-v3")
    h = 7168
    # MLA (DeepSeek-V2 report Section 2.1): W_DQ 7168x1536, W_UQ 1536x(128x192), W_DKV+W_KR 7168x(512+64),
    # W_UK+W_UV 512x(128x(128+128)), W_O (128x128)x7168, plus the two latent RMSNorms 1536 + 512.
    attn = h * 1536 + 1536 * 128 * 192 + h * 576 + 512 * 128 * 256 + 128 * 128 * h + 1536 + 512
    assert m.attention_params() == attn == 187_107_328
    expert = 3 * h * 2048
    moe = h * 256 + 256 * expert + expert  # router, 256 routed, 1 shared
    dense = attn + 3 * h * 18432 + 2 * h
    layer_moe = attn + moe + 2 * h
    total = 3 * dense + 58 * layer_moe + 2 * 129280 * h + h
    assert m.num_params() == total
    # DeepSeek-V3 README: the Hugging Face checkpoint is 685B = 671B main + 14B MTP, the MTP module stored with
    # its own copy of the embedding and output head (2 V h).
    with_copies = m.num_params() + m.mtp_params() + 2 * 129280 * h
    assert with_copies / 1e9 == pytest.approx(685, rel=1e-3)  # 684.49B
    assert (m.mtp_params() + 2 * 129280 * h) / 1e9 == pytest.approx(14.0, rel=0.05)


def test_mixtral_8x7b_arithmetic() -> None:
    # Per layer: GQA attention 4096 x (4096 + 2 x 1024) + 4096^2, router 4096 x 8, 8 SwiGLU experts
    # 3 x 4096 x 14336, two RMSNorms; untied embedding and head 2 x 32000 x 4096; final norm.
    layer = 4096 * 6144 + 4096**2 + 4096 * 8 + 8 * 3 * 4096 * 14336 + 2 * 4096
    assert get_model("mixtral-8x7b").num_params() == 32 * layer + 2 * 32000 * 4096 + 4096 == 46_702_792_704


@pytest.mark.parametrize(
    ("name", "embedding_b", "non_embedding_b"),
    [
        # Parmar et al., Nemotron-4 15B Technical Report (arXiv:2402.16819) Section 2: 3.2B embedding and
        # 12.5B non-embedding parameters.
        ("nemotron4-15b", 3.2, 12.5),
        # NVIDIA, Nemotron-4 340B Technical Report (arXiv:2406.11704) Section 2.1: 9.4B embedding and 331.6B
        # non-embedding parameters.
        ("nemotron4-340b", 9.4, 331.6),
    ],
)
def test_nemotron4_embedding_and_non_embedding(name: str, embedding_b: float, non_embedding_b: float) -> None:
    m = get_model(name)
    emb = 2 * m.vocab_size * m.hidden_size  # untied input and output embeddings
    assert emb / 1e9 == pytest.approx(embedding_b, abs=0.06)  # 15B: 2 V h = 3.146B, reported as 3.2B
    assert (m.num_params() - emb) / 1e9 == pytest.approx(non_embedding_b, abs=0.05)


@pytest.mark.parametrize(
    ("name", "total_b"),
    [
        # Llama Team, The Llama 3 Herd of Models (arXiv:2407.21783), Table 3: 8B, 70B, 405B.
        ("llama3.1-8b", 8.0),
        ("llama3.1-70b", 70.0),
        ("llama3.1-405b", 405.0),
        # xai-org/grok-1 README: 314B parameters.
        ("grok-1", 314.0),
    ],
)
def test_dense_and_grok_totals(name: str, total_b: float) -> None:
    assert get_model(name).num_params() / 1e9 == pytest.approx(total_b, rel=0.01)


def test_layer_kinds() -> None:
    ds = get_model("deepseek-v3")
    assert [k.moe for k in ds.layer_kinds()[:4]] == [False, False, False, True]
    assert ds.kind_counts() == {LayerKind(False): 3, LayerKind(True): 58}
    l4 = get_model("llama4-maverick")
    assert [k.moe for k in l4.layer_kinds()[:4]] == [False, True, False, True]  # interleave step 2
    assert [k.sliding for k in l4.layer_kinds()[:4]] == [True, True, True, False]  # every 4th global
    assert get_model("mixtral-8x7b").uniform and not ds.uniform
    with pytest.raises(InputError, match="several kinds"):
        ds.layer_params()


def test_moe_flops_per_token_is_6_n_active_plus_attention() -> None:
    m = get_model("mixtral-8x7b")
    s, h, layers = 4096, 4096, 32
    # GEMM weights a token passes: attention, router, top-2 experts; plus the logit layer V h.
    n_active = layers * (4096 * 6144 + 4096**2 + 4096 * 8 + 2 * 3 * 4096 * 14336) + 32000 * h
    attention = 3 * layers * 4 * s * h  # eq. (7)'s 4 s h per layer, x3 for forward + backward
    assert model_flops_per_token(m, s) == pytest.approx(6 * n_active + attention, rel=1e-12)


def test_mla_attention_flops_use_decoupled_head_dims() -> None:
    m = get_model("deepseek-v3")
    s = 4096
    kind = m.layer_kind(0)
    per_token = model_flops_per_token(m, s)
    # Attention core per token and layer: 2 a s (d_qk + d_v) = 2 x 128 x 4096 x (192 + 128).
    core = 2 * 128 * s * (192 + 128)
    layers = 3 * (2 * m.layer_matrix_params(kind) + core) + 58 * (
        2 * m.layer_matrix_params(m.main_kind()) + core
    )
    mtp = 2 * m.layer_matrix_params(m.main_kind()) + core + 4 * 7168**2 + 2 * 7168 * 129280
    assert per_token == pytest.approx(3 * (layers + 2 * 7168 * 129280 + mtp), rel=1e-12)


def test_sliding_window_caps_attention_keys() -> None:
    base = get_model("llama3.1-8b")
    swa = ModelSpec(**{**base.__dict__, "name": "swa", "sliding_window": 1024})
    lay = Layout(seq_length=8192, global_batch_size=1)
    full = next(o for o in layer_ops(base, lay).forward if o.kind == "attention")
    local = next(o for o in layer_ops(swa, lay).forward if o.kind == "attention")
    # Causal pairs: s^2/2 full; s w - w^2/2 with a window w (s = 8192, w = 1024).
    assert full.flops / local.flops == pytest.approx((8192**2 / 2) / (8192 * 1024 - 1024**2 / 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_experts": 8, "moe_top_k": 9}, "moe_top_k=9 must be in 1..num_experts=8"),
        ({"moe_top_k": 2}, "moe_top_k=2 needs num_experts >= 1"),
        ({"kv_lora_rank": 512}, "kv_lora_rank=512 \\(MLA\\) needs qk_nope_head_dim >= 1"),
        ({"q_lora_rank": 64}, "q_lora_rank=64 needs kv_lora_rank >= 1"),
        ({"num_experts": 8, "moe_top_k": 2, "first_k_dense_layers": 2}, "leaves no MoE layer"),
        ({"activation": "relu"}, "activation='relu'; valid: gelu, squared_relu, swiglu, geglu"),
    ],
)
def test_bad_shapes_are_refused(kwargs: dict[str, object], message: str) -> None:
    base = {"name": "x", "num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "vocab_size": 100}
    base.update({"seq_length": 16, "ffn_hidden_size": 256, "num_kv_heads": 4})
    with pytest.raises(InputError, match=message):
        ModelSpec(**{**base, **kwargs})  # type: ignore[arg-type]
