"""The time breakdown of a simulated scenario: seconds per pipeline rank by part, exposed and total (the
definitions are :mod:`pipesim.sim.scenario`'s; moved here so that module keeps to one job)."""

from __future__ import annotations

from dataclasses import dataclass

from pipesim.cost.stages import StageCosts
from pipesim.sim.metrics import PipelineMetrics
from schedules import Schedule

__all__ = ["TimeBreakdown", "time_breakdown"]


@dataclass(frozen=True)
class TimeBreakdown:
    """Seconds per pipeline rank (mean over ranks; DP communication: the busiest rank). ``exposed`` parts add
    up to the step time; ``total`` gives each part's full duration (communication partly hidden). With
    blocking sends (``--no-overlap-p2p-comm``) one transfer can idle both its sender and its receiver, so the
    exposed pipeline communication can reach twice its total. ``fixed`` is the profile's per-iteration fixed
    cost (``step_overhead_s``: data loading, gradient clipping, logging), which runs after the optimizer and
    is shown apart from it."""

    compute: float
    recompute: float
    bubble: float
    tp_comm: float
    pp_comm_total: float
    pp_comm_exposed: float
    dp_comm_total: float
    dp_comm_exposed: float
    optimizer: float
    ep_comm: float = 0.0
    cp_comm_total: float = 0.0
    cp_comm_exposed: float = 0.0
    fsdp_comm_total: float = 0.0
    fsdp_comm_exposed: float = 0.0
    fixed: float = 0.0

    def as_dict(self) -> dict[str, dict[str, float]]:
        """{part: {"total": s, "exposed": s}} in a fixed order."""
        return {
            "compute": {"total": self.compute, "exposed": self.compute},
            "recompute": {"total": self.recompute, "exposed": self.recompute},
            "bubble": {"total": self.bubble, "exposed": self.bubble},
            "tp_comm": {"total": self.tp_comm, "exposed": self.tp_comm},
            "pp_comm": {"total": self.pp_comm_total, "exposed": self.pp_comm_exposed},
            "dp_comm": {"total": self.dp_comm_total, "exposed": self.dp_comm_exposed},
            "optimizer": {"total": self.optimizer, "exposed": self.optimizer},
            "fixed": {"total": self.fixed, "exposed": self.fixed},
            "ep_comm": {"total": self.ep_comm, "exposed": self.ep_comm},
            "cp_comm": {"total": self.cp_comm_total, "exposed": self.cp_comm_exposed},
            "fsdp_comm": {"total": self.fsdp_comm_total, "exposed": self.fsdp_comm_exposed},
        }


def time_breakdown(
    metrics: PipelineMetrics, sc: StageCosts, schedule: Schedule, fixed_s: float = 0.0
) -> TimeBreakdown:
    """The :class:`TimeBreakdown` of a simulated scenario from its metrics and per-stage costs (definitions:
    :mod:`pipesim.sim.scenario`'s docstring); ``fixed_s``, the profile's per-iteration fixed cost, is part of
    the optimizer span the engine runs and is split out of it."""
    ranks = schedule.num_ranks
    per_rank_dp = [0.0] * ranks
    for s, t in enumerate(sc.dp_full_s):
        per_rank_dp[schedule.stage_to_rank[s]] += t
    # ZeRO-3 / FSDP collectives run inside every pass of every microbatch: their unhidden part is FSDP
    # communication, not compute, although it stretches the passes (pipesim.cost.fsdp). Each stage runs
    # m / chains microbatches (bidirectional DualPipe: each microbatch runs through one of two model copies).
    m = schedule.num_microbatches / len(schedule.chain_starts)
    z_total, z_exposed = sum(sc.zero3_comm_s) * m / ranks, sum(sc.zero3_exposed_s) * m / ranks
    busy = sum(metrics.compute_busy_s_per_rank) / ranks - z_exposed
    tp = metrics.tp_comm_s / ranks
    # Expert all-to-alls and context-parallel exchanges run inside the passes (on the compute stream; the CP
    # ring partly hidden behind attention): shown apart from compute. Overlapped F&B pairs (DualPipe) hide
    # all-to-all time behind the other half's compute: what the pairs saved against their passes run one
    # after the other is hidden all-to-all time, not exposed.
    passes_s = sum(f + b for f, b in zip(sc.costs.forward_s, sc.costs.backward_s, strict=True)) * m / ranks
    hidden_a2a = max(passes_s - sum(metrics.compute_busy_s_per_rank) / ranks, 0.0)
    ep = max(sum(p.ep_comm_s for p in sc.passes) * m / ranks - hidden_a2a, 0.0)
    cp_exp = sum(p.cp_comm_s for p in sc.passes) * m / ranks
    cp_full = sum(p.cp_comm_full_s for p in sc.passes) * m / ranks
    pp_exposed = metrics.p2p_exposed_s / ranks
    bubble = max(metrics.pipeline_time_s - busy - z_exposed - pp_exposed, 0.0)
    fixed = min(fixed_s, metrics.optimizer_s)
    return TimeBreakdown(
        compute=busy - tp - ep - cp_exp,
        recompute=metrics.recompute_s / ranks,
        bubble=bubble,
        tp_comm=tp,
        pp_comm_total=metrics.p2p_time_s / ranks,
        pp_comm_exposed=pp_exposed,
        dp_comm_total=max(per_rank_dp, default=0.0),
        dp_comm_exposed=metrics.dp_exposed_s,
        optimizer=metrics.optimizer_s - fixed,
        ep_comm=ep,
        cp_comm_total=cp_full,
        cp_comm_exposed=cp_exp,
        fsdp_comm_total=z_total,
        fsdp_comm_exposed=z_exposed,
        fixed=fixed,
    )
