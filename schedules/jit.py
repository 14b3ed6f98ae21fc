"""numba's just-in-time compiler with its on-disk cache, for the compiled kernels of :mod:`schedules.compiled`
and :mod:`pipesim.sim.compiled_kernels`.

The compiled code is cached next to the module (numba's ``cache=True``) or, where that directory is read-only,
in the user's cache directory; where no cache location is writable the function is compiled in memory.
"""

from __future__ import annotations

from typing import Any

__all__ = ["njit_cached"]


def njit_cached(fn: Any) -> Any:
    """``fn`` compiled by numba in nopython mode (releasing the GIL), with the on-disk cache where one is
    writable; numba is imported on the first call."""
    import numba  # imported here only: for the builds and timelines that need it

    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location: compile in memory
        return numba.njit(cache=False, nogil=True)(fn)
