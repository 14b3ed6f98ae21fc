"""What a plan returns: ranked :class:`PlanEntry` rows in a :class:`PlanResult`, and training time."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from pipesim.plan.estimate import Estimate, MemoryEstimate
from pipesim.plan.request import PlanRequest
from pipesim.plan.space import Candidate
from pipesim.results import Result, flatten
from pipesim.sim.energy import steps_for_tokens
from pipesim.sim.scenario import SimulationReport
from pipesim.sim.throughput import Throughput

SECONDS_PER_DAY = 86400.0


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SimSummary:
    """What the planner keeps of a full simulation (small enough to send between processes)."""

    step_time_s: float
    model_tflops_per_gpu: float
    hardware_tflops_per_gpu: float
    mfu: float
    hfu: float
    peak_memory_bytes: float
    memory_rank: int
    fits: bool
    bubble_ratio: float
    breakdown: dict[str, dict[str, float]]

    @classmethod
    def of(cls, report: SimulationReport) -> SimSummary:
        worst = report.worst_memory
        return cls(
            report.step_time_s,
            report.model_tflops_per_gpu,
            report.hardware_tflops_per_gpu,
            report.mfu,
            report.hfu,
            worst.peak,
            worst.rank,
            report.fits,
            report.metrics.bubble_ratio,
            report.breakdown.as_dict(),
        )


@dataclass(frozen=True)
class PlanEntry(Throughput):
    """One feasible layout with its estimate and, for the top ones, its full simulation."""

    candidate: Candidate
    estimate: Estimate
    simulated: SimSummary | None
    tokens_per_step: int
    num_gpus: int
    model_flops: float
    hardware_flops: float
    peak_flops: float
    hbm_bytes: float
    microbatches: int
    alike: tuple[str, ...] = ()  # schedules of the same layout with identical results (collapse_alike)

    @property
    def step_time_s(self) -> float:
        """Simulated step time when simulated, else the estimate."""
        return self.simulated.step_time_s if self.simulated else self.estimate.step_time_s

    @property
    def peak_memory_bytes(self) -> float:
        """Peak memory per GPU (most loaded pipeline rank)."""
        return self.simulated.peak_memory_bytes if self.simulated else self.estimate.peak_memory_bytes

    @property
    def headroom_bytes(self) -> float:
        """HBM minus peak memory per GPU."""
        return self.hbm_bytes - self.peak_memory_bytes

    @property
    def busy_fraction(self) -> float:
        """Compute-busy fraction of the step (:func:`pipesim.sim.energy.busy_fraction`, the simulator's
        definition) from the simulated breakdown when available, else the estimate's."""
        from pipesim.sim.energy import busy_fraction

        bd = self.breakdown_s()
        return busy_fraction(bd["compute"], bd["optimizer"], self.step_time_s)

    def breakdown_s(self) -> dict[str, float]:
        """Exposed seconds per part (simulated when available), adding up to the step time."""
        if self.simulated:
            bd = self.simulated.breakdown
            return {
                "compute": bd["compute"]["exposed"],
                "tp_comm": bd["tp_comm"]["exposed"],
                "bubble": bd["bubble"]["exposed"],
                "pp_comm": bd["pp_comm"]["exposed"],
                "dp_comm": bd["dp_comm"]["exposed"],
                "fsdp_comm": bd["fsdp_comm"]["exposed"],
                "optimizer": bd["optimizer"]["exposed"],
                "fixed": bd["fixed"]["exposed"],
            }
        return self.estimate.breakdown()

    def training(self, tokens: float) -> dict[str, float]:
        """Days and GPU-hours to train on ``tokens`` tokens at this step rate."""
        return training_time(tokens, self.tokens_per_s, self.num_gpus, self.tokens_per_step)

    def as_dict(self, rank: int, tokens: float | None = None) -> dict[str, Any]:
        """JSON-ready row."""
        c = self.candidate
        row: dict[str, Any] = {
            "rank": rank,
            "tp": c.tp,
            "cp": c.cp,
            "ep": c.ep,
            "etp": c.etp,
            "pp": c.pp,
            "dp": c.dp,
            "vpp": c.vpp,
            "micro_batch_size": c.micro_batch_size,
            "microbatches": self.microbatches,
            "schedule": c.schedule,
            "same_effect_schedules": list(self.alike),
            "recompute": c.recompute,
            "distributed_optimizer": c.distributed_optimizer,
            "fsdp": c.fsdp,
            "fsdp_shard_size": c.fsdp_shard_size,
            "sequence_parallel": c.sequence_parallel,
            "simulated": self.simulated is not None,
            "step_time_s": self.step_time_s,
            "estimated_step_time_s": self.estimate.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "model_tflops_per_gpu": self.model_tflops_per_gpu,
            "hardware_tflops_per_gpu": self.hardware_tflops_per_gpu,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "peak_memory_bytes": self.peak_memory_bytes,
            "headroom_bytes": self.headroom_bytes,
            "time_breakdown_s": self.breakdown_s(),
        }
        if tokens is not None:
            row.update(self.training(tokens))
        return row


