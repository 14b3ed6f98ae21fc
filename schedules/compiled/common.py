"""What the compiled kernels share: numba's just-in-time compiler with its on-disk cache (for
:mod:`schedules.compiled` and :mod:`pipesim.sim.compiled_kernels`), and a kernel's rows of codes as programs.

The compiled code is cached next to the module (numba's ``cache=True``) or, where that directory is read-only,
in the user's cache directory; where no cache location is writable the function is compiled in memory.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

__all__ = ["njit_cached", "rows_as_programs"]


def njit_cached(fn: Any) -> Any:
    """``fn`` compiled by numba in nopython mode (releasing the GIL), with the on-disk cache where one is
    writable; numba is imported on the first call."""
    import numba  # imported here only: for the builds and timelines that need it

    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location: compile in memory
        return numba.njit(cache=False, nogil=True)(fn)


def rows_as_programs(progs: np.ndarray) -> tuple[array, ...]:
    """A kernel's per-rank rows of packed codes as a :class:`~schedules.ir.Schedule`'s programs."""
    programs = []
    for row in progs:
        prog = array("q")
        prog.frombytes(row.tobytes())
        programs.append(prog)
    return tuple(programs)
