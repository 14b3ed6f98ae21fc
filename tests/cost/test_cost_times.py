"""Operator and layer times: the efficiency model, W/I split, recomputation, and Korthikanti Table 4."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import layout_factory

from pipesim.comm.base import LevelCommModel
from pipesim.cost.flops import Op
from pipesim.cost.times import (
    DEFAULT_EFFICIENCY,
    Efficiency,
    gemm_efficiency,
    layer_detail,
    layer_pass_times,
    op_time,
    optimizer_step_s,
    pass_times,
)
from pipesim.specs.gpu import get_gpu
from pipesim.specs.model import get_model

A100 = get_gpu("a100-80gb")
H100 = get_gpu("h100-sxm")
COMM = LevelCommModel()
TP8 = list(range(8))
M22 = get_model("megatron-22b")
EFF = DEFAULT_EFFICIENCY


_layout = layout_factory(tp=8, micro_batch_size=4, global_batch_size=4, attention="unfused")


def test_gemm_efficiency_shape_model() -> None:
    eff = Efficiency(gemm_max=0.8, gemm_half_dim=64.0)  # sm_count 0: no tile / wave quantization
    # sat(d) = d / (d + 64): a 64-wide dimension halves throughput.
    assert gemm_efficiency((64, 10**9, 10**9), eff) == pytest.approx(0.8 * 0.5, rel=1e-6)
    assert gemm_efficiency((8192, 8192, 8192), eff) == pytest.approx(0.8 * (8192 / 8256) ** 3)
    assert gemm_efficiency((128, 4096, 4096), eff) < gemm_efficiency((4096, 4096, 4096), eff)


def test_op_time_formulas() -> None:
    eff = Efficiency(gemm_max=0.5, gemm_half_dim=0.0, hbm=0.5, kernel_overhead_s=1e-6)
    ew = Op("x", "elementwise", "F", 0.0, 1.0e9)
    # 1 GB at 0.5 x 2.039 TB/s + 1 us
    assert op_time(ew, A100, "bf16", eff, COMM, TP8).time_s == pytest.approx(1e9 / (0.5 * 2.039e12) + 1e-6)
    g = Op("g", "gemm", "F", 2 * 4096**3, 2 * 3 * 4096**2, (4096, 4096, 4096))
    t = op_time(g, A100, "bf16", eff, COMM, TP8)
    assert t.bound == "compute" and t.time_s == pytest.approx(2 * 4096**3 / (0.5 * 312e12) + 1e-6)
    # A skinny GEMM is memory-bound: (M, N, K) = (1, 4096, 4096) moves 2 * 4096^2 bytes for 2 * 4096^2 FLOPs.
    skinny = Op("s", "gemm", "F", 2 * 4096**2, 2 * (4096 + 4096**2 + 4096), (1, 4096, 4096))
    assert op_time(skinny, A100, "bf16", eff, COMM, TP8).bound == "memory"
    c = Op("c", "comm", "F", collective="all-reduce", comm_bytes=1e8)
    assert op_time(c, A100, "bf16", eff, COMM, TP8).time_s == COMM.collective_s("all-reduce", 1e8, TP8)


def test_fp8_gemm_is_half_the_compute_plus_its_casts() -> None:
    # Same achieved fraction at both precisions (EFF: gemm_max_fp8 = gemm_max, no quantization): the fp8 GEMM
    # computes in half the time (H100 1978.9 vs 989.4 dense TFLOP/s, published.md s7) and pays its casts:
    # forward 3 bytes per element of A = (M x K) at the effective HBM bandwidth.
    eff = Efficiency(gemm_max=0.7, gemm_max_fp8=0.7, gemm_half_dim=0.0, hbm=0.8)
    shape = (8192, 8192, 8192)
    g = Op("g", "gemm", "F", 2.0 * 8192**3, 2.0 * 3 * 8192**2, shape)
    bf16 = op_time(g, H100, "bf16", eff, COMM, TP8).time_s
    fp8 = op_time(g, H100, "fp8", eff, COMM, TP8).time_s
    assert bf16 == pytest.approx(2.0 * 8192**3 / (0.7 * 989.4e12))
    assert fp8 == pytest.approx(2.0 * 8192**3 / (0.7 * 1978.9e12) + 3.0 * 8192**2 / (0.8 * 3.35e12))
    assert bf16 / 2 < fp8 < bf16


def test_layer_sum_equals_pass_times_and_w_split() -> None:
    lay = _layout(recompute="selective")
    detail = layer_detail(M22, lay, A100, EFF, COMM, TP8)
    p = pass_times(detail)
    assert p.forward_s == pytest.approx(sum(t.time_s for t in detail if t.op.phase == "F"))
    assert p.backward_s == pytest.approx(sum(t.time_s for t in detail if t.op.phase != "F"))
    # W = the four dW GEMMs; I = B - W holds the dX GEMMs, memory-bound backward, comm and recompute.
    assert p.weight_s == pytest.approx(sum(t.time_s for t in detail if t.op.name.endswith(".dw")))
    assert 0 < p.weight_s < p.backward_s
    assert p.recompute_s == pytest.approx(sum(t.time_s for t in detail if t.op.recompute))
    assert {t.kind for t in detail} == {"gemm", "elementwise", "comm"}


def test_full_recompute_adds_exactly_the_forward() -> None:
    none = layer_pass_times(M22, _layout(), A100, EFF, COMM, TP8)
    full = layer_pass_times(M22, _layout(recompute="full"), A100, EFF, COMM, TP8)
    assert full.backward_s - none.backward_s == pytest.approx(none.forward_s, rel=1e-12)
    assert full.recompute_s == pytest.approx(none.forward_s, rel=1e-12)
    assert full.forward_s == none.forward_s


def test_tp_overlap_hides_backward_collectives_only() -> None:
    on = layer_pass_times(M22, _layout(tp_comm_overlap=True), A100, EFF, COMM, TP8)
    off = layer_pass_times(M22, _layout(tp_comm_overlap=False), A100, EFF, COMM, TP8)
    assert on.forward_s == off.forward_s and on.tp_forward_s == off.tp_forward_s
    assert on.backward_s < off.backward_s and on.tp_backward_s < off.tp_backward_s


def test_sequence_parallel_is_faster_forward() -> None:
    # Korthikanti Table 4: SP takes the forward from 7.7 to 7.2 ms (norm/dropout split over t).
    base = layer_pass_times(M22, _layout(), A100, EFF, COMM, TP8)
    sp = layer_pass_times(M22, _layout(sequence_parallel=True), A100, EFF, COMM, TP8)
    assert sp.forward_s < base.forward_s
    assert sp.tp_forward_s == pytest.approx(base.tp_forward_s, rel=0.01)  # RS + AG = AR volume (+ latency)


# Korthikanti et al. Table 4: 22B layer (h 6144, a 64, s 2048, b 4, TP 8) on A100, ms.
TABLE4 = [
    ({"recompute": "none"}, 7.7, 11.9),
    ({"recompute": "none", "sequence_parallel": True}, 7.2, 11.8),
    ({"recompute": "full"}, 7.7, 19.5),
    ({"recompute": "selective"}, 7.7, 13.2),
    ({"recompute": "selective", "sequence_parallel": True}, 7.2, 13.1),
]


@pytest.mark.parametrize(("kw", "fwd_ms", "bwd_ms"), TABLE4)
def test_korthikanti_table4_within_8_percent(kw: dict[str, object], fwd_ms: float, bwd_ms: float) -> None:
    p = layer_pass_times(M22, _layout(precision="fp16", **kw), A100, EFF, COMM, TP8)
    assert p.forward_s * 1e3 == pytest.approx(fwd_ms, rel=0.08)
    assert p.backward_s * 1e3 == pytest.approx(bwd_ms, rel=0.08)


def test_table4_overheads_ordering() -> None:
    # Selective recompute costs a few percent, full recompute ~40% (Table 4's overhead column: 7% and 39%).
    times = {
        k: layer_pass_times(M22, _layout(precision="fp16", recompute=k), A100, EFF, COMM, TP8)
        for k in ("none", "selective", "full")
    }
    combined = {k: p.forward_s + p.backward_s for k, p in times.items()}
    sel = combined["selective"] / combined["none"] - 1
    full = combined["full"] / combined["none"] - 1
    assert 0.02 < sel < 0.12 and 0.30 < full < 0.45


def test_optimizer_step_is_memory_bound() -> None:
    # 1e9 params x 34 bytes / (2.039e12 x hbm efficiency)
    assert optimizer_step_s(1e9, A100, EFF) == pytest.approx(34e9 / (2.039e12 * EFF.hbm))


def test_without_cuda_graphs_a_pass_lasts_at_least_its_kernel_launches() -> None:
    # A small layer (GPT-style, h 256, 4 heads, 32 tokens, one GPU): its kernels run in less time than the
    # host needs to launch them (launch_s = 5 us per kernel, HTA's lower bound), so each phase lasts kernels x
    # 5 us; CUDA graphs (one launch per pass) give the GPU's own sum of kernel times back.
    model = replace(
        get_model("gpt-1.7b"),
        name="tiny",
        hidden_size=256,
        num_attention_heads=4,
        num_kv_heads=4,
        ffn_hidden_size=1024,
    )
    short = {"tp": 1, "micro_batch_size": 1, "global_batch_size": 1, "seq_length": 32, "attention": "flash"}
    eager = layer_pass_times(model, _layout(**short), H100, H100.profile, COMM, [0])
    graphs = layer_pass_times(model, _layout(**short, cuda_graphs=True), H100, H100.profile, COMM, [0])
    ops = layer_detail(model, _layout(**short), H100, H100.profile, COMM, [0])
    n = {ph: sum(t.op.phase == ph for t in ops) for ph in "FIW"}
    gpu_f = sum(t.time_s for t in ops if t.op.phase == "F")
    assert graphs.forward_s == pytest.approx(gpu_f) and gpu_f < n["F"] * 5e-6  # launch-bound without graphs
    assert eager.forward_s == pytest.approx(n["F"] * 5e-6)
    assert eager.weight_s == pytest.approx(max(graphs.weight_s, n["W"] * 5e-6))
    i_part = max(graphs.backward_s - graphs.weight_s, n["I"] * 5e-6)
    assert eager.backward_s == pytest.approx(i_part + eager.weight_s)
    # A large layer (Korthikanti's 22B, 8192 tokens per GPU) is GPU-bound: the flag changes nothing.
    assert layer_pass_times(M22, _layout(), A100, A100.profile, COMM, TP8) == layer_pass_times(
        M22, _layout(cuda_graphs=True), A100, A100.profile, COMM, TP8
    )
