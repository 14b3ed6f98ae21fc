"""FSDP / ZeRO-3 as run (pipesim.cost.fsdp): the prefetch pipeline of a pass, reshard-after-forward, hybrid
sharding, memory, MoE, the refusals, and the estimator agreeing with the simulator."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipesim.comm.base import LevelCommModel
from pipesim.comm.factory import ClusterSpec, build_comm
from pipesim.cost.fsdp import prefetched_pass_s, shard_groups, submodules
from pipesim.cost.memory import WEIGHT_BYTES, bytes_per_param
from pipesim.cost.times import layer_detail, layer_pass_times
from pipesim.errors import InputError
from pipesim.plan.estimate import Estimator
from pipesim.sim.scenario import Scenario, build_scenario_schedule, simulate_scenario, stage_costs
from pipesim.specs.gpu import get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model

A100 = get_gpu("a100-80gb")
GPT = get_model("gpt-7.5b")  # 36 layers, h 4096


def test_forward_pipeline_closed_form() -> None:
    # Uniform units, prefetch depth 1: pass = g + c + (L - 1) max(g, c) (module docstring); the first gather
    # is never hidden. Compute-bound: g=2, c=3, L=5 -> 2 + 3 + 4 x 3 = 17; comm-bound: g=3, c=2 -> 3 + 2 + 4 x 3.
    assert prefetched_pass_s([3.0] * 5, [2.0] * 5) == (pytest.approx(17.0), pytest.approx(10.0))
    assert prefetched_pass_s([2.0] * 5, [3.0] * 5)[0] == pytest.approx(17.0)
    # No units, no time; gathers that take nothing leave the compute alone.
    assert prefetched_pass_s([], []) == (0.0, 0.0)
    assert prefetched_pass_s([1.0, 2.0], [0.0, 0.0])[0] == pytest.approx(3.0)


def test_overlapped_compute_runs_on_the_sms_the_collectives_leave() -> None:
    # A quarter of the SMs held by the collectives (module docstring): while the stream is busy a unit computes
    # at 3/4 speed. Compute-bound g=2, c=3, L=5: each overlapped unit lasts c + share x g = 3 + 0.25 x 2 = 3.5
    # (2 s of overlap do 1.5 s of work, the other 1.5 s at full speed), so the pass is 2 + 4 x 3.5 + 3 = 19
    # (walked by hand: g0 0-2, u0 2-5.5, g1 2-4, u1 5.5-9, g2 5.5-7.5, ..., u4 16-19, no gather left under it).
    assert prefetched_pass_s([3.0] * 5, [2.0] * 5, share=0.25)[0] == pytest.approx(19.0)
    # Communication-bound g=3, c=2: the slowed compute (2 / 0.75 = 2.67 s) still fits under each gather, so
    # the pass is unchanged: 3 + 2 + 4 x 3 = 17.
    assert prefetched_pass_s([2.0] * 5, [3.0] * 5, share=0.25)[0] == pytest.approx(17.0)
    assert prefetched_pass_s([3.0] * 5, [2.0] * 5, share=0.0)[0] == pytest.approx(17.0)


def test_backward_shares_the_stream_between_gathers_and_reduce_scatters() -> None:
    # c=3, g=1, s=1 per unit, 5 units: the 2 s of collectives per unit fit under 3 s of compute, so the pass is
    # the first gather (1) + 5 x 3 of compute + the last unit's reduce-scatter (1) = 17 (walked by hand:
    # g0 0-1, u0 1-4, g1 1-2, s0 4-5, u1 4-7, g2 5-6, s1 7-8, ... u4 13-16, s4 16-17).
    assert prefetched_pass_s([3.0] * 5, [1.0] * 5, [1.0] * 5) == (pytest.approx(17.0), pytest.approx(10.0))
    # Communication-bound (c=1, g=s=2, 3 units): the stream never idles, the pass is its 6 x 2 = 12 s.
    assert prefetched_pass_s([1.0] * 3, [2.0] * 3, [2.0] * 3)[0] == pytest.approx(12.0)


def _layout(**kw: object) -> Layout:
    base: dict[str, object] = dict(
        dp=32, micro_batch_size=1, global_batch_size=64, recompute="full", precision="fp16", fsdp="full"
    )
    base.update(kw)
    return Layout(**base)  # type: ignore[arg-type]


def _report(lay: Layout, topology: str | None = "dgx-a100", model: str = "gpt-7.5b") -> object:
    comm = build_comm(ClusterSpec(topology), lay.num_gpus) if topology else build_comm(ClusterSpec(), 1)
    return simulate_scenario(Scenario(get_model(model), A100, lay, comm))


def test_fsdp_full_gathers_once_per_backward_deepspeed_twice_with_full_recompute() -> None:
    # FSDP recomputes inside the unit's backward on the weights gathered for it (2 gathers + 1 reduce-scatter
    # per unit and microbatch); DeepSpeed's hooks fetch again for the recomputed forward (3 + 1). With fp16
    # gradients (2 bytes, as the weights) and no latency, bytes decide: layers L (4 vs 3 collectives of their
    # weights) plus the embedding E, not recomputed (3 in both): (4 L + 3 E) / (3 L + 3 E) with L = 36 layers
    # x 12 h^2 (h = 4096; DeepSpeed leaves the norms and biases out of its fetches, 0.01%) and E = V h + s h.
    comm = LevelCommModel(intra_latency_s=0.0, inter_latency_s=0.0)

    def run(lay: Layout) -> float:
        r = simulate_scenario(Scenario(GPT, A100, lay, comm))
        return float(r.breakdown.fsdp_comm_total)

    big, emb = 36 * 12 * 4096**2, GPT.embedding_params()
    expected = (4 * big + 3 * emb) / (3 * big + 3 * emb)
    assert run(_layout(fsdp="none", zero_stage=3)) / run(_layout()) == pytest.approx(expected, rel=1e-3)
    fsdp = _report(_layout(), None).breakdown  # type: ignore[attr-defined]
    assert fsdp.dp_comm_total == 0.0  # every gradient is reduce-scattered inside the backward


def test_deepspeed_fetch_units_are_the_weight_holding_submodules() -> None:
    # GPT layer: QKV, projection, MLP up, MLP down (weights 3h^2, h^2, 4h^2, 4h^2 with h = 4096); the forward
    # visits them in that order, a fully recomputed layer again, its backward in reverse; the pieces' seconds
    # add up to the layer's F and B, so splitting changes no compute.
    lay = _layout(fsdp="none", zero_stage=3)
    comm = build_comm(ClusterSpec(), 1)
    timed = layer_detail(GPT, lay, A100, A100.profile, comm, [0])
    fwd, rec, bwd = submodules(timed)
    h = GPT.hidden_size
    assert [d for _, d, _ in fwd] == [3 * h * h, h * h, 4 * h * h, 4 * h * h]
    assert [d for _, d, _ in rec] == [d for _, d, _ in fwd]
    assert [d for _, d, _ in bwd] == [4 * h * h, 4 * h * h, h * h, 3 * h * h]
    pt = layer_pass_times(GPT, lay, A100, A100.profile, comm, [0])
    assert sum(c for c, _, _ in fwd) == pytest.approx(pt.forward_s, rel=1e-12)
    assert sum(c for c, _, _ in rec + bwd) == pytest.approx(pt.backward_s, rel=1e-12)
    # Selective recomputation re-runs no weights: no recompute fetches, its time joins the backward.
    sel = submodules(layer_detail(GPT, replace(lay, recompute="selective"), A100, A100.profile, comm, [0]))
    assert sel[1] == () and len(sel[2]) == 4


def test_no_reshard_drops_the_backward_gather_and_keeps_the_weights() -> None:
    on = _report(_layout(), None)
    off = _report(_layout(reshard_after_forward=False), None)
    # 1 gather + 1 reduce-scatter instead of 2 + 1 per unit: two thirds of the collectives.
    ratio = off.breakdown.fsdp_comm_total / on.breakdown.fsdp_comm_total  # type: ignore[attr-defined]
    assert ratio == pytest.approx(2 / 3, rel=0.01)
    # Memory: the gathered 16-bit copy of every weight stays from forward to backward: + 2 bytes/param.
    lay = _layout(reshard_after_forward=False)
    assert bytes_per_param(lay)[0] == pytest.approx(WEIGHT_BYTES / 32 + WEIGHT_BYTES)
    extra = off.memory[0].weights - on.memory[0].weights  # type: ignore[attr-defined]
    assert extra == pytest.approx(WEIGHT_BYTES * GPT.num_params(), rel=1e-6)


def test_hybrid_shards_inside_groups_and_all_reduces_across_them() -> None:
    lay = _layout(fsdp="hybrid", fsdp_shard_size=8)
    shard, replicas = shard_groups(list(range(32)), lay)
    assert shard == list(range(8)) and replicas == [0, 8, 16, 24]
    full, hsdp = _report(_layout()), _report(lay)
    # Weights, gradients and optimizer state shard over 8 GPUs instead of 32 (ZeRO-3's 18 bytes / n).
    w, g, o = bytes_per_param(lay)
    assert (w, g, o) == pytest.approx((2 / 8, 4 / 8, 12 / 8))
    assert hsdp.memory[0].optimizer == pytest.approx(4 * full.memory[0].optimizer)  # type: ignore[attr-defined]
    # Gathers stay inside one DGX (NVLink) instead of crossing 4 servers: less FSDP time per step; the
    # gradient shards are all-reduced across the 4 replicas once per step on the DP stream.
    assert hsdp.breakdown.fsdp_comm_total < full.breakdown.fsdp_comm_total  # type: ignore[attr-defined]
    assert hsdp.breakdown.dp_comm_total > 0.0 == full.breakdown.dp_comm_total  # type: ignore[attr-defined]


def test_exposed_parts_add_up_and_fsdp_exposure_is_what_compute_cannot_hide() -> None:
    for topology in (None, "dgx-a100"):
        r = _report(_layout(), topology)
        d = r.breakdown.as_dict()  # type: ignore[attr-defined]
        parts = ("compute", "bubble", "tp_comm", "pp_comm", "dp_comm", "fsdp_comm", "optimizer")
        assert sum(d[k]["exposed"] for k in parts) == pytest.approx(r.step_time_s, rel=1e-9)  # type: ignore[attr-defined]
        assert 0.0 <= d["fsdp_comm"]["exposed"] <= d["fsdp_comm"]["total"]
    # Across servers on one 24 GB/s NIC per GPU (two-level model) the 7.5B layer's gathers outlast its
    # compute at micro-batch 1: much is exposed; inside the 8 NICs of each DGX (topology graph) little is.
    slow = _report(_layout(), None).breakdown  # type: ignore[attr-defined]
    fast = _report(_layout(), "dgx-a100").breakdown  # type: ignore[attr-defined]
    assert slow.fsdp_comm_exposed > 3 * fast.fsdp_comm_exposed


def test_moe_zero3_shards_experts_over_the_expert_data_parallel_group() -> None:
    lay = Layout(dp=8, ep=4, micro_batch_size=1, global_batch_size=8, zero_stage=3)
    r = _report(lay, "dgx-a100", "mixtral-8x7b")
    mem = r.memory[0]  # type: ignore[attr-defined]
    model = get_model("mixtral-8x7b")
    experts = model.num_layers * model.expert_layer_params()
    # Expert weights: 2 bytes x expert params / (ep x edp) = / (4 x 2); dense weights over dp = 8.
    assert mem.expert_weights == pytest.approx(2 * experts / 8, rel=1e-6)
    assert r.breakdown.fsdp_comm_total > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"fsdp": "sharded"}, "fsdp='sharded'; valid: none, full, hybrid"),
        ({"fsdp": "full", "zero_stage": 1}, "valid zero-stage with --fsdp: 0 or 3"),
        ({"fsdp": "full", "fsdp_shard_size": 4}, "fsdp-shard-size=4 needs fsdp=hybrid"),
        ({"fsdp": "hybrid"}, "fsdp=hybrid needs fsdp-shard-size"),
        ({"fsdp": "hybrid", "fsdp_shard_size": 3}, "must divide dp x cp = 8; valid: 1, 2, 4, 8"),
        ({"reshard_after_forward": False}, "no-reshard-after-forward needs sharded parameters"),
    ],
)
def test_bad_combinations_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Layout(dp=8, global_batch_size=8, **kw)  # type: ignore[arg-type]


def test_hybrid_with_moe_refused() -> None:
    lay = Layout(dp=8, ep=2, global_batch_size=8, fsdp="hybrid", fsdp_shard_size=4)
    with pytest.raises(InputError, match="fsdp=hybrid with the mixture-of-experts model"):
        lay.check_model(get_model("mixtral-8x7b"))


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"fsdp": "hybrid", "fsdp_shard_size": 8},
        {"reshard_after_forward": False},
        {"fsdp": "none", "zero_stage": 3, "pp": 4, "dp": 8, "global_batch_size": 64},
    ],
)
def test_estimator_uses_the_simulators_fsdp_costs(kw: dict[str, object]) -> None:
    # One cost model: the planner's estimate carries the same FSDP-stretched pass times as the simulator
    # (identical OpCosts) and its step agrees within the closed form's 3% (tests/cost/test_one_cost_model.py).
    lay = _layout(**kw)
    comm = build_comm(ClusterSpec("dgx-a100"), lay.num_gpus)
    scenario = Scenario(GPT, A100, lay, comm)
    est = Estimator(GPT, A100, comm, scenario.efficiency)
    simulated = stage_costs(scenario, build_scenario_schedule(scenario))
    assert est.stage_costs(lay).costs == simulated.costs
    e = est.estimate(lay)
    r = simulate_scenario(scenario)
    assert e.step_time_s == pytest.approx(r.step_time_s, rel=0.03)
    # The exposed FSDP time: the slowest rank's in the estimate, the mean over ranks in the simulation (one
    # rank: the same number; several: the slowest rank's is at most pp x the mean).
    mean = r.breakdown.fsdp_comm_exposed  # type: ignore[attr-defined]
    if lay.pp == 1:
        assert e.breakdown()["fsdp_comm"] == pytest.approx(mean, rel=1e-9, abs=1e-12)
    else:
        assert 0.0 < e.breakdown()["fsdp_comm"] <= lay.pp * mean
