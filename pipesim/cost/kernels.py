"""Seconds of one GPU kernel: GEMMs (dense and grouped), fused attention, memory-bound kernels.

The GEMM model follows how tiled GEMM kernels (cuBLAS, CUTLASS) run on a GPU:

* the output M x N is cut into tiles of ``tile_m`` x ``tile_n`` (either orientation, whichever wastes less); each
  SM computes one tile at a time, so ``T = batch x ceil(M / tile_m) x ceil(N / tile_n)`` tiles run in
  ``ceil(T / sm_count)`` waves. The fraction of the SM-time doing useful work is
  ``quantization = batch x M x N / (waves x sm_count x tile_m x tile_n)``: padding of partial tiles and the
  idle SMs of the last wave (NVIDIA, "GPU Performance Background User's Guide", sections "Tile
  Quantization" and "Wave Quantization", Deep Learning Performance documentation);
* size-dependent efficiency: every tile pays a prologue and an epilogue (filling the pipeline, writing C)
  against its K / tile_k main-loop steps, and a thin M or N leaves the tensor cores waiting on operand loads;
  each dimension d contributes ``sat(d) = d / (d + gemm_half_dim)`` (a dimension of ``gemm_half_dim`` halves the
  throughput; the form and the constant are fitted, as in pipesim's earlier calibration);
* a full wave of long-K tiles reaches ``gemm_max`` of the dense peak (``gemm_max_fp8`` at fp8), the profile's
  calibrated constant.

``compute = 2 MNK batch / (peak x gemm_max x quantization x sat(M) sat(N) sat(K))``; the kernel takes
``max(compute, bytes / (hbm_Bps x hbm)) + kernel_overhead_s``.

FP8 (Transformer Engine, Micikevicius et al., "FP8 Formats for Deep Learning", arXiv:2209.05433): the GEMM's
inputs must be cast to fp8 first. Per element of the A operand (M x K) the casts read 2 bytes and write 1:
forward 3 bytes (cast of the input); input gradient 4 (cast and transpose of the output gradient); weight
gradient 2 (transposed fp8 copy of the saved input). ``delayed`` scaling (TE's default recipe) takes the
scale from the amax history, fused into the cast; ``current`` (tensor-wise) scaling reads the tensor once more
for its amax before the cast (+2 bytes); ``blockwise`` scaling (1 x 128 / 128 x 128 blocks, DeepSeek-V3
arXiv:2412.19437 Section 3.3) computes each block's scale in the cast kernel (no extra pass) and rescales the
partial sums in the GEMM's main loop, accounted in the fitted ``gemm_max_fp8``.

FP4 (NVFP4, Transformer Engine's ``NVFP4BlockScaling``, Megatron-LM ``--fp4-format e2m1``; Blackwell only):
4-bit E2M1 values with one E4M3 scale per 16-element block (0.5 + 1/16 bytes per element) and a per-tensor
fp32 scale. Block scaling as fp8 ``blockwise``: every scale is computed in the cast kernel (no extra pass),
which, because NVFP4 blocks run along K, quantizes from the 2-byte tensor for each GEMM that needs it: forward
2 + 0.5625 bytes per A element (read, write), input gradient 2 + 2 x 0.5625 (the output gradient and its
transposed copy), weight gradient 2 + 0.5625 (the saved input re-quantized along its other axis); the tensor
cores apply the block scales (block-scaled MMA), at the profile's ``gemm_max_fp4`` of the fp4 peak.

Grouped GEMM (mixture-of-experts, one kernel over every expert's problem): the tiles of all problems share
the waves (CUTLASS grouped GEMM schedules every problem's tiles on a persistent grid), so quantization is
counted over the sum of tiles.

Fused attention (FlashAttention-2 / -3, cuDNN): ``flops / (16-bit peak x attention)``, with the executed
FLOPs of :mod:`pipesim.cost.flops` (half the scores when causal). Memory-bound kernels:
``bytes / (hbm_Bps x hbm) + kernel_overhead_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pipesim.specs.efficiency import Efficiency
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import FP8_RECIPES

__all__ = [
    "FP8_RECIPES",
    "FP8_CAST_BYTES",
    "tile_quantization",
    "gemm_efficiency",
    "gemm_time_s",
    "grouped_gemm_time_s",
    "fp8_cast_bytes",
    "FP4_CAST_BYTES",
    "FP4_ELEMENT_BYTES",
    "LOW_PRECISIONS",
    "attention_time_s",
    "memory_time_s",
]

# Bytes per A-operand element the fp8 casts move, by GEMM phase (module docstring).
FP8_CAST_BYTES = {"F": 3.0, "I": 4.0, "W": 2.0}
FP4_ELEMENT_BYTES = 0.5 + 1 / 16  # NVFP4: 4-bit value + one 1-byte scale per 16 elements
FP4_CAST_BYTES = {
    "F": 2.0 + FP4_ELEMENT_BYTES,
    "I": 2.0 + 2 * FP4_ELEMENT_BYTES,
    "W": 2.0 + FP4_ELEMENT_BYTES,
}
LOW_PRECISIONS = ("fp8", "fp4")  # GEMMs whose A operand is cast first (the cast kernels above)
_AMAX_PASS_BYTES = 2.0  # current scaling: one more 2-byte read for the amax


def _tiles(m: int, n: int, tm: int, tn: int) -> int:
    return math.ceil(m / tm) * math.ceil(n / tn)


def tile_quantization(shapes: Sequence[tuple[int, int, int]], eff: Efficiency) -> float:
    """Useful fraction of SM-time for GEMM problems (M, N, batch) sharing one grid: useful output elements
    over ``waves x sm_count x tile_m x tile_n``, taking the tile orientation that wastes less. 1.0 when the
    profile has no ``sm_count``."""
    if eff.sm_count <= 0:
        return 1.0
    useful = float(sum(m * n * b for m, n, b in shapes))
    best = 0.0
    for tm, tn in ((eff.tile_m, eff.tile_n), (eff.tile_n, eff.tile_m)):
        tiles = sum(b * _tiles(m, n, tm, tn) for m, n, b in shapes)
        waves = math.ceil(tiles / eff.sm_count)
        best = max(best, useful / (waves * eff.sm_count * tm * tn))
    return best


def _sat(d: float, eff: Efficiency) -> float:
    return d / (d + eff.gemm_half_dim) if eff.gemm_half_dim > 0 else 1.0


def _size_util(m: float, n: float, k: float, eff: Efficiency) -> float:
    return _sat(m, eff) * _sat(n, eff) * _sat(k, eff)


def _gemm_max(precision: str, eff: Efficiency) -> float:
    if precision == "fp4":
        return eff.gemm_max_fp4
    return eff.gemm_max_fp8 if precision == "fp8" else eff.gemm_max


def gemm_efficiency(
    shape: tuple[int, int, int], eff: Efficiency, precision: str = "bf16", batch: int = 1
) -> float:
    """Fraction of ``precision``'s dense peak a GEMM of ``shape`` = (M, N, K) x ``batch`` reaches:
    gemm_max x tile/wave quantization x sat(M) sat(N) sat(K) (module docstring)."""
    m, n, k = shape
    return _gemm_max(precision, eff) * tile_quantization([(m, n, batch)], eff) * _size_util(m, n, k, eff)


def fp8_cast_bytes(
    shape: tuple[int, int, int], batch: int, phase: str, recipe: str = "delayed", precision: str = "fp8"
) -> float:
    """HBM bytes of the casts feeding one GEMM of ``shape`` in ``phase`` (F, I or W): fp8 under ``recipe``
    (module docstring: 3 / 4 / 2 bytes per A-operand element, +2 for current scaling's amax pass in F and I),
    or, with ``precision`` fp4, NVFP4's block-scaled casts (2.5625 / 3.125 / 2.5625; the recipe is NVFP4's)."""
    m, _, k = shape
    if precision == "fp4":
        return FP4_CAST_BYTES[phase] * m * k * batch
    per = FP8_CAST_BYTES[phase] + (_AMAX_PASS_BYTES if recipe == "current" and phase != "W" else 0.0)
    return per * m * k * batch


def memory_time_s(hbm_bytes: float, gpu: GPUSpec, eff: Efficiency) -> float:
    """Seconds to move ``hbm_bytes`` at the profile's fraction of HBM bandwidth (no kernel overhead)."""
    return hbm_bytes / (gpu.hbm_Bps * eff.hbm)


