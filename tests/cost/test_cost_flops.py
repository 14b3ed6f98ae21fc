"""FLOP counts: the paper formulas and the per-operator lists that the time model sums."""

from __future__ import annotations

import pytest
from conftest import layout_factory

from pipesim.comm.base import bus_factor
from pipesim.cost.end_ops import embedding_ops, head_ops
from pipesim.cost.flops import (
    ACT_BYTES,
    hardware_flops_eq8,
    hardware_flops_per_step,
    layer_ops,
    model_flops_eq7,
    model_flops_per_step,
    model_flops_per_token,
    sc21_iteration_flops,
)
from pipesim.specs.model import get_model

GPT3 = get_model("gpt3-175b")


_layout = layout_factory(tp=1, micro_batch_size=1, global_batch_size=1, attention="unfused")


def test_sc21_eq3_arithmetic_1t() -> None:
    # F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h)), B=3072, s=2048, l=128, h=25600, V=51200.
    b, s, n_layers, h, v = 3072, 2048, 128, 25600, 51200
    expected = 96 * b * s * n_layers * h * h * (1 + s / (6 * h) + v / (16 * n_layers * h))
    assert sc21_iteration_flops(b, s, n_layers, h, v) == pytest.approx(expected, rel=1e-12)
    # 163 TFLOP/s x 3072 GPUs (SC21 Table 1) -> one iteration takes F / 5.0e17 s.
    assert expected / (163e12 * 3072) == pytest.approx(expected / 5.00736e17, rel=1e-12)


@pytest.mark.parametrize("name", ["gpt-1.7b", "gpt3-175b", "gpt-1t", "megatron-22b"])
def test_hardware_flops_full_recompute_is_sc21_eq3(name: str) -> None:
    m = get_model(name)
    lay = _layout(global_batch_size=64, recompute="full")
    eq3 = sc21_iteration_flops(64, m.seq_length, m.num_layers, m.hidden_size, m.vocab_size)
    assert hardware_flops_per_step(m, lay) == pytest.approx(eq3, rel=1e-12)


@pytest.mark.parametrize("name", ["gpt-1.7b", "gpt3-175b", "gpt-1t"])
def test_model_flops_is_korthikanti_eq7(name: str) -> None:
    m = get_model(name)
    lay = _layout(global_batch_size=32)
    eq7 = model_flops_eq7(32, m.seq_length, m.num_layers, m.hidden_size, m.vocab_size)
    assert model_flops_per_step(m, lay) == pytest.approx(eq7, rel=1e-12)
    # No recomputation: hardware FLOPs = model FLOPs.
    assert hardware_flops_per_step(m, lay) == model_flops_per_step(m, lay)


def test_eq7_eq8_arithmetic_and_selective_hfu() -> None:
    # GPT-3 175B, B=1: 72 * 96 * 2048 * 12288^2 = 2.1399e15; s/(6h) = 2048/73728; V/(12hL) = 51200/14155776.
    base = 72 * 96 * 2048 * 12288**2
    assert model_flops_eq7(1, 2048, 96, 12288, 51200) == pytest.approx(
        base * (1 + 2048 / 73728 + 51200 / 14155776), rel=1e-12
    )
    assert hardware_flops_eq8(1, 2048, 96, 12288, 51200) == pytest.approx(
        base * (1 + 2048 / 36864 + 51200 / 14155776), rel=1e-12
    )
    # pipesim counts the re-run attention core, 4 B s^2 h per layer: 72 B L s h^2 (1 + 2s/(9h) + V/(12hL)),
    # between eq. (7) and the paper's rounder eq. (8).
    sel = hardware_flops_per_step(GPT3, _layout(recompute="selective"))
    assert sel == pytest.approx(base * (1 + 2 * 2048 / (9 * 12288) + 51200 / 14155776), rel=1e-12)
    assert model_flops_eq7(1, 2048, 96, 12288, 51200) < sel < hardware_flops_eq8(1, 2048, 96, 12288, 51200)


def test_model_flops_per_token_llama_is_6n_plus_attention() -> None:
    m = get_model("llama3-8b")
    s = m.seq_length
    matrices = (
        m.num_layers * m.layer_matrix_params() + m.vocab_size * m.hidden_size
    )  # GEMM weights incl. head
    assert model_flops_per_token(m) == pytest.approx(6 * matrices + 12 * m.num_layers * s * m.hidden_size)


def _flops(ops: object, phase: str | None = None, kind: str | None = None) -> float:
    return sum(
        o.flops  # type: ignore[attr-defined]
        for o in ops  # type: ignore[attr-defined]
        if (phase is None or o.phase == phase) and (kind is None or o.kind == kind) and not o.recompute
    )


