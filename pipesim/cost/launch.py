"""Kernel launches without CUDA graphs: the host issues every kernel of a pass, so the GPU cannot finish the
pass before the host has launched it (NVIDIA, "CUDA Graph Best Practice for PyTorch"; the host time per launch
is the profile's ``launch_s``). With CUDA graphs (``Layout.cuda_graphs``) a pass is one graph launch and this
bound does not apply (:func:`pipesim.cost.times.layer_pass_times`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipesim.cost.times import PassTimes, TimedOp

__all__ = ["launch_bound"]


def launch_bound(pt: PassTimes, timed: Sequence[TimedOp], launch_s: float, cast: bool = False) -> PassTimes:
    """``pt`` with each phase (F, I = B - W, W) lasting at least its kernel count x ``launch_s``: without CUDA
    graphs the host launches every kernel (each operator one, an fp8 / fp4 GEMM's input cast one more), and the GPU
    cannot finish a phase before the host has issued it (NVIDIA, "CUDA Graph Best Practice for PyTorch":
    launch overhead bounds passes whose kernels are shorter than their launch). The wait counts in the pass."""
    count = {"F": 0, "I": 0, "W": 0}
    for t in timed:
        count[t.op.phase] += 2 if cast and t.op.kind == "gemm" else 1
    f = max(pt.forward_s, count["F"] * launch_s)
    w = max(pt.weight_s, count["W"] * launch_s)
    i = max(pt.backward_s - pt.weight_s, count["I"] * launch_s)
    if f == pt.forward_s and w == pt.weight_s and i == pt.backward_s - pt.weight_s:
        return pt
    return replace(pt, forward_s=f, backward_s=i + w, weight_s=w)
