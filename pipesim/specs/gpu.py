"""GPU specifications (:class:`GPUSpec`) and presets.

Peak numbers are dense (no structured sparsity), per GPU, in SI units: FLOP/s, bytes, bytes/s, watts.
Values come from the project's reference notes (published.md) section 7 ("Hardware specifications"), which quotes
vendor material through secondary pages; each preset's ``source`` names the page and ``status`` says how sure
the value is. Numbers that published.md marks unconfirmed, or does not list at all (TF32/FP32 peaks, the
V100 and H100 PCIe TDP), are flagged ``unconfirmed`` in the preset's ``notes`` and must not be test targets.

Other GPUs come from a TOML file (see :func:`pipesim.io.readers.load_gpu_toml`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from pipesim.errors import InputError
from pipesim.specs.efficiency import DEFAULT_EFFICIENCY, EFFICIENCY_KEYS, Efficiency, shipped_profile
from pipesim.specs.server import DGX_A100, FILE_DEFAULT_SERVER, SERVERS, ServerSpec

__all__ = [
    "GPUSpec",
    "GPU_PRESETS",
    "PRECISIONS",
    "defaults_note",
    "get_gpu",
    "gpu_names",
    "presets_with",
    "provenance",
]

PRECISIONS = ("bf16", "fp16", "fp8", "fp4", "tf32", "fp32")


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator: dense peak FLOP/s per precision, HBM capacity and bandwidth, board power.

    ``peak_flops`` maps a precision (one of :data:`PRECISIONS`) to dense tensor-core (or vector, for fp32)
    FLOP/s; a precision the GPU lacks is absent. ``hbm_bytes`` is the marketed capacity in bytes (GB = 1e9);
    ``hbm_Bps`` the peak memory bandwidth in bytes/s; ``tdp_w`` the board power in watts. ``efficiency`` is the
    GPU's calibrated :class:`pipesim.specs.efficiency.Efficiency` profile (None: the A100-fitted default);
    ``server`` the server it comes in, whose links a command's collectives run on when the user names no
    cluster (:mod:`pipesim.specs.server`; a GPU file without ``base`` gets DGX A100's).
    """

    name: str
    peak_flops: Mapping[str, float]
    hbm_bytes: float
    hbm_Bps: float
    tdp_w: float | None = None
    source: str = ""
    status: str = ""
    notes: str = ""
    efficiency: Efficiency | None = None
    server: ServerSpec = DGX_A100

    def __post_init__(self) -> None:
        bad = [p for p in self.peak_flops if p not in PRECISIONS]
        if bad:
            raise InputError(
                f"gpu {self.name!r}: unknown precision {bad[0]!r}; valid: {', '.join(PRECISIONS)}"
            )
        if not self.peak_flops:
            raise InputError(
                f"gpu {self.name!r}: needs at least one peak FLOP/s entry ({', '.join(PRECISIONS)})"
            )
        for p, v in self.peak_flops.items():
            if not v > 0:
                raise InputError(f"gpu {self.name!r}: peak {p} = {v} FLOP/s must be > 0")
        for key in ("hbm_bytes", "hbm_Bps"):
            if not getattr(self, key) > 0:
                raise InputError(f"gpu {self.name!r}: {key}={getattr(self, key)} must be > 0")
        if self.tdp_w is not None and not self.tdp_w > 0:
            raise InputError(f"gpu {self.name!r}: tdp_w={self.tdp_w} must be > 0")
        object.__setattr__(self, "peak_flops", MappingProxyType(dict(self.peak_flops)))

    def peak(self, precision: str) -> float:
        """Dense peak FLOP/s at ``precision``; raises :class:`InputError` listing what this GPU supports."""
        try:
            return self.peak_flops[precision]
        except KeyError:
            from pipesim.specs.layout import TRAIN_PRECISIONS

            having = presets_with(precision)
            others = f"; GPUs with {precision}: {', '.join(having)}" if having else ""
            # A training precision is refused with the training precisions this GPU has (not its tf32 / fp32).
            train = precision in TRAIN_PRECISIONS
            own = [p for p in self.peak_flops if p in TRAIN_PRECISIONS or not train]
            what = "supported for training" if train else "supported"
            raise InputError(
                f"gpu {self.name!r} has no {precision} peak; {what}: {', '.join(own) or 'none'}{others}"
            ) from None

    @property
    def profile(self) -> Efficiency:
        """The calibrated efficiency profile, or the A100-fitted default when the GPU has none."""
        return self.efficiency if self.efficiency is not None else DEFAULT_EFFICIENCY

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.peak_flops.items())), self.hbm_bytes, self.hbm_Bps))

    def __reduce__(self) -> tuple[Any, ...]:
        # The peaks live in a read-only mappingproxy, which pickle cannot copy: rebuild from a plain dict, so a
        # GPUSpec travels to worker processes and Dask like any other value.
        return (
            GPUSpec,
            (self.name, dict(self.peak_flops), self.hbm_bytes, self.hbm_Bps, self.tdp_w)
            + (self.source, self.status, self.notes, self.efficiency, self.server),
        )


