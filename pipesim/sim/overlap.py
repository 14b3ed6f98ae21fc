"""Overlapped forward-and-backward pairs for the engine (DualPipe's F&B: DeepSeek-V3 report, arXiv:2412.19437,
Section 3.2.1; the pairs of a schedule are :attr:`schedules.Schedule.overlapped`).

Kept apart from :mod:`pipesim.sim.engine`, which calls :func:`overlapped_pairs` once before its wavefront: the
pair becomes one span by giving the forward's row the pair's whole duration and an extra dependency (the
backward's cross-stage input), and the backward's row zero duration, so the wavefront itself is unchanged.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from schedules.ir import Schedule

__all__ = ["overlapped_pairs"]


def overlapped_pairs(
    schedule: Schedule,
    fb_pair_s: float | None,
    offsets: npt.NDArray[np.int64],
    durations: npt.NDArray[np.float64],
    dep_cross: npt.NDArray,
) -> npt.NDArray | None:
    """Overlapped F&B pairs (DualPipe; :attr:`schedules.Schedule.overlapped`) as one span, when their duration
    ``fb_pair_s`` is given: the forward's row becomes the whole pair (it starts once the rank is free and
    the inputs of both passes have arrived, and lasts ``fb_pair_s``); the backward's row is a zero-length span at
    the pair's end, where both outputs become available. Edits ``durations`` in place and returns each row's
    extra dependency (the backward's cross-stage input for pair forwards, "none" elsewhere), or None when no
    pair runs overlapped (then pairs are two actions in a row, as before)."""
    if fb_pair_s is None or not schedule.overlapped:
        return None
    first = np.concatenate(
        [np.asarray(ks, dtype=np.int64) + offsets[r] for r, ks in enumerate(schedule.overlapped) if ks]
    )
    durations[first] = fb_pair_s
    durations[first + 1] = 0.0
    n = durations.shape[0]
    extra = np.full(n, n, dtype=dep_cross.dtype)
    extra[first] = dep_cross[first + 1]
    return extra
