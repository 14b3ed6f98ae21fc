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


def test_dualpipe_is_dualpipe_v_cut_in_half() -> None:
    # DualPipe on PP=8 ranks with 24 microbatches (12 per direction): mirrored ranks r and 7-r run the same
    # program as DualPipeV rank r on 4 ranks with 12 microbatches (deepseek-ai/DualPipe: step counts use
    # half_rank = min(r, PP-1-r) and half_num_chunks = m/2).
    s = dualpipe(8, 24)
    half = dualpipe_v(4, 12)
    assert s.name == "dualpipe" and s.num_ranks == 4 and s.num_microbatches == 12
    assert all(s.text(r) == half.text(r) for r in range(4))


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
