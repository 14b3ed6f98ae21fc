"""The units of work a plan sends to its executors: batches of candidates estimated or simulated in any
process (module-level functions, so they pickle)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pipesim.plan.estimate import Estimate, Estimator, MemoryBound, MemoryEstimate
from pipesim.plan.executors import paused_gc
from pipesim.plan.request import PlanRequest, estimator_for
from pipesim.plan.results import SimSummary
from pipesim.plan.space import Candidate
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.specs.layout import Layout


# --------------------------------------------------------------------------- per-process evaluation
@dataclass(frozen=True)
class Batch(Sequence[Candidate]):
    """Candidates with the request they belong to: the unit of work sent to an executor."""

    request: PlanRequest
    items: tuple[Candidate, ...]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: Any) -> Any:
        return self.items[i]

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.items)


Screened = Estimate | MemoryEstimate | MemoryBound  # what the planner learns of one candidate


def layout_key(c: Candidate) -> tuple[Any, ...]:
    """The fields of ``c`` its :class:`pipesim.specs.layout.Layout` depends on beside its schedule and chunk
    count: candidates equal in these are one layout run by different schedules."""
    return (
        c.tp,
        c.cp,
        c.pp,
        c.dp,
        c.ep,
        c.etp,
        c.micro_batch_size,
        c.recompute,
        c.distributed_optimizer,
        c.sequence_parallel,
        c.fsdp,
        c.fsdp_shard_size,
    )


def _estimate_batch(
    batch: Sequence[Candidate],
) -> tuple[list[Screened], dict[str, dict[Any, Any]]]:
    """Each candidate's peak memory (or a bound above HBM: :meth:`pipesim.plan.estimate.Estimator.screen`), and
    for those that fit their whole estimate (a layout that does not fit is rejected for its memory alone: its
    step time would not be used); and what the batch learnt from built schedules
    (:meth:`pipesim.plan.facts.FactsCache.take_new`), for the planner to keep for later plans."""
    assert isinstance(batch, Batch)
    est = estimator_for(batch.request)
    with paused_gc():  # as the planner does (a worker process runs batches alone)
        out = _screen_all(batch, est)
    return out, est.facts.take_new()


def _screen_all(batch: Batch, est: Estimator) -> list[Screened]:
    layouts: dict[tuple[Any, ...], Layout] = {}
    out: list[Screened] = []
    for c in batch.items:
        key = layout_key(c)
        layout = layouts.get(key)
        if layout is None:
            layout = layouts[key] = c.layout(batch.request)
        mem = est.screen(layout, c.schedule, c.vpp)  # one layout for all its schedules
        out.append(
            est.estimate_as(layout, c.schedule, c.vpp, mem)
            if isinstance(mem, MemoryEstimate) and mem.fits
            else mem
        )
    return out


def _simulate_batch(batch: Sequence[Candidate]) -> list[SimSummary]:
    assert isinstance(batch, Batch)
    req = batch.request
    comm = req.cluster.comm()
    out = []
    for c in batch.items:
        sc = Scenario(
            req.model,
            req.cluster.gpu,
            c.layout(req),
            comm,
            req.efficiency,
            req.reserve_bytes,
            optimizer=req.optimizer,
        )
        out.append(SimSummary.of(simulate_scenario(sc)))
    return out


def scenario_of(request: PlanRequest, candidate: Candidate) -> Scenario:
    """The :class:`Scenario` of ``candidate`` (for simulating, drawing or saving it)."""
    return Scenario(
        request.model,
        request.cluster.gpu,
        candidate.layout(request),
        request.cluster.comm(),
        request.efficiency,
        request.reserve_bytes,
        optimizer=request.optimizer,
    )
