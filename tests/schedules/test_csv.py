"""PyTorch per-rank CSV import/export."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given

from schedules import Schedule, ScheduleError, build_schedule, dumps_csv, loads_csv, read_csv
from tests.strategies import registered_schedules


@given(registered_schedules())
def test_round_trip(schedule: Schedule) -> None:
    back = loads_csv(dumps_csv(schedule))
    assert back == schedule


def test_format_is_one_row_per_rank_one_action_per_cell() -> None:
    text = dumps_csv(build_schedule("1f1b", 2, 2))
    assert text == "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n"


def test_blank_cells_and_comm_actions_are_skipped() -> None:
    text = "0F0,,0SEND_F0,0B0\n1RECV_F0,1F0,1B0,\n"
    s = loads_csv(text)
    assert s.text(0) == "0F0 0B0" and s.text(1) == "1F0 1B0"


def test_malformed_cell_names_file_row_and_cell(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("0F0,0B0\n1F0,1X0\n")
    with pytest.raises(ScheduleError) as err:
        read_csv(path)
    msg = str(err.value)
    assert str(path) in msg and "row 2 (rank 1), cell 2" in msg and "'1X0'" in msg
    assert "\n" not in msg


def test_stage_on_two_ranks_rejected() -> None:
    with pytest.raises(ScheduleError, match="stage 0 already runs on rank 0"):
        loads_csv("0F0,0B0\n0F1,0B1\n")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="cannot read schedule file"):
        read_csv(tmp_path / "nope.csv")
