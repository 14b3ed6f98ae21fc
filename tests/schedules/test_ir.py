"""The action IR: text form, packing and the dependency rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schedules import Action, Op, ScheduleError, Signal, decode, depends_on, encode, parse_action

actions = st.builds(Action, st.integers(0, 500), st.sampled_from(list(Op)), st.integers(0, 5000))


@given(actions)
def test_text_round_trip(action: Action) -> None:
    assert parse_action(str(action)) == action


@given(actions, st.integers(1, 600))
def test_code_round_trip(action: Action, extra_stages: int) -> None:
    num_stages = action.stage + extra_stages
    assert decode(encode(action, num_stages), num_stages) == action


def test_pytorch_text_forms() -> None:
    # The forms used in PyTorch's schedule CSVs (torch.distributed.pipelining): stage, op letter, microbatch.
    assert parse_action("2F0") == Action(2, Op.F, 0)
    assert parse_action("5B3") == Action(5, Op.B, 3)
    assert parse_action("1I0") == Action(1, Op.I, 0)
    assert str(Action(1, Op.W, 0)) == "1W0"


@pytest.mark.parametrize("bad", ["", "F0", "0X1", "1F", "a1F0"])
def test_bad_text_names_the_text(bad: str) -> None:
    with pytest.raises(ScheduleError, match="cannot parse action"):
        parse_action(bad)


def test_dependency_rule() -> None:
    s = 4
    assert depends_on(Action(0, Op.F, 3), s) == ()
    (d,) = depends_on(Action(2, Op.F, 3), s)
    assert (d.signal, d.stage, d.microbatch, d.cross_stage) == (Signal.ACTIVATION, 1, 3, True)
    # Last stage backward needs only its own forward.
    (own,) = depends_on(Action(3, Op.B, 1), s)
    assert (own.signal, own.stage, own.cross_stage) == (Signal.ACTIVATION, 3, False)
    # Middle stage input-gradient pass: the gradient from the next stage, then its own forward.
    cross, own = depends_on(Action(1, Op.I, 1), s)
    assert (cross.signal, cross.stage, cross.cross_stage) == (Signal.INPUT_GRAD, 2, True)
    assert (own.signal, own.stage) == (Signal.ACTIVATION, 1)
    (w,) = depends_on(Action(1, Op.W, 1), s)
    assert (w.signal, w.stage, w.cross_stage) == (Signal.INPUT_GRAD, 1, False)


def test_consumer_stage_is_the_inverse_of_depends_on() -> None:
    # For every producer (op, stage) the consumer stage's actions that wait on a cross-stage signal from it
    # are exactly those depends_on names; and W, the last F and stage 0's backward feed no other stage.
    from schedules.ir import NUM_SIGNALS, consumer_stage, consumer_stages, produces, signal_index

    for n in (1, 2, 5):
        table = consumer_stages(n)
        for op in Op:
            for s in range(n):
                c = consumer_stage(op, s, n)
                assert table[op][s] == (-1 if c is None else c)
                waiting = [
                    (o, other)
                    for other in range(n)
                    for o in Op
                    for d in depends_on(Action(other, o, 0), n)
                    if d.cross_stage and d.stage == s and d.signal == produces(op)
                ]
                assert (c is None) == (not waiting)
                if c is not None:
                    assert {other for _, other in waiting} == {c}
    assert consumer_stage(Op.F, 0, 3) == 1 and consumer_stage(Op.I, 2, 3) == 1
    assert consumer_stage(Op.W, 1, 3) is None and consumer_stage(Op.B, 0, 3) is None
    assert signal_index(2, 1, 1, 4) == (1 * 4 + 2) * NUM_SIGNALS + 1


def test_woven_rows_of_progressions() -> None:
    from schedules.periodic import woven

    assert woven(3, [(0, 10), (1, 10), (5, 2)]) == [0, 1, 5, 10, 11, 7, 20, 21, 9]
    assert woven(0, [(0, 4)]) == []
    assert woven(2, [(7, 3)]) == [7, 10]
