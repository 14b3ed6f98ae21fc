"""The compiled twins of schedules.compiled against their pure-Python references, bit for bit: the V list
scheduler (schedules.v_memory), the greedy list scheduler (schedules.greedy) and the Zero Bubble paper's
heuristic (schedules.zb_heuristic) give the same orders and deciding knobs (and stall flag, and step), the
order timer (schedules.timing.time_order) the same starts, ends and peaks."""

from __future__ import annotations

import itertools
import random
from array import array
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import MEMORY_CAP, MICROBATCHES, PASS_TIMES, RANKS, registered_schedules

from schedules import ScheduleError, build_schedule, greedy, periodic, zb_heuristic
from schedules.compiled import (
    LOAD_FROM_ACTIONS,
    LOADED_NUMBA_FROM_ACTIONS,
    SMALL_ACTIONS,
    run_first_period,
    worth_compiling,
)
from schedules.compiled.v_list import LOWEST_BIT
from schedules.greedy import GreedyTimes
from schedules.iterations import repeat_iterations
from schedules.timing import StageTimes, time_order
from schedules.v_memory import _list_order_compiled, _list_order_python
from schedules.zb_auto import AutoTimes

T = TypeVar("T")


def _same_runs(p: int, m: int, cap: float, times: AutoTimes) -> None:
    for knobs in itertools.product((False, True), repeat=3):
        ref = _list_order_python(p, m, cap, times, *knobs)
        fast = _list_order_compiled(p, m, cap, times, *knobs)
        assert fast[1:] == ref[1:], (p, m, cap, times, knobs)
        if ref[0] is None:
            assert fast[0] is None
            continue
        assert fast[0] is not None and fast[0].programs == ref[0].programs, (p, m, cap, times, knobs)
        assert fast[0].stage_to_rank == ref[0].stage_to_rank


@settings(max_examples=40, deadline=None)
@given(p=RANKS, m=MICROBATCHES, cap_chunks=st.floats(2.0, 14.0), **PASS_TIMES)
def test_v_list_scheduler_matches_the_reference(
    p: int, m: int, cap_chunks: float, tf: float, ti: float, tw: float, p2p: float, stash: float
) -> None:
    _same_runs(p, m, cap_chunks, AutoTimes(tf, ti, tw, p2p, stash))


