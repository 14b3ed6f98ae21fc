"""Memory model: bytes per parameter, Korthikanti et al. activation formulas, stage parameters."""

from __future__ import annotations

import pytest
from conftest import layout_factory

from pipesim.cost.memory import (
    bytes_per_param,
    embedding_activation_bytes,
    head_activation_bytes,
    layer_activation_bytes,
    layer_activation_bytes_no_recompute,
    rank_memory,
    stage_params,
    transient_bytes,
)
from pipesim.errors import InputError
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model
from schedules import get_family

M22 = get_model("megatron-22b")  # a=64, h=6144, s=2048 (Korthikanti Table 3)
GPT3 = get_model("gpt3-175b")  # a=96, h=12288


def _in_flight(name: str, p: int, m: int, v: int, r: int) -> float:
    fn = get_family(name).in_flight
    assert fn is not None
    return fn(p, m, v, r)


_layout = layout_factory(micro_batch_size=1, global_batch_size=64, attention="unfused")


def test_18_bytes_per_param_and_distributed_optimizer() -> None:
    # published.md s3: 18 bytes/param; distributed optimizer 6 + 12/dp.
    assert sum(bytes_per_param(_layout())) == 18
    lay = _layout(dp=8, distributed_optimizer=True)
    assert sum(bytes_per_param(lay)) == pytest.approx(6 + 12 / 8)


def test_eq1_no_parallelism() -> None:
    # s b h (34 + 5 a s / h) with s=2048, b=1, h=6144, a=64: 5*64*2048/6144 = 106.67.
    s, b, h, a = 2048, 1, 6144, 64
    expected = s * b * h * (34 + 5 * a * s / h)
    assert layer_activation_bytes(M22, _layout()) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("t", [2, 4, 8])
def test_eq2_tensor_parallel(t: int) -> None:
    s, b, h, a = 2048, 4, 6144, 64
    lay = _layout(tp=t, micro_batch_size=4, global_batch_size=4)
    assert layer_activation_bytes(M22, lay) == pytest.approx(
        s * b * h * (10 + 24 / t + 5 * a * s / (h * t)), rel=1e-12
    )


@pytest.mark.parametrize("t", [2, 8])
def test_eq4_tensor_and_sequence_parallel(t: int) -> None:
    s, b, h, a = 2048, 1, 6144, 64
    lay = _layout(tp=t, sequence_parallel=True)
    assert layer_activation_bytes(M22, lay) == pytest.approx(s * b * h / t * (34 + 5 * a * s / h), rel=1e-12)


def test_table2_selective_and_full() -> None:
    s, b, h, t = 2048, 1, 6144, 8
    sbh = s * b * h
    assert layer_activation_bytes(M22, _layout(tp=t, recompute="selective")) == pytest.approx(
        sbh * (10 + 24 / t)
    )
    sel_sp = _layout(tp=t, recompute="selective", sequence_parallel=True)
    assert layer_activation_bytes(M22, sel_sp) == pytest.approx(sbh * 34 / t)  # eq. (6)
    assert layer_activation_bytes(M22, _layout(tp=t, recompute="full")) == pytest.approx(2 * sbh)
    # With SP the layer input is already sequence-sharded (Megatron-LM stores it so): 2 s b h / t.
    full_sp = _layout(tp=t, recompute="full", sequence_parallel=True)
    assert layer_activation_bytes(M22, full_sp) == pytest.approx(2 * sbh / t)


@pytest.mark.parametrize(
    ("model", "five_as_over_h", "saving"), [("gpt3-175b", 80, 0.70), ("mt-nlg-530b", 64, 0.65)]
)
def test_selective_savings_section5(model: str, five_as_over_h: float, saving: float) -> None:
    # Korthikanti Section 5: 5as/h = 80 (GPT-3) saves 70%; 64 (MT-NLG) saves 65%, with TP+SP.
    m = get_model(model)
    assert 5 * m.num_attention_heads * m.seq_length / m.hidden_size == five_as_over_h
    full = layer_activation_bytes(m, _layout(tp=8, sequence_parallel=True))
    sel = layer_activation_bytes(m, _layout(tp=8, sequence_parallel=True, recompute="selective"))
    assert 1 - sel / full == pytest.approx(saving, abs=0.005)


def test_flash_attention_drops_the_score_term() -> None:
    s, b, h, t, a = 2048, 1, 6144, 8, 64
    lay = _layout(tp=t, attention="flash")
    # eq. (2) without 5as/h, plus the fp32 log-sum-exp 4 a s b / t.
    assert layer_activation_bytes(M22, lay) == pytest.approx(s * b * h * (10 + 24 / t) + 4 * a * s * b / t)


