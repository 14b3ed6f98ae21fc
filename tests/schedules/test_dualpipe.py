"""DualPipe / DualPipeV against the DeepSeek-V3 report (arXiv:2412.19437) and the deepseek-ai/DualPipe README
table (published.md 4.7): bubble (PP/2-1)(F&B + B - 3W), activation PP+1 chunks, with F, B, W chunk times and
B a full backward. Here the F&B pairs run as F then B (no pair duration given); tests/test_overlap.py runs them
overlapped."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedules import Op, ScheduleError, build_schedule, dumps_csv, loads_csv, read_csv, validate
from schedules.dualpipe import dualpipe, dualpipe_v
from schedules.ir import v_shape_placement
from tests.zb_helpers import run

DATA = Path(__file__).parents[1] / "data"
SIZES = [(2, 4), (3, 6), (4, 8), (4, 12), (6, 12), (8, 24)]


@pytest.mark.parametrize(("p", "m"), SIZES)
def test_complete_v_shaped_and_mixing_b_with_i_w(p: int, m: int) -> None:
    s = dualpipe_v(p, m)
    validate(s)
    assert s.stage_to_rank == v_shape_placement(p)
    ops = {a.op for _, _, a in s.iter_actions()}
    assert Op.B in ops and Op.I in ops and Op.W in ops  # full backwards in the middle, split ones at the ends


@pytest.mark.parametrize(("p", "m"), SIZES)
def test_activation_memory_is_pp_plus_one_chunks(p: int, m: int) -> None:
    # README: DualPipe activation PP+1 (chunks per rank). DualPipeV on p ranks is DualPipe with PP = 2p cut in
    # half, so 2p+1 chunk-microbatches per rank = (2p+1)/2 whole-stage microbatches (a chunk counts 1/2).
    r = run(dualpipe_v(p, m), 0.5, 0.5, 0.5).metrics
    assert r.peak_activation_microbatches_per_rank == tuple((2 * p + 1) / 2 for _ in range(p))


@pytest.mark.parametrize(("p", "m"), SIZES)
@pytest.mark.parametrize(
    ("tf", "ti", "tw"), [(0.5, 0.5, 0.5), (0.5, 0.5, 0.25), (1.0, 0.5, 0.5), (0.8, 0.6, 0.3)]
)
def test_bubble_with_sequential_f_and_b(p: int, m: int, tf: float, ti: float, tw: float) -> None:
    # Chunk times F = tf, B = ti + tw, W = tw, with I <= F. With F&B run as F + B the measured idle time per rank
    # is (p-1)(F + B - 2W) = (p-1)(F + I - W), at most the README's (PP/2-1)(F&B + B - 3W) with PP = 2p and
    # F&B = F + B, i.e. (p-1)(F + 2B - 3W); and below 1F1B's (PP-1)(F + B) on the same 2p chunks' work.
    b = ti + tw
    r = run(dualpipe_v(p, m), tf, ti, tw)
    assert r.step_bubble == pytest.approx((p - 1) * (tf + b - 2 * tw))
    assert r.step_bubble <= (p - 1) * ((tf + b) + b - 3 * tw) + 1e-9
    one_f_one_b = run(build_schedule("1f1b", p, m), 2 * tf, 2 * b, 0.0)  # a whole stage = two chunks
    assert r.metrics.step_time_s < one_f_one_b.metrics.step_time_s


def test_bubble_when_input_gradient_outweighs_forward() -> None:
    # With I > F the sequential model adds (p-2)(I - F) on top: p=4, F=0.5, I=1, W=0.5 ->
    # 3 * (0.5 + 1 - 0.5) + 2 * 0.5 = 4.0; still under the README figure 3 * (0.5 + 3 - 1.5) = 6.0.
    r = run(dualpipe_v(4, 8), 0.5, 1.0, 0.5)
    assert r.step_bubble == pytest.approx(4.0)
    assert r.step_bubble < 6.0


@pytest.mark.parametrize(("p", "m", "bound"), [(4, 7, 8), (3, 5, 6), (1, 1, 2)])
def test_dualpipe_v_needs_two_microbatches_per_rank(p: int, m: int, bound: int) -> None:
    with pytest.raises(ScheduleError) as err:
        build_schedule("dualpipe-v", p, m)
    msg = str(err.value)
    assert f"microbatches >= 2 * pp = {bound}" in msg and f"got {m}" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("pp", "m", "needle"),
    [
        (3, 12, "even pp >= 2"),
        (1, 4, "even pp >= 2"),
        (4, 7, r"even number of microbatches >= 2 \* pp = 8"),
        (4, 6, "= 8"),
    ],
)
def test_dualpipe_size_rules(pp: int, m: int, needle: str) -> None:
    with pytest.raises(ScheduleError, match=needle):
        dualpipe(pp, m)


BIDIRECTIONAL = [(2, 4), (4, 8), (4, 12), (6, 12), (8, 16), (8, 20)]


@pytest.mark.parametrize(("pp", "m"), BIDIRECTIONAL)
def test_bidirectional_dualpipe_routes(pp: int, m: int) -> None:
    # Two chains of PP stages (two model copies): the forward direction, stages 0..PP-1 on ranks 0..PP-1, runs
    # microbatches 0..m/2-1; the reverse one, stages PP..2PP-1 on ranks PP-1..0, runs m/2..m-1. Every rank holds
    # one stage of each (twice the parameters of a one-copy pipeline), and the order is complete,
    # dependency-respecting and deadlock-free.
    s = dualpipe(pp, m)
    validate(s)
    assert s.name == "dualpipe" and s.num_ranks == pp and s.num_stages == 2 * pp and s.chain_starts == (0, pp)
    assert s.stage_to_rank == v_shape_placement(pp) and s.chain_length == pp
    for _, _, a in s.iter_actions():
        assert (a.stage < pp) == (a.microbatch < m // 2), a
    assert all(sorted({a.stage for a in s.actions(r)}) == [r, 2 * pp - 1 - r] for r in range(pp))


@pytest.mark.parametrize(("pp", "m"), BIDIRECTIONAL)
def test_bidirectional_dualpipe_mirrors_dualpipe_v(pp: int, m: int) -> None:
    # deepseek-ai/DualPipe: rank r runs the eight steps of half rank h = min(r, PP-1-r) of PP/2 with m/2
    # microbatches per direction, which are DualPipeV's steps on PP/2 ranks: the same op sequence.
    s, half = dualpipe(pp, m), dualpipe_v(pp // 2, m // 2)
    for r in range(pp):
        h = min(r, pp - 1 - r)
        assert [a.op for a in s.actions(r)] == [a.op for a in half.actions(h)], r
        assert s.overlapped[r] == half.overlapped[h]


@pytest.mark.parametrize(("pp", "m"), BIDIRECTIONAL)
@pytest.mark.parametrize(
    ("tf", "ti", "tw", "fb"),
    [
        (1.0, 1.0, 1.0, 3.0),
        (1.0, 1.0, 1.0, 2.6),
        (1.0, 1.0, 0.5, 2.0),
        (1.5, 1.5, 0.5, 3.0),
        (2.0, 2.0, 1.0, 5.0),
    ],
)
def test_bidirectional_dualpipe_golden_bubble_and_memory(
    pp: int, m: int, tf: float, ti: float, tw: float, fb: float
) -> None:
    # DualPipe README table (deepseek-ai/DualPipe, "Pipeline Bubbles and Memory Usage Comparison"): bubble
    # (PP/2 - 1)(F&B + B - 3W), activation PP + 1, with F, B, W chunk times and B a full backward. Uniform
    # case as in the README's figure: I = B - W = F, F&B <= F + B. The busiest (middle) ranks idle exactly that long with
    # the F&B pairs as one span; e.g. PP 8, F = I = W = 1 (B = 2), F&B = 2.6: 3 * (2.6 + 2 - 3) = 4.8.
    # Activations, in stages of 1/PP of the model (one chunk of one direction): PP + 1 on every rank.
    from dataclasses import replace

    from pipesim.sim.engine import OpCosts, simulate
    from pipesim.sim.metrics import pipeline_metrics

    b = ti + tw
    s = dualpipe(pp, m)
    c = replace(OpCosts.uniform(2 * pp, tf, b, tw, activation_bytes=1.0), fb_pair_s=fb)
    tl = simulate(s, c)
    metrics = pipeline_metrics(s, c, tl)
    idle = [tl.step_time_s - busy for busy in metrics.compute_busy_s_per_rank]
    assert max(idle) == pytest.approx((pp // 2 - 1) * (fb + b - 3 * tw))
    assert metrics.peak_activation_microbatches_per_rank == pytest.approx([pp + 1] * pp)


def test_order_follows_the_dualpipe_steps() -> None:
    # p=2, m=4, rank 0 (stages 0 and 3): step 1 two F0; step 2 one (F0, F1); step 3 (I1, W, F1);
    # step 4 once (F0 B1 F1 B0); step 5 (B1, F1 B0); step 6 (B1, I0) on an even rank; step 7 (W, I0); step 8 W.
    assert dualpipe_v(2, 4).text(0) == (
        "0F0 0F1 0F2 3F0 3I0 3W0 3F1 0F3 3B1 3F2 0B0 3B2 3F3 0B1 3B3 0I2 0W2 0I3 0W3"
    )


def test_pytorch_dualpipev_csv_with_overlap_cells() -> None:
    # tests/data/dualpipev_pytorch_pp3_m8.csv: ScheduleDualPipeV's layout with its F&B pairs written as PyTorch
    # writes them, "(0F5;5B2)OVERLAP_F_B"; each pair loads as F then B, recorded as an overlapped pair at the
    # same positions dualpipe_v marks (the equality below includes them).
    path = DATA / "dualpipev_pytorch_pp3_m8.csv"
    assert "OVERLAP_F_B" in path.read_text()
    s = read_csv(path)
    validate(s)
    assert s == dualpipe_v(3, 8)
    r = run(s, 0.5, 0.5, 0.5)
    assert r.step_bubble == pytest.approx(2 * 0.5)


def test_csv_round_trip() -> None:
    s = build_schedule("dualpipe-v", 4, 8)
    assert loads_csv(dumps_csv(s)) == s


def test_bidirectional_dualpipe_with_a_real_model_charges_two_model_copies() -> None:
    # gpt-1.7b (24 layers) on pp 4: each DualPipe stage is a quarter of the model, as 1F1B's; rank 1 holds
    # blocks 1 (forward direction) and 2 (reverse), twice 1F1B's rank-1 parameters (neither holds the
    # embedding or the head), and every block's gradients are also all-reduced between its two copies'
    # ranks (deepseek-ai/DualPipe's example adds each copy's gradient to its mirror's), so DP communication
    # grows. The planner's estimate charges the same memory (its profiled walk of the built schedule).
    from pipesim.plan.estimate import Estimator
    from pipesim.sim.scenario import Scenario, simulate_scenario, stage_costs
    from pipesim.specs.gpu import get_gpu
    from pipesim.specs.layout import Layout
    from pipesim.specs.model import get_model

    model, gpu = get_model("gpt-1.7b"), get_gpu("a100-80gb")

    def report(schedule: str):  # type: ignore[no-untyped-def]
        lay = Layout(tp=1, pp=4, dp=2, micro_batch_size=1, global_batch_size=32, schedule=schedule)
        return simulate_scenario(Scenario(model, gpu, lay))

    one, dual = report("1f1b"), report("dualpipe")
    assert dual.schedule.chain_starts == (0, 4)
    sc1, sc2 = stage_costs(one.scenario, one.schedule), stage_costs(dual.scenario, dual.schedule)
    assert sc2.rank_params[1] == pytest.approx(2 * sc1.rank_params[1])
    assert sc2.costs.forward_s[1] == pytest.approx(sc1.costs.forward_s[1])  # a whole stage, not half of one
    assert dual.memory[1].weights == pytest.approx(2 * one.memory[1].weights)
    assert sum(sc2.dp_full_s) > 2 * sum(sc1.dp_full_s)
    assert sc2.costs.p2p_s[3] == 0.0  # no transfer across the seam between the two chains
    est = Estimator(model, gpu, dual.scenario.comm, dual.scenario.efficiency)
    assert est.estimate(dual.scenario.layout).peak_memory_bytes == pytest.approx(dual.worst_memory.peak)


@pytest.mark.parametrize("name", ["dualpipe-v", "dualpipe"])
@pytest.mark.parametrize(("pp", "m"), [(2, 4), (4, 8), (4, 20), (6, 24), (8, 16), (8, 40)])
def test_generated_pairs_pass_the_full_pair_check(name: str, pp: int, m: int) -> None:
    # The generators build their F&B pairs by construction and skip the check on construction (for speed);
    # the check itself holds on every generated order, and for its repetition over iterations.
    from schedules.iterations import repeat_iterations

    s = build_schedule(name, pp, m)
    s.check_overlapped()
    repeat_iterations(s, 3).check_overlapped()
    assert sum(len(k) for k in s.overlapped) > 0


def test_bidirectional_dualpipe_is_not_written_as_a_one_chain_csv() -> None:
    with pytest.raises(ScheduleError, match="runs 2 chains of stages .*holds one chain"):
        dumps_csv(dualpipe(4, 8))
