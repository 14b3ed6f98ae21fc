"""Compiled twins of the hot loops of the searching schedule generators, in the subset of Python that numba
compiles: the V list scheduler (:mod:`schedules.v_memory`), the order timer (:mod:`schedules.timing`), the greedy
list scheduler (:mod:`schedules.greedy`), the Zero Bubble paper's heuristic (:mod:`schedules.zb_heuristic`) and
the periodic extension's search for repeating runs (:mod:`schedules.periodic`), one module each.

Each kernel is a line-for-line transcription of its pure-Python reference, which stays the definition: the same
floating-point operations in the same order (numba keeps IEEE semantics without ``fastmath``), so the orders,
times and peaks are identical (``tests/schedules/test_compiled.py`` holds them together). The Python loops cost
1-8 us per action; these, tens of nanoseconds.

This module is standard library only, like the rest of :mod:`schedules`, which imports and runs without numpy: the
kernel modules (numpy, numba) are imported only when :func:`worth_compiling` says a build or timing should use
them (numba installed, and a large build, or enough small ones), and the compiled functions are cached on disk
(:func:`schedules.compiled.common.njit_cached`).
"""

from __future__ import annotations

import functools
import os
import sys
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

__all__ = [
    "Kernels",
    "kernels",
    "loaded",
    "run_greedy",
    "run_heuristic",
    "run_timer",
    "run_v_list",
    "timer_thread",
    "worth_compiling",
]

# Importing numba and loading these kernels from its cache costs about half a second, the load alone about 0.3 s.
# A V-memory build of LOAD_FROM_ACTIONS actions costs about as much in Python (its knob settings' list-scheduler
# runs and timings, 5-15 us per action in all); a timing alone, about 1.3 us per action, pays for it from
# TIME_LOAD_FROM_ACTIONS. Where numba is already imported (the engine's compiled pass), builds from
# LOADED_NUMBA_FROM_ACTIONS load them; once they are loaded, every build or timing from SMALL_ACTIONS on uses them.
LOAD_FROM_ACTIONS = 100_000
TIME_LOAD_FROM_ACTIONS = 700_000
LOADED_NUMBA_FROM_ACTIONS = 30_000
SMALL_ACTIONS = 200


def loaded() -> bool:
    """Whether the kernels are already compiled or loaded in this process."""
    return kernels.cache_info().currsize > 0


def worth_compiling(actions: int, load_from: int = LOAD_FROM_ACTIONS) -> bool:
    """Whether a build or timing of ``actions`` actions should use the kernels: from :data:`SMALL_ACTIONS` once
    they are loaded; else (when numba is installed) from ``load_from`` actions, :data:`LOADED_NUMBA_FROM_ACTIONS`
    where numba is already imported (if smaller), or once the references have run that many actions in this
    process (many small builds, as a plan's first search of zero-bubble orders)."""
    global _python_actions
    if actions < SMALL_ACTIONS:
        return False
    if loaded():
        return True
    if "numba" in sys.modules:
        load_from = min(LOADED_NUMBA_FROM_ACTIONS, load_from)
    if actions < load_from and _python_actions < load_from:
        _python_actions += actions
        return False
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a dependency; without it the references run
        return False
    return True


_python_actions = 0  # actions the references ran (from SMALL_ACTIONS up) before the kernels were loaded


def timer_thread() -> ThreadPoolExecutor:
    """One worker thread for the compiled timings that overlap a search's next build (both release the GIL);
    one per process (a forked child does not inherit the parent's running thread)."""
    pid = os.getpid()
    executor = _TIMER.get(pid)
    if executor is None:
        _TIMER.clear()
        executor = _TIMER[pid] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipesim-timer")
    return executor


_TIMER: dict[int, ThreadPoolExecutor] = {}


class Kernels(NamedTuple):
    """The compiled kernels, each the twin of a pure-Python reference."""

    v_list: Any  # schedules.v_memory._list_order_python
    time: Any  # schedules.timing.time_order's loop
    greedy: Any  # schedules.greedy._greedy_pass
    heuristic: Any  # schedules.zb_heuristic.heuristic_run
    runs: Any  # schedules.periodic.runs
    first_period: Any  # schedules.periodic.period_seen, one program


@functools.cache
def kernels() -> Kernels:
    """The kernels, compiled by numba or loaded from its on-disk cache (each on its first call)."""
    from schedules.compiled.common import njit_cached
    from schedules.compiled.greedy import _greedy
    from schedules.compiled.heuristic import _heuristic
    from schedules.compiled.periodic import _first_period, _runs
    from schedules.compiled.timer import _time
    from schedules.compiled.v_list import _v_list

    return Kernels(*(njit_cached(fn) for fn in (_v_list, _time, _greedy, _heuristic, _runs, _first_period)))


def run_v_list(*args: Any) -> tuple[int, bool, int, tuple[array, ...]]:
    """:func:`schedules.compiled.v_list.run`: (status, stalled, deciding knobs, programs) of one V list run."""
    from schedules.compiled import v_list

    return v_list.run(*args)


def run_greedy(*args: Any) -> tuple[float, int, tuple[array, ...]]:
    """:func:`schedules.compiled.greedy.run`: (makespan or -1, deciding knobs, programs) of one greedy pass."""
    from schedules.compiled import greedy

    return greedy.run(*args)


def run_heuristic(*args: Any) -> tuple[int, int, tuple[array, ...]]:
    """:func:`schedules.compiled.heuristic.run`: (status, deciding knobs, programs) of one heuristic run."""
    from schedules.compiled import heuristic

    return heuristic.run(*args)


def run_runs(prog: Sequence[int], unit: int, max_block: int) -> list[tuple[int, int, int]]:
    """:func:`schedules.compiled.periodic.runs`: (start, block length, repetitions) of each run of ``prog``."""
    from schedules.compiled import periodic

    return periodic.runs(prog, unit, max_block)


def run_first_period(prog: Sequence[int], unit: int, longest_block: int) -> int:
    """:func:`schedules.compiled.periodic.first_period`: the period one program shows, or -1."""
    from schedules.compiled import periodic

    return periodic.first_period(prog, unit, longest_block)


def run_timer(*args: Any) -> tuple[int, tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """:func:`schedules.compiled.timer.run`: (status, first starts, last ends, peaks) of one timing."""
    from schedules.compiled import timer

    return timer.run(*args)


def load_all() -> None:
    """Load (or compile) every kernel now, by one tiny call each: what a process pays once, about a second with
    numba's cache warm (benchmarks/engine_speed.py does this before timing, as it loads the engine's kernels)."""
    from schedules.timing import StageTimes, time_order
    from schedules.zero_bubble import zb_h1

    run_v_list(2, 2, 4.0, 1.0, 1.0, 1.0, 0.0, 0.0, False, False, False)
    run_greedy(2, 2, 2.0, 1.0, 1.0, 1.0, 0.0, 0.0, False, False)
    run_heuristic(2, 2, 2.0, 1.0, 1.0, 1.0, 0.0, 0.0, False, False, False)
    order = zb_h1(2, 2)
    time_order(order, StageTimes.uniform(2, 1.0, 1.0, 1.0), method="compiled")
    run_runs(order.programs[0], 8, 4)
    run_first_period(order.programs[0], 8, 4)
