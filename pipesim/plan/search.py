"""Capacity planning: search every valid parallel layout of a model on a cluster, rank them by step time,
explain what was rejected, and estimate training time and the fewest nodes that meet a deadline.

The search (:func:`plan`):

1. enumerate the search space in a fixed order: tp over the divisors of the GPU count, pp over the
   divisors of GPUs / tp, dp = GPUs / (tp pp) (every GPU is used), micro-batch sizes, every registered
   schedule (vpp over the values that split the layers evenly, for families with chunks), recompute
   none / selective / full, distributed optimizer off / on, sequence parallelism off / on (tp > 1 only).
   User constraints narrow each dimension;
2. reject, with a reason, layouts that cannot run: tp beyond the NVLink domain (GPUs per node) unless
   allowed, tp not dividing the heads / KV heads / MLP width, pp (x chunks) not dividing the layers, the
   global batch not divisible by micro-batch x dp, the schedule's own rule (e.g. interleaved 1F1B needs the
   microbatches to be a multiple of pp);
3. estimate every remaining layout (the *candidates*) analytically (:mod:`pipesim.plan.estimate`): first its
   peak memory (:meth:`pipesim.plan.estimate.Estimator.memory_as`, which times no pass), rejecting those out
   of memory, then the step time of those that fit (the same estimate as timing every candidate, without
   the work for the ones rejected: most of a large model's layouts);
4. simulate the ``top_k`` fastest feasible candidates on the full timeline
   (:func:`pipesim.sim.scenario.simulate_scenario`) and rank them by simulated step time; the rest keep their
   estimated rank behind them.

Steps 3 and 4 run on an :class:`pipesim.plan.executors.ExecutorSpec` (in process, local processes, or Dask); the
result is identical whichever runs it (results come back in item order, and the ranking breaks ties by the
enumeration index).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, NoReturn

from pipesim.cost.flops import hardware_flops_per_step, model_flops_per_step
from pipesim.errors import InputError
from pipesim.plan.estimate import Estimate
from pipesim.plan.evaluate import Batch, Screened, _estimate_batch, _simulate_batch, layout_key, scenario_of
from pipesim.plan.executors import ExecutorSpec, chunked, paused_gc, run_chunks
from pipesim.plan.facts import facts_cache
from pipesim.plan.refusals import (
    closest_oom,
    exact_memory,
    no_candidate_message,
    no_fit_message,
    shard_size_message,
    state_floor_message,
)
from pipesim.plan.request import PlanCluster, PlanRequest, SearchSpace, estimator_for
from pipesim.plan.results import (
    SECONDS_PER_DAY,
    PlanEntry,
    PlanResult,
    SimSummary,
    collapse_alike,
    group_alike,
    training_time,
)
from pipesim.plan.space import GIB, REASONS, Candidate, enumerate_space, has_layout
from pipesim.sim.budget import check_actions, layout_timeline

__all__ = [
    "REASONS",
    "SearchSpace",
    "PlanCluster",
    "PlanRequest",
    "Candidate",
    "PlanEntry",
    "PlanResult",
    "plan",
    "enumerate_space",
    "estimator_for",
    "scenario_of",
    "training_time",
    "fewest_nodes",
    "NodesSearch",
]

# --------------------------------------------------------------------------- the search
Progress = Callable[[str, int, int], None]


def _no_progress(phase: str, done: int, total: int) -> None:
    return None


def plan(
    request: PlanRequest,
    executor: ExecutorSpec[Any] | None = None,
    progress: Progress | None = None,
    chunk_size: int = 256,
) -> PlanResult:
    """Search, estimate, simulate the top ``request.top_k`` and rank (see the module docstring).

    ``progress(phase, done, total)`` is called as work completes (phases ``estimate`` and ``simulate``).
    Raises :class:`InputError` when nothing can run: the message names the conflict (structural) or the
    closest layout and its memory overshoot (nothing fits).
    """
    with paused_gc():  # the search holds millions of small objects: collecting cycles would walk them all
        return _plan(request, executor, progress, chunk_size)


def _plan(
    request: PlanRequest, executor: ExecutorSpec[Any] | None, progress: Progress | None, chunk_size: int
) -> PlanResult:
    started = time.perf_counter()
    spec = executor or ExecutorSpec()
    report = progress or _no_progress
    refusal = state_floor_message(request) or shard_size_message(request)
    if refusal is not None:
        raise InputError(refusal)
    candidates, rej, total = enumerate_space(request)
    if not candidates:
        raise InputError(no_candidate_message(request, rej, total))

    # Batches group the schedules of one layout (they share its per-stage costs, pipesim.plan.pieces), and
    # layouts alike in tp, cp and pp (they share units and schedule profiles), so that each worker process
    # costs few of them; results are put back in enumeration order.
    grouped = sorted(candidates, key=lambda c: (layout_key(c), c.index))
    batches = [Batch(request, tuple(c)) for c in chunked(grouped, chunk_size)]
    done = 0
    by_index: dict[int, Screened] = {}
    report("estimate", 0, len(candidates))

    def tick(n: int) -> None:
        nonlocal done
        done += n
        report("estimate", done, len(candidates))

    estimate_from = time.perf_counter()
    facts = facts_cache()  # what the batches learnt from built schedules, kept for later plans
    for batch, (out, learnt) in zip(batches, run_chunks(_estimate_batch, batches, spec, tick), strict=True):
        for c, e in zip(batch.items, out, strict=True):
            by_index[c.index] = e
        facts.merge(learnt)
    facts.flush()  # written once per plan (rewriting the whole file per batch cost a minute on large plans)
    estimate_s = time.perf_counter() - estimate_from
    estimates = [by_index[c.index] for c in candidates]

    # A candidate that fits has its whole estimate; one that does not, its memory or a bound above HBM
    # (_estimate_batch). The example and the closest layout are named with their exact peaks.
    feasible = [(c, e) for c, e in zip(candidates, estimates, strict=True) if isinstance(e, Estimate)]
    oom = [(c, e) for c, e in zip(candidates, estimates, strict=True) if not isinstance(e, Estimate)]
    closest = None
    if oom:
        c, e = oom[0]
        m = exact_memory(request, c, e)
        over = (m.peak_memory_bytes - m.capacity_bytes) / GIB
        rej.add(
            "memory", len(oom), f"{c.label()}: needs {m.peak_memory_bytes / GIB:.1f} GiB, {over:.1f} GiB over"
        )
        closest = closest_oom(request, oom)
    if not feasible:
        raise InputError(no_fit_message(request, closest, len(candidates), rej))
    feasible.sort(key=lambda ce: (ce[1].step_time_s, ce[0].index))

    # The top --top-k layouts distinct in effect by their estimates are simulated, every schedule of each
    # (a simulation may still tell them apart); the rows are collapsed again on the simulated results.
    groups = group_alike(
        feasible,
        lambda ce: ce[0],
        lambda ce: (ce[1].step_time_s, ce[1].peak_memory_bytes, *ce[1].breakdown().values()),
    )
    top = [ce for g in groups[: request.top_k] for ce in g]
    rest_items = [ce for g in groups[request.top_k :] for ce in g]
    check_actions([layout_timeline(c.layout(request)) for c, _ in top], request.max_actions)
    sims: list[SimSummary] = []
    if top:
        sim_batches = [Batch(request, (c,)) for c, _ in top]
        sdone = 0
        report("simulate", 0, len(top))

        def stick(n: int) -> None:
            nonlocal sdone
            sdone += n
            report("simulate", sdone, len(top))

        for sim_out in run_chunks(_simulate_batch, sim_batches, spec, stick):
            sims.extend(sim_out)

    model, gpu = request.model, request.cluster.gpu
    n_gpus = request.cluster.num_gpus
    tokens_per_step = request.global_batch_size * request.seq
    first = top[0][0].layout(request) if top else feasible[0][0].layout(request)
    mflops = model_flops_per_step(model, first)
    peak = gpu.peak(request.precision)

    def entry(c: Candidate, e: Estimate, s: SimSummary | None) -> PlanEntry:
        lay = c.layout(request)
        return PlanEntry(
            candidate=c,
            estimate=e,
            simulated=s,
            tokens_per_step=tokens_per_step,
            num_gpus=n_gpus,
            model_flops=mflops,
            hardware_flops=hardware_flops_per_step(model, lay),
            peak_flops=peak,
            hbm_bytes=gpu.hbm_bytes,
            microbatches=lay.num_microbatches,
        )

    simulated_entries = []
    for (c, e), s in zip(top, sims, strict=True):
        if not s.fits:
            over = (s.peak_memory_bytes - gpu.hbm_bytes) / GIB
            rej.add(
                "memory_sim",
                1,
                f"{c.label()}: simulated peak {s.peak_memory_bytes / GIB:.1f} GiB, {over:.1f} GiB over",
            )
            continue
        simulated_entries.append(entry(c, e, s))
    simulated_entries.sort(key=lambda en: (en.step_time_s, en.candidate.index))
    rest = [entry(c, e, None) for c, e in rest_items]
    entries = tuple(collapse_alike(simulated_entries) + collapse_alike(rest))
    if not entries:
        raise InputError(no_fit_message(request, closest, len(candidates), rej))
    return PlanResult(
        request=request,
        entries=entries,
        enumerated=total,
        candidates=len(candidates),
        rejected=dict(rej.counts),
        examples=dict(rej.examples),
        simulated=len(top),
        closest=closest,
        estimate_s=estimate_s,
        elapsed_s=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- fewest nodes for a deadline
@dataclass(frozen=True)
class NodesSearch:
    """The fewest-nodes answer: the node count, its plan, and every node count probed (nodes, best days or
    None when nothing fits)."""

    nodes: int
    result: PlanResult
    probes: tuple[tuple[int, float | None], ...]


def _best_days(request: PlanRequest, spec: ExecutorSpec[Any], tokens: float) -> float | None:
    try:
        res = plan(replace(request, top_k=0), spec)
    except InputError:
        return None
    return res.best.training(tokens)["train_days"]


def fewest_nodes(
    request: PlanRequest,
    max_days: float,
    max_nodes: int,
    executor: ExecutorSpec[Any] | None = None,
    progress: Callable[[int, float | None], None] | None = None,
) -> NodesSearch:
    """The fewest nodes (at most ``max_nodes``) on which the best layout trains ``request.tokens`` tokens
    within ``max_days``.

    Lower bound: a run cannot beat the GPUs' dense peak, so nodes >= tokens x model FLOPs per token /
    (max_days x 86,400 s x peak x GPUs per node). The search runs over the node counts some layout splits
    (:func:`pipesim.plan.space.has_layout`: e.g. a global batch of 512 takes no data-parallel size with a
    factor 3, so 24 or 3,072 nodes of 8 may have no layout at all where 32 and 4,096 do): from the bound
    the count doubles (to the next count that splits) until the estimated best layout meets the deadline,
    then a binary search over the counts in between finds the smallest that does (assuming more nodes
    never train slower). The answer is then planned in full (top layouts simulated); if the simulation
    misses the deadline, the search continues upwards.
    """
    if request.tokens is None:
        raise InputError("--max-days needs --tokens (e.g. --tokens 15T)")
    if not max_days > 0:
        raise InputError(f"--max-days={max_days} must be > 0")
    if max_nodes < 1:
        raise InputError(f"--max-nodes={max_nodes} must be >= 1")
    spec = executor or ExecutorSpec()
    tokens = request.tokens
    model, gpu = request.model, request.cluster.gpu
    from pipesim.cost.flops import model_flops_per_token

    ideal_gpu_s = tokens * model_flops_per_token(model, request.seq) / gpu.peak(request.precision)
    lo = max(1, math.ceil(ideal_gpu_s / (max_days * SECONDS_PER_DAY) / request.cluster.gpus_per_node))
    if lo > max_nodes:
        raise InputError(
            f"{tokens:.3g} tokens of {model.name} in {max_days:g} days need at least {lo} nodes even at 100% of "
            f"peak; raise --max-nodes (now {max_nodes}) or --max-days"
        )
    probes: dict[int, float | None] = {}

    def days(n: int) -> float | None:
        if n not in probes:
            probes[n] = _best_days(replace(request, cluster=request.cluster.with_nodes(n)), spec, tokens)
            if progress:
                progress(n, probes[n])
        return probes[n]

    def ok(n: int) -> bool:
        d = days(n)
        return d is not None and d <= max_days

    @cache
    def divisible(n: int) -> bool:  # some layout splits n nodes' GPUs (no time, no memory: cheap)
        return has_layout(replace(request, cluster=request.cluster.with_nodes(n)))

    def next_count(n: int) -> int | None:
        """The smallest node count >= n, at most max_nodes, that some layout splits."""
        return next((k for k in range(n, max_nodes + 1) if divisible(k)), None)

    def give_up() -> NoReturn:
        best = min((d for d in probes.values() if d is not None), default=None)
        got = f"; best found {best:.1f} days" if best is not None else "; no layout fits"
        raise InputError(
            f"no node count up to {max_nodes} trains {tokens:.3g} tokens of {model.name} within "
            f"{max_days:g} days{got}; raise --max-nodes or --max-days"
        )

    hi = next_count(lo)
    if hi is None:  # no count has a layout at all: say why at the first one
        at = replace(request, cluster=request.cluster.with_nodes(lo))
        _, rej, total = enumerate_space(at)
        raise InputError(
            f"no node count from {lo} to {max_nodes} has a layout of {model.name} at global batch "
            f"{request.global_batch_size}; at {lo}: {no_candidate_message(at, rej, total)}"
        )
    while not ok(hi):
        if hi >= max_nodes:
            give_up()
        lo = hi + 1
        hi = next_count(min(hi * 2, max_nodes)) or next_count(lo)
        if hi is None:
            give_up()
    counts = [k for k in range(lo, hi) if divisible(k)] + [hi]  # the search runs over these only
    i, j = 0, len(counts) - 1
    while i < j:
        mid = (i + j) // 2
        if ok(counts[mid]):
            j = mid
        else:
            i = mid + 1
    n = counts[j]
    while True:
        result = plan(replace(request, cluster=request.cluster.with_nodes(n)), spec)
        if result.best.training(tokens)["train_days"] <= max_days or n >= max_nodes:
            break
        following = next_count(n + 1)
        while following is not None and following < max_nodes and not ok(following):
            following = next_count(following + 1)
        if following is None:
            break
        n = following
    return NodesSearch(n, result, tuple(sorted(probes.items())))
