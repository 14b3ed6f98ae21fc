"""Overlapped forward-and-backward pairs for the engine (DualPipe's F&B: DeepSeek-V3 report, arXiv:2412.19437,
Section 3.2.1; the pairs of a schedule are :attr:`schedules.Schedule.overlapped`).

Kept apart from :mod:`pipesim.sim.engine`, which calls :func:`overlapped_pairs` once before its wavefront: the
pair becomes one span by giving the forward's row the pair's whole duration and an extra dependency (the
backward's cross-stage input), and the backward's row zero duration, so the wavefront itself is unchanged.

The pair's duration (DualPipe's F&B): the given ``fb_pair_s`` (the synthetic ``compare --fb-time``), else from
the passes' own costs. The DeepSeek-V3 report (Section 3.2.1, "Overlapping computation and communication")
splits each chunk into attention, all-to-all dispatch, MLP and all-to-all combine and rearranges a forward
chunk's and a backward chunk's components so that the all-to-alls of each run while the other computes
("both all-to-all and PP communication can be fully hidden"). With C the compute and A the all-to-all time of
each half (:attr:`OpCosts.a2a_forward_s`, :attr:`OpCosts.a2a_backward_s`; tensor-parallel communication stays on
the compute stream, pipeline transfers are the engine's own spans on the send stream, hidden already):

    F&B = max(C_F + C_B, A_F + A_B),  C_F = F - A_F,  C_B = B (or I) - A_B,

the compute of both on the SMs and their all-to-alls on the network, each stream busy back to back (the SMs
the report gives to communication are not taken from the compute: an upper bound on the overlap). Without
all-to-alls (a dense model, or ep = 1) it is F + B: no gain, as the report's overlap needs communication to
hide.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipesim.sim.timeline import OpCosts
from schedules.ir import Schedule

__all__ = ["overlapped_pairs"]


def overlapped_pairs(
    schedule: Schedule,
    costs: OpCosts,
    offsets: npt.NDArray[np.int64],
    durations: npt.NDArray[np.float64],
    dep_cross: npt.NDArray,
    stage: npt.NDArray,
) -> npt.NDArray | None:
    """Overlapped F&B pairs (DualPipe; :attr:`schedules.Schedule.overlapped`) as one span, when
    ``costs.hides_in_pairs``: the forward's row becomes the whole pair (it starts once the rank is free and the
    inputs of both passes have arrived, and lasts the F&B time of the module docstring); the backward's row is
    a zero-length span at the pair's end, where both outputs become available. Edits ``durations`` (per row)
    in place and returns each row's extra dependency (the backward's cross-stage input for pair forwards,
    "none" elsewhere), or None when no pair runs overlapped (then pairs are two actions in a row)."""
    if not costs.hides_in_pairs or not any(schedule.overlapped):
        return None
    first = np.concatenate(
        [np.asarray(ks, dtype=np.int64) + offsets[r] for r, ks in enumerate(schedule.overlapped) if ks]
    )
    if costs.fb_pair_s is not None:
        durations[first] = costs.fb_pair_s
    else:
        a2a = (
            np.asarray(costs.a2a_forward_s)[stage[first]] + np.asarray(costs.a2a_backward_s)[stage[first + 1]]
        )
        durations[first] = np.maximum(durations[first] + durations[first + 1] - a2a, a2a)
    durations[first + 1] = 0.0
    n = durations.shape[0]
    extra = np.full(n, n, dtype=dep_cross.dtype)
    extra[first] = dep_cross[first + 1]
    return extra
