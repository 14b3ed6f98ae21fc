"""The roofline table: one source of truth with the simulator, roofline arithmetic, number formats."""

from __future__ import annotations

import pytest
from conftest import layout_factory
from hypothesis import given
from hypothesis import strategies as st

from pipesim.comm.base import LevelCommModel
from pipesim.cost.roofline import attainable_flops, check_precision, ridge_point, roofline
from pipesim.cost.times import layer_pass_times
from pipesim.errors import InputError
from pipesim.specs.gpu import get_gpu
from pipesim.specs.model import get_model

COMM = LevelCommModel()


_layout = layout_factory()  # one microbatch per step


CASES = [
    ("llama3-70b", "h100-sxm", {"tp": 8, "seq_length": 8192}),
    ("llama3-70b", "h100-sxm", {"tp": 8, "seq_length": 8192, "precision": "fp8"}),
    ("llama3-8b", "a100-80gb", {"tp": 2, "sequence_parallel": True, "recompute": "selective"}),
    ("gpt3-175b", "a100-80gb", {"tp": 8, "attention": "unfused", "recompute": "full"}),
    ("megatron-22b", "a100-40gb", {"tp": 4, "micro_batch_size": 2, "sequence_parallel": True}),
    ("gpt-1.7b", "v100", {"tp": 1, "precision": "fp16", "tp_comm_overlap": False}),
]


@pytest.mark.parametrize(("model", "gpu", "kw"), CASES)
def test_per_op_times_add_up_to_the_simulators_forward_and_backward(
    model: str, gpu: str, kw: dict[str, object]
) -> None:
    # The simulator's per-layer F and B (what the engine runs per microbatch and stage, x layers) against the
    # sum of the roofline's rows: same cost functions, so equal to rounding.
    m, g, lay = get_model(model), get_gpu(gpu), _layout(**kw)
    ranks = tuple(range(lay.tp))
    sim = layer_pass_times(m, lay, g, g.profile, COMM, ranks)
    table = roofline(m, lay, g, comm=COMM, tp_ranks=ranks)
    assert table.forward_s == pytest.approx(sim.forward_s, rel=1e-12)
    assert table.backward_s == pytest.approx(sim.backward_s, rel=1e-12)
    assert sum(r.predicted_time_s for r in table.rows if r.phase == "W") == pytest.approx(
        sim.weight_s, rel=1e-12
    )
    assert sum(r.share for r in table.rows) == pytest.approx(1.0, rel=1e-12)
    # The simulator actually changes when the layer does (the check is not vacuous): double the sequence.
    longer = layer_pass_times(m, _layout(**{**kw, "seq_length": 2 * lay.seq(m)}), g, g.profile, COMM, ranks)
    assert longer.forward_s > 1.5 * table.forward_s


def test_every_op_of_a_llama_layer_is_listed_with_its_bound() -> None:
    table = roofline(get_model("llama3-70b"), _layout(tp=8, seq_length=8192), get_gpu("h100-sxm"))
    names = [r.name for r in table.rows]
    for name in ("norm1", "qkv", "attn.flash", "proj", "tp.out1", "norm2", "fc1", "swiglu", "fc2", "tp.out2"):
        assert name in names
    for name in ("fc1.dx", "fc1.dw", "attn.flash.bwd", "tp.in1.bwd"):
        assert name in names
    by = {r.name: r for r in table.rows}
    assert by["fc1"].bound == "compute" and by["norm1"].bound == "memory" and by["tp.out1"].bound == "comm"
    assert by["tp.out1"].intensity_flops_per_byte is None and by["tp.out1"].comm_bytes == 2 * 8192 * 8192


def test_unfused_attention_shows_scores_softmax_and_context() -> None:
    table = roofline(get_model("gpt3-175b"), _layout(tp=8, attention="unfused"), get_gpu("a100-80gb"))
    by = {r.name: r for r in table.rows}
    assert {"attn.qk", "attn.softmax", "attn.dropout", "attn.av"} <= set(by)
    assert by["attn.softmax"].bound == "memory"


