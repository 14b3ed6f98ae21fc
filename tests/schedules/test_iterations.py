"""Back-to-back iterations and the two optimizer modes (Qi et al., 'Zero Bubble Pipeline Parallelism', ICLR 2024,
arXiv:2401.10241: Section 4 for post-validation, Table 2 for the bubbles). Notation: the paper's B is our I."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from pipesim.sim.compare import CompareRequest, compare_schedules
from pipesim.sim.engine import OpCosts
from pipesim.sim.iterations import DEFAULT_ITERATIONS, iteration_ends, run_iterations
from schedules import ScheduleError, build_schedule, validate
from schedules.iterations import repeat_iterations, steady_state_step
from schedules.zero_bubble import zb_h1, zb_h2

SIZES = [(2, 4), (4, 8), (4, 12), (6, 12), (8, 24)]
# (T_F, T_I, T_W): unequal, as the issue asks, plus the paper's equal case.
TIMES = [(1.0, 1.0, 1.0), (1.0, 1.0, 0.5), (2.0, 1.0, 1.0), (1.0, 2.0, 1.0), (18.522, 18.086, 9.337)]


def costs(n: int, tf: float, ti: float, tw: float, p2p: float = 0.0) -> OpCosts:
    return OpCosts.uniform(n, tf, ti + tw, tw, p2p, activation_bytes=1.0)


def test_repeat_renumbers_microbatches_and_stays_valid() -> None:
    s = zb_h1(4, 6)
    rep = repeat_iterations(s, 3)
    validate(rep)
    assert rep.num_microbatches == 18
    assert repeat_iterations(s, 1) is s
    # Rank 0's program is its one-iteration program three times, iteration k's microbatch mb -> 6k + mb.
    one = s.actions(0)
    assert rep.actions(0)[len(one) : 2 * len(one)] == tuple(
        type(a)(a.stage, a.op, a.microbatch + 6) for a in one
    )
    with pytest.raises(ScheduleError, match="iterations=0 must be >= 1"):
        repeat_iterations(s, 0)


def test_steady_state_step_definition() -> None:
    # (T(N) - T(1)) / (N - 1): ends 10, 17, 24, 31 -> (31 - 10) / 3 = 7; one iteration -> T(1).
    assert steady_state_step([10.0, 17.0, 24.0, 31.0]) == pytest.approx(7.0)
    assert steady_state_step([10.0]) == 10.0


@pytest.mark.parametrize(("p", "m"), SIZES)
@pytest.mark.parametrize(("tf", "ti", "tw"), TIMES)
def test_post_validation_golden_bubbles(p: int, m: int, tf: float, ti: float, tw: float) -> None:
    # Table 2, absolute bubble per device = steady step - m (T_F + T_I + T_W):
    #   ZB-H1 (p-1)(T_F + T_I - T_W), ZB-H2 (p-1)(T_F + T_I - 2 T_W)   (free transfers).
    # e.g. the 1.5B times at p 8, m 24: ZB-H1 7 * (18.522 + 18.086 - 9.337) = 190.897,
    #      ZB-H2 7 * (18.522 + 18.086 - 18.674) = 125.538.
    busy = m * (tf + ti + tw)
    h1 = run_iterations(zb_h1(p, m), costs(p, tf, ti, tw), "post-validation").metrics
    h2 = run_iterations(zb_h2(p, m), costs(p, tf, ti, tw), "post-validation").metrics
    assert h1.step_time_s - busy == pytest.approx((p - 1) * (tf + ti - tw))
    assert h2.step_time_s - busy == pytest.approx((p - 1) * (tf + ti - 2 * tw))
    # Every rank does the same work, so the bubble ratio is the paper's bubble rate (cost - busy) / cost.
    assert h2.bubble_ratio == pytest.approx((h2.step_time_s - busy) / h2.step_time_s)


@pytest.mark.parametrize(("p", "m"), SIZES)
def test_sync_pays_zb_h2_fill_post_validation_does_not(p: int, m: int) -> None:
    # T_F = T_I = T_W = 1: one synchronous ZB-H2 step is 3m + (p-1) (rank p-1's fill), the steady state 3m.
    c = costs(p, 1.0, 1.0, 1.0)
    assert run_iterations(zb_h2(p, m), c, "sync").metrics.step_time_s == pytest.approx(3 * m + p - 1)
    assert run_iterations(zb_h2(p, m), c, "post-validation").metrics.step_time_s == pytest.approx(3 * m)


@pytest.mark.parametrize(("p", "m"), SIZES)
def test_1f1b_gains_nothing_from_post_validation(p: int, m: int) -> None:
    # Rank 0 runs 1F1B's last backward and is busy until then from t = 0 except in its cool-down, where it waits
    # for gradients; its next forwards come after that backward in program order, so nothing overlaps and the
    # period stays (m + p - 1)(T_F + T_B) = the synchronous step.
    c = OpCosts.uniform(p, 1.0, 2.0)
    s = build_schedule("1f1b", p, m)
    assert run_iterations(s, c, "post-validation").metrics.step_time_s == pytest.approx(3 * (m + p - 1))
    assert run_iterations(s, c, "sync").metrics.step_time_s == pytest.approx(3 * (m + p - 1))


def test_back_to_back_timeline_repeats_and_keeps_memory() -> None:
    s, c = zb_h2(4, 8), costs(4, 1.0, 1.0, 1.0, p2p=0.1)
    r = run_iterations(s, c, "post-validation", iterations=5)
    assert r.iterations == 5 and r.timeline.num_actions == 5 * s.num_actions
    ends = iteration_ends(r.timeline, 8, 5)
    assert np.allclose(np.diff(ends), np.diff(ends)[0])  # periodic from the first period on
    assert r.metrics.step_time_s == pytest.approx(np.diff(ends)[0])
    # A rank finishes its own iteration before it starts the next, so peaks are one step's: 2(p-r)-1.
    assert r.metrics.peak_activation_microbatches_per_rank == (7.0, 5.0, 3.0, 1.0)
    assert r.metrics.microbatches == 8 and r.metrics.num_actions == s.num_actions


def test_sync_iterations_are_tiled_after_the_barrier() -> None:
    s, c = zb_h1(4, 8), costs(4, 1.0, 1.0, 1.0)
    one = run_iterations(s, c, "sync")
    three = run_iterations(s, c, "sync", iterations=3)
    step = one.metrics.step_time_s
    assert three.timeline.step_time_s == pytest.approx(3 * step)
    assert three.metrics == one.metrics
    validate(three.schedule)
    tl = three.timeline
    # Iteration 2's spans are iteration 0's shifted by 2 steps and 16 microbatches.
    n = tl.num_actions
    second = tl.microbatch[:n] >= 16
    assert tl.start_s[:n][second].min() == pytest.approx(2 * step)
    assert int(second.sum()) == s.num_actions


def test_unknown_optimizer_mode_is_refused() -> None:
    with pytest.raises(ScheduleError, match="unknown optimizer mode 'async'; valid: sync, post-validation"):
        run_iterations(zb_h1(4, 8), costs(4, 1.0, 1.0, 1.0), "async")


@pytest.mark.parametrize("blocking", [False, True])
@pytest.mark.parametrize(
    "name", ["1f1b", "zb-h1", "zb-h2", "interleaved-1f1b", "zb-v", "dualpipe-v", "dualpipe"]
)
def test_post_validation_equals_one_back_to_back_simulation(name: str, blocking: bool) -> None:
    # Without DP reduction or an optimizer step, iteration-by-iteration simulation with each rank's streams
    # carried over (RankStart) is the single simulation of the repeated programs, bit for bit (transfers on,
    # sends blocking their sender or not).
    from dataclasses import replace

    from pipesim.sim.engine import simulate

    s = build_schedule(name, 4, 8, 2 if name == "interleaved-1f1b" else 1)
    c = replace(OpCosts.uniform(s.num_stages, 1.0, 2.1, 0.7, 0.3, 1.0), fb_pair_s=2.5, p2p_blocking=blocking)
    run = run_iterations(s, c, "post-validation", iterations=3)
    whole = simulate(repeat_iterations(s, 3), c)
    tl, n = run.timeline, whole.num_actions
    assert tl.num_actions == n and tl.num_spans == whole.num_spans
    for name in ("start_s", "end_s", "microbatch", "kind", "stage", "rank"):  # compute rows: same order
        assert np.array_equal(getattr(tl, name)[:n], getattr(whole, name)[:n]), name
    assert np.array_equal(tl.wait_on_transfer_s, whole.wait_on_transfer_s)

    def transfers(t: object) -> list[tuple[int, int, int, float, float]]:  # the other rows, in any order
        rows = range(n, whole.num_spans)
        return sorted(
            (int(t.rank[i]), int(t.microbatch[i]), int(t.stage[i]), t.start_s[i], t.end_s[i]) for i in rows
        )  # type: ignore[attr-defined]

    assert transfers(tl) == transfers(whole)


def _with(c: OpCosts, **kw: object) -> OpCosts:
    from dataclasses import replace

    return replace(c, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("dp_overlap", [False, True])
def test_post_validation_places_each_ranks_reduction_and_step_between_its_own_iterations(
    dp_overlap: bool,
) -> None:
    # ZB-H2, T_F = T_I = T_W = 1, p 4, m 8: every rank computes 24 s without a gap once started (rank r at r s)
    # and its passes end at 24 + r, in rank order, so the previous rank's partial state (Section 4) is always
    # there first. Each rank then reduces its gradients (d = 0.8 s in 4 buckets of 0.2 s; with dp_overlap
    # bucket k is ready (k+1)/4 of the way through the stage's last W (1 s) and takes 0.2 s, so only the last
    # bucket, d/4, runs past the pass) and steps (o = 3 s) before its next iteration:
    #   post-validation steady step = 24 + exposed + o;  sync = (24 + 3) + exposed + o (the barrier and fill).
    d, o = 0.8, 3.0
    c = _with(
        costs(4, 1.0, 1.0, 1.0), dp_reduce_s=(d,) * 4, dp_overlap=dp_overlap, dp_buckets=4, optimizer_s=o
    )
    exposed = d / 4 if dp_overlap else d
    post = run_iterations(zb_h2(4, 8), c, "post-validation").metrics
    sync = run_iterations(zb_h2(4, 8), c, "sync").metrics
    assert post.step_time_s == pytest.approx(24 + exposed + o)
    assert sync.step_time_s == pytest.approx(27 + exposed + o)
    assert post.dp_exposed_s == pytest.approx(exposed)
    assert post.pipeline_time_s == pytest.approx(24) and post.bubble_ratio == pytest.approx(0.0, abs=1e-12)
    assert post.dp_comm_s == pytest.approx(4 * d) and post.optimizer_s == o
    assert post.dp_hidden_s == pytest.approx(4 * (d - exposed))
    tl = run_iterations(zb_h2(4, 8), c, "post-validation", iterations=2).timeline
    # Rank 3's second iteration starts after its own step, not after a global barrier: its first forward
    # waits for rank 2's, which starts at (24 + 2) + exposed + o and lasts 1 s.
    n = tl.num_actions
    rank3_second = (tl.rank[:n] == 3) & (tl.microbatch[:n] >= 8)
    assert tl.start_s[:n][rank3_second].min() == pytest.approx(26 + exposed + o + 1)


def test_post_validation_1f1b_gains_nothing_and_the_state_hop_is_charged() -> None:
    # 1F1B's first rank ends last, so every rank's next forward waits for it: the steady step is the
    # synchronous (m + p - 1)(F + B) + o in both modes (p 4, m 8, F 1, B 2: 33 + o).
    o = 1.5
    c = _with(OpCosts.uniform(4, 1.0, 2.0), optimizer_s=o, validation_hop_s=0.25)
    s = build_schedule("1f1b", 4, 8)
    assert run_iterations(s, c, "post-validation").metrics.step_time_s == pytest.approx(33 + o)
    assert run_iterations(s, c, "sync").metrics.step_time_s == pytest.approx(33 + o)
    # The optimizer spans: rank r's step starts r hops after rank 0's (the partial state passed along).
    tl = run_iterations(s, c, "post-validation", iterations=1).timeline
    starts = tl.start_s[tl.kind == 7][:4]  # the first iteration's (two are simulated at least)
    assert list(starts - starts[0]) == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_compare_request_modes() -> None:
    base = dict(
        schedules=("1f1b", "zb-h2"), pp=4, microbatches=8, forward_s=1.0, backward_s=2.0, weight_s=1.0
    )
    sync = compare_schedules(CompareRequest(**base, p2p_s=0.0))  # type: ignore[arg-type]
    post = compare_schedules(CompareRequest(**base, p2p_s=0.0, optimizer="post-validation"))  # type: ignore[arg-type]
    assert post[0].step_time_s == pytest.approx(sync[0].step_time_s)  # 1F1B: 3 (m + p - 1) = 33
    assert sync[1].step_time_s == pytest.approx(3 * 8 + 3) and post[1].step_time_s == pytest.approx(3 * 8)
    assert DEFAULT_ITERATIONS == 4


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_optimizer_flag() -> None:
    base = (
        "compare",
        "--schedules",
        "zb-h2",
        "--pp",
        "4",
        "-m",
        "8",
        "--backward-time",
        "2",
        "--weight-time",
    )
    _, out_sync, _ = invoke(*base, "1", "--p2p-time", "0", "--json")
    _, out_post, _ = invoke(*base, "1", "--p2p-time", "0", "--optimizer", "post-validation", "--json")
    assert json.loads(out_sync)[0]["step_time_s"] == pytest.approx(27e-3)  # 3m + p - 1 ms
    assert json.loads(out_post)[0]["step_time_s"] == pytest.approx(24e-3)  # 3m ms
    code, _, err = invoke("compare", "--optimizer", "async")
    assert code == 2 and "'async' is not one of 'sync', 'post-validation'" in err
    code, _, err = invoke("compare", "--weight-stash", "1.5")
    assert code == 2 and "--weight-stash=1.5 must be within [0, 1]" in err and err.count("\n") == 1


def test_cli_real_model_post_validation_on_simulate_compare_and_plan() -> None:
    # A real model's DP reduction and optimizer step now sit between each rank's own iterations: simulate,
    # compare --model and plan take --optimizer post-validation; its steady step is never longer than sync's.
    lay = ("--model", "gpt-1.7b", "--gpu", "a100-80gb", "--tp", "1", "--pp", "4", "--dp", "2")
    lay += ("--micro-batch-size", "1", "--global-batch-size", "32", "--schedule", "zb-h2")
    steps = {}
    for mode in ("sync", "post-validation"):
        code, out, err = invoke("simulate", *lay, "--optimizer", mode, "--json")
        assert code == 0, err
        report = json.loads(out)
        assert report["optimizer"] == mode
        steps[mode] = report["step_time_s"]
        assert sum(v["exposed"] for k, v in report["time_breakdown_s"].items() if k != "recompute") == (
            pytest.approx(steps[mode], rel=1e-6)
        )
    assert steps["post-validation"] <= steps["sync"] * (1 + 1e-12)
    code, out, err = invoke("simulate", *lay, "--optimizer", "post-validation")
    assert code == 0 and "steady state of back-to-back iterations" in out, err
    code, out, err = invoke(
        "compare", *lay[:-2], "--schedules", "zb-h2", "--optimizer", "post-validation", "--json"
    )
    assert code == 0, err
    assert json.loads(out)[0]["step_time_s"] == pytest.approx(steps["post-validation"])
    plan = ("plan", "--model", "gpt-1.7b", "--gpu", "a100-80gb", "--nodes", "1", "--global-batch-size", "32")
    plan += ("--pp", "4", "--tp", "1", "--schedules", "zb-h2", "--micro-batch-size", "1", "--json")
    code, out, err = invoke(*plan, "--optimizer", "post-validation")
    assert code == 0, err


def test_cli_help_states_both_definitions() -> None:
    _, out, _ = invoke("compare", "--help")
    flat = " ".join(out.split())
    assert "sync a global barrier after every iteration; step time and bubble of one step from t = 0" in flat
    assert (
        "post-validation ZB paper Section 4: no barrier, the next iteration's warm-up overlaps this one's tail; "
        "step time = steady-state period (T(N) - T(1)) / (N - 1) of N = 4 back-to-back iterations" in flat
    )
    _, out, _ = invoke("gantt", "--help")
    assert "--iterations" in out


def test_cli_gantt_iterations(tmp_path: object) -> None:
    from pathlib import Path

    trace = Path(str(tmp_path)) / "t.json"
    code, _, err = invoke(
        "gantt", "--schedules", "zb-h1", "--weight-time", "1", "--iterations", "3", "--trace", str(trace)
    )
    assert code == 0, err
    events = json.loads(trace.read_text())
    names = json.dumps(events)
    assert "23" in names  # microbatch 23 = iteration 2's last (3 x 8 microbatches)
    code, _, err = invoke("gantt", "--iterations", "0", "--trace", str(trace))
    assert code == 2 and "--iterations=0 must be >= 1" in err
