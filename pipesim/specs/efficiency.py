"""Achieved-efficiency profile of one GPU (:class:`Efficiency`) and the shipped, calibrated profiles.

A profile holds what a GPU *achieves* on the kernels of a training step, next to :class:`pipesim.specs.gpu.GPUSpec`
which holds what its datasheet promises. :mod:`pipesim.cost.kernels` turns the two into seconds (the formulas,
with their sources, are there). Each preset's profile is a data file ``pipesim/data/gpus/<preset>.toml``:
``[efficiency]`` holds the values and ``[source]`` says, key by key, where each one comes from (a hardware fact
with its publication, or the published measurements it was fitted to by ``benchmarks/accuracy.py``).
"""

from __future__ import annotations

import math
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
    "EFFICIENCY_RULES",
    "Rule",
    "efficiency_rule_broken",
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
        for key in EFFICIENCY_RULES:
            value = getattr(self, key)
            broken = efficiency_rule_broken(key, value)
            if broken:
                raise InputError(f"efficiency {key}={value!r} {broken}")
        broken = _comm_sms_broken(self.comm_sms, self.sm_count)
        if broken:
            raise InputError(f"efficiency comm_sms={self.comm_sms!r} {broken}")
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))

    @property
    def comm_sm_share(self) -> float:
        """Fraction of the SMs an overlapping collective takes from compute: ``comm_sms / sm_count``."""
        return self.comm_sms / self.sm_count if self.comm_sms > 0 else 0.0

    def __reduce__(self) -> tuple[Any, ...]:
        # The sources live in a read-only mappingproxy, which pickle cannot copy.
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "sources"}
        return (_rebuild, (values, dict(self.sources)))


@dataclass(frozen=True)
class Rule:
    """The valid values of one efficiency key: ``low`` .. ``high`` (``low`` excluded when ``open_low``), an
    integer when ``integer``; ``meaning`` says what the value is (shown in the error)."""

    low: float
    high: float
    meaning: str
    open_low: bool = False
    integer: bool = False

    @property
    def text(self) -> str:
        """The range as the error states it: ``in [0.001, 1]``, ``an integer in [1, 65536]``."""
        kind = "an integer" if self.integer else "a finite number"
        return (
            f"{kind} in {'(' if self.open_low else '['}{_num(self.low)}, {_num(self.high)}] ({self.meaning})"
        )


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


# Every key's range. Fractions of a peak rate stop at 0.001: below it the times overflow to infinity. The
# upper bounds of the sizes and times are far past any GPU (an H100 has 132 SMs, 128 x 256 tiles and
# microsecond kernel costs) and keep every derived time finite.
_FRACTION = "fraction of the peak rate"
EFFICIENCY_RULES: dict[str, Rule] = {
    "gemm_max": Rule(0.001, 1.0, _FRACTION),
    "gemm_max_fp8": Rule(0.001, 1.0, _FRACTION),
    "gemm_max_fp4": Rule(0.001, 1.0, _FRACTION),
    "gemm_half_dim": Rule(0.0, 1e6, "GEMM elements; 0 = no size saturation"),
    "sm_count": Rule(0, 1_000_000, "SMs; 0 = no tile or wave quantization", integer=True),
    "tile_m": Rule(1, 65_536, "rows of a GEMM output tile", integer=True),
    "tile_n": Rule(1, 65_536, "columns of a GEMM output tile", integer=True),
    "attention": Rule(0.001, 1.0, _FRACTION),
    "hbm": Rule(0.001, 1.0, "fraction of HBM bandwidth"),
    "kernel_overhead_s": Rule(0.0, 1.0, "seconds per kernel"),
    "launch_s": Rule(0.0, 1.0, "seconds per kernel launch"),
    "nccl": Rule(0.001, 1.0, "fraction of the modelled collective rate"),
    "step_overhead_s": Rule(0.0, 3600.0, "seconds per training step"),
    "tp_overlap": Rule(0.0, 1.0, "fraction of a collective its GEMM hides", open_low=True),
    "comm_sms": Rule(0, 1_000_000, "SMs a collective holds; below sm_count", integer=True),
}


def efficiency_rule_broken(key: str, value: object) -> str:
    """Why ``value`` is not valid for efficiency ``key`` (``must be ...``, naming the range), or ``""``."""
    rule = EFFICIENCY_RULES[key]
    ok_type = isinstance(value, int) if rule.integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        return f"must be {rule.text}"
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v) or v > rule.high or (v <= rule.low if rule.open_low else v < rule.low):
        return f"must be {rule.text}"
    return ""


def _comm_sms_broken(comm_sms: int, sm_count: int) -> str:
    if comm_sms > 0 and comm_sms >= sm_count:
        return f"must be below sm_count={sm_count} (the SMs a collective holds, out of the GPU's; 0 = none)"
    return ""


def _rebuild(values: dict[str, Any], sources: dict[str, str]) -> Efficiency:
    return Efficiency(**values, sources=sources)


EFFICIENCY_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Efficiency) if f.name != "sources")

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
    prefix: str = "",
) -> Efficiency:
    """An :class:`Efficiency` from a TOML ``[efficiency]`` table (keys :data:`EFFICIENCY_KEYS`, missing keys
    from ``base`` or the defaults) and an optional ``[source]`` table (key -> text). Each value must be in its
    key's range (:data:`EFFICIENCY_RULES`); an error names ``src`` once and the key as ``prefix`` +
    ``efficiency.KEY`` (``prefix`` ``gpu.`` for an experiment file's ``[gpu]``), with the value and the range."""
    where = f"{prefix}efficiency."
    unknown = [k for k in values if k not in EFFICIENCY_KEYS]
    if unknown:
        raise InputError(
            f"{src}: unknown key '{where}{unknown[0]}'; valid keys: {', '.join(EFFICIENCY_KEYS)}"
        )
    parsed: dict[str, Any] = {}
    for k, v in values.items():
        broken = efficiency_rule_broken(k, v)
        if broken:
            raise InputError(f"{src}: key '{where}{k}' = {v!r} {broken}")
        parsed[k] = v if EFFICIENCY_RULES[k].integer else float(v)
    srcs = dict(base.sources) if base is not None else {}
    for k, v in (sources or {}).items():
        if k not in EFFICIENCY_KEYS or not isinstance(v, str):
            raise InputError(f"{src}: key '{prefix}source.{k}' must name an efficiency key and be a string")
        srcs[k] = v
    for k in parsed:
        if sources is None or k not in sources:
            srcs[k] = src
    merged = base or DEFAULT_EFFICIENCY
    comm_sms = parsed.get("comm_sms", merged.comm_sms)
    sm_count = parsed.get("sm_count", merged.sm_count)
    broken = _comm_sms_broken(comm_sms, sm_count)
    if broken and "comm_sms" in parsed:
        raise InputError(f"{src}: key '{where}comm_sms' = {comm_sms!r} {broken}")
    if broken:
        raise InputError(
            f"{src}: key '{where}sm_count' = {sm_count!r} must be above the base profile's comm_sms={comm_sms} "
            f"(or set '{where}comm_sms' too, 0 = none)"
        )
    return replace(merged, **parsed, sources=srcs)


def shipped_profile(gpu_name: str) -> Efficiency | None:
    """The calibrated profile shipped for preset ``gpu_name`` (``pipesim/data/gpus/<name>.toml``), or None."""
    path = resources.files("pipesim") / "data" / "gpus" / f"{gpu_name}.toml"
    if not path.is_file():
        return None
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    where = f"pipesim/data/gpus/{gpu_name}.toml"
    return efficiency_from_table(data.get("efficiency", {}), where, None, data.get("source", {}))