def gemm_time_s(
    shape: tuple[int, int, int],
    batch: int,
    hbm_bytes: float,
    peak: float,
    precision: str,
    gpu: GPUSpec,
    eff: Efficiency,
) -> tuple[float, str]:
    """(seconds, bound) of one GEMM kernel (M, N, K) x ``batch`` at dense ``peak`` FLOP/s: compute at
    :func:`gemm_efficiency`, or HBM-bound, plus the kernel overhead. fp8 cast kernels are separate
    (:func:`fp8_cast_bytes`)."""
    m, n, k = shape
    comp = 2.0 * m * n * k * batch / (peak * gemm_efficiency(shape, eff, precision, batch))
    mem = memory_time_s(hbm_bytes, gpu, eff)
    return max(comp, mem) + eff.kernel_overhead_s, "compute" if comp >= mem else "memory"


def grouped_gemm_time_s(
    shapes: Sequence[tuple[int, int, int]], peak: float, precision: str, gpu: GPUSpec, eff: Efficiency
) -> float:
    """Seconds of one grouped GEMM over problems (M_e, N_e, K_e) (one per expert; M_e may be 0): tiles of all
    problems share the waves; each problem's size utilisation weighs its FLOPs. Compute-bound or reading each
    problem's operands once (2-byte A and C, ``precision``'s bytes for B), whichever is longer, plus one
    kernel overhead."""
    live = [(m, n, k) for m, n, k in shapes if m > 0 and n > 0 and k > 0]
    if not live:
        return 0.0
    quant = tile_quantization([(m, n, 1) for m, n, _ in live], eff)
    work = sum(2.0 * m * n * k / _size_util(m, n, k, eff) for m, n, k in live)
    comp = work / (peak * _gemm_max(precision, eff) * quant)
    wbytes = 1.0 if precision == "fp8" else FP4_ELEMENT_BYTES if precision == "fp4" else 2.0
    mem = memory_time_s(sum(2.0 * m * k + wbytes * k * n + 2.0 * m * n for m, n, k in live), gpu, eff)
    return max(comp, mem) + eff.kernel_overhead_s


def attention_time_s(
    flops: float, hbm_bytes: float, peak16: float, gpu: GPUSpec, eff: Efficiency
) -> tuple[float, str]:
    """(seconds, bound) of a fused attention kernel executing ``flops`` at the profile's fraction of the
    16-bit peak, or HBM-bound, plus the kernel overhead."""
    comp = flops / (peak16 * eff.attention)
    mem = memory_time_s(hbm_bytes, gpu, eff)
    return max(comp, mem) + eff.kernel_overhead_s, "compute" if comp >= mem else "memory"