@dataclass(frozen=True)
class PlanResult(Result):
    """What :func:`plan` returns. ``entries`` are the feasible layouts, best first; ``candidates`` the
    number of layouts estimated (passing the structural rules), ``enumerated`` all layouts considered.
    ``estimate_s`` / ``elapsed_s`` are the wall-clock seconds of the estimate phase and of the whole plan
    (reported, not compared: they vary from run to run and are left out of :meth:`as_dict`)."""

    request: PlanRequest
    entries: tuple[PlanEntry, ...]
    enumerated: int
    candidates: int
    rejected: dict[str, int]
    examples: dict[str, str]
    simulated: int
    closest: tuple[Candidate, MemoryEstimate] | None
    estimate_s: float = field(default=0.0, compare=False)
    elapsed_s: float = field(default=0.0, compare=False)

    @property
    def candidates_per_s(self) -> float:
        """Candidates estimated per wall-clock second of the estimate phase."""
        return self.candidates / self.estimate_s if self.estimate_s > 0 else 0.0

    @property
    def feasible(self) -> int:
        """Layouts that fit in memory (simulated OOMs removed), those collapsed into another row counted."""
        return sum(1 + len(e.alike) for e in self.entries)

    @property
    def best(self) -> PlanEntry:
        """The winner."""
        return self.entries[0]

    def as_dict(self, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready summary: model, cluster, counts, rejections and ranked results."""
        req = self.request
        shown = self.entries if limit is None else self.entries[:limit]
        return {
            "model": req.model.name,
            "gpu": req.cluster.gpu.name,
            "topology": req.cluster.topology,
            "nodes": req.cluster.nodes,
            "gpus": req.cluster.num_gpus,
            "global_batch_size": req.global_batch_size,
            "seq_length": req.seq,
            "precision": req.precision,
            "tokens": req.tokens,
            "enumerated": self.enumerated,
            "candidates": self.candidates,
            "feasible": self.feasible,
            "simulated": self.simulated,
            "rejected": {k: v for k, v in self.rejected.items() if v},
            "hbm_bytes": req.cluster.gpu.hbm_bytes,
            "results": [e.as_dict(i + 1, req.tokens) for i, e in enumerate(shown)],
        }

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per feasible layout, best first (the scalars of ``as_dict()["results"]``)."""
        return [flatten(r) for r in self.as_dict()["results"]]


_SAME_LAYOUT = tuple(f.name for f in fields(Candidate) if f.name not in ("index", "schedule"))
T = TypeVar("T")


def group_alike(
    items: Sequence[T], candidate: Callable[[T], Candidate], effect: Callable[[T], Sequence[float]]
) -> list[list[T]]:
    """``items`` (ranked) in groups of layouts identical in effect: the same candidate but for its schedule,
    and the same ``effect`` numbers to a relative 1e-9 (e.g. gpipe, 1F1B and the zero-bubble orders at
    pp = 1 with one microbatch, which run the same passes on one rank). Groups are in the rank of their best
    member, members in rank order."""
    groups: list[list[T]] = []
    by_layout: dict[tuple[Any, ...], list[tuple[int, Sequence[float]]]] = {}
    for item in items:
        c, numbers = candidate(item), effect(item)
        reps = by_layout.setdefault(tuple(getattr(c, n) for n in _SAME_LAYOUT), [])
        for g, rep in reps:
            if all(
                math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(rep, numbers, strict=True)
            ):
                groups[g].append(item)
                break
        else:
            reps.append((len(groups), numbers))
            groups.append([item])
    return groups


def collapse_alike(entries: Sequence[PlanEntry]) -> list[PlanEntry]:
    """``entries`` (ranked, all simulated or all estimated) with each group of :func:`group_alike` (step time,
    peak memory and time breakdown alike) as its best row, the others' schedules in :attr:`PlanEntry.alike`."""
    groups = group_alike(
        entries,
        lambda e: e.candidate,
        lambda e: (e.step_time_s, e.peak_memory_bytes, *e.breakdown_s().values()),
    )
    return [replace(g[0], alike=tuple(e.candidate.schedule for e in g[1:])) for g in groups]


def training_time(
    tokens: float, tokens_per_s: float, num_gpus: int, tokens_per_step: int | None = None
) -> dict[str, float]:
    """Seconds, days and GPU-hours to train on ``tokens`` tokens at ``tokens_per_s`` on ``num_gpus`` GPUs
    (the same arithmetic as SC21 eq. 4, time = tokens / throughput, with the throughput simulated). With
    ``tokens_per_step``, in whole optimizer steps (:func:`pipesim.sim.energy.steps_for_tokens`), as the
    energy report counts them, so the two agree to the GPU-hour."""
    if tokens_per_step is not None:
        tokens = steps_for_tokens(tokens, tokens_per_step) * tokens_per_step
    seconds = tokens / tokens_per_s
    return {
        "train_seconds": seconds,
        "train_days": seconds / SECONDS_PER_DAY,
        "gpu_hours": seconds * num_gpus / 3600.0,
    }
