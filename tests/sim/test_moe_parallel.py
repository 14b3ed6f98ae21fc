"""Expert and context parallelism: operators, groups, memory and the end-to-end simulation."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import main
from pipesim.comm.base import LevelCommModel, bus_factor
from pipesim.cost.flops import layer_ops
from pipesim.cost.memory import layer_activation_bytes, stage_param_split
from pipesim.cost.times import comm_op_s
from pipesim.errors import InputError
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model
from pipesim.specs.placement import RankGrid

MIXTRAL = get_model("mixtral-8x7b")
LLAMA = get_model("llama3.1-8b")


def _ops(model: object, **kw: object) -> dict[str, object]:
    lay = Layout(**{"global_batch_size": 64, "seq_length": 4096, **kw})  # type: ignore[arg-type]
    return {o.name: o for o in layer_ops(model, lay).all}  # type: ignore[arg-type]


def test_dispatch_is_an_all_to_all_of_every_routed_copy() -> None:
    ops = _ops(MIXTRAL, ep=8, dp=8)
    d = ops["moe.dispatch"]
    # T = b s = 4096 tokens, k = 2 copies of h = 4096 two-byte elements each.
    assert (d.collective, d.group, d.comm_bytes) == ("all-to-all", "ep", 2 * 4096 * 2 * 4096)  # type: ignore[attr-defined]
    assert {"moe.combine", "moe.dispatch.bwd", "moe.combine.bwd"} <= set(ops)
    assert "moe.dispatch" not in _ops(MIXTRAL)  # ep = 1: no all-to-all


def test_all_to_all_time_uses_nccl_tests_bus_factor() -> None:
    # nccl-tests doc/PERFORMANCE.md: all-to-all busbw = algbw x (n-1)/n.
    assert bus_factor("all-to-all", 8) == 7 / 8
    comm = LevelCommModel(gpus_per_node=8, intra_Bps=400e9, inter_Bps=50e9)
    d = _ops(MIXTRAL, ep=8, dp=8)["moe.dispatch"]
    size = 2 * 4096 * 2 * 4096
    t = comm_op_s(d, comm, list(range(8)))  # type: ignore[arg-type]
    assert t == pytest.approx(7 * comm.intra_latency_s + size * 7 / 8 / 400e9)
    across = comm_op_s(d, comm, [0, 8, 16, 24, 32, 40, 48, 56])  # type: ignore[arg-type]
    assert across == pytest.approx(7 * comm.inter_latency_s + size * 7 / 8 / 50e9)


def test_grouped_gemm_shapes_and_balanced_expert_flops() -> None:
    one = _ops(MIXTRAL)["moe.fc1"]
    # ep = 1: all 8 experts local, each with T k ep / E = 4096 x 2 x 1 / 8 = 1024 rows.
    assert (one.shape, one.batch) == ((1024, 2 * 14336, 4096), 8)  # type: ignore[attr-defined]
    four = _ops(MIXTRAL, ep=2, dp=2)["moe.fc1"]
    # ep = 2: 4 local experts, each with 4096 x 2 x 2 / 8 = 2048 rows.
    assert (four.shape, four.batch) == ((2048, 2 * 14336, 4096), 4)  # type: ignore[attr-defined]
    # Balanced routing: every GPU computes T k = 8192 rows whatever ep is: 2 x 8192 x 28672 x 4096 FLOPs.
    assert one.flops == four.flops == 2 * 8192 * 28672 * 4096  # type: ignore[attr-defined]


def test_imbalance_and_capacity_factor_scale_the_busiest_rank() -> None:
    base = _ops(MIXTRAL, ep=8, dp=8)["moe.fc1"].flops  # type: ignore[attr-defined]
    assert _ops(MIXTRAL, ep=8, dp=8, moe_imbalance=1.5)["moe.fc1"].flops == pytest.approx(1.5 * base)  # type: ignore[attr-defined]
    capped = MIXTRAL.__class__(**{**MIXTRAL.__dict__, "moe_capacity_factor": 1.25})
    assert _ops(capped, ep=8, dp=8, moe_imbalance=1.5)["moe.fc1"].flops == pytest.approx(1.25 * base)  # type: ignore[attr-defined]


def test_ring_attention_volume_per_layer() -> None:
    # Ring Attention (Liu et al., arXiv:2310.01889, Section 3) / Megatron-Core context parallelism: in cp - 1
    # rounds every GPU passes its key/value block, b (s/cp) x kv_heads x d x 2 (K and V) x 2 bytes; the
    # backward passes the blocks and their gradients (twice the bytes).
    ops = _ops(LLAMA, cp=4)
    ring = ops["cp.kv.ring"]
    block = 2 * (4096 // 4) * 8 * 128 * 2
    assert (ring.collective, ring.batch, ring.comm_bytes) == ("ring-p2p", 3, block)  # type: ignore[attr-defined]
    assert ops["cp.kv.ring.bwd"].comm_bytes == 2 * block  # type: ignore[attr-defined]
    assert ring.hidden_by == "attn.flash"  # type: ignore[attr-defined]
    ag = _ops(LLAMA, cp=4, cp_comm="all-gather")["cp.kv.ag"]
    assert (ag.collective, ag.comm_bytes) == ("all-gather", 4 * block)  # type: ignore[attr-defined]


def test_cp_divides_attention_and_activations() -> None:
    full = _ops(LLAMA)["attn.flash"].flops  # type: ignore[attr-defined]
    assert _ops(LLAMA, cp=2)["attn.flash"].flops == pytest.approx(full / 2)  # type: ignore[attr-defined]
    lay1 = Layout(global_batch_size=8, seq_length=4096)
    lay2 = Layout(global_batch_size=8, seq_length=4096, cp=2)
    assert layer_activation_bytes(LLAMA, lay2) == pytest.approx(layer_activation_bytes(LLAMA, lay1) / 2)


def test_expert_weights_shard_over_ep_times_etp() -> None:
    kinds = MIXTRAL.kind_counts()
    d1, e1 = stage_param_split(MIXTRAL, Layout(global_batch_size=8), kinds, False, False)
    d8, e8 = stage_param_split(MIXTRAL, Layout(global_batch_size=8, dp=8, ep=8), kinds, False, False)
    assert e1 == 32 * 8 * 3 * 4096 * 14336 and e8 == e1 / 8 and d8 == d1


def test_megatron_rank_order_groups() -> None:
    g = RankGrid(tp=8, dp=4, pp=8, cp=2)  # tp-cp-dp-pp
    assert g.cp_group(0, 0, 0) == [0, 8] and g.dp_group(0, 0) == [0, 16, 32, 48]
    assert len(g.dp_cp_group(0, 0)) == 8
    e = RankGrid(tp=2, dp=32, pp=16, ep=64)  # DeepSeek-V3 on 1,024 GPUs: EP takes the tp x dp ranks
    assert e.ep_group(0) == list(range(64)) and e.edp == 1 and e.ep_group(1)[0] == 64
    c = e.crossings(8)
    assert c["ep"].max_nodes == 8 and c["tp"].crossing == 0


@pytest.mark.parametrize(
    ("kw", "model", "message"),
    [
        (
            {"ep": 3, "dp": 3, "global_batch_size": 63},
            MIXTRAL,
            "ep=3 does not divide num_experts=8; valid ep here: 1",
        ),
        ({"ep": 2, "dp": 2}, LLAMA, "need a mixture-of-experts model"),
        ({"cp": 3, "seq_length": 4096}, LLAMA, "does not split into 2 x cp = 6 equal chunks"),
    ],
)
def test_check_model_refuses(kw: dict[str, object], model: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Layout(**{"global_batch_size": 64, **kw}).check_model(model)  # type: ignore[arg-type]


def test_etp_times_ep_must_fit() -> None:
    with pytest.raises(
        InputError, match="etp x ep = 2 x 8 = 16 does not divide tp x cp x dp = 1 x 1 x 8 = 8"
    ):
        Layout(dp=8, ep=8, etp=2, global_batch_size=64)


def test_ep_across_servers_costs_more_than_inside() -> None:
    from pipesim.comm.factory import ClusterSpec, build_comm

    gpu = get_gpu("h100-sxm")
    qwen = get_model("qwen3-30b-a3b")  # 128 experts

    def step(ep: int) -> tuple[float, float]:
        lay = Layout(tp=1, pp=4, dp=16, ep=ep, global_batch_size=64, seq_length=4096)
        comm = build_comm(ClusterSpec("dgx-h100", 8), lay.num_gpus)
        rep = simulate_scenario(Scenario(qwen, gpu, lay, comm))
        return rep.step_time_s, rep.breakdown.ep_comm

    (t8, ep8), (t16, ep16) = step(8), step(16)
    assert 0 < ep8 < ep16 and t8 < t16
    parts = simulate_scenario(
        Scenario(MIXTRAL, gpu, Layout(pp=4, dp=16, ep=8, global_batch_size=64))
    ).breakdown
    exposed = sum(v["exposed"] for k, v in parts.as_dict().items() if k != "recompute")
    assert exposed == pytest.approx(
        simulate_scenario(
            Scenario(MIXTRAL, gpu, Layout(pp=4, dp=16, ep=8, global_batch_size=64))
        ).step_time_s,
        rel=1e-6,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "mixtral-8x7b", "--ep", "3", "--dp", "3", "--global-batch-size", "3"],
            "ep=3 does not divide",
        ),
        (["--model", "llama3.1-8b", "--cp", "3", "--seq-length", "4096"], "2 x cp = 6 equal chunks"),
        (
            ["--model", "mixtral-8x7b", "--ep", "4", "--etp", "2", "--dp", "4", "--global-batch-size", "4"],
            "etp x ep",
        ),
        (
            ["--model", "mixtral-8x7b", "--moe-imbalance", "0.5"],
            "moe-imbalance=0.5 must be a finite number >= 1.0",
        ),
        (
            ["--model", "llama3.1-8b", "--cp", "2", "--cp-comm", "tree"],
            "cp-comm='tree'; valid: ring, all-gather",
        ),
    ],
)
def test_cli_bad_input_one_line_exit_2(args: list[str], message: str) -> None:
    if "--global-batch-size" not in args:  # required: its absence is refused first
        args = [*args, "--global-batch-size", "64"]
    result = CliRunner().invoke(main, ["simulate", "--gpu", "h100-sxm", *args])
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_megatron_arguments_carry_experts_mla_cp_and_ep() -> None:
    from pipesim.io.megatron import megatron_args

    ds = dict(
        megatron_args(get_model("deepseek-v3"), Layout(tp=2, pp=16, dp=32, ep=64, global_batch_size=8192))
    )
    assert ds["--num-experts"] == "256" and ds["--moe-router-topk"] == "8"
    assert ds["--expert-model-parallel-size"] == "64" and ds["--expert-tensor-parallel-size"] == "1"
    assert ds["--kv-lora-rank"] == "512" and ds["--mtp-num-layers"] == "1"
    assert ds["--moe-layer-freq"].startswith("'([0,0,0,1,")
    ll = dict(megatron_args(LLAMA, Layout(tp=8, cp=2, dp=2, global_batch_size=8, seq_length=8192)))
    assert ll["--context-parallel-size"] == "2" and ll["--cp-comm-type"] == "p2p"
