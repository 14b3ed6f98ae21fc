"""The kernel models of pipesim.cost.kernels: tile and wave quantization, fp8 casts, grouped GEMMs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipesim.cost.kernels import (
    fp8_cast_bytes,
    gemm_efficiency,
    gemm_time_s,
    grouped_gemm_time_s,
    tile_quantization,
)
from pipesim.errors import InputError
from pipesim.specs.efficiency import Efficiency
from pipesim.specs.gpu import get_gpu

H100 = get_gpu("h100-sxm")
# 132 SMs, 128 x 256 tiles, no size saturation: quantization alone.
Q = Efficiency(gemm_max=0.8, gemm_max_fp8=0.6, gemm_half_dim=0.0, sm_count=132, tile_m=128, tile_n=256)


def test_full_waves_have_no_quantization_loss() -> None:
    # 132 tiles of 128 x 256 exactly: M = 128 x 12, N = 256 x 11 -> one full wave.
    assert tile_quantization([(128 * 12, 256 * 11, 1)], Q) == pytest.approx(1.0)


def test_one_tile_more_than_a_wave_costs_a_second_wave() -> None:
    # 133 tiles -> 2 waves: useful 133 tiles of work over 2 x 132 tile-slots (either orientation: 128 x 256
    # tiles on M = 133 x 128, N = 256 fit exactly, so the better orientation is this one).
    q = tile_quantization([(133 * 128, 256, 1)], Q)
    assert q == pytest.approx(133 / (2 * 132))


def test_partial_tiles_are_padded() -> None:
    # M = N = 100: one tile either way, 100 x 100 useful of 128 x 256 computed, one wave of 132 SMs.
    assert tile_quantization([(100, 100, 1)], Q) == pytest.approx(100 * 100 / (132 * 128 * 256))


def test_efficiency_grows_with_size_through_quantization() -> None:
    small = gemm_efficiency((1024, 2048, 2048), Q)  # 8 x 8 = 64 tiles: half the SMs idle
    large = gemm_efficiency(
        (16384, 16384, 16384), Q
    )  # 128 x 64 = 8192 tiles: 63 waves, the last 8 of 132 busy
    assert small == pytest.approx(0.8 * 64 / 132)
    assert large == pytest.approx(0.8 * 8192 / (63 * 132))
    assert small < large < 0.8


def test_fp8_uses_its_own_fraction_and_time_adds_overhead() -> None:
    assert gemm_efficiency((128 * 12, 256 * 11, 4096), Q, "fp8") == pytest.approx(0.6)
    eff = Efficiency(gemm_max=0.5, gemm_half_dim=0.0, kernel_overhead_s=2e-6)
    t, bound = gemm_time_s((4096, 4096, 4096), 1, 6.0 * 4096**2, 989.4e12, "bf16", H100, eff)
    assert bound == "compute" and t == pytest.approx(2 * 4096**3 / (0.5 * 989.4e12) + 2e-6)


def test_fp8_cast_bytes_per_recipe() -> None:
    shape = (1000, 7, 300)  # A operand M x K = 300,000 elements
    assert fp8_cast_bytes(shape, 1, "F") == 3 * 300_000
    assert fp8_cast_bytes(shape, 1, "I") == 4 * 300_000
    assert fp8_cast_bytes(shape, 1, "W") == 2 * 300_000
    # current scaling: one more 2-byte amax read before the casts of F and I
    assert fp8_cast_bytes(shape, 2, "F", "current") == 2 * 5 * 300_000
    assert fp8_cast_bytes(shape, 1, "W", "current") == 2 * 300_000
    assert fp8_cast_bytes(shape, 1, "F", "blockwise") == 3 * 300_000


def test_grouped_gemm_shares_waves_across_experts() -> None:
    # 8 experts of 64 tiles each = 512 tiles on 132 SMs: 4 waves (3.88 useful) in one grouped kernel, where
    # eight separate GEMMs would each run half-empty single waves.
    shapes = [(128 * 8, 256 * 8, 4096)] * 8
    t = grouped_gemm_time_s(shapes, 989.4e12, "bf16", H100, Q)
    flops = 8 * 2.0 * 1024 * 2048 * 4096
    assert t == pytest.approx(flops / (989.4e12 * 0.8 * 512 / (4 * 132)))
    separate = sum(gemm_time_s(s, 1, 0.0, 989.4e12, "bf16", H100, Q)[0] for s in shapes)
    assert t < separate
    # experts that received no tokens cost nothing; none at all is 0 s
    assert grouped_gemm_time_s(shapes + [(0, 2048, 4096)], 989.4e12, "bf16", H100, Q) == pytest.approx(t)
    assert grouped_gemm_time_s([], 989.4e12, "bf16", H100, Q) == 0.0


def test_profile_values_are_checked() -> None:
    with pytest.raises(InputError, match="gemm_max_fp8"):
        Efficiency(gemm_max_fp8=1.5)
    with pytest.raises(InputError, match="sm_count"):
        Efficiency(sm_count=-1)


B200 = get_gpu("b200")


def test_fp4_nvfp4_block_scaled_casts_and_peak() -> None:
    # NVFP4: 4-bit E2M1 + one 1-byte E4M3 scale per 16 elements = 0.5625 bytes; each cast reads the 2-byte
    # tensor: F 2 + 0.5625, I 2 + 2 x 0.5625 (the output gradient and its transposed copy), W 2 + 0.5625.
    m, n, k = 4096, 8192, 4096
    assert fp8_cast_bytes((m, n, k), 1, "F", precision="fp4") == pytest.approx(2.5625 * m * k)
    assert fp8_cast_bytes((m, n, k), 1, "I", precision="fp4") == pytest.approx(3.125 * m * k)
    assert fp8_cast_bytes((m, n, k), 1, "W", precision="fp4") == pytest.approx(2.5625 * m * k)
    # The fp4 recipe is NVFP4's whatever the fp8 recipe says.
    assert fp8_cast_bytes((m, n, k), 1, "F", "current", "fp4") == fp8_cast_bytes(
        (m, n, k), 1, "F", precision="fp4"
    )
    # B200 fp4 peak 9000 TFLOP/s dense (2 x fp8, NVIDIA Blackwell technical brief): a compute-bound GEMM at the
    # profile's gemm_max_fp4 runs in 2 M N K / (9e15 x gemm_max_fp4 x quantization).
    eff = replace(B200.profile, kernel_overhead_s=0.0)
    t, bound = gemm_time_s((m, n, k), 1, 0.0, B200.peak("fp4"), "fp4", B200, eff)
    assert bound == "compute"
    assert t == pytest.approx(2 * m * n * k / (9000e12 * gemm_efficiency((m, n, k), eff, "fp4")))
    assert gemm_efficiency((m, n, k), eff, "fp4") == pytest.approx(gemm_efficiency((m, n, k), eff, "fp8"))
    fp8_t, _ = gemm_time_s((m, n, k), 1, 0.0, B200.peak("fp8"), "fp8", B200, eff)
    assert fp8_t == pytest.approx(2 * t)


def test_fp4_refused_on_gpus_without_fp4_tensor_cores() -> None:
    with pytest.raises(InputError, match="gpu 'h100-sxm' has no fp4 peak; .*GPUs with fp4: b200, gb200$"):
        H100.peak("fp4")
