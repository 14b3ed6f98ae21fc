"""The Zero Bubble automatic scheduler (Qi et al., 'Zero Bubble Pipeline Parallelism', ICLR 2024,
arXiv:2401.10241, Section 3.1) and the order timer it searches with. Notation: the paper's B is our I."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import MEMORY_CAP, MICROBATCHES, PASS_TIMES, RANKS

from pipesim.sim.engine import OpCosts, simulate
from pipesim.sim.iterations import run_iterations
from pipesim.sim.metrics import pipeline_metrics
from schedules import Op, build_schedule, validate
from schedules.iterations import repeat_iterations
from schedules.timing import StageTimes, time_order
from schedules.zb_auto import AutoTimes, auto_zero_bubble, heuristic_order
from schedules.zero_bubble import zb_h1, zb_h2

# The ZB paper's 1.5B setting (its Table 3, profiled pass times in ms): p 8, m 24.
ZB15 = AutoTimes(18.522, 18.086, 9.337, 0.601)
ZB15_STASH = 32 * 2304 / (34 * 2304 + 5 * 24 * 1024)  # Table 1 with h 2304, a 24, s 1024: 0.3664


def engine_costs(n: int, t: AutoTimes) -> OpCosts:
    return OpCosts.uniform(n, t.forward_s, t.input_s + t.weight_s, t.weight_s, t.p2p_s, 1.0, t.stash_fraction)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["1f1b", "gpipe", "interleaved-1f1b", "zb-h1", "zb-h2", "zb-v", "dualpipe-v"]),
    p=st.integers(2, 5),
    m=MICROBATCHES,
    reps=st.integers(1, 3),
    **PASS_TIMES,
)
def test_timer_agrees_with_the_engine(
    name: str, p: int, m: int, tf: float, ti: float, tw: float, p2p: float, stash: float, reps: int
) -> None:
    # One model of each concept: a second evaluation is fine if a property test holds it to the engine.
    if name == "interleaved-1f1b":
        m = p * max(1, m // p)
    if name == "dualpipe-v":
        m = max(m, 2 * p)
    s = repeat_iterations(build_schedule(name, p, m, 2), reps)
    split = s.uses_split_backward()
    t = AutoTimes(tf, ti, tw if split else 0.0, p2p, stash)
    costs = engine_costs(s.num_stages, t)
    tl = simulate(s, costs)
    mine = time_order(
        s,
        StageTimes.uniform(s.num_stages, tf, ti, t.weight_s, p2p, activation=1.0, stash_fraction=stash),
    )
    assert mine.makespan == pytest.approx(tl.pipeline_time_s)
    peaks = pipeline_metrics(s, costs, tl).peak_activation_microbatches_per_rank
    v = s.chunks_per_rank
    assert [x / v for x in mine.peak_memory] == pytest.approx(list(peaks))


@settings(max_examples=30, deadline=None)
@given(
    p=RANKS,
    m=MICROBATCHES,
    cap=MEMORY_CAP,
    objective=st.sampled_from(["sync", "post-validation"]),
    **PASS_TIMES,
)
def test_auto_order_is_valid_and_respects_the_cap(
    p: int, m: int, tf: float, ti: float, tw: float, p2p: float, cap: float, stash: float, objective: str
) -> None:
    t = AutoTimes(tf, ti, tw, p2p, stash)
    s = auto_zero_bubble(p, m, cap, t, objective)
    validate(s)
    peak = pipeline_metrics(
        s, engine_costs(p, t), simulate(s, engine_costs(p, t))
    ).peak_activation_microbatches
    assert peak <= cap + 1e-9


CASES = [
    (4, 8, AutoTimes(1.0, 1.0, 1.0)),
    (4, 8, AutoTimes(1.0, 1.0, 0.5, 0.1, 0.9)),
    (6, 12, AutoTimes(2.0, 1.0, 1.0, 0.2, 0.5)),
    (8, 24, ZB15),
    (8, 24, AutoTimes(18.522, 18.086, 9.337, 0.601, ZB15_STASH)),
    (8, 32, AutoTimes(1.0, 1.5, 0.4, 0.05, 32 / 34)),
]


@pytest.mark.parametrize(("p", "m", "t"), CASES)
def test_never_worse_than_the_handcrafted_schedules(p: int, m: int, t: AutoTimes) -> None:
    # The requirement, on the engine's clock: under sync zb-1p <= zb-h1 and zb-2p <= zb-h2; under
    # post-validation (each chosen for it) the same against the handcrafted steady states.
    c = engine_costs(p, t)
    for mode in ("sync", "post-validation"):
        one = auto_zero_bubble(p, m, p, t, mode, "zb-1p")
        two = auto_zero_bubble(p, m, 2 * p, t, mode, "zb-2p")
        step = {k: run_iterations(s, c, mode).metrics for k, s in
                (("1p", one), ("2p", two), ("h1", zb_h1(p, m)), ("h2", zb_h2(p, m)))}  # fmt: skip
        assert step["1p"].step_time_s <= step["h1"].step_time_s + 1e-9
        assert step["2p"].step_time_s <= step["h2"].step_time_s + 1e-9
        assert step["1p"].peak_activation_microbatches <= p + 1e-9
        assert step["2p"].peak_activation_microbatches <= 2 * p + 1e-9


def test_zb_2p_nears_zero_bubble_in_the_steady_state() -> None:
    # 1.5B setting, post-validation: measured 4.3% for zb-2p against ZB-H2's 10.8% (which equals its sync
    # figure: (1236.632 - 24 * 45.945) / 1236.632 = 0.1083); the issue's complaint was zb-2p stuck at ZB-H2's.
    c = engine_costs(8, ZB15)
    two = run_iterations(auto_zero_bubble(8, 24, 16, ZB15, "post-validation"), c, "post-validation").metrics
    h2 = run_iterations(zb_h2(8, 24), c, "post-validation").metrics
    assert h2.bubble_ratio == pytest.approx(0.1083, abs=1e-4)
    assert two.bubble_ratio < 0.05


def test_the_paper_heuristic_alone_beats_zb_h1_when_w_holds_no_memory() -> None:
    # The heuristic's own best order (no handcrafted candidate, no ILP) under 1F1B's memory, p = 8 microbatches,
    # at the 1.5B times with a stash of 0: measured 1270.906 ms (bubble 1 - 24 * 45.945 / 1270.906 = 13.2%)
    # against ZB-H1's 1310.405 ms (15.9%). With the 1.5B stash (0.366) it only ties ZB-H1: W then has to run
    # to free memory before forwards, the paper's "recycle memory" case.
    st_times = ZB15.stage_times(8)
    h1 = time_order(zb_h1(8, 24), st_times).makespan
    best = min(
        time_order(s, st_times).makespan
        for k in itertools.product((False, True), repeat=3)
        if (s := heuristic_order(8, 24, 8.0, ZB15, *k)) is not None
    )
    assert best == pytest.approx(1270.906, abs=1e-3) and h1 == pytest.approx(1310.405, abs=1e-3)


@pytest.mark.parametrize(("p", "m"), [(4, 8), (8, 24), (6, 5)])
@pytest.mark.parametrize("allow_short", [False, True])
def test_warmup_forwards_strictly_decrease_with_the_stage(p: int, m: int, allow_short: bool) -> None:
    # Paper 3.1, point 3: stage i always holds at least one forward more than stage i+1 (until forwards run out).
    s = heuristic_order(p, m, 2.0 * p, ZB15, allow_short, False, False)
    assert s is not None
    validate(s)
    warm = []
    for r in range(p):
        acts = s.actions(r)
        first_i = next(k for k, a in enumerate(acts) if a.op is Op.I)
        warm.append(sum(1 for a in acts[:first_i] if a.op is Op.F))
    for a, b in zip(warm, warm[1:], strict=False):
        assert a > b or a == m
    assert warm[-1] == 1  # the last stage runs I right after each forward


def test_memory_overflow_inserts_w() -> None:
    # Cap of 1 microbatch with W keeping the whole stash: a forward can only follow once W freed the previous one.
    s = heuristic_order(3, 4, 1.0, AutoTimes(1.0, 1.0, 1.0, 0.0, 1.0), False, False, False)
    assert s is not None
    assert s.text(0).split()[:4] == ["0F0", "0I0", "0W0", "0F1"]