@pytest.mark.parametrize("t", [1, 2, 8])
def test_layer_flops_match_zero_bubble_table1(t: int) -> None:
    # Qi et al. 2024 Table 1 per layer: F = s b h (24h + 4s); B (input grads) = s b h (24h + 8s); W = 24 s b h^2.
    m = get_model("megatron-22b")
    b, s, h = 2, 2048, 6144
    ops = layer_ops(m, _layout(tp=t, micro_batch_size=b, global_batch_size=b)).all
    assert _flops(ops, "F") == pytest.approx(s * b * h * (24 * h + 4 * s) / t, rel=1e-12)
    assert _flops(ops, "I") == pytest.approx(s * b * h * (24 * h + 8 * s) / t, rel=1e-12)
    assert _flops(ops, "W") == pytest.approx(24 * s * b * h * h / t, rel=1e-12)


def test_tp_communication_volume_is_sc21_section_3_2() -> None:
    # 2 all-reduces forward + 2 backward of b s h elements: 8 b s h (t-1)/t elements sent per device.
    m, t, b, s, h = GPT3, 8, 1, 2048, 12288
    ops = layer_ops(m, _layout(tp=t, micro_batch_size=b, global_batch_size=b)).all
    comm = [o for o in ops if o.kind == "comm"]
    assert [o.collective for o in comm] == ["all-reduce"] * 4
    sent = sum(o.comm_bytes * bus_factor(o.collective, t) for o in comm) / ACT_BYTES
    assert sent == pytest.approx(8 * b * s * h * (t - 1) / t, rel=1e-12)


def test_sequence_parallel_swaps_all_reduce_for_rs_and_ag() -> None:
    m, t = GPT3, 8
    ops = layer_ops(m, _layout(tp=t, sequence_parallel=True, tp_comm_overlap=False)).all
    kinds = sorted(o.collective or "" for o in ops if o.kind == "comm")
    # forward: 2 all-gathers + 2 reduce-scatters; backward: 2 + 2, plus the 2 re-gathers for dW.
    assert kinds == ["all-gather"] * 6 + ["reduce-scatter"] * 4
    bus = sum(
        o.comm_bytes * bus_factor(o.collective or "", t)
        for o in ops
        if o.kind == "comm" and ".dw" not in o.name
    )
    no_sp = layer_ops(m, _layout(tp=t)).all
    assert bus == pytest.approx(
        sum(o.comm_bytes * bus_factor(o.collective or "", t) for o in no_sp if o.kind == "comm")
    )


def test_recompute_prepends_forward() -> None:
    lay = _layout(tp=8)
    none = layer_ops(GPT3, lay)
    full = layer_ops(GPT3, _layout(tp=8, recompute="full"))
    assert [o.name for o in full.backward if o.recompute] == ["recompute." + o.name for o in none.forward]
    sel = layer_ops(GPT3, _layout(tp=8, recompute="selective"))
    assert [o.name for o in sel.backward if o.recompute] == [
        "recompute.attn.qk",
        "recompute.attn.softmax",
        "recompute.attn.dropout",
        "recompute.attn.av",
    ]
    flash_sel = layer_ops(GPT3, _layout(tp=8, recompute="selective", attention="flash"))
    assert [o.name for o in flash_sel.backward if o.recompute] == ["recompute.attn.flash"]


def test_unfused_softmax_bytes() -> None:
    # Scale-mask-softmax reads and writes 2 bytes per score: 4 * b * (a/t) * s^2.
    ops = {o.name: o for o in layer_ops(GPT3, _layout(tp=8, micro_batch_size=2, global_batch_size=2)).all}
    assert ops["attn.softmax"].hbm_bytes == 4 * 2 * 12 * 2048**2
    assert ops["attn.dropout"].hbm_bytes == 5 * 2 * 12 * 2048**2
    assert ops["qkv"].shape == (4096, 3 * 12288 // 8, 12288)


def test_flash_attention_is_causal_half() -> None:
    lay = _layout(tp=8, attention="flash")
    flash = next(o for o in layer_ops(GPT3, lay).forward if o.kind == "attention")
    assert flash.flops == pytest.approx(0.5 * 4 * 2048 * 2048 * 12288 / 8)


def test_head_and_embedding_ops() -> None:
    lay = _layout(tp=8, micro_batch_size=1, global_batch_size=1)
    head = head_ops(GPT3, lay)
    logits = next(o for o in head.forward if o.name == "logits")
    assert logits.flops == 2 * 2048 * 12288 * 51200 / 8  # 2 b s h V / t
    assert _flops(head.all, "I") == logits.flops and _flops(head.all, "W") == logits.flops
    emb = embedding_ops(GPT3, lay)
    assert [o.collective for o in emb.forward if o.kind == "comm"] == ["all-reduce"]
    assert {o.phase for o in emb.backward} <= {"I", "W"}


def test_gqa_replicates_kv_when_tp_exceeds_kv_heads() -> None:
    m = get_model("llama3-70b")  # 8 KV heads
    qkv = next(o for o in layer_ops(m, _layout(tp=16)).forward if o.name == "qkv")
    assert qkv.shape is not None and qkv.shape[1] == 8192 // 16 + 2 * 128
