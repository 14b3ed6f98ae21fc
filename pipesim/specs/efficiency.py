"""Achieved-efficiency profile of one GPU (:class:`Efficiency`) and the shipped, calibrated profiles.

A profile holds what a GPU *achieves* on the kernels of a training step, next to :class:`pipesim.specs.gpu.GPUSpec`
which holds what its datasheet promises. :mod:`pipesim.cost.kernels` turns the two into seconds (the formulas,
with their sources, are there). Each preset's profile is a data file ``pipesim/data/gpus/<preset>.toml``:
``[efficiency]`` holds the values and ``[source]`` says, key by key, where each one comes from (a hardware fact
with its publication, or the published measurements it was fitted to by ``benchmarks/accuracy.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from types import MappingProxyType
from typing import Any

from pipesim.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Efficiency",
    "DEFAULT_EFFICIENCY",
    "GPU_PROFILE",
    "EFFICIENCY_KEYS",
    "efficiency_from_table",
    "resolve_efficiency",
    "shipped_profile",
]


@dataclass(frozen=True)
class Efficiency:
    """Achieved fractions of a GPU's peaks, and the shape facts of its GEMM kernels.

    ``gemm_max``: fraction of the dense 16-bit (and tf32 / fp32) peak a GEMM reaches when every SM is busy
    with whole tiles and every dimension is large; ``gemm_max_fp8``: the same at the fp8 peak; ``gemm_max_fp4``:
    the same at the fp4 (NVFP4) peak; ``gemm_half_dim``:
    the GEMM dimension that halves the throughput (factor d / (d + gemm_half_dim) per dimension); ``sm_count``,
    ``tile_m``, ``tile_n``: SMs and the output tile of the GEMM kernels, for tile and wave quantization
    (``sm_count`` 0 turns quantization off); ``attention``: fused attention's fraction of the 16-bit peak;
    ``hbm``: fraction of HBM bandwidth memory-bound kernels reach; ``kernel_overhead_s``: fixed GPU-side cost
    per compute kernel (ramp-up and tail); ``launch_s``: host time to launch one kernel without CUDA graphs
    (the GPU cannot run a pass faster than the host issues its kernels, :func:`pipesim.cost.times.pass_times`);
    ``nccl``: fraction of the communication model's collective rate the in-layer collectives (TP, CP, EP)
    reach (1 = as the model times them; ``calibrate --trace`` fits it to a profiler trace's NCCL kernels);
    ``step_overhead_s``: fixed cost per training
    iteration (data loading, gradient clipping, logging); ``tp_overlap``: fraction of an overlapped
    tensor-parallel collective that its partner GEMM hides (1 = fully hidden up to the GEMM's duration);
    ``comm_sms``: SMs a collective's kernels hold while FSDP / ZeRO-3 or the overlapped DDP gradient reduction
    runs beside compute (NCCL's channels are CUDA blocks), so the overlapped compute runs on the other
    ``sm_count - comm_sms`` (:attr:`comm_sm_share`; :mod:`pipesim.cost.fsdp`,
    :meth:`pipesim.cost.stages.StageCostModel.stage_table`).
    ``sources`` maps a key to where its value comes from (shown by ``pipesim gpu show``).
    """

    gemm_max: float = 0.68
    gemm_max_fp8: float = 0.68
    gemm_max_fp4: float = 0.68
    gemm_half_dim: float = 64.0
    sm_count: int = 0
    tile_m: int = 128
    tile_n: int = 256
    attention: float = 0.55
    hbm: float = 0.90
    kernel_overhead_s: float = 0.0
    launch_s: float = 5e-6
    nccl: float = 1.0
    step_overhead_s: float = 0.0
    tp_overlap: float = 1.0
    comm_sms: int = 0
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for key in ("gemm_max", "gemm_max_fp8", "gemm_max_fp4", "attention", "hbm", "nccl", "tp_overlap"):
            v = getattr(self, key)
            if not 0 < v <= 1:
                raise InputError(f"efficiency {key}={v} must be in (0, 1]")
        for key in ("gemm_half_dim", "kernel_overhead_s", "launch_s", "step_overhead_s"):
            if getattr(self, key) < 0:
                raise InputError(f"efficiency {key}={getattr(self, key)} must be >= 0")
        if self.sm_count < 0 or self.tile_m < 1 or self.tile_n < 1:
            raise InputError("efficiency sm_count must be >= 0 and tile_m, tile_n >= 1")
        if self.comm_sms < 0 or (self.comm_sms > 0 and self.comm_sms >= self.sm_count):
            raise InputError(
                f"efficiency comm_sms={self.comm_sms} must be >= 0 and below sm_count={self.sm_count} "
                "(the SMs a collective holds, out of the GPU's)"
            )
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    @property
    def comm_sm_share(self) -> float:
        """Fraction of the SMs an overlapping collective takes from compute: ``comm_sms / sm_count``."""
        return self.comm_sms / self.sm_count if self.comm_sms > 0 else 0.0

    def __reduce__(self) -> tuple[Any, ...]:
        # The sources live in a read-only mappingproxy, which pickle cannot copy.
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"}
        return (_rebuild, (values, dict(self.sources)))


def _rebuild(values: dict[str, Any], sources: dict[str, str]) -> Efficiency:
    return Efficiency(**values, sources=sources)


EFFICIENCY_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Efficiency) if f.name != "sources")
_INT_KEYS = ("sm_count", "tile_m", "tile_n", "comm_sms")

# The A100 constants of SC21 / Korthikanti (``benchmarks/accuracy.py``) serve a GPU that has no profile of
# its own (a user TOML without ``[efficiency]`` and without ``base``): see pipesim/data/gpus/a100-80gb.toml.
DEFAULT_EFFICIENCY = Efficiency()
# Placeholder default of Scenario / PlanRequest efficiency fields: "the GPU's own profile" (compared by identity).
GPU_PROFILE = Efficiency(sources={"gemm_max": "placeholder: the GPU's own profile"})


def resolve_efficiency(eff: Efficiency, gpu_profile: Efficiency | None) -> Efficiency:
    """``eff``, or, when it is the :data:`GPU_PROFILE` placeholder, the GPU's profile (default: the A100-fitted
    :data:`DEFAULT_EFFICIENCY`)."""
    if eff is GPU_PROFILE:
        return gpu_profile if gpu_profile is not None else DEFAULT_EFFICIENCY
    return eff


def efficiency_from_table(
    values: Mapping[str, Any],
    src: str,
    base: Efficiency | None = None,
    sources: Mapping[str, Any] | None = None,
) -> Efficiency:
    """An :class:`Efficiency` from a TOML ``[efficiency]`` table (keys :data:`EFFICIENCY_KEYS`, missing keys
    from ``base`` or the defaults) and an optional ``[source]`` table (key -> text). Errors name ``src``."""
    unknown = [k for k in values if k not in EFFICIENCY_KEYS]
    if unknown:
        raise InputError(
            f"{src}: unknown key 'efficiency.{unknown[0]}'; valid keys: {', '.join(EFFICIENCY_KEYS)}"
        )
    parsed: dict[str, Any] = {}
    for k, v in values.items():
        ok = isinstance(v, int) if k in _INT_KEYS else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok:
            kind = "an integer" if k in _INT_KEYS else "a number"
            raise InputError(f"{src}: key 'efficiency.{k}' must be {kind}, got {v!r}")
        parsed[k] = v if k in _INT_KEYS else float(v)
    srcs = dict(base.sources) if base is not None else {}
    for k, v in (sources or {}).items():
        if k not in EFFICIENCY_KEYS or not isinstance(v, str):
            raise InputError(f"{src}: key 'source.{k}' must name an efficiency key and be a string")
        srcs[k] = v
    for k in parsed:
        if sources is None or k not in sources:
            srcs[k] = src
    try:
        return replace(base or DEFAULT_EFFICIENCY, **parsed, sources=srcs)
    except InputError as exc:
        raise InputError(f"{src}: {exc}") from None


def shipped_profile(gpu_name: str) -> Efficiency | None:
    """The calibrated profile shipped for preset ``gpu_name`` (``pipesim/data/gpus/<name>.toml``), or None."""
    path = resources.files("pipesim") / "data" / "gpus" / f"{gpu_name}.toml"
    if not path.is_file():
        return None
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    where = f"pipesim/data/gpus/{gpu_name}.toml"
    return efficiency_from_table(data.get("efficiency", {}), where, None, data.get("source", {}))
