"""The greedy zero-bubble scheduler under a memory cap (ZB paper Section 3.1 heuristic, ZB-1p / ZB-2p)."""

from __future__ import annotations

import json

import pytest
from conftest import invoke
from hypothesis import given, settings
from strategies import MEMORY_CAP, MICROBATCHES, PASS_TIMES, RANKS

from pipesim.sim.compare import CompareRequest, compare_schedules
from schedules import ScheduleError, build_schedule, validate
from schedules.greedy import GreedyTimes, greedy_zero_bubble
from schedules.timed import build_timed
from schedules.zero_bubble import zb_h1, zb_h2
from tests.zb_helpers import run


@settings(max_examples=40, deadline=None)
@given(p=RANKS, m=MICROBATCHES, cap=MEMORY_CAP, **PASS_TIMES)
def test_order_is_valid_and_respects_the_cap(
    p: int, m: int, tf: float, ti: float, tw: float, p2p: float, cap: float, stash: float
) -> None:
    s = greedy_zero_bubble(p, m, cap, GreedyTimes(tf, ti, tw, p2p), stash_fraction=stash)
    validate(s)
    # The engine walks the timeline with the same accounting (F +1, I -(1 - stash), W -stash).
    r = run(s, tf, ti, tw, p2p=p2p, act=1.0, stash=stash).metrics
    assert r.peak_activation_microbatches <= cap + 1e-9
    # Never slower than running the microbatches one at a time through the whole pipeline (what a cap of one
    # microbatch forces): m * (p (T_F + T_I + T_W) + 2 (p-1) P2P).
    assert r.step_time_s <= m * (p * (tf + ti + tw) + 2 * (p - 1) * p2p) + 1e-9


@pytest.mark.parametrize(("p", "m"), [(4, 8), (4, 12), (6, 12), (8, 24)])
def test_equal_times_match_the_handcrafted_schedules(p: int, m: int) -> None:
    # With T_F = T_I = T_W (the ZB paper's assumption), zb-1p (cap p, 1F1B's memory) reaches ZB-H1's step
    # 3m + (p-1) and zb-2p (cap 2p) ZB-H2's, which here is also 3m + (p-1) for one synchronous step.
    one = run(build_schedule("zb-1p", p, m), 1.0, 1.0, 1.0).metrics
    two = run(build_schedule("zb-2p", p, m), 1.0, 1.0, 1.0).metrics
    assert one.step_time_s == pytest.approx(3 * m + p - 1)
    assert one.peak_activation_microbatches <= p
    assert two.step_time_s == pytest.approx(run(zb_h2(p, m), 1.0, 1.0, 1.0).metrics.step_time_s)
    assert two.peak_activation_microbatches <= 2 * p


@pytest.mark.parametrize(("p", "m"), [(4, 8), (6, 12), (8, 24)])
def test_with_a_short_w_the_greedy_beats_zb_h1(p: int, m: int) -> None:
    # T_W = T_F / 2: ZB-H1 idles (p-1)(T_F + T_I - T_W) = 1.5(p-1) per device; the greedy order under the same
    # cap p fills the cool-down better.
    t = GreedyTimes(1.0, 1.0, 0.5)
    greedy = run(greedy_zero_bubble(p, m, p, t), 1.0, 1.0, 0.5).metrics
    hand = run(zb_h1(p, m), 1.0, 1.0, 0.5).metrics
    assert greedy.step_time_s < hand.step_time_s
    assert greedy.peak_activation_microbatches <= p


def test_a_larger_cap_never_hurts_on_these_cases() -> None:
    t = GreedyTimes(1.0, 1.0, 1.0, 0.3)
    steps = [
        run(greedy_zero_bubble(6, 12, cap, t), 1.0, 1.0, 1.0, p2p=0.3).metrics.step_time_s
        for cap in (1, 3, 6, 12)
    ]
    assert all(b <= a + 1e-9 for a, b in zip(steps, steps[1:], strict=False))
    assert steps[-1] < steps[0]


@pytest.mark.parametrize("cap", [0.0, 0.5, 0.999])
def test_cap_below_one_microbatch_names_the_minimum(cap: float) -> None:
    with pytest.raises(ScheduleError) as err:
        greedy_zero_bubble(4, 8, cap)
    msg = str(err.value)
    assert (
        f"memory limit {cap:g} microbatches" in msg
        and "minimum any order needs, 1" in msg
        and "\n" not in msg
    )


def test_bad_times_rejected() -> None:
    with pytest.raises(ScheduleError, match=r"input-gradient \(I = B - W\) time 0.0 must be > 0"):
        greedy_zero_bubble(2, 2, 2, GreedyTimes(1.0, 0.0, 1.0))
    with pytest.raises(ScheduleError, match="not a greedy schedule"):
        build_timed("1f1b", 2, 2, GreedyTimes())


def test_compare_builds_greedy_from_real_times_and_cap() -> None:
    req = CompareRequest(
        schedules=("zb-1p", "zb-2p"),
        pp=4,
        microbatches=8,
        forward_s=1.0,
        backward_s=2.0,
        weight_s=1.0,
        p2p_s=0.0,
        activation_bytes=1.0,
        memory_limit=2.5,
    )
    one, two = compare_schedules(req)
    assert one.peak_activation_microbatches <= 2.5 and two.peak_activation_microbatches <= 2.5
    default = compare_schedules(CompareRequest(schedules=("zb-1p",), pp=4, microbatches=8, weight_s=1e-3))[0]
    assert default.peak_activation_microbatches <= 4


def test_cli_issue_scenario_runs_every_new_schedule() -> None:
    code, out, _ = invoke(
        "compare",
        "--schedules",
        "1f1b,interleaved-1f1b,zb-h1,zb-h2,zb-v,dualpipe-v,zb-1p,zb-2p",
        "--pp",
        "8",
        "--microbatches",
        "24",
        "--forward-time",
        "10",
        "--backward-time",
        "16",
        "--weight-time",
        "6",
        "--p2p-time",
        "0.5",
        "--json",
    )
    assert code == 0
    rows = {r["schedule"]: r for r in json.loads(out)}
    assert set(rows) == {"1f1b", "interleaved-1f1b", "zb-h1", "zb-h2", "zb-v", "dualpipe-v", "zb-1p", "zb-2p"}
    for name in ("zb-h1", "zb-h2", "zb-v", "dualpipe-v", "zb-2p"):
        assert rows[name]["step_time_s"] < rows["1f1b"]["step_time_s"]
    assert rows["zb-h1"]["peak_activation_microbatches"] == 8  # 1F1B's p
    assert rows["zb-h2"]["peak_activation_microbatches"] == 15  # 2p - 1


def test_cli_weight_time_default_is_half_the_backward() -> None:
    base = ("compare", "--schedules", "zb-h1", "--pp", "4", "-m", "8", "--backward-time", "4", "--json")
    _, implicit, _ = invoke(*base)
    _, explicit, _ = invoke(*base, "--weight-time", "2")
    assert json.loads(implicit) == json.loads(explicit)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--weight-time", "5", "--backward-time", "4"), "--weight-time=5 exceeds --backward-time=4"),
        (("--schedules", "zb-1p", "--memory-limit", "0.5"), "below the minimum any order needs, 1"),
        (("--schedules", "dualpipe-v", "--pp", "4", "-m", "6"), "microbatches >= 2 * pp = 8"),
    ],
)
def test_cli_bad_input_is_one_line(args: tuple[str, ...], needle: str) -> None:
    code, _, err = invoke("compare", *args)
    assert code == 2
    assert needle in err and err.count("\n") == 1