def test_qkv_gemm_arithmetic_llama3_70b_tp8() -> None:
    # Llama 3 70B (HF config: h = 8192, 64 heads, 8 KV heads, head_dim 128), tp = 8, b = 1, s = 8192.
    # QKV GEMM per TP rank: M = b s = 8192, N = h/t + 2 (kv/t) head_dim = 1024 + 2 x 128 = 1280, K = h = 8192.
    # FLOPs = 2 M N K = 171,798,691,840; bf16 bytes = 2 (MK + KN + MN) = 2 (67,108,864 + 2 x 10,485,760)
    # = 176,160,768; intensity = 975.24 FLOP/byte, above the H100 bf16 ridge 989.4e12 / 3.35e12 = 295.3, so
    # attainable = the bf16 peak 989.4 TFLOP/s (published.md s7).
    gpu = get_gpu("h100-sxm")
    row = next(
        r
        for r in roofline(get_model("llama3-70b"), _layout(tp=8, seq_length=8192), gpu).rows
        if r.name == "qkv"
    )
    assert row.flops == 2 * 8192 * 1280 * 8192 == 171_798_691_840
    assert row.hbm_bytes == 2 * (8192 * 8192 + 8192 * 1280 + 8192 * 1280) == 176_160_768
    assert row.intensity_flops_per_byte == pytest.approx(975.238, rel=1e-5)
    assert ridge_point(gpu, "bf16") == pytest.approx(295.343, rel=1e-5)
    assert row.attainable_flops_per_s == 989.4e12
    assert row.predicted_flops_per_s == pytest.approx(row.flops / row.predicted_time_s)
    # fp8 (Transformer Engine): 1-byte operands, 2-byte output: 67,108,864 + 10,485,760 + 2 x 10,485,760.
    fp8 = next(
        r
        for r in roofline(get_model("llama3-70b"), _layout(tp=8, seq_length=8192), gpu, "fp8").rows
        if r.name == "qkv"
    )
    assert fp8.hbm_bytes == 67_108_864 + 10_485_760 + 2 * 10_485_760
    # Faster, though by less than the 2x of the peaks: H100 profile fractions (0.525 fp8 vs 0.70 bf16, fitted to
    # NeMo and Megatron-LM runs) and the input cast (3 bytes per element of the 8192 x 8192 input).
    assert fp8.attainable_flops_per_s == 1978.9e12 and fp8.predicted_time_s < row.predicted_time_s


def test_memory_bound_norm_sits_on_the_bandwidth_slope() -> None:
    # RMSNorm forward on one rank without SP: b s h = 8192 x 8192 elements, 4 bytes each (read x, write y),
    # 4 nominal FLOPs each -> intensity 1 FLOP/byte; attainable = 1 x 3.35e12 B/s = 3.35 TFLOP/s.
    gpu = get_gpu("h100-sxm")
    row = next(
        r
        for r in roofline(get_model("llama3-70b"), _layout(tp=8, seq_length=8192), gpu).rows
        if r.name == "norm1"
    )
    assert row.hbm_bytes == 4 * 8192 * 8192 and row.flops == 4 * 8192 * 8192
    assert row.intensity_flops_per_byte == 1.0
    assert row.attainable_flops_per_s == pytest.approx(3.35e12)
    assert row.bound == "memory"


def test_precision_moves_roof_and_bytes() -> None:
    m, gpu, lay = get_model("llama3-8b"), get_gpu("h100-sxm"), _layout(tp=1, seq_length=4096)
    bf16, fp8, fp32 = (roofline(m, lay, gpu, p) for p in ("bf16", "fp8", "fp32"))
    b16 = {r.name: r for r in bf16.rows}
    for r in fp32.rows:  # every tensor 4 bytes: twice the bf16 traffic, everywhere
        assert r.hbm_bytes == pytest.approx(2 * b16[r.name].hbm_bytes)
    for r in fp8.rows:
        if r.kind == "gemm":
            assert r.hbm_bytes < b16[r.name].hbm_bytes and r.roof_precision == "fp8"
        else:  # attention stays 16-bit, memory-bound kernels keep bf16 tensors
            assert r.hbm_bytes == b16[r.name].hbm_bytes
            assert r.predicted_time_s == b16[r.name].predicted_time_s
    assert fp8.layer_s < bf16.layer_s < fp32.layer_s


def test_attainable_is_the_roofline_formula() -> None:
    assert attainable_flops(100.0, 2.0, 10.0) == 20.0  # memory side: 10 x 2
    assert attainable_flops(100.0, 2.0, 80.0) == 100.0  # compute side


