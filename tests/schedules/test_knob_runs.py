"""The searches build each knob setting's order once: a setting that differs from a run already built only in
knobs that never decided one of its steps reuses that run. Held here against every setting built on its own."""

from __future__ import annotations

import itertools

import pytest

import schedules.v_memory as v_memory
import schedules.zb_auto as zb_auto
from schedules.greedy import GreedyTimes, greedy_passes
from schedules.zb_auto import AutoTimes, heuristic_order, schedule_cost
from schedules.zb_heuristic import FILL_SHORT_GAPS, INPUT_GRAD_FIRST, SHORT_BUBBLE, heuristic_run

TIMES = [
    AutoTimes(),
    AutoTimes(1.0, 1.0, 0.5, 0.25, 0.25),
    AutoTimes(2.0, 1.5, 1.0, 0.125, 0.0),
    AutoTimes(1.0, 2.0, 0.75, 0.0, 0.5),
    AutoTimes(0.7, 1.3, 0.2, 0.05, 0.3),  # inexact sums too
    AutoTimes(1.0, 1.0, 0.0, 0.1, 0.0),
]
SIZES = [(1, 3), (2, 5), (3, 7), (4, 4), (4, 13), (6, 20), (9, 30)]
KNOBS = list(itertools.product((False, True), repeat=3))


@pytest.mark.parametrize(("p", "m"), SIZES)
@pytest.mark.parametrize("t", TIMES)
def test_zero_bubble_pool_is_every_setting_built_alone(p: int, m: int, t: AutoTimes) -> None:
    for limit in (1.0, float(p), 1.5 * p, 2.0 * p):
        orders = [heuristic_order(p, m, limit, t, *k) for k in KNOBS]
        pool = zb_auto._pool(p, m, limit, t, "sync", "zb-1p", timed=False)
        assert [None if e is None else e[0] for e in pool[4:12]] == [
            None if o is None else o.programs for o in orders
        ]


def test_the_knobs_that_decide_are_reported() -> None:
    # With the registry's equal times no knob ever decides a step at p 4 (limit p or 2p): one order for all
    # eight settings, built once.
    for limit in (4.0, 8.0):
        orders = {heuristic_order(4, 24, limit, AutoTimes(), *k) for k in KNOBS}
        assert len(orders) == 1
        assert heuristic_run(4, 24, limit, AutoTimes(), False, False, False)[1] == 0
    # With transfers of a quarter pass under 2p, each knob decides a step, and flipping it changes the order.
    t = AutoTimes(1.0, 1.0, 1.0, 0.25)
    _, decisive = heuristic_run(4, 24, 8.0, t, False, False, False)
    assert decisive == SHORT_BUBBLE | INPUT_GRAD_FIRST | FILL_SHORT_GAPS
    base = heuristic_order(4, 24, 8.0, t, False, False, False)
    assert all(
        heuristic_order(4, 24, 8.0, t, *k) != base for k in ((True, False, False), (False, True, False))
    )


@pytest.mark.parametrize(("p", "m"), SIZES)
@pytest.mark.parametrize("t", TIMES[:4])
def test_list_scheduler_passes_are_every_setting_built_alone(p: int, m: int, t: AutoTimes) -> None:
    g = GreedyTimes(t.forward_s, t.input_s, t.weight_s, t.p2p_s)
    for limit in (1.0, float(p), 2.0 * p):
        alone = [
            greedy_passes(p, m, limit, g, t.stash_fraction, knobs=k)[0]
            for k in itertools.product((False, True), repeat=2)
        ]
        assert greedy_passes(p, m, limit, g, t.stash_fraction) == alone


@pytest.mark.parametrize(("p", "m"), SIZES)
@pytest.mark.parametrize("t", TIMES)
@pytest.mark.parametrize("name", ["zb-v-half", "zb-v-min"])
def test_v_pool_is_every_setting_built_alone(p: int, m: int, t: AutoTimes, name: str) -> None:
    cap = v_memory.v_memory_limit(name, p)
    alone = []
    for k in KNOBS:
        order, _, _ = v_memory._list_order(p, m, 2.0 * cap, t, *k)
        if order is not None:
            step, peak = schedule_cost(order, t.stage_times(2 * p), "sync")
            alone.append((order.programs, (step, peak / 2.0)))
    assert v_memory._pool(p, m, cap, t, "sync", exact=False) == alone
