"""Schedule generators: published orders, registry, properties of every registered schedule."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given

from schedules import (
    REGISTRY,
    Op,
    Schedule,
    ScheduleError,
    build_schedule,
    check_deadlock_free,
    get_family,
    validate,
)
from schedules.ir import Action
from tests.strategies import registered_schedules

# Megatron-LM's interleaved order for p=4, m=8, v=2, rank 0 (quoted in the project's issue 2, from
# Megatron-LM's forward_backward_pipelining_with_interleaving).
MEGATRON_RANK0 = (
    "0F0 0F1 0F2 0F3 4F0 4F1 4F2 4F3 0F4 0F5 0F6 4B0 0F7 4B1 4F4 4B2 4F5 4B3 4F6 0B0 4F7 0B1 0B2 0B3 "
    "4B4 4B5 4B6 4B7 0B4 0B5 0B6 0B7"
)


def test_interleaved_matches_megatron_order() -> None:
    assert build_schedule("interleaved-1f1b", 4, 8, 2).text(0) == MEGATRON_RANK0


def test_interleaved_placement_is_stage_mod_p() -> None:
    s = build_schedule("interleaved-1f1b", 4, 8, 3)
    assert s.stage_to_rank == tuple(st % 4 for st in range(12))


def test_one_f_one_b_warmup() -> None:
    # PipeDream-Flush: rank r runs p - r - 1 warm-up forwards, then alternates (SC21 Section 2.2.1).
    s = build_schedule("1f1b", 4, 6)
    assert s.text(1) == "1F0 1F1 1F2 1B0 1F3 1B1 1F4 1B2 1F5 1B3 1B4 1B5"
    assert s.text(3) == "3F0 3B0 3F1 3B1 3F2 3B2 3F3 3B3 3F4 3B4 3F5 3B5"


def test_gpipe_all_forwards_first() -> None:
    s = build_schedule("gpipe", 2, 3)
    assert s.text(0) == "0F0 0F1 0F2 0B0 0B1 0B2"


def test_unknown_schedule_lists_valid_names() -> None:
    with pytest.raises(ScheduleError) as err:
        get_family("zigzag")
    msg = str(err.value)
    assert "zigzag" in msg
    for name in REGISTRY:
        assert name in msg


@pytest.mark.parametrize(("pp", "m", "vpp"), [(0, 4, 1), (4, 0, 1), (4, 4, 0)])
def test_sizes_below_one_rejected(pp: int, m: int, vpp: int) -> None:
    with pytest.raises(ScheduleError, match="must be >= 1"):
        build_schedule("1f1b", pp, m, vpp)


def test_interleaved_microbatch_rule_suggests_valid_counts() -> None:
    with pytest.raises(ScheduleError, match=r"multiple of pp=4.*got 6; valid nearby: 4, 8"):
        build_schedule("interleaved-1f1b", 4, 6, 2)


def test_every_family_builds_a_standard_case() -> None:
    for name in REGISTRY:
        schedule = build_schedule(name, 4, 8, 2)
        validate(schedule)


@given(registered_schedules())
def test_every_schedule_is_complete_and_deadlock_free(schedule: Schedule) -> None:
    validate(schedule)
    # Exactly one F and one full backward (B, or I and W) per stage of the microbatch's chain (all stages
    # but for bidirectional DualPipe's two chains), nothing on the other chains' stages.
    counts = Counter((a.stage, a.microbatch, a.op) for _, _, a in schedule.iter_actions())
    length = schedule.chain_length
    for m in range(schedule.num_microbatches):
        first = min(a.stage for _, _, a in schedule.iter_actions() if a.microbatch == m)
        route = range(first - first % length, first - first % length + length)
        assert sum(n for (s, mb, _), n in counts.items() if mb == m and s not in route) == 0
        for s in route:
            assert counts[(s, m, Op.F)] == 1
            assert counts[(s, m, Op.B)] + counts[(s, m, Op.I)] == 1
            assert counts[(s, m, Op.I)] == counts[(s, m, Op.W)]


@given(registered_schedules())
def test_forward_before_backward_on_each_rank(schedule: Schedule) -> None:
    for r in range(schedule.num_ranks):
        seen: set[tuple[int, int]] = set()
        for a in schedule.actions(r):
            if a.op is Op.F:
                seen.add((a.stage, a.microbatch))
            else:
                assert (a.stage, a.microbatch) in seen, f"{a} before its forward on rank {r}"


def test_deadlock_prints_grid_with_stuck_steps() -> None:
    # Rank 1 wants the gradient of microbatch 1 before running the forward that rank 0 waits on.
    bad = Schedule.from_actions(
        "bad",
        2,
        2,
        (0, 1),
        [
            [Action(0, Op.F, 0), Action(0, Op.F, 1), Action(0, Op.B, 1), Action(0, Op.B, 0)],
            [Action(1, Op.F, 0), Action(1, Op.B, 1), Action(1, Op.B, 0), Action(1, Op.F, 1)],
        ],
    )
    with pytest.raises(ScheduleError) as err:
        check_deadlock_free(bad)
    text = str(err.value)
    assert text.splitlines()[0].startswith("schedule 'bad' deadlocks")
    assert "rank   0 | 0F0 0F1 [0B1] 0B0" in text
    assert "rank   1 | 1F0 [1B1] 1B0 1F1" in text


def test_incomplete_schedule_names_missing_action() -> None:
    bad = Schedule.from_actions(
        "short", 1, 2, (0,), [[Action(0, Op.F, 0), Action(0, Op.B, 0), Action(0, Op.F, 1)]]
    )
    with pytest.raises(ScheduleError, match="missing backward 0B1"):
        validate(bad)


def test_action_on_wrong_rank() -> None:
    bad = Schedule.from_actions("misplaced", 2, 1, (0, 1), [[Action(1, Op.F, 0)], []])
    with pytest.raises(ScheduleError, match="belongs to stage 1 on rank 1"):
        validate(bad)
