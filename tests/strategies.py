"""Hypothesis strategies shared by the schedule and engine tests."""

from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from schedules import REGISTRY, Schedule, ScheduleError, build_schedule


@st.composite
def registered_schedules(draw: st.DrawFn, max_pp: int = 6, max_m: int = 12) -> Schedule:
    """Any registered schedule at sizes it accepts."""
    name = draw(st.sampled_from(sorted(REGISTRY)))
    pp = draw(st.integers(1, max_pp))
    m = draw(st.integers(1, max_m))
    vpp = draw(st.integers(1, 3))
    try:
        return build_schedule(name, pp, m, vpp)
    except ScheduleError:
        assume(False)
        raise AssertionError("unreachable") from None
