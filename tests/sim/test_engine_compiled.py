"""The compiled evaluation against the numpy reference: the same timeline, bit for bit, for every registered
family, with transfers, bucketed gradient reduction and the optimizer step; the same refusals."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import registered_schedules

from pipesim.sim import compiled, compiled_kernels
from pipesim.sim.engine import OpCosts, Timeline, simulate
from schedules import REGISTRY, Action, Op, Schedule, ScheduleError, build_schedule

FIELDS = (
    "rank_offsets",
    "rank",
    "stream",
    "kind",
    "stage",
    "microbatch",
    "peer",
    "start_s",
    "end_s",
    "wait_on_transfer_s",
)


def assert_identical(a: Timeline, b: Timeline) -> None:
    """Every array of the two timelines has the same dtype and the same bytes (floats compared bit for bit)."""
    assert (a.num_ranks, a.num_actions) == (b.num_ranks, b.num_actions)
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert x.tobytes() == y.tobytes(), name


def random_costs(schedule: Schedule, rng: random.Random) -> OpCosts:
    """Non-uniform costs with transfers (blocking the sender or not), a bucketed DP reduction on some stages and
    an optimizer step."""
    n = schedule.num_stages
    bwd = [rng.uniform(0.1, 3.0) for _ in range(n)]
    return OpCosts(
        forward_s=tuple(rng.uniform(0.1, 2.0) for _ in range(n)),
        backward_s=tuple(bwd),
        weight_s=tuple(b * rng.uniform(0.0, 0.9) for b in bwd),
        p2p_s=tuple(rng.choice((0.0, rng.uniform(0.0, 1.5))) for _ in range(max(n - 1, 0))),
        dp_reduce_s=tuple(rng.choice((0.0, rng.uniform(0.1, 4.0))) for _ in range(n)),
        dp_overlap=rng.random() < 0.7,
        dp_buckets=rng.randint(1, 4),
        optimizer_s=rng.choice((0.0, 0.5)),
        p2p_blocking=rng.random() < 0.5,
    )


@settings(max_examples=150, deadline=None)
@given(registered_schedules(max_pp=6, max_m=12), st.integers(0, 2**32 - 1))
def test_compiled_matches_reference_bit_for_bit(schedule: Schedule, seed: int) -> None:
    costs = random_costs(schedule, random.Random(seed))
    assert_identical(
        simulate(schedule, costs, method="compiled"), simulate(schedule, costs, method="wavefront")
    )


@settings(max_examples=60, deadline=None)
@given(registered_schedules(max_pp=6, max_m=12), st.integers(0, 2**32 - 1))
def test_compiled_matches_reference_from_a_busy_start_under_post_validation(
    schedule: Schedule, seed: int
) -> None:
    # A later iteration of a back-to-back run: every rank's streams busy until given times, the optimizer
    # step placed rank by rank (the partial global state passed along, one hop each).
    from dataclasses import replace

    from pipesim.sim.engine import RankStart

    rng = random.Random(seed)
    costs = replace(random_costs(schedule, rng), validation_hop_s=rng.uniform(0.0, 0.3))
    r = schedule.num_ranks
    begin = RankStart(tuple(rng.uniform(0, 5) for _ in range(r)), tuple(rng.uniform(0, 6) for _ in range(r)))
    a = simulate(schedule, costs, method="compiled", start=begin, optimizer="post-validation")
    assert_identical(
        a, simulate(schedule, costs, method="wavefront", start=begin, optimizer="post-validation")
    )
    n = a.num_actions
    assert all(a.start_s[i] >= begin.compute_s[a.rank[i]] for i in range(n))


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("pp", [4, 8])
def test_every_family_at_size(name: str, pp: int) -> None:
    family = REGISTRY[name]
    schedule = build_schedule(name, pp, 8 * pp, 3 if family.uses_vpp else 1)
    costs = random_costs(schedule, random.Random(f"{name}/{pp}"))
    reference = simulate(schedule, costs, method="wavefront")
    assert_identical(simulate(schedule, costs, method="compiled"), reference)
    assert reference.num_spans > reference.num_actions  # transfers (and reductions) were compared too


def test_uniform_costs_give_exact_ties_identically() -> None:
    # Integer-valued costs make many ends tie exactly: the last gradient pass per stage (DP bucket readiness)
    # must pick the same row in both evaluations.
    schedule = build_schedule("zb-v", 4, 16)
    costs = OpCosts(
        forward_s=(1.0,) * 8,
        backward_s=(2.0,) * 8,
        weight_s=(1.0,) * 8,
        dp_reduce_s=(3.0,) * 8,
        dp_buckets=3,
        optimizer_s=1.0,
    )
    assert_identical(
        simulate(schedule, costs, method="compiled"), simulate(schedule, costs, method="wavefront")
    )


def _messages(schedule: Schedule, costs: OpCosts) -> list[str]:
    out = []
    for method in ("compiled", "wavefront"):
        with pytest.raises(ScheduleError) as info:
            simulate(schedule, costs, method=method)  # type: ignore[arg-type]
        out.append(str(info.value))
    return out


def test_same_deadlock_grid() -> None:
    bad = Schedule.from_actions(
        "bad",
        2,
        1,
        (0, 1),
        [[Action(0, Op.B, 0), Action(0, Op.F, 0)], [Action(1, Op.F, 0), Action(1, Op.B, 0)]],
    )
    compiled_msg, reference_msg = _messages(bad, OpCosts.uniform(2, 1, 1))
    assert compiled_msg == reference_msg and "[0B0]" in compiled_msg


@settings(max_examples=80, deadline=None)
@given(registered_schedules(max_pp=6, max_m=10), st.integers(0, 2**32 - 1))
def test_reordered_programs_same_timeline_or_same_deadlock_grid(schedule: Schedule, seed: int) -> None:
    # Moving actions within ranks' programs makes many orders deadlock part way, with ranks asleep on signals
    # that never come: the compiled pass (which visits only woken ranks) must stop at the same grid as the
    # reference's sweeps, or give the same timeline when the order still runs.
    rng = random.Random(seed)
    programs = [list(schedule.actions(r)) for r in range(schedule.num_ranks)]
    for _ in range(rng.randint(1, 3)):
        prog = programs[rng.randrange(len(programs))]
        if len(prog) > 1:
            a, b = rng.randrange(len(prog)), rng.randrange(len(prog))
            prog.insert(b, prog.pop(a))
    moved = Schedule.from_actions(
        schedule.name, schedule.num_ranks, schedule.num_microbatches, schedule.stage_to_rank, programs
    )
    costs = random_costs(moved, rng)
    try:
        reference = simulate(moved, costs, method="wavefront")
    except ScheduleError:
        compiled_msg, reference_msg = _messages(moved, costs)
        assert compiled_msg == reference_msg
        return
    assert_identical(simulate(moved, costs, method="compiled"), reference)


@pytest.mark.parametrize(
    "programs",
    [
        [[Action(0, Op.F, 0), Action(0, Op.B, 0)], [Action(1, Op.F, 0)]],  # a backward missing
        [[Action(0, Op.F, 0), Action(0, Op.B, 0), Action(1, Op.F, 0)], [Action(1, Op.B, 0)]],  # wrong rank
        [
            [Action(0, Op.F, 0), Action(0, Op.F, 0), Action(0, Op.B, 0)],
            [Action(1, Op.F, 0), Action(1, Op.B, 0)],
        ],
    ],
)
def test_same_refusal_of_incomplete_schedules(programs: list[list[Action]]) -> None:
    bad = Schedule.from_actions("bad", 2, 1, (0, 1), programs)
    compiled_msg, reference_msg = _messages(bad, OpCosts.uniform(2, 1, 1))
    assert compiled_msg == reference_msg


def test_unknown_method_refused() -> None:
    with pytest.raises(ScheduleError, match="unknown simulation method 'fast'; valid: auto, compiled"):
        simulate(build_schedule("1f1b", 2, 2), OpCosts.uniform(2, 1, 1), method="fast")  # type: ignore[arg-type]


def test_small_schedules_do_not_import_numba() -> None:
    # Start-up does not pay for the compiler: a short schedule runs on the numpy reference.
    code = (
        "import sys\n"
        "from pipesim.sim.engine import OpCosts, simulate\n"
        "from schedules import build_schedule\n"
        "simulate(build_schedule('1f1b', 8, 64), OpCosts.uniform(8, 1.0, 2.0))\n"
        "assert 'numba' not in sys.modules, 'numba imported for a small schedule'\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_kernels_compile_without_a_writable_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where numba finds no cache location it refuses cache=True; the kernels are then compiled in memory.
    import numba

    real_njit = numba.njit

    def njit_without_cache(**options: object) -> object:
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(**options)

    monkeypatch.setattr(numba, "njit", njit_without_cache)
    compiled_kernels.kernels.cache_clear()
    try:
        schedule = build_schedule("zb-h1", 3, 5)
        costs = random_costs(schedule, random.Random(7))
        assert_identical(
            compiled.simulate_compiled(schedule, costs), simulate(schedule, costs, method="wavefront")
        )
    finally:
        compiled_kernels.kernels.cache_clear()


def test_overlapped_pairs_run_on_the_reference() -> None:
    # The compiled pass does not model DualPipe's overlapped F&B spans: given fb_pair_s, every method runs
    # the wavefront (the same timeline); without it the pairs are two passes and the compiled pass agrees.
    from dataclasses import replace

    schedule = build_schedule("dualpipe-v", 4, 16)
    assert any(schedule.overlapped)
    costs = random_costs(schedule, random.Random(3))
    paired = replace(costs, fb_pair_s=1.5)
    reference = simulate(schedule, paired, method="wavefront")
    assert_identical(simulate(schedule, paired, method="compiled"), reference)
    assert_identical(simulate(schedule, paired), reference)
    assert_identical(
        simulate(schedule, costs, method="compiled"), simulate(schedule, costs, method="wavefront")
    )
    assert reference.step_time_s != simulate(schedule, costs, method="wavefront").step_time_s