@pytest.mark.parametrize("p", [4, 8, 16])
def test_v_list_scheduler_matches_on_equal_times(p: int) -> None:
    # Equal integer times (the registry's defaults) make many ranks free at the same instant: the case where
    # the kernel's buckets of equal times replace the reference's heap; the caps are V-Half's and V-Min's.
    for cap in (2.0 * ((p + 2) // 2), 2.0 * ((p + 4) // 3), 2.0):
        _same_runs(p, 3 * p, cap, AutoTimes())


def test_v_list_scheduler_matches_beyond_one_word_of_ranks() -> None:
    # More than 64 ranks: the kernel's rank sets span two 64-bit words.
    _same_runs(70, 2, 2.0 * 36, AutoTimes())
    _same_runs(70, 3, 2.0 * 24, AutoTimes(1.0, 1.3, 0.7, 0.1, 0.25))


def test_lowest_bit_table() -> None:
    # LOWEST_BIT[(2^k * 0x03F79D71B4CB0A89 mod 2^64) >> 58] == k for every k (a de Bruijn sequence).
    for k in range(64):
        assert LOWEST_BIT[((1 << k) * 0x03F79D71B4CB0A89 % 2**64) >> 58] == k


def _random_times(num_stages: int, seed: int) -> StageTimes:
    rng = random.Random(seed)
    # passes shorter than some transfers, so that sends queue on the send stream
    forward = tuple(rng.uniform(0.05, 2.0) for _ in range(num_stages))
    weight = tuple(rng.uniform(0.0, 1.0) for _ in range(num_stages))
    backward = tuple(w + rng.uniform(0.05, 2.0) for w in weight)
    p2p = tuple(rng.uniform(0.0, 2.0) for _ in range(num_stages - 1))
    act = tuple(rng.uniform(0.5, 1.5) for _ in range(num_stages))
    return StageTimes(forward, backward, weight, p2p, act, rng.uniform(0.0, 0.5))


@settings(max_examples=60, deadline=None)
@given(schedule=registered_schedules(), seed=st.integers(0, 10_000), iterations=st.integers(1, 2))
def test_time_order_matches_the_reference(schedule: object, seed: int, iterations: int) -> None:
    from schedules.ir import Schedule

    assert isinstance(schedule, Schedule)
    order = repeat_iterations(schedule, iterations)
    times = _random_times(order.num_stages, seed)
    assert time_order(order, times, method="compiled") == time_order(order, times, method="python")


def test_time_order_deadlock_and_bad_method() -> None:
    s = build_schedule("1f1b", 2, 2)
    # rank 0 runs its program backwards: its first pass is a backward whose forward has not run
    programs = (s.programs[0][::-1],) + s.programs[1:]
    stuck = type(s)(s.name, s.num_ranks, s.num_stages, s.num_microbatches, s.stage_to_rank, programs)
    times = StageTimes.uniform(2, 1.0, 1.0, 0.0)
    for method in ("python", "compiled"):
        with pytest.raises(ScheduleError, match="deadlocks"):
            time_order(stuck, times, method=method)
    with pytest.raises(ScheduleError, match="valid: auto, python, compiled"):
        time_order(s, times, method="numba")


def test_small_work_stays_in_python() -> None:
    # Below SMALL_ACTIONS neither path is worth a compiled call, loaded or not.
    assert not worth_compiling(SMALL_ACTIONS - 1)
    assert worth_compiling(10**7)


def _both(
    monkeypatch: pytest.MonkeyPatch, module: object, run: Callable[..., T], *args: object
) -> tuple[T, T]:
    """``run(*args)`` with ``module``'s dispatch forced to the Python reference, then to the compiled twin."""
    monkeypatch.setattr(module, "worth_compiling", lambda *_: False)
    ref = run(*args)
    monkeypatch.setattr(module, "worth_compiling", lambda *_: True)
    return ref, run(*args)


@settings(max_examples=40, deadline=None)
@given(p=RANKS, m=MICROBATCHES, limit=MEMORY_CAP, **PASS_TIMES)
def test_greedy_pass_matches_the_reference(
    p: int, m: int, limit: float, tf: float, ti: float, tw: float, p2p: float, stash: float
) -> None:
    times = GreedyTimes(tf, ti, tw, p2p)
    with pytest.MonkeyPatch.context() as mp:
        for knobs in itertools.product((False, True), repeat=2):
            ref, fast = _both(mp, greedy, greedy._greedy_pass, p, m, limit, times, stash, "zb", *knobs)
            assert fast == ref, (p, m, limit, times, stash, knobs)


def _same_heuristic(mp: pytest.MonkeyPatch, p: int, m: int, limit: float, times: AutoTimes) -> None:
    for knobs in itertools.product((False, True), repeat=3):
        ref, fast = _both(mp, zb_heuristic, zb_heuristic.heuristic_run, p, m, limit, times, *knobs)
        assert fast[1] == ref[1], (p, m, limit, times, knobs)
        assert (fast[0] is None) == (ref[0] is None)
        if ref[0] is not None and fast[0] is not None:
            assert fast[0].programs == ref[0].programs, (p, m, limit, times, knobs)


@settings(max_examples=40, deadline=None)
@given(p=RANKS, m=MICROBATCHES, limit=MEMORY_CAP, **PASS_TIMES)
def test_heuristic_matches_the_reference(
    p: int, m: int, limit: float, tf: float, ti: float, tw: float, p2p: float, stash: float
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        _same_heuristic(mp, p, m, limit, AutoTimes(tf, ti, tw, p2p, stash))


@pytest.mark.parametrize("p", [4, 6, 8])
def test_heuristic_matches_under_tight_limits(monkeypatch: pytest.MonkeyPatch, p: int) -> None:
    # Limits below p with unequal passes and a stash: the paths that insert W passes to make room.
    for limit in (2.0, p / 2 + 1.0, p - 0.5):
        for times in (AutoTimes(1.0, 1.5, 0.5, 0.1, 0.3), AutoTimes(0.6, 1.0, 1.4, 0.2, 0.6)):
            _same_heuristic(monkeypatch, p, 3 * p, limit, times)


@pytest.mark.parametrize("p", [4, 16, 64])
def test_zero_bubble_searches_match_on_equal_times(monkeypatch: pytest.MonkeyPatch, p: int) -> None:
    # The registered zb-1p / zb-2p limits (p and 2p microbatches) with equal pass times, at 2p and 3p
    # microbatches (the planner's sizes): every heuristic and greedy setting.
    for m, limit in ((2 * p, float(p)), (3 * p, 2.0 * p)):
        _same_heuristic(monkeypatch, p, m, limit, AutoTimes())
        for knobs in itertools.product((False, True), repeat=2):
            ref, fast = _both(
                monkeypatch, greedy, greedy._greedy_pass, p, m, limit, GreedyTimes(), 0.0, "zb", *knobs
            )
            assert fast == ref


def test_timer_thread_is_per_process() -> None:
    # A forked child gets its own timer thread: the parent's does not run there.
    import multiprocessing

    from schedules.compiled import timer_thread

    assert timer_thread().submit(lambda: 2 + 2).result(timeout=10) == 4
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply(_child_timer_sum, ()) == 4


def _child_timer_sum() -> int:
    from schedules.compiled import timer_thread

    return int(timer_thread().submit(lambda: 2 + 2).result(timeout=10))


@pytest.mark.parametrize(
    ("name", "p", "m"), [("zb-v-half", 4, 40), ("zb-v-half", 8, 72), ("zb-1p", 8, 40), ("zb-v-min", 16, 40)]
)
def test_periodic_searches_match_the_reference(
    monkeypatch: pytest.MonkeyPatch, name: str, p: int, m: int
) -> None:
    # The periodic extension's runs and period search on real orders (and a few made-up programs): the
    # compiled twins find the same runs and periods as the references.
    prog_list = [list(prog) for prog in build_schedule(name, p, m).programs]
    prog_list += [[0, 4, 8, 12, 20], [5] * 3, [], [3, 1, 7, 5, 11, 9, 15, 13]]
    unit = 2 * p * 4 if name.startswith("zb-v") else p * 4
    for prog in prog_list:
        for max_block in (1, 3, 2 * unit):
            ref, fast = _both(monkeypatch, periodic, periodic.runs, prog, unit, max_block)
            assert fast == ref
    for longest in (1, 4, 64):
        entries = [([array("q", prog)], ()) for prog in prog_list[:p]]
        ref, fast = _both(monkeypatch, periodic, periodic.period_seen, entries, unit, 6, longest)
        assert fast == ref
        for prog in prog_list:
            assert run_first_period(array("q", prog), unit, 6 * longest) == (
                periodic._first_period(prog, unit, 6 * longest) or -1
            )


@pytest.mark.parametrize("numba_first", [False, True])
def test_many_small_builds_load_the_kernels(numba_first: bool) -> None:
    # A cold plan builds hundreds of small zero-bubble orders: once the references have run LOAD_FROM_ACTIONS
    # (LOADED_NUMBA_FROM_ACTIONS where numba is already imported) actions, the kernels are loaded and used.
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import sys
if {numba_first}:
    import numba
import schedules.compiled as c
from schedules.zb_auto import AutoTimes, auto_zero_bubble
for i in range(60):  # 2,304 actions each
    auto_zero_bubble(16, 48, 16.0, AutoTimes(1.0, 1.0 + i / 100, 0.5, 0.01, 0.2))
print(c.loaded(), c._python_actions)
"""
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    loaded, spent = out.stdout.split()
    assert loaded == "True"
    limit = LOADED_NUMBA_FROM_ACTIONS if numba_first else LOAD_FROM_ACTIONS
    assert limit <= int(spent) < limit + 2 * 2304 * 16  # stopped counting once over the limit