@given(
    model=st.sampled_from(["llama3-8b", "llama2-13b", "gpt-3.6b", "llama3-70b"]),
    tp=st.sampled_from([1, 2, 4, 8]),
    seq=st.sampled_from([512, 2048, 8192]),
    mbs=st.integers(1, 4),
    precision=st.sampled_from(["bf16", "fp8", "tf32"]),
    attention=st.sampled_from(["flash", "unfused"]),
    sp=st.booleans(),
)
def test_no_op_beats_its_roofline(
    model: str, tp: int, seq: int, mbs: int, precision: str, attention: str, sp: bool
) -> None:
    # The cost model derates peaks by efficiencies <= 1 and adds overheads, so predicted <= attainable.
    table = roofline(
        get_model(model),
        _layout(
            tp=tp, seq_length=seq, micro_batch_size=mbs, attention=attention, sequence_parallel=sp and tp > 1
        ),
        get_gpu("h100-sxm"),
        precision,
    )
    for r in table.rows:
        if r.kind == "comm":
            assert r.bound in ("comm", "comm-overlapped")
            continue
        assert r.predicted_flops_per_s is not None and r.attainable_flops_per_s is not None
        assert r.predicted_flops_per_s <= r.attainable_flops_per_s * (1 + 1e-12)
        assert r.bound in ("compute", "memory")


def test_precision_the_gpu_lacks_names_the_gpus_that_have_it() -> None:
    with pytest.raises(
        InputError, match=r"'a100-80gb' has no fp8 peak .*GPUs with fp8: h100-sxm, h100-pcie"
    ) as exc:
        check_precision(get_gpu("a100-80gb"), "fp8")
    assert "\n" not in str(exc.value)
    with pytest.raises(InputError, match="'v100' has no bf16 peak .*supports fp16, fp32"):
        roofline(get_model("gpt-1.7b"), _layout(), get_gpu("v100"), "bf16")
    with pytest.raises(
        InputError, match="precision='fp6' is not a number format; valid: bf16, fp16, fp8, fp4, tf32, fp32"
    ):
        check_precision(get_gpu("h100-sxm"), "fp6")
    with pytest.raises(InputError, match="'h100-sxm' has no fp4 peak .*GPUs with fp4: b200, gb200$"):
        check_precision(get_gpu("h100-sxm"), "fp4")


def test_bad_tp_is_rejected() -> None:
    with pytest.raises(InputError, match="tp=3 does not divide num_attention_heads=64"):
        roofline(get_model("llama3-70b"), _layout(tp=3), get_gpu("h100-sxm"))


def test_json_dict_has_the_issue_fields() -> None:
    d = roofline(get_model("llama3-8b"), _layout(tp=2), get_gpu("h100-sxm")).as_dict()
    for op in d["ops"]:
        for key in (
            "flops",
            "bytes",
            "intensity_flops_per_byte",
            "attainable_flops_per_s",
            "predicted_time_s",
            "bound",
        ):
            assert key in op
    assert d["layer_s"] == pytest.approx(d["forward_s"] + d["backward_s"])


def test_topology_comm_model_gives_the_same_sums_as_the_simulator() -> None:
    # The TP collectives timed on the DGX H100 graph (NVLink4 through NVSwitch): still one source of truth.
    from pipesim.comm.factory import ClusterSpec, build_comm

    m, g, lay = (
        get_model("llama3-70b"),
        get_gpu("h100-sxm"),
        _layout(tp=8, seq_length=4096, sequence_parallel=True),
    )
    comm = build_comm(ClusterSpec("dgx-h100"), 8)
    ranks = tuple(range(8))
    sim = layer_pass_times(m, lay, g, g.profile, comm, ranks)
    table = roofline(m, lay, g, comm=comm, tp_ranks=ranks)
    assert table.forward_s == pytest.approx(sim.forward_s, rel=1e-12)
    assert table.backward_s == pytest.approx(sim.backward_s, rel=1e-12)
    # With no comm given, the collectives run on the GPU's own server: for H100 the same dgx-h100 graph.
    default = roofline(m, lay, g)
    assert default.forward_s == table.forward_s and default.backward_s == table.backward_s
    # DGX A100's two-level model (240 GB/s per GPU) times the same all-gather slower than NVLink4.
    a100_links = roofline(m, lay, g, comm=build_comm(ClusterSpec(), 8))
    ag = next(r for r in table.rows if r.name == "tp.ag1")
    assert ag.predicted_time_s < next(r for r in a100_links.rows if r.name == "tp.ag1").predicted_time_s
