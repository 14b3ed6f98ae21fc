"""Energy, GPU-hours and cost of a training step and of a whole run.

Model (deterministic; every constant below that is not the GPU's board power is an assumption, printed by
:meth:`EnergyReport.assumptions`):

* GPU power varies linearly between idle and board power (TDP) with utilisation:
  ``P_gpu = P_idle + (TDP - P_idle) x u``, ``P_idle = idle_fraction x TDP``. ``u`` is the compute-busy
  fraction of the step (the time a GPU runs compute kernels, recomputation and the optimizer step, over the
  step time; pipeline bubbles and communication waits count as idle). A linear power-utilisation model is
  the usual first-order server power model (Fan, Weber & Barroso, "Power provisioning for a
  warehouse-sized computer", ISCA 2007); running at TDP whenever busy over-estimates memory-bound kernels
  and under-estimates nothing the GPU is allowed to draw.
* Each node adds a constant ``node_overhead_w`` for everything but the GPUs (CPUs, DRAM, NVSwitches, NICs,
  fans, power-supply losses, its share of the network switches); nodes = ceil(GPUs / gpus_per_node).
* The facility multiplies IT power by the power usage effectiveness ``pue`` (total facility power / IT
  power, The Green Grid's definition).
* Energy = power x time; GPU-hours = GPUs x run time / 3600; cost = GPU-hours x price per GPU-hour
  (a rental price, which already includes power: the energy is reported next to it, not added to it).

Sources and assumptions of the defaults:

* TDP per preset: the project's reference notes (published.md) section 7 (A100 400 W, H100 SXM 700 W, H200 700 W,
  B200 ~1000 W, MI300X 750 W; see :mod:`pipesim.specs.gpu` for which are unconfirmed); a GPU TOML may set
  ``tdp_W``.
* ``idle_fraction`` = 0.15 of TDP (assumption; secondary web tables list ~15% of TDP idle, e.g. about 105 W
  for an H100 SXM. A GPU waiting inside a training job keeps its clocks and CUDA context and draws more than
  bare idle, so this is a low estimate of the idle term).
* ``node_overhead_w`` = 2000 W per 8-GPU node (assumption: a DGX H100's maximum input is 10.2 kW
  (NVIDIA DGX H100 user guide, as quoted by secondary pages) and its eight GPUs' TDP 5.6 kW, leaving
  4.6 kW at full load for the rest; the same pages quote 6.5-8.5 kW typical, i.e. about 1-3 kW of non-GPU
  draw; 2 kW is in that range).
* ``pue`` = 1.2 (assumption: Uptime Institute's industry average was 1.58 in 2023, large hyperscale sites
  report 1.1-1.2; set ``--pue`` for your site).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipesim.errors import InputError
from pipesim.io.units import counted
from pipesim.specs.gpu import GPUSpec

if TYPE_CHECKING:  # pragma: no cover
    from pipesim.sim.scenario import SimulationReport

__all__ = [
    "DEFAULT_IDLE_FRACTION",
    "DEFAULT_NODE_OVERHEAD_W",
    "DEFAULT_PUE",
    "EnergyReport",
    "gpu_power_w",
    "run_energy",
    "steps_for_tokens",
    "check_price",
    "check_pue",
    "busy_fraction",
    "simulation_energy",
]

DEFAULT_IDLE_FRACTION = 0.15  # assumption (module docstring)
DEFAULT_NODE_OVERHEAD_W = 2000.0  # assumption, per 8-GPU node (module docstring)
DEFAULT_PUE = 1.2  # assumption (module docstring)

J_PER_KWH = 3.6e6


def check_pue(pue: float) -> None:
    """Raise :class:`InputError` unless ``pue`` >= 1 (facility power can not be below IT power)."""
    if not (isinstance(pue, (int, float)) and math.isfinite(pue) and pue >= 1.0):
        raise InputError(
            f"--pue={pue} must be >= 1 (total facility power / IT power; e.g. 1.1 hyperscale, 1.58 average)"
        )


def check_price(price: float | None) -> None:
    """Raise :class:`InputError` for a negative or non-finite price per GPU-hour."""
    if price is not None and not (math.isfinite(price) and price >= 0):
        raise InputError(f"--price-per-gpu-hour={price} must be a number >= 0 (money per GPU-hour)")


def gpu_power_w(tdp_w: float, busy_fraction: float, idle_fraction: float = DEFAULT_IDLE_FRACTION) -> float:
    """Mean power of one GPU: ``P_idle + (TDP - P_idle) x u`` with ``P_idle = idle_fraction x TDP``."""
    idle = idle_fraction * tdp_w
    return idle + (tdp_w - idle) * busy_fraction


@dataclass(frozen=True)
class EnergyReport:
    """Energy and cost of ``steps`` steps on ``num_gpus`` GPUs (see the module docstring).

    Powers in watts (IT side unless ``facility``), energies in kWh / MWh (1 kWh = 3.6e6 J), times in seconds.
    ``cost`` is None when no price was given.
    """

    gpu_name: str
    tdp_w: float | None
    num_gpus: int
    num_nodes: int
    gpus_per_node: int
    step_time_s: float
    steps: int
    busy_fraction: float
    idle_fraction: float
    node_overhead_w: float
    pue: float
    price_per_gpu_hour: float | None

    @property
    def gpu_power_w(self) -> float | None:
        """Mean power of one GPU over a step (None: the GPU's TDP is unknown)."""
        return None if self.tdp_w is None else gpu_power_w(self.tdp_w, self.busy_fraction, self.idle_fraction)

    @property
    def it_power_w(self) -> float | None:
        """GPUs plus node overheads."""
        gpu = self.gpu_power_w
        return None if gpu is None else self.num_gpus * gpu + self.num_nodes * self.node_overhead_w

    @property
    def facility_power_w(self) -> float | None:
        """IT power x PUE."""
        it = self.it_power_w
        return None if it is None else it * self.pue

    @property
    def kwh_per_step(self) -> float | None:
        """Facility energy of one step, kWh."""
        power = self.facility_power_w
        return None if power is None else power * self.step_time_s / J_PER_KWH

    @property
    def run_time_s(self) -> float:
        """steps x step time."""
        return self.steps * self.step_time_s

    @property
    def mwh_per_run(self) -> float | None:
        """Facility energy of the run, MWh."""
        kwh = self.kwh_per_step
        return None if kwh is None else kwh * self.steps / 1000.0

    @property
    def gpu_hours(self) -> float:
        """GPUs x run time in hours."""
        return self.num_gpus * self.run_time_s / 3600.0

    @property
    def cost(self) -> float | None:
        """GPU-hours x price per GPU-hour, or None without a price."""
        return None if self.price_per_gpu_hour is None else self.gpu_hours * self.price_per_gpu_hour

    def assumptions(self) -> list[str]:
        """The model and its constants, one line each, for printing next to the figures."""
        if self.tdp_w is None:
            power = [
                f"energy and power unknown: {self.gpu_name} has no board power in pipesim's data (add tdp_W = ... "
                "to a GPU TOML)"
            ]
        else:
            power = [
                f"GPU power = idle + (TDP - idle) x utilisation; TDP {self.tdp_w:g} W ({self.gpu_name}), idle "
                f"{self.idle_fraction:.0%} of TDP (assumption), utilisation {self.busy_fraction:.1%} "
                f"(compute-busy fraction of the step) -> {self.gpu_power_w:.0f} W per GPU",
                f"node overhead {self.node_overhead_w:g} W per node of {self.gpus_per_node} GPUs (CPUs, NICs, "
                f"switches, fans; assumption) x {counted(self.num_nodes, 'node')}",
                f"PUE {self.pue:g} (facility / IT power; "
                f"{'default, assumption' if self.pue == DEFAULT_PUE else 'given'})",
            ]
        return [
            *power,
            "cost = GPU-hours x price per GPU-hour (rental price; energy shown alongside, not added)",
        ]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (units in the key names)."""
        return {
            "num_gpus": self.num_gpus,
            "num_nodes": self.num_nodes,
            "steps": self.steps,
            "step_time_s": self.step_time_s,
            "run_time_s": self.run_time_s,
            "busy_fraction": self.busy_fraction,
            "tdp_w": self.tdp_w,
            "gpu_power_w": self.gpu_power_w,
            "it_power_w": self.it_power_w,
            "facility_power_w": self.facility_power_w,
            "kwh_per_step": self.kwh_per_step,
            "mwh_per_run": self.mwh_per_run,
            "gpu_hours": self.gpu_hours,
            "price_per_gpu_hour": self.price_per_gpu_hour,
            "cost": self.cost,
            "assumptions": {
                "idle_fraction_of_tdp": self.idle_fraction,
                "node_overhead_w": self.node_overhead_w,
                "gpus_per_node": self.gpus_per_node,
                "pue": self.pue,
            },
        }


def run_energy(
    gpu: GPUSpec,
    num_gpus: int,
    step_time_s: float,
    busy_fraction: float,
    steps: int = 1,
    pue: float = DEFAULT_PUE,
    node_overhead_w: float = DEFAULT_NODE_OVERHEAD_W,
    gpus_per_node: int = 8,
    idle_fraction: float = DEFAULT_IDLE_FRACTION,
    price_per_gpu_hour: float | None = None,
) -> EnergyReport:
    """Energy and cost of ``steps`` steps of ``step_time_s`` on ``num_gpus`` x ``gpu`` whose compute-busy
    fraction is ``busy_fraction`` (model and defaults in the module docstring); for a GPU without a TDP the
    report's energies and powers are None (times, GPU-hours and cost stand). Raises :class:`InputError` for
    PUE below 1, a negative price or overhead, or a busy fraction outside [0, 1]."""
    check_pue(pue)
    check_price(price_per_gpu_hour)
    if num_gpus < 1 or gpus_per_node < 1:
        raise InputError(f"num_gpus={num_gpus} and gpus_per_node={gpus_per_node} must be >= 1")
    if not (math.isfinite(step_time_s) and step_time_s > 0):
        raise InputError(f"step time {step_time_s} s must be > 0")
    if steps < 0:
        raise InputError(f"steps={steps} must be >= 0")
    if not 0.0 <= busy_fraction <= 1.0:
        raise InputError(f"busy fraction {busy_fraction} must be in [0, 1]")
    if not 0.0 <= idle_fraction <= 1.0:
        raise InputError(f"idle fraction {idle_fraction} must be in [0, 1] (of TDP)")
    if not (math.isfinite(node_overhead_w) and node_overhead_w >= 0):
        raise InputError(f"node overhead {node_overhead_w} W must be >= 0")
    return EnergyReport(
        gpu_name=gpu.name,
        tdp_w=gpu.tdp_w,
        num_gpus=num_gpus,
        num_nodes=-(-num_gpus // gpus_per_node),
        gpus_per_node=gpus_per_node,
        step_time_s=step_time_s,
        steps=steps,
        busy_fraction=busy_fraction,
        idle_fraction=idle_fraction,
        node_overhead_w=node_overhead_w,
        pue=float(pue),
        price_per_gpu_hour=price_per_gpu_hour,
    )


def steps_for_tokens(tokens: float, tokens_per_step: int) -> int:
    """Optimizer steps to train on ``tokens`` tokens: ceil(tokens / tokens per step)."""
    if tokens_per_step < 1:
        raise InputError(f"tokens per step {tokens_per_step} must be >= 1")
    if float(tokens).is_integer():
        return -(-int(tokens) // tokens_per_step)
    return math.ceil(tokens / tokens_per_step)


def busy_fraction(compute_s: float, optimizer_s: float, step_time_s: float) -> float:
    """The one compute-busy fraction of a step, for ``simulate`` and ``plan`` alike: (compute, recomputation
    included, + optimizer step) per rank over the step time, clipped to [0, 1]; TP communication, bubbles and
    exposed PP / DP communication count as idle (``compute_s`` is the breakdown's compute part, which excludes
    TP communication: :class:`pipesim.sim.scenario.TimeBreakdown`), and so does the profile's fixed per-step
    cost (data loading, clipping, logging: host work between steps, not the optimizer's)."""
    if step_time_s <= 0:
        return 0.0
    return min(1.0, max(0.0, (compute_s + optimizer_s) / step_time_s))


def simulation_energy(
    report: SimulationReport,
    tokens: float | None = None,
    pue: float = DEFAULT_PUE,
    price_per_gpu_hour: float | None = None,
    node_overhead_w: float = DEFAULT_NODE_OVERHEAD_W,
    gpus_per_node: int = 8,
    idle_fraction: float = DEFAULT_IDLE_FRACTION,
) -> EnergyReport:
    """:func:`run_energy` of a simulated step: one step, or the steps that train on ``tokens`` tokens
    (:func:`steps_for_tokens` of the report's tokens per step)."""
    steps = 1 if tokens is None else steps_for_tokens(tokens, report.tokens_per_step)
    return run_energy(
        report.scenario.gpu,
        report.num_gpus,
        report.step_time_s,
        busy_fraction(report.breakdown.compute, report.breakdown.optimizer, report.step_time_s),
        steps=steps,
        pue=pue,
        node_overhead_w=node_overhead_w,
        gpus_per_node=gpus_per_node,
        idle_fraction=idle_fraction,
        price_per_gpu_hour=price_per_gpu_hour,
    )
