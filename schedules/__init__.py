"""Pipeline schedules: the action IR, generators, a registry, the validator and PyTorch CSV I/O.

Standard library only; nothing here imports ``pipesim``.
"""

from schedules.csv_io import dumps_csv, loads_csv, read_csv, write_csv
from schedules.ir import (
    NUM_OPS,
    Action,
    Dependency,
    Op,
    Schedule,
    ScheduleError,
    Signal,
    decode,
    depends_on,
    encode,
    parse_action,
    produces,
)
from schedules.registry import REGISTRY, ScheduleFamily, build_schedule, get_family, register, schedule_names
from schedules.validate import check_complete, check_deadlock_free, format_grid, validate

__all__ = [
    "NUM_OPS",
    "REGISTRY",
    "Action",
    "Dependency",
    "Op",
    "Schedule",
    "ScheduleError",
    "ScheduleFamily",
    "Signal",
    "build_schedule",
    "check_complete",
    "check_deadlock_free",
    "decode",
    "depends_on",
    "dumps_csv",
    "encode",
    "format_grid",
    "get_family",
    "loads_csv",
    "parse_action",
    "produces",
    "read_csv",
    "register",
    "schedule_names",
    "validate",
    "write_csv",
]