def test_no_dropout_model_keeps_no_masks() -> None:
    llama = get_model("llama2-7b")  # no dropout, SwiGLU, MHA
    s, b, h, f = 4096, 1, 4096, 11008
    # non-TP region 8 s b h; TP region 2 s b (h + 2h + h + 3f); flash: + 4 a s b.
    expected = 8 * s * b * h + 2 * s * b * (4 * h + 3 * f) + 4 * 32 * s * b
    assert layer_activation_bytes(llama, _layout(attention="flash")) == pytest.approx(expected)


def test_eq5_first_stage_holds_L_layers_regardless_of_pp() -> None:
    # 1F1B: rank 0 stashes p microbatches of L/p layers = L layers' worth (Korthikanti eq. 5).
    per_layer = layer_activation_bytes(M22, _layout(tp=8, sequence_parallel=True))
    for p in (2, 4, 8, 16):
        in_flight = _in_flight("1f1b", p, 64, 1, 0)
        assert in_flight == p
        assert in_flight * (48 // p) * per_layer == pytest.approx(48 * per_layer)


@pytest.mark.parametrize(("p", "v"), [(4, 2), (8, 3), (8, 4)])
def test_interleaved_factor(p: int, v: int) -> None:
    # Korthikanti 4.2.3: rank 0 holds p (1 + (p-1)/(p v)) stage-microbatches.
    assert _in_flight("interleaved-1f1b", p, 4 * p, v, 0) == pytest.approx(p * (1 + (p - 1) / (p * v)))
    assert _in_flight("gpipe", p, 4 * p, 1, 0) == 4 * p
    assert _in_flight("1f1b", p, 4 * p, 1, p - 1) == 1


def test_embedding_and_head_extras_section_4_3() -> None:
    s, b, h, v, t = 2048, 1, 12288, 51200, 8
    lay = _layout(tp=t, sequence_parallel=True)
    assert embedding_activation_bytes(GPT3, lay) == 8 * s * b + s * b * h / t
    # 4 s b h / t (1 + V / h): final-norm and logit inputs 2 s b h / t each, fp32 logits 4 s b V / t.
    assert head_activation_bytes(GPT3, lay) == pytest.approx(4 * s * b * h / t * (1 + v / h))


def test_stage_params_sum_to_model_plus_tied_copy() -> None:
    lay = _layout(tp=8, pp=8)
    per_stage = [stage_params(GPT3, lay, 12, s == 0, s == 7) * 8 for s in range(8)]
    # pp > 1 with tied embeddings: the last stage keeps a copy of the word embedding (Megatron-LM).
    assert sum(per_stage) == pytest.approx(GPT3.num_params() + 51200 * 12288)
    one = stage_params(GPT3, _layout(tp=8), 96, True, True) * 8
    assert one == pytest.approx(GPT3.num_params())
    llama = get_model("llama2-7b")  # untied: embedding on the first stage, head on the last
    assert stage_params(llama, _layout(pp=2), 16, True, False) + stage_params(
        llama, _layout(pp=2), 16, False, True
    ) == pytest.approx(llama.num_params())


def test_rank_memory_fits_and_oom() -> None:
    lay = _layout(tp=8, pp=8)
    params = stage_params(GPT3, lay, 12, True, False)
    mem = rank_memory(0, params, 5e9, transient_bytes(GPT3, lay), lay, 80e9)
    assert mem.weights == 2 * params and mem.grads == 4 * params and mem.optimizer == 12 * params
    assert mem.activations == pytest.approx(1.05 * 5e9)  # Megatron estimator's 1.05 overhead
    assert mem.peak == pytest.approx(18 * params + 1.05 * 5e9 + 2 * 2**30) and mem.fits
    whole = rank_memory(0, GPT3.num_params(), 0.0, 0.0, _layout(), 80e9)
    assert not whole.fits  # 175B x 18 bytes = 3.1 TB


def test_full_recompute_transient_is_one_layer() -> None:
    lay = _layout(tp=8, pp=2, recompute="full")
    assert transient_bytes(GPT3, lay) == layer_activation_bytes_no_recompute(GPT3, lay)
    assert transient_bytes(GPT3, _layout(tp=8)) == 0
    # One stage (pp 1): the head's backward frees its stash before the first layer is rebuilt, so only what
    # the layer needs beyond it adds to the peak.
    from pipesim.cost.memory import ACTIVATION_OVERHEAD, head_activation_bytes

    one = _layout(tp=8, recompute="full")
    freed = ACTIVATION_OVERHEAD * head_activation_bytes(GPT3, one)
    assert transient_bytes(GPT3, one) == pytest.approx(layer_activation_bytes_no_recompute(GPT3, one) - freed)


@pytest.mark.parametrize(
    ("stage", "expected"),
    # (weights, grads, optimizer) bytes per parameter with dp=8: Megatron-LM's 2 + 4 + 12 = 18 (published.md
    # s3), the distributed optimizer (ZeRO-1) 6 + 12/8, ZeRO-2 2 + 16/8, ZeRO-3 18/8 (Rajbhandari et al. 2020).
    [(0, (2, 4, 12)), (1, (2, 4, 1.5)), (2, (2, 0.5, 1.5)), (3, (0.25, 0.5, 1.5))],
)
def test_zero_stages_shard_memory(stage: int, expected: tuple[float, float, float]) -> None:
    from pipesim.cost.memory import bytes_per_param

    assert bytes_per_param(Layout(dp=8, global_batch_size=8, zero_stage=stage)) == pytest.approx(expected)


def test_distributed_optimizer_is_zero_1_and_bad_stages_rejected() -> None:
    assert Layout(dp=2, global_batch_size=2, distributed_optimizer=True).zero_stage == 1
    assert Layout(dp=2, global_batch_size=2, zero_stage=3).distributed_optimizer
    with pytest.raises(InputError, match="zero-stage=4; valid: 0, 1, 2, 3"):
        Layout(zero_stage=4)


def test_deepspeed_keeps_fp16_gradient_partitions_fsdp_fp32() -> None:
    from pipesim.cost.memory import bytes_per_param

    # DeepSpeed ZeRO-3 under fp16: 2 + 2 + 12 = 16 bytes per parameter over dp (ZeRO, SC20, Section 3.1, K = 12);
    # PyTorch FSDP and bf16 keep 4-byte gradients (18 / n).
    ds = Layout(dp=8, global_batch_size=8, zero_stage=3, precision="fp16")
    assert bytes_per_param(ds) == pytest.approx((2 / 8, 2 / 8, 12 / 8))
    assert bytes_per_param(Layout(dp=8, global_batch_size=8, zero_stage=2, precision="fp16"))[1] == 2 / 8
    fsdp = Layout(dp=8, global_batch_size=8, fsdp="full", precision="fp16")
    assert bytes_per_param(fsdp) == pytest.approx((2 / 8, 4 / 8, 12 / 8))
    assert bytes_per_param(Layout(dp=8, global_batch_size=8, zero_stage=3))[1] == 4 / 8


def test_sc21_zero3_530b_on_640_gpus_memory_by_hand() -> None:
    # SC21 Table 2 (published.md s1.2): 529.6B, DeepSpeed ZeRO-3, dp 640, micro-batch 4, seq 2048, h 20480,
    # 128 heads, V 51200, 105 layers, fp16, full recomputation, unfused attention.
    from pipesim.cost.memory import ACTIVATION_OVERHEAD, RESERVE_BYTES
    from pipesim.sim.scenario import Scenario, simulate_scenario
    from pipesim.specs.gpu import get_gpu

    model = get_model("gpt-529.6b")
    lay = Layout(dp=640, micro_batch_size=4, global_batch_size=2560, recompute="full", precision="fp16",
                 attention="unfused", zero_stage=3)  # fmt: skip
    mem = simulate_scenario(Scenario(model, get_gpu("a100-80gb"), lay)).memory[0]
    s, b, h, a, v = 2048, 4, 20480, 128, 51200
    states = 16 * model.num_params() / 640  # 13.24 GB
    sbh = s * b * h
    head = 4 * sbh + 4 * s * b * v  # final-norm and logit inputs, fp32 logits: 2.35 GB
    stash = 105 * 2 * sbh + (8 * s * b + sbh) + head  # layer inputs, token ids + dropout mask, head
    layer = sbh * (34 + 5 * a * s / h)  # one layer rebuilt by the recompute (Korthikanti eq. 2): 16.4 GB
    gathered = model.mlp_params(model.ffn_hidden_size) * (2 + 2)  # MLP up + down: weights and fp16 grads
    # One microbatch in flight: the head's backward frees its 2.35 GB before the first layer recomputes.
    transient = layer + gathered - ACTIVATION_OVERHEAD * head
    want = states + ACTIVATION_OVERHEAD * stash + transient + RESERVE_BYTES
    assert mem.peak == pytest.approx(want, rel=1e-9)
    assert mem.peak / 2**30 == pytest.approx(76.76, abs=0.01)  # was 80.6 GiB (4-byte grads, head kept)
