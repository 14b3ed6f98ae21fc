"""The timeline engine and metrics: published formulas, a brute-force reference, properties."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipesim.sim.engine import OpCosts, Stream, simulate
from pipesim.sim.metrics import pipeline_metrics
from schedules import Action, Op, Schedule, ScheduleError, build_schedule
from tests.reference_sim import reference_times
from tests.strategies import registered_schedules


def run(
    name: str,
    p: int,
    m: int,
    v: int = 1,
    tf: float = 1.0,
    tb: float = 2.0,
    p2p: float = 0.0,
    act: float = 1.0,
):
    s = build_schedule(name, p, m, v)
    c = OpCosts.uniform(s.num_stages, tf / v, tb / v, p2p_s=p2p, activation_bytes=act / v)
    return s, c, pipeline_metrics(s, c, simulate(s, c))


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize(("p", "m"), [(4, 8), (8, 16), (2, 1), (6, 5)])
def test_bubble_gpipe_1f1b(name: str, p: int, m: int) -> None:
    # Narayanan et al. SC21 Section 2.2.1: bubble time (p-1)(tf+tb), ideal m(tf+tb).
    # Fraction of the step = (p-1)/(m+p-1); over ideal compute = (p-1)/m.
    _, _, r = run(name, p, m)
    assert r.step_time_s == pytest.approx((m + p - 1) * 3.0)
    assert r.bubble_ratio == pytest.approx((p - 1) / (m + p - 1))
    assert r.bubble_over_ideal == pytest.approx((p - 1) / m)


@pytest.mark.parametrize(("p", "m", "v"), [(4, 8, 2), (4, 8, 4), (8, 16, 2), (2, 6, 3), (4, 4, 2)])
def test_bubble_interleaved(p: int, m: int, v: int) -> None:
    # SC21 Section 2.2.2: interleaving divides the bubble by v: (1/v)(p-1)/m of ideal compute,
    # i.e. (p-1)/(v*m+p-1) of the step, for m a multiple of p. E.g. p=4, m=8, v=2: 3/19 = 0.1579.
    _, _, r = run("interleaved-1f1b", p, m, v)
    assert r.bubble_ratio == pytest.approx((p - 1) / (v * m + p - 1))
    assert r.bubble_over_ideal == pytest.approx((p - 1) / (v * m))


def test_bubble_worked_example() -> None:
    # p=4, m=8, F=1, B=2: step = (8 + 3) * 3 = 33; busy per rank = 8 * 3 = 24; 1 - 96/132 = 0.2727 = 3/11.
    _, _, r = run("1f1b", 4, 8)
    assert r.step_time_s == pytest.approx(33.0)
    assert r.bubble_ratio == pytest.approx(3 / 11)


@pytest.mark.parametrize(("p", "m"), [(4, 8), (4, 2), (8, 3)])
def test_peak_in_flight_gpipe_and_1f1b(p: int, m: int) -> None:
    # GPipe stashes all m microbatches; 1F1B at most min(m, p - r) on rank r (SC21 Section 2.2.1).
    _, _, g = run("gpipe", p, m)
    assert g.peak_activation_microbatches_per_rank == tuple(float(m) for _ in range(p))
    _, _, o = run("1f1b", p, m, act=1000.0)
    assert o.peak_activation_microbatches_per_rank == tuple(float(min(m, p - r)) for r in range(p))
    assert o.peak_activation_bytes_per_rank == tuple(1000.0 * min(m, p - r) for r in range(p))


@pytest.mark.parametrize(("p", "m", "v"), [(4, 8, 2), (8, 16, 2), (4, 8, 4), (8, 8, 3)])
def test_peak_interleaved_rank0(p: int, m: int, v: int) -> None:
    # Korthikanti et al. 2022 Section 4.2.3 / Megatron-LM theoretical_memory_usage.py: rank 0 of the interleaved
    # schedule holds p * (1 + (p-1)/(p*v)) stage-microbatches. p=4, v=2: 4 * (1 + 3/8) = 5.5.
    # That is its warm-up (2(p-1) + (v-1)p forwards) plus one, over v; when the warm-up already covers all
    # v*m forwards (p=8, m=8, v=3: 30 >= 24) the peak is all m microbatches instead.
    _, _, r = run("interleaved-1f1b", p, m, v)
    assert r.peak_activation_microbatches_per_rank[0] == pytest.approx(min(p * (1 + (p - 1) / (p * v)), m))


def test_transfers_delay_and_are_reported() -> None:
    # 1F1B p=2 m=1: F0 (1) -> send (0.5) -> F1 (1) -> B1 (2) -> send (0.5) -> B0 (2): 7.0 total.
    s, c, r = run("1f1b", 2, 1, p2p=0.5)
    assert r.step_time_s == pytest.approx(7.0)
    assert r.p2p_time_s == pytest.approx(1.0)
    assert r.p2p_exposed_s == pytest.approx(1.0)


@given(registered_schedules(max_pp=5, max_m=6), st.data())
def test_matches_brute_force_reference(schedule: Schedule, data: st.DataObject) -> None:
    n = schedule.num_stages
    times = st.floats(0.1, 5.0, allow_nan=False)
    fwd = data.draw(st.lists(times, min_size=n, max_size=n))
    bwd = data.draw(st.lists(times, min_size=n, max_size=n))
    wfrac = data.draw(st.floats(0.0, 0.9))
    p2p = data.draw(st.lists(st.floats(0.0, 2.0), min_size=max(n - 1, 0), max_size=max(n - 1, 0)))
    costs = OpCosts(
        forward_s=tuple(fwd),
        backward_s=tuple(bwd),
        weight_s=tuple(b * wfrac for b in bwd),
        p2p_s=tuple(p2p),
        p2p_blocking=data.draw(st.booleans()),
    )
    tl = simulate(schedule, costs)
    ref = reference_times(schedule, costs)
    k = 0
    for r in range(schedule.num_ranks):
        for step in range(len(schedule.programs[r])):
            assert tl.start_s[k] == pytest.approx(ref[(r, step)][0])
            assert tl.end_s[k] == pytest.approx(ref[(r, step)][1])
            k += 1


@pytest.mark.parametrize(("pp", "m"), [(2, 4), (4, 8), (6, 12)])
def test_bidirectional_dualpipe_matches_the_reference_in_both_evaluations(pp: int, m: int) -> None:
    # Two chains of stages: no transfer across the chains' seam (stage pp-1's output leaves the pipeline,
    # stage pp's backward ends it), every other boundary charged; both evaluations and the brute force agree.
    import random

    rng = random.Random(pp * 100 + m)
    schedule = build_schedule("dualpipe", pp, m)
    n = schedule.num_stages
    bwd = [rng.uniform(0.5, 3.0) for _ in range(n)]
    costs = OpCosts(
        forward_s=tuple(rng.uniform(0.2, 2.0) for _ in range(n)),
        backward_s=tuple(bwd),
        weight_s=tuple(b * 0.4 for b in bwd),
        p2p_s=tuple(rng.uniform(0.0, 1.0) for _ in range(n - 1)),
    )
    ref = reference_times(schedule, costs)
    for method in ("wavefront", "compiled"):
        tl = simulate(schedule, costs, method=method)  # type: ignore[arg-type]
        k = 0
        for r in range(schedule.num_ranks):
            for step in range(len(schedule.programs[r])):
                assert (tl.start_s[k], tl.end_s[k]) == pytest.approx(ref[(r, step)]), (method, r, step)
                k += 1
        seam = (tl.stream == Stream.P2P) & (tl.stage == pp - 1) & (tl.kind == 4)
        assert not seam.any()  # the forward direction's last stage sends no activation to the reverse one


@given(registered_schedules())
def test_no_overlap_on_a_rank_and_dependencies_respected(schedule: Schedule) -> None:
    costs = OpCosts.uniform(schedule.num_stages, 1.0, 2.0, weight_s=0.5, p2p_s=0.25)
    tl = simulate(schedule, costs)
    for r in range(schedule.num_ranks):
        lo, hi = tl.rank_offsets[r], tl.rank_offsets[r + 1]
        starts, ends = tl.start_s[lo:hi], tl.end_s[lo:hi]
        assert np.all(starts[1:] >= ends[:-1] - 1e-12)
    # Every transfer lies between its producer's end and the step end, on the P2P stream.
    p2p = tl.stream == Stream.P2P
    assert np.all(tl.end_s[p2p] - tl.start_s[p2p] == pytest.approx(0.25))
    # Forward of (s, m) ends before backward of (s, m) starts.
    n = tl.num_actions
    key_end = {(int(tl.stage[i]), int(tl.microbatch[i])): tl.end_s[i] for i in range(n) if tl.kind[i] == Op.F}
    for i in range(n):
        if tl.kind[i] != Op.F:
            assert tl.start_s[i] >= key_end[(int(tl.stage[i]), int(tl.microbatch[i]))] - 1e-12


@pytest.mark.parametrize("name", ["gpipe", "1f1b", "interleaved-1f1b"])
def test_bubble_does_not_grow_with_microbatches(name: str) -> None:
    ratios = [run(name, 4, m, 2)[2].bubble_ratio for m in (4, 8, 16, 32, 64)]
    assert all(b <= a + 1e-12 for a, b in zip(ratios, ratios[1:], strict=False))
    assert ratios[-1] < ratios[0]


def test_deterministic() -> None:
    s = build_schedule("interleaved-1f1b", 4, 8, 2)
    c = OpCosts.uniform(8, 0.3, 0.7, p2p_s=0.1)
    a, b = simulate(s, c), simulate(s, c)
    assert a.start_s.tobytes() == b.start_s.tobytes() and a.end_s.tobytes() == b.end_s.tobytes()


def test_engine_reports_deadlock_with_grid() -> None:
    bad = Schedule.from_actions(
        "bad",
        2,
        1,
        (0, 1),
        [[Action(0, Op.B, 0), Action(0, Op.F, 0)], [Action(1, Op.F, 0), Action(1, Op.B, 0)]],
    )
    with pytest.raises(ScheduleError, match=r"deadlocks[\s\S]*\[0B0\]"):
        simulate(bad, OpCosts.uniform(2, 1, 1))


def test_costs_validation() -> None:
    with pytest.raises(ScheduleError, match="weight_s=3.0 exceeds backward_s=2.0"):
        OpCosts.uniform(2, 1.0, 2.0, weight_s=3.0)
    with pytest.raises(ScheduleError, match="costs cover 3 stages"):
        simulate(build_schedule("1f1b", 2, 2), OpCosts.uniform(3, 1, 1))


def test_split_backward_memory_frees_in_two_steps() -> None:
    # One rank, one stage: F stashes 10 bytes, I frees all but the 4-byte weight stash, W frees the rest.
    s = Schedule.from_actions(
        "split",
        1,
        2,
        (0,),
        [
            [
                Action(0, Op.F, 0),
                Action(0, Op.F, 1),
                Action(0, Op.I, 0),
                Action(0, Op.I, 1),
                Action(0, Op.W, 0),
                Action(0, Op.W, 1),
            ]
        ],
    )
    c = OpCosts.uniform(1, 1.0, 2.0, weight_s=1.0, activation_bytes=10.0, weight_stash_bytes=4.0)
    r = pipeline_metrics(s, c, simulate(s, c))
    assert r.peak_activation_bytes == pytest.approx(20.0)
    assert r.step_time_s == pytest.approx(2 * 1.0 + 2 * 1.0 + 2 * 1.0)


def test_dp_reduction_and_optimizer() -> None:
    # 1F1B p=2, m=2, F=1, B=2. Rank 1: F0 1-2, B0 2-4, F1 4-5, B1 5-7. Rank 0: F0 0-1, F1 1-2, B0 4-6, B1 7-9.
    # Pipeline ends at (m+p-1)(F+B) = 9. Rank 0 reduces 9-12, rank 1 7-10; the optimizer follows all: 12.5.
    s = build_schedule("1f1b", 2, 2)
    c = OpCosts(forward_s=(1.0, 1.0), backward_s=(2.0, 2.0), dp_reduce_s=(3.0, 3.0), optimizer_s=0.5)
    r = pipeline_metrics(s, c, simulate(s, c))
    assert r.pipeline_time_s == pytest.approx(9.0)
    assert r.step_time_s == pytest.approx(12.5)
    assert r.dp_comm_s == pytest.approx(6.0)
    assert r.dp_exposed_s == pytest.approx(3.0)


def test_dp_overlap_hides_reduction_of_early_chunks() -> None:
    # Interleaved: chunk 1 (stage 2, 3) finishes its backwards before chunk 0, so with overlap its reduction
    # runs under chunk 0's backwards and only the last chunk's reduction is exposed.
    s = build_schedule("interleaved-1f1b", 2, 4, 2)
    kw = dict(forward_s=(0.5,) * 4, backward_s=(1.0,) * 4, dp_reduce_s=(1.0,) * 4)
    on = pipeline_metrics(s, c := OpCosts(**kw, dp_overlap=True), simulate(s, c))  # type: ignore[arg-type]
    off = pipeline_metrics(s, c := OpCosts(**kw, dp_overlap=False), simulate(s, c))  # type: ignore[arg-type]
    assert off.dp_exposed_s == pytest.approx(2.0)  # two chunks reduced one after the other after compute
    assert on.dp_exposed_s == pytest.approx(1.0)
    assert on.step_time_s == pytest.approx(off.step_time_s - 1.0)


def test_dp_buckets_reduce_as_the_last_backward_produces_them() -> None:
    # One rank, one microbatch: F 0-1, B 1-5. DP 4 s in 4 buckets of 1 s, ready a quarter of the way through
    # B each (2, 3, 4, 5): reduced 2-3, 3-4, 4-5, 5-6 -> step 6, 3 s hidden under B, 1 s exposed. In one
    # bucket it is ready only when B ends: 5-9, nothing hidden, 4 s exposed.
    s = build_schedule("1f1b", 1, 1)
    for buckets, step, hidden, exposed in ((4, 6.0, 3.0, 1.0), (1, 9.0, 0.0, 4.0)):
        c = OpCosts(forward_s=(1.0,), backward_s=(4.0,), dp_reduce_s=(4.0,), dp_buckets=buckets)
        r = pipeline_metrics(s, c, simulate(s, c))
        assert (r.step_time_s, r.dp_hidden_s, r.dp_exposed_s) == pytest.approx((step, hidden, exposed))
        assert r.dp_comm_s == pytest.approx(4.0)


def test_dp_buckets_follow_the_weight_pass_of_a_split_backward() -> None:
    # Gradients exist when W runs: ZB-H1 holds W passes back to the end of the step (Qi et al. 2024, Fig. 3),
    # so less of the reduction hides behind compute than with 1F1B, whose last B is early on late ranks.
    def dp_hidden(name: str) -> float:
        s = build_schedule(name, 4, 8)
        base = OpCosts.uniform(4, 1.0, 2.0, weight_s=1.0)
        c = replace(base, dp_reduce_s=(2.0,) * 4, dp_buckets=4)
        return pipeline_metrics(s, c, simulate(s, c)).dp_hidden_s

    assert dp_hidden("zb-h1") < dp_hidden("1f1b")


def test_dp_buckets_validated() -> None:
    with pytest.raises(ScheduleError, match="dp_buckets=0 must be an integer >= 1"):
        OpCosts(forward_s=(1.0,), backward_s=(1.0,), dp_buckets=0)


@pytest.mark.parametrize("method", ["wavefront", "compiled"])
def test_blocking_sends_hold_the_sender(method: str) -> None:
    # 1F1B, 2 ranks, 2 microbatches, F = 1, B = 2, transfer 0.5 (by hand):
    # overlapped sends: rank 0 F0 0-1, F1 1-2 (sends 1-1.5, 2-2.5); rank 1 F0 1.5-2.5, B0 2.5-4.5 (send
    # 4.5-5), F1 4.5-5.5, B1 5.5-7.5 (send 7.5-8); rank 0 B0 5-7, B1 8-10: step 10.
    # blocking (Megatron-LM's waited isend/irecv): rank 0 F1 starts after its F0 send, 1.5-2.5 (send 2.5-3);
    # rank 1 F1 waits for its B0 send, 5-6, B1 6-8 (send 8-8.5); rank 0 B1 8.5-10.5: step 10.5.
    schedule = build_schedule("1f1b", 2, 2)
    base = OpCosts.uniform(2, 1.0, 2.0, p2p_s=0.5)
    free = simulate(schedule, base, method=method)
    held = simulate(schedule, replace(base, p2p_blocking=True), method=method)
    assert free.step_time_s == 10.0 and held.step_time_s == 10.5
    f1 = [
        i
        for i in range(held.num_actions)
        if held.rank[i] == 0 and held.kind[i] == Op.F and held.microbatch[i] == 1
    ]
    assert held.start_s[f1[0]] == 1.5 and free.start_s[f1[0]] == 1.0
    # The sender's idle time behind its own send counts as waiting on a transfer.
    assert held.wait_on_transfer_s.sum() > free.wait_on_transfer_s.sum()
