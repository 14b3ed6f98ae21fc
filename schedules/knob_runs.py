"""Runs of a schedule search by knob setting, each built once where the knobs allow.

The searches that try every setting of a few binary knobs (the paper's heuristic, :mod:`schedules.zb_heuristic`;
the list scheduler, :mod:`schedules.greedy`; the V list scheduler, :mod:`schedules.v_memory`) report, with each
run, the knobs that decided one of its steps (a knob decides where its value is read and the rest of the state
leaves the choice open). A setting that differs from a built run only in knobs that never decided a step there
takes every step the same way, so it is that run. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["KnobRuns"]

R = TypeVar("R")


class KnobRuns(Generic[R]):
    """The runs built so far, as (knob bits, decisive bits, run)."""

    def __init__(self) -> None:
        self._runs: list[tuple[int, int, R]] = []

    def get(self, bits: int, build: Callable[..., tuple[R, int]], *args: Any) -> R:
        """The run of knob setting ``bits``: a built run whose bits differ from ``bits`` only in knobs that did
        not decide it, else ``build(*args)``'s (run, decisive bits), kept for the settings that follow."""
        for built, decisive, run in self._runs:
            if (built ^ bits) & decisive == 0:
                return run
        run, decisive = build(*args)
        self._runs.append((bits, decisive, run))
        return run
