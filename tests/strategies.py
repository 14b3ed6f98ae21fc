"""Hypothesis strategies shared by the schedule and engine tests."""

from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from schedules import REGISTRY, Schedule, ScheduleError, build_schedule

# Pipeline sizes the property tests draw: ranks (or stages) and microbatches.
RANKS = st.integers(1, 6)
MICROBATCHES = st.integers(1, 12)
# Per-chunk pass times of a split-backward schedule in seconds (the zero-bubble papers' T_F, T_B = our I, T_W; a
# zero T_W allowed), the transfer time, and the fraction of a microbatch's activations the W pass keeps:
# the keywords of tests/zb_helpers.run, given to @given(**PASS_TIMES).
PASS_TIMES = {
    "tf": st.floats(0.1, 3.0),
    "ti": st.floats(0.1, 3.0),
    "tw": st.floats(0.0, 3.0),
    "p2p": st.floats(0.0, 1.0),
    "stash": st.floats(0.0, 1.0),
}
# A memory cap in microbatches of one stage's activations, from one (everything serialised) to above 2 x RANKS.
MEMORY_CAP = st.floats(1.0, 14.0)


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
