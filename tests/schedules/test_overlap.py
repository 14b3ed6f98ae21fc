"""Overlapped F&B pairs (DualPipe: DeepSeek-V3 report, arXiv:2412.19437, Section 3.2.1; deepseek-ai/DualPipe README
table 'Pipeline Bubbles and Memory Usage Comparison'): DualPipe notation, F, B (full backward), W chunk times and
F&B the time of one overlapped forward-and-backward pair."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from cli import main
from pipesim.sim.engine import OpCosts, simulate
from pipesim.sim.iterations import run_iterations
from pipesim.sim.metrics import pipeline_metrics
from schedules import Op, Schedule, ScheduleError, dumps_csv, loads_csv, validate
from schedules.dualpipe import dualpipe_v
from schedules.iterations import repeat_iterations

SIZES = [(2, 4), (3, 6), (4, 8), (4, 12), (8, 24)]


def costs(p: int, tf: float, ti: float, tw: float, fb: float | None) -> OpCosts:
    return replace(OpCosts.uniform(2 * p, tf, ti + tw, tw, activation_bytes=1.0), fb_pair_s=fb)


@pytest.mark.parametrize(("p", "m"), SIZES)
@pytest.mark.parametrize(
    ("tf", "ti", "tw", "fb"),
    [
        (1.0, 1.0, 1.0, 3.0),
        (1.0, 1.0, 1.0, 2.5),
        (1.0, 1.0, 1.0, 2.0),
        (1.0, 1.0, 0.5, 2.0),
        (2.0, 2.0, 1.0, 5.0),
    ],
)
def test_bubble_matches_the_dualpipe_table(
    p: int, m: int, tf: float, ti: float, tw: float, fb: float
) -> None:
    # README: bubble (PP/2 - 1)(F&B + B - 3W); DualPipeV on p ranks is DualPipe with PP = 2p cut in half, so
    # (p - 1)(F&B + B - 3W) per rank with B = I + W. E.g. p 4, F = I = W = 1, F&B = 2.5: 3 * (2.5 + 2 - 3) = 4.5.
    # (The README's uniform case, T_F = T_I; with F != I the measured bubble departs from the table's figure.)
    s = dualpipe_v(p, m)
    c = costs(p, tf, ti, tw, fb)
    r = pipeline_metrics(s, c, simulate(s, c))
    idle = r.pipeline_time_s - min(r.compute_busy_s_per_rank)
    assert idle == pytest.approx((p - 1) * (fb + (ti + tw) - 3 * tw))
    # README: activation memory PP + 1 chunks = (2p + 1) / 2 whole-stage microbatches; pairs do not change it.
    assert r.peak_activation_microbatches_per_rank == tuple((2 * p + 1) / 2 for _ in range(p))


def test_a_pair_is_one_span() -> None:
    s = dualpipe_v(3, 6)
    c = costs(3, 1.0, 1.0, 1.0, 2.5)
    tl = simulate(s, c)
    k = s.overlapped[0][0]
    f_row, b_row = int(tl.rank_offsets[0]) + k, int(tl.rank_offsets[0]) + k + 1
    assert tl.kind[f_row] == Op.F and tl.kind[b_row] == Op.B
    assert tl.end_s[f_row] - tl.start_s[f_row] == pytest.approx(2.5)
    assert tl.start_s[b_row] == tl.end_s[b_row] == pytest.approx(tl.end_s[f_row])
    # Without a pair duration the two passes run one after the other (F = 1 then B = 2).
    seq = simulate(s, costs(3, 1.0, 1.0, 1.0, None))
    assert seq.end_s[b_row] - seq.start_s[f_row] >= 3.0 - 1e-9


def test_overlap_shortens_dualpipe_v() -> None:
    s = dualpipe_v(4, 16)
    slow = run_iterations(s, costs(4, 1.0, 1.0, 1.0, None)).metrics.step_time_s
    fast = run_iterations(s, costs(4, 1.0, 1.0, 1.0, 2.0)).metrics.step_time_s
    assert fast < slow


def test_pairs_match_pytorch_and_round_trip() -> None:
    # The pairs sit where PyTorch's ScheduleDualPipeV writes "(..;..)OVERLAP_F_B" (tests/test_dualpipe.py loads
    # that CSV and compares, pairs included); written back, the cells look the same.
    s = dualpipe_v(4, 8)
    text = dumps_csv(s)
    assert text.count("OVERLAP_F_B") == sum(len(k) for k in s.overlapped)
    assert loads_csv(text) == s
    assert "(0F7;7B3)OVERLAP_F_B,(7F4;0B0)OVERLAP_F_B" in text.splitlines()[0]


def test_repeated_iterations_keep_the_pairs() -> None:
    s = dualpipe_v(3, 6)
    rep = repeat_iterations(s, 3)
    validate(rep)
    assert [len(k) for k in rep.overlapped] == [3 * len(k) for k in s.overlapped]
    post = run_iterations(s, costs(3, 1.0, 1.0, 1.0, 2.5), "post-validation").metrics
    sync = run_iterations(s, costs(3, 1.0, 1.0, 1.0, 2.5), "sync").metrics
    assert post.step_time_s <= sync.step_time_s + 1e-9


def test_bad_pairs_rejected() -> None:
    s = dualpipe_v(2, 4)
    with pytest.raises(ScheduleError, match="rank 0 position 0 is not an F followed by a B or I"):
        Schedule(s.name, 2, 4, 4, s.stage_to_rank, s.programs, ((0,), ()))
    with pytest.raises(ScheduleError, match="fb_pair_s=-1.0 must be >= 0"):
        costs(2, 1.0, 1.0, 1.0, -1.0)


def test_cli_fb_time() -> None:
    base = ["compare", "--schedules", "dualpipe-v", "--pp", "4", "-m", "8", "--forward-time", "2"]
    base += ["--backward-time", "4", "--weight-time", "2", "--p2p-time", "0", "--json"]
    seq = json.loads(CliRunner().invoke(main, base).stdout)[0]
    fb = json.loads(CliRunner().invoke(main, [*base, "--fb-time", "4"]).stdout)[0]
    # Whole-stage times are halved per chunk: F 1, B 2, W 1, F&B 2 ms (--fb-time 4).
    assert fb["step_time_s"] < seq["step_time_s"]
    direct = run_iterations(dualpipe_v(4, 8), costs(4, 1e-3, 1e-3, 1e-3, 2e-3)).metrics
    assert fb["step_time_s"] == pytest.approx(direct.step_time_s)
    result = CliRunner().invoke(main, [*base, "--fb-time", "-1"])
    assert result.exit_code == 2 and "--fb-time=-1.0 must be >= 0" in result.stderr


@pytest.mark.parametrize(("a_f", "a_b", "pair"), [(0.5, 0.6, 3.9), (1.8, 1.9, 3.7), (0.0, 0.0, None)])
def test_pair_duration_from_the_all_to_alls_each_half_hides(
    a_f: float, a_b: float, pair: float | None
) -> None:
    # DeepSeek-V3 report Section 3.2.1: a forward chunk's and a backward chunk's all-to-alls run while the
    # other computes, so F&B = max(C_F + C_B, A_F + A_B) with C = pass - all-to-all. F 2, B 3 (I 2, W 1):
    #   A = (0.5, 0.6): max(1.5 + 2.4, 1.1) = 3.9 (compute-bound);  A = (1.8, 1.9): max(0.2 + 1.1, 3.7) = 3.7
    #   (communication-bound); no all-to-alls: the pair's passes run one after the other (F + B, no gain).
    # The pairs' backward is a full B here: the pair's B row is where both outputs appear.
    from pipesim.sim.engine import simulate

    s = dualpipe_v(3, 8)
    c = replace(OpCosts.uniform(6, 2.0, 3.0, 1.0), a2a_forward_s=(a_f,) * 6, a2a_backward_s=(a_b,) * 6)
    tl = simulate(s, c)
    rows = [tl.rank_offsets[r] + k for r, ks in enumerate(s.overlapped) for k in ks]
    spans = tl.end_s[rows] - tl.start_s[rows]
    if pair is None:
        assert not c.hides_in_pairs
        assert list(spans) == pytest.approx([2.0] * len(rows))  # F alone, then its B
    else:
        b_rows = [i + 1 for i in rows]
        full = [i for i, j in zip(rows, b_rows, strict=True) if tl.kind[j] == Op.B]
        assert full and list(tl.end_s[full] - tl.start_s[full]) == pytest.approx([pair] * len(full))
        assert (
            simulate(s, c).step_time_s
            < simulate(s, replace(c, a2a_forward_s=(), a2a_backward_s=())).step_time_s
        )


def test_all_to_all_time_must_lie_within_its_pass() -> None:
    with pytest.raises(ScheduleError, match="all-to-all times .* must be within 0 and F = 1.0, I = 1.0"):
        OpCosts.uniform(2, 1.0, 2.0, 1.0).__class__(
            forward_s=(1.0, 1.0), backward_s=(2.0, 2.0), weight_s=(1.0, 1.0), a2a_forward_s=(1.5, 0.0)
        )


def test_real_moe_model_pairs_hide_expert_all_to_alls() -> None:
    # Mixtral 8x7B with ep 8 on dualpipe-v: the cost model hands the engine each stage's all-to-all time
    # inside F and I (dispatch + combine), the pairs hide it, and with many microbatches (64: the steady
    # phase dominates) the step is shorter than with the pairs run as F then B. (At m = 2p it is not: a pair
    # waits for both its inputs, as deepseek-ai/DualPipe's overlapped chunk does, which costs more than the
    # ~5% of F that intra-node all-to-alls take here.) A dense model has nothing to hide.
    from pipesim.sim.engine import simulate
    from pipesim.sim.scenario import Scenario, build_scenario_schedule, stage_costs
    from pipesim.specs.gpu import get_gpu
    from pipesim.specs.layout import Layout
    from pipesim.specs.model import get_model

    lay = Layout(tp=1, pp=4, dp=8, ep=8, micro_batch_size=1, global_batch_size=512, schedule="dualpipe-v")
    sc = Scenario(get_model("mixtral-8x7b"), get_gpu("h100-sxm"), lay)
    schedule = build_scenario_schedule(sc)
    costs = stage_costs(sc, schedule).costs
    assert all(a > 0 for a in costs.a2a_forward_s) and all(a > 0 for a in costs.a2a_backward_s)
    sequential = replace(costs, a2a_forward_s=(), a2a_backward_s=())
    assert simulate(schedule, costs).step_time_s < simulate(schedule, sequential).step_time_s
    dense = Scenario(get_model("llama2-7b"), get_gpu("h100-sxm"), replace(lay, ep=1))
    assert not stage_costs(dense, build_scenario_schedule(dense)).costs.hides_in_pairs


def test_pair_check_uses_the_ir_op_codes() -> None:
    from schedules import pairs

    assert (int(Op.F), int(Op.B), int(Op.I)) == (pairs._F, pairs._B, pairs._I)
