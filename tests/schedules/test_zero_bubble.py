"""ZB-H1, ZB-H2 and ZB-V against Qi et al., 'Zero Bubble Pipeline Parallelism', ICLR 2024 (arXiv:2401.10241),
Table 2 / Section 6 (published.md 4.2). Notation: the paper's B is our I; T_F, T_I, T_W per microbatch per stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from schedules import build_schedule, dumps_csv, get_family, loads_csv, read_csv, validate
from schedules.ir import v_shape_placement
from schedules.zero_bubble import zb_h1, zb_h2, zb_v
from tests.zb_helpers import run

DATA = Path(__file__).parents[1] / "data"
SIZES = [(2, 4), (4, 8), (4, 12), (6, 12), (8, 24)]
# (T_F, T_I, T_W): the paper's equal case plus unequal ones.
TIMES = [(1.0, 1.0, 1.0), (1.0, 1.0, 0.5), (2.0, 1.0, 1.0), (1.0, 2.0, 1.0)]


@pytest.mark.parametrize(("p", "m"), SIZES)
@pytest.mark.parametrize(("tf", "ti", "tw"), TIMES)
def test_zb_h1_bubble_matches_table_2(p: int, m: int, tf: float, ti: float, tw: float) -> None:
    # Table 2: ZB-H1 idle per device (p-1)(T_F + T_B - T_W), 1F1B (p-1)(T_F + T_B + T_W) (B = our I).
    r = run(zb_h1(p, m), tf, ti, tw)
    assert r.step_bubble == pytest.approx((p - 1) * (tf + ti - tw))
    one_f_one_b = run(build_schedule("1f1b", p, m), tf, ti + tw, 0.0)
    assert one_f_one_b.step_bubble == pytest.approx((p - 1) * (tf + ti + tw))


@pytest.mark.parametrize(("p", "m"), SIZES)
def test_zb_h1_is_a_third_of_1f1b_when_equal(p: int, m: int) -> None:
    # T_F = T_I = T_W = 1: (p-1)(1+1-1) = p-1 against (p-1)*3.
    zb = run(zb_h1(p, m), 1.0, 1.0, 1.0).step_bubble
    classic = run(build_schedule("1f1b", p, m), 1.0, 2.0, 0.0).step_bubble
    assert zb == pytest.approx(p - 1)
    assert zb * 3 == pytest.approx(classic)


@pytest.mark.parametrize(("p", "m"), SIZES)
@pytest.mark.parametrize(("tf", "ti", "tw"), TIMES)
def test_zb_h2_steady_bubble_matches_table_2(p: int, m: int, tf: float, ti: float, tw: float) -> None:
    # Table 2: ZB-H2 (p-1)(T_F + T_B - 2 T_W): zero when equal. It is the bubble of the tiled parallelogram
    # (optimizer synchronisation bypassed, paper Section 4); one synchronous step still pays rank p-1's fill,
    # (p-1) T_F when equal: 3m + p - 1 against 3m of work.
    r = run(zb_h2(p, m), tf, ti, tw)
    assert r.steady_bubble == pytest.approx((p - 1) * (tf + ti - 2 * tw))
    if tf == ti == tw:
        assert r.steady_bubble == pytest.approx(0.0)
        assert r.step_bubble == pytest.approx((p - 1) * tf)


@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8), (4, 2), (6, 12), (8, 24)])
def test_peak_activations(p: int, m: int) -> None:
    # Table 2: ZB-H1 peaks at p M_B (1F1B's: p - r on rank r, SC21 2.2.1); ZB-H2 at (2p-1) M_B on rank 0,
    # 2(p-r)-1 on rank r; never more than m.
    h1 = run(zb_h1(p, m), 1.0, 1.0, 1.0).metrics
    h2 = run(zb_h2(p, m), 1.0, 1.0, 1.0).metrics
    assert h1.peak_activation_microbatches_per_rank == tuple(float(min(m, p - r)) for r in range(p))
    assert h2.peak_activation_microbatches_per_rank == tuple(float(min(m, 2 * (p - r) - 1)) for r in range(p))


def test_weight_stash_raises_the_later_ranks_peak_from_the_timeline() -> None:
    # ZB paper Table 1: I needs s*b*(34h + 5as) bytes per layer, W keeps 32*s*b*h of them. For the paper's
    # 6.2B model (Table 3: h=4096, a=32, s=1024): 34*4096 + 5*32*1024 = 139264 + 163840 = 303104 per s*b, W
    # keeps 32*4096 = 131072, a fraction of 131072/303104 = 0.4324. ZB-H1's rank r holds back r W passes, so
    # its peak is its p - r in-flight microbatches plus r stashes: (p - r) + 0.4324 r (rank 0 still p).
    frac = 32 * 4096 / (34 * 4096 + 5 * 32 * 1024)
    assert frac == pytest.approx(0.43243, abs=1e-5)
    p, m = 4, 12
    r = run(zb_h1(p, m), 1.0, 1.0, 1.0, act=1000.0, stash=1000.0 * frac).metrics
    expected = [(p - k) + k * frac for k in range(p)]
    assert r.peak_activation_bytes_per_rank == pytest.approx([1000.0 * e for e in expected])
    assert r.peak_activation_microbatches_per_rank == pytest.approx(expected)
    assert r.peak_activation_bytes == pytest.approx(1000.0 * p)


@pytest.mark.parametrize(("p", "m"), [(2, 4), (3, 6), (4, 8), (4, 12), (6, 12), (8, 24)])
def test_zb_v_zero_bubble_and_1f1b_memory(p: int, m: int) -> None:
    # ZB paper Section 6: ZB-V with T_F = T_I = T_W has no steady-state bubble and the peak of 1F1B (p M_B).
    # A chunk is half a stage (times 0.5, memory 1/2 microbatch). One synchronous step still pays the
    # forward fill of the last rank: (p-1) chunk forwards = (p-1) * 0.5.
    s = zb_v(p, m)
    assert s.stage_to_rank == v_shape_placement(p)
    r = run(s, 0.5, 0.5, 0.5)
    assert r.steady_bubble == pytest.approx(0.0)
    assert r.step_bubble == pytest.approx((p - 1) * 0.5)
    assert r.metrics.peak_activation_microbatches_per_rank == tuple(float(p) for _ in range(p))


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_zb_v_small_batches_still_valid(m: int) -> None:
    # Below 2p-1 microbatches the order is built for 2p-1 and trimmed, as PyTorch's ScheduleZBVZeroBubble does.
    validate(zb_v(3, m))


def test_schedules_beat_1f1b_on_the_issue_scenario() -> None:
    # Issue 7's scenario: pp 8, m 24, F 10, B 16 (W 6, so I 10), p2p 0.5 ms. Every zero-bubble schedule has
    # a shorter step than 1F1B; ZB-H2 (more memory) beats ZB-H1.
    p, m = 8, 24
    step = {}
    for name in ("1f1b", "zb-h1", "zb-h2", "zb-v"):
        s = build_schedule(name, p, m)
        v = s.chunks_per_rank
        tw = 0.0 if name == "1f1b" else 6.0 / v
        step[name] = run(s, 10.0 / v, 16.0 / v - tw, tw, p2p=0.5).metrics.step_time_s
    assert step["zb-h1"] < step["1f1b"] and step["zb-h2"] < step["zb-h1"] and step["zb-v"] < step["1f1b"]
    # No schedule beats its work: m (F + B) = 24 * 26 = 624 ms per rank.
    assert min(step.values()) > 24 * 26


def test_registered_as_split_backward() -> None:
    for name in ("zb-h1", "zb-h2", "zb-v"):
        family = get_family(name)
        assert family.split_backward
        assert build_schedule(name, 4, 8).uses_split_backward()
    assert get_family("zb-v").chunks(3) == 2


def test_pytorch_zbv_csv_loads_and_simulates() -> None:
    # tests/data/zbv_pytorch_pp3_m6.csv: PyTorch's ScheduleZBVZeroBubble layout for 3 ranks and 6
    # microbatches, rank r's row starting with r idle cells as PyTorch pads it.
    s = read_csv(DATA / "zbv_pytorch_pp3_m6.csv")
    validate(s)
    assert s.stage_to_rank == v_shape_placement(3)
    assert s == zb_v(3, 6)
    r = run(s, 0.5, 0.5, 0.5)
    assert r.steady_bubble == pytest.approx(0.0)


@pytest.mark.parametrize("name", ["zb-h1", "zb-h2", "zb-v"])
def test_csv_round_trip(name: str) -> None:
    s = build_schedule(name, 4, 8)
    assert loads_csv(dumps_csv(s)) == s


def test_dp_reduction_overlaps_with_split_backward() -> None:
    # Issue 7 part 3. Each stage's gradient reduction starts when its last B or W finishes, on the DP stream.
    # ZB-V's chunk-1 stage finishes its W passes before chunk 0 on every rank, so its reduction hides behind
    # chunk 0's tail; only the last reduction per rank can stick out. With 1.0 per stage reduction:
    # overlap on -> exposed 1.0 (one stage's reduction), off -> 2.0 (both after compute).
    s = zb_v(4, 8)
    on = run(s, 0.5, 0.5, 0.5, dp_reduce=1.0, dp_overlap=True)
    off = run(s, 0.5, 0.5, 0.5, dp_reduce=1.0, dp_overlap=False)
    assert on.metrics.dp_comm_s == pytest.approx(8.0) == off.metrics.dp_comm_s
    assert off.metrics.dp_exposed_s == pytest.approx(2.0)
    assert on.metrics.dp_exposed_s == pytest.approx(1.0)
    # Every reduction starts exactly when its stage's last W ends (or later if the DP stream is busy).
    tl = on.timeline
    n = tl.num_actions
    for k in range(n, tl.num_spans):
        if tl.stream[k] != 2:
            continue
        stage = int(tl.stage[k])
        last_w = max(float(tl.end_s[i]) for i in range(n) if tl.stage[i] == stage and tl.kind[i] == 3)
        assert tl.start_s[k] >= last_w - 1e-12
    # ZB-H1 holds back W passes to the very end on the last ranks, so its reduction is fully exposed there.
    h1 = run(zb_h1(4, 8), 1.0, 1.0, 1.0, dp_reduce=1.0)
    assert h1.metrics.dp_exposed_s == pytest.approx(1.0)