_A100_SRC = (
    "published.md s7: glennklockwood.com/garden/processors/A100 (cites NVIDIA A100 datasheet r4); "
    "fudzilla A100 launch article"
)
_H100_SRC = (
    "published.md s7: glennklockwood.com/garden/processors/h100 (cites NVIDIA Hopper whitepaper); clawkipedia"
)
_UNCONF_TF32 = "tf32/fp32 peaks are not in published.md (unconfirmed: NVIDIA datasheet values from memory)"

_PRESET_LIST: tuple[GPUSpec, ...] = (
    GPUSpec(
        "v100",
        {"fp16": 125e12, "fp32": 15.7e12},
        hbm_bytes=32e9,
        hbm_Bps=0.9e12,
        tdp_w=300.0,
        source="published.md s7: V100 launch tables (techrival/wccftech/xenon), grokipedia (125 TFLOP/s), io-tech (900 GB/s)",
        status="partly secondary",
        notes="V100 SXM2 32GB; no BF16. fp32 15.7 TFLOP/s and 300 W TDP are unconfirmed (not in published.md).",
    ),
    GPUSpec(
        "a100-40gb",
        {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
        hbm_bytes=40e9,
        hbm_Bps=1.555e12,
        tdp_w=400.0,
        source=_A100_SRC,
        status="confirmed via secondary sources citing NVIDIA datasheet",
        notes=_UNCONF_TF32,
    ),
    GPUSpec(
        "a100-80gb",
        {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12},
        hbm_bytes=80e9,
        hbm_Bps=2.039e12,
        tdp_w=400.0,
        source=_A100_SRC + "; SC21 Section 5 (312 TFLOP/s 16-bit peak)",
        status="confirmed via secondary sources",
        notes=_UNCONF_TF32,
    ),
    GPUSpec(
        "h100-sxm",
        {"bf16": 989.4e12, "fp16": 989.4e12, "fp8": 1978.9e12, "tf32": 494.7e12, "fp32": 66.9e12},
        hbm_bytes=80e9,
        hbm_Bps=3.35e12,
        tdp_w=700.0,
        source=_H100_SRC,
        status="confirmed via secondary sources citing NVIDIA",
        notes=_UNCONF_TF32,
    ),
    GPUSpec(
        "h100-pcie",
        {"bf16": 756e12, "fp16": 756e12, "fp8": 1513e12},
        hbm_bytes=80e9,
        hbm_Bps=2.0e12,
        tdp_w=350.0,
        source="published.md s7: not found in stored sources",
        status="unconfirmed",
        notes="All H100 PCIe figures are unconfirmed (published.md: 'values from memory of NVIDIA H100 datasheet'); "
        "fp8 = 2 x bf16 and 350 W TDP are further assumptions.",
    ),
    GPUSpec(
        "h200",
        {"bf16": 989.4e12, "fp16": 989.4e12, "fp8": 1979e12},
        hbm_bytes=141e9,
        hbm_Bps=4.8e12,
        tdp_w=700.0,
        source="published.md s7: lzwjava.github.io H200 table; aiwiki.ai nvidia_h200; MLPerf Inference v4.1 NVIDIA JSON",
        status="secondary (same GH100 compute as H100)",
        notes="fp8 dense = 3958 sparse / 2 (derived).",
    ),
    GPUSpec(
        "b200",
        {"bf16": 2250e12, "fp16": 2250e12, "fp8": 4500e12, "fp4": 9000e12},
        hbm_bytes=180e9,
        hbm_Bps=8.0e12,
        tdp_w=1000.0,
        source="published.md s7: haink.org H100-vs-H200-vs-B200; alpha-one-index networking table",
        status="secondary / partly unconfirmed",
        notes="bf16 2250 and fp8 4500 TFLOP/s dense are derived from sparse/2 (unconfirmed); fp4 9000 TFLOP/s dense "
        "(HGX B200 at 1000 W, NVIDIA Blackwell architecture technical brief as tabulated by glennklockwood.com/"
        "garden/processors/B200: FP4 9000 dense / 18000 sparse, = 2 x fp8); HBM 180 GB (DGX/HGX) "
        "vs 192 GB (launch) unconfirmed which; TDP ~1000 W.",
    ),
    GPUSpec(
        "gb200",
        {"bf16": 2450e12, "fp16": 2450e12, "fp8": 4900e12, "fp4": 9800e12},
        hbm_bytes=186e9,
        hbm_Bps=8.0e12,
        tdp_w=None,
        source="published.md s9: NVIDIA/dgxc-benchmarking llama3.1/README.md v25.05 (2450 BF16 / 4900 FP8 TFLOP/s "
        "peak used for MFU; recipes need at least 186 GB per GPU); racks: the nvl72 topology preset",
        status="secondary (NVIDIA benchmark recipe)",
        notes="fp4 9800 TFLOP/s dense = 2 x the recipe's fp8, NVIDIA's FP4 : FP8 ratio for GB200 NVL72 (1.4 EFLOPS "
        "FP4 vs 720 PFLOPS FP8 per rack, aiwiki.ai/wiki/nvidia_gb200_nvl72 quoting NVIDIA; NVIDIA's own dense FP4 "
        "per GB200 GPU is 10,000, glennklockwood.com/garden/processors/B200); HBM bandwidth 8.0 TB/s is B200's (published.md s7), unconfirmed for GB200; 186 GB is the memory the "
        "recipes require, taken as the capacity; TDP not in published.md.",
    ),
    GPUSpec(
        "mi300x",
        {"bf16": 1307.4e12, "fp16": 1307.4e12, "fp8": 2614.9e12},
        hbm_bytes=192e9,
        hbm_Bps=5.3e12,
        tdp_w=750.0,
        source="published.md s7: jaredwatkins.com MI300 series; gpu.blog MI300X",
        status="secondary (~1.3 PF FP16 / ~2.6 PF FP8 confirmed approx.)",
        notes="exact 1307.4 / 2614.9 TFLOP/s from the AMD datasheet are unconfirmed in the store.",
    ),
)


def _with_profile(g: GPUSpec) -> GPUSpec:
    eff = shipped_profile(g.name)
    g = replace(g, server=SERVERS[g.name])
    return g if eff is None else replace(g, efficiency=eff)


GPU_PRESETS: dict[str, GPUSpec] = {g.name: _with_profile(g) for g in _PRESET_LIST}


def gpu_names() -> list[str]:
    """Preset GPU names."""
    return list(GPU_PRESETS)


def presets_with(precision: str) -> list[str]:
    """Names of the presets with a ``precision`` peak, in preset order (for error messages)."""
    return [g.name for g in GPU_PRESETS.values() if precision in g.peak_flops]


def get_gpu(name: str) -> GPUSpec:
    """The preset called ``name``; an unknown name raises :class:`InputError` listing the presets."""
    try:
        return GPU_PRESETS[name]
    except KeyError:
        raise InputError(
            f"unknown gpu {name!r}; valid presets: {', '.join(GPU_PRESETS)} (or a path to a .toml file)"
        ) from None


def defaults_note(gpu: GPUSpec) -> str:
    """One line saying what a GPU file left to pipesim's defaults (no calibrated efficiency profile: the
    A100-fitted defaults; no server table: DGX A100's links), or "" for a GPU with its own profile and server.
    A report prints it so that a number costed on borrowed constants says so."""
    borrowed = []
    if gpu.efficiency is None:
        borrowed.append("A100-fitted efficiencies (no profile)")
    if gpu.server is FILE_DEFAULT_SERVER:
        borrowed.append("DGX A100 links (no server table)")
    if not borrowed:
        return ""
    return f"note: {gpu.name} uses defaults: {', '.join(borrowed)}; `pipesim gpu show` lists them"


def provenance(gpu: GPUSpec) -> list[tuple[str, str, str, str]]:
    """Every number pipesim uses for ``gpu`` as (name, value, unit, where it comes from): the datasheet values
    (dense peaks in TFLOP/s, HBM in GB = 1e9 bytes and GiB = 2^30 bytes, bandwidth in GB/s, TDP in W: the
    spec's source, status and notes) and each efficiency-profile value (a fraction, a count, or a time) with
    its own source (fitted on which published measurements, or which hardware fact)."""
    spec_src = gpu.source + (f" [{gpu.status}]" if gpu.status else "")
    rows = [(f"peak {p}", f"{v / 1e12:g}", "TFLOP/s dense", spec_src) for p, v in gpu.peak_flops.items()]
    rows.append(("HBM capacity", f"{gpu.hbm_bytes / 1e9:g}", "GB = 1e9 B", spec_src))
    rows.append(("HBM capacity in GiB", f"{gpu.hbm_bytes / 2**30:.1f}", "GiB = 2^30 B", "the same bytes"))
    rows.append(("HBM bandwidth", f"{gpu.hbm_Bps / 1e9:g}", "GB/s", spec_src))
    rows.append(("TDP", f"{gpu.tdp_w:g}" if gpu.tdp_w else "unknown", "W", spec_src))
    if gpu.notes:
        rows.append(("notes", "", "", gpu.notes))
    srv = gpu.server
    where = f"topology {srv.topology}" if srv.topology else "two-level model"
    rows.append(("server", srv.name, where, "the default cluster of every command: " + srv.source))
    also = "the server's (row above): the two-level model's figures"
    rows.append(("server GPUs", f"{srv.gpus_per_node}", "per server", also))
    rows.append(("server link inside", f"{srv.intra_Bps / 1e9:.0f}", "GB/s per GPU per direction", also))
    rows.append(("server link across", f"{srv.inter_Bps / 1e9:.1f}", "GB/s per GPU per direction", also))
    eff = gpu.profile
    if gpu.efficiency is None:
        rows.append(("profile", "none", "", "no calibrated profile: the A100-fitted defaults below"))
    for key in EFFICIENCY_KEYS:
        value = getattr(eff, key)
        if key == "step_overhead_s":
            text, unit = f"{value:g}", "s"
        elif key.endswith("_s"):
            text, unit = f"{value * 1e6:g}", "us"
        else:
            text, unit = f"{value:g}", ""
        rows.append((key, text, unit, eff.sources.get(key, "default (no source)")))
    return rows
