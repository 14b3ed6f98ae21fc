"""What the planner's estimator (:mod:`pipesim.plan.estimate`) returns for one layout: its whole
:class:`Estimate` (step time, its parts, and its :class:`MemoryEstimate`), only its memory, or a
:class:`MemoryBound` that already rules it out."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Estimate", "MemoryBound", "MemoryEstimate"]


@dataclass(frozen=True)
class MemoryEstimate:
    """The peak memory per GPU of one layout (bytes): the rank it peaks on, that rank's weights + gradients +
    optimizer state and its activations, and the GPU's HBM. What the planner learns of a layout that does
    not fit (:meth:`Estimator.memory_as`): its step time is not estimated."""

    peak_memory_bytes: float
    memory_rank: int
    weights_bytes: float
    activations_bytes: float
    capacity_bytes: float

    @property
    def fits(self) -> bool:
        """True when the peak fits the GPU's HBM."""
        return self.peak_memory_bytes <= self.capacity_bytes


@dataclass(frozen=True)
class MemoryBound:
    """A layout that cannot fit, known from a lower bound on its peak (bytes): on the ranks its peak is taken
    over, the largest weights + gradients + optimizer state plus the backward's working set and the reserve,
    before any activation. The planner rejects it on that alone (:meth:`Estimator.screen`)."""

    lower_bytes: float
    capacity_bytes: float

    @property
    def fits(self) -> bool:
        """Never: the bound is already above HBM."""
        return False


@dataclass(frozen=True)
class Estimate:
    """The analytic estimate of one layout (seconds; ``memory`` in bytes per GPU). ``compute_s`` is one rank's
    busy time (compute and TP communication, recompute included) on the slowest rank; ``bubble_s`` the rest of
    the pipeline phase; ``pp_comm_s`` the exposed transfers; the parts add up to ``step_time_s``."""

    step_time_s: float
    pipeline_s: float
    compute_s: float
    recompute_s: float
    tp_comm_s: float
    bubble_s: float
    pp_comm_s: float
    dp_exposed_s: float
    optimizer_s: float
    memory: MemoryEstimate
    fsdp_comm_s: float = 0.0
    fixed_s: float = 0.0  # the part of optimizer_s that is the profile's per-iteration fixed cost

    @property
    def peak_memory_bytes(self) -> float:
        """:attr:`MemoryEstimate.peak_memory_bytes`."""
        return self.memory.peak_memory_bytes

    @property
    def memory_rank(self) -> int:
        """:attr:`MemoryEstimate.memory_rank`."""
        return self.memory.memory_rank

    @property
    def weights_bytes(self) -> float:
        """:attr:`MemoryEstimate.weights_bytes`."""
        return self.memory.weights_bytes

    @property
    def activations_bytes(self) -> float:
        """:attr:`MemoryEstimate.activations_bytes`."""
        return self.memory.activations_bytes

    @property
    def capacity_bytes(self) -> float:
        """:attr:`MemoryEstimate.capacity_bytes`."""
        return self.memory.capacity_bytes

    @property
    def fits(self) -> bool:
        """True when the peak fits the GPU's HBM."""
        return self.memory.fits

    def breakdown(self) -> dict[str, float]:
        """Exposed seconds per part, adding up to the step time."""
        return {
            "compute": self.compute_s - self.tp_comm_s - self.fsdp_comm_s,
            "tp_comm": self.tp_comm_s,
            "bubble": self.bubble_s,
            "pp_comm": self.pp_comm_s,
            "dp_comm": self.dp_exposed_s,
            "fsdp_comm": self.fsdp_comm_s,
            "optimizer": self.optimizer_s - self.fixed_s,
            "fixed": self.fixed_s,
        }
