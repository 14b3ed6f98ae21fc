"""The series a timeline chart draws, derived from a simulated step (no plotting here).

:func:`gantt_series` groups a :class:`~pipesim.sim.engine.Timeline` into one :class:`SpanGroup` per kind of bar
(F, B, I, W, recompute, TP collectives, sends, DP reductions, optimizer) and walks each rank's activation
memory over time. The figure code in :mod:`pipesim.figures.gantt` only draws these arrays.

Memory over time uses the accounting of :func:`pipesim.sim.metrics.pipeline_metrics`: a forward holds its stage's
activation bytes from its start; a full backward frees them at its end; a split backward's I frees all but
the weight stash at its end and W frees the stash at its end. A rank runs its compute actions one at a time in
program order, so the running sum in time order equals the metrics' running sum in program order and the
maximum of each rank's series is its ``peak_activation_bytes``.

Recompute and TP communication are parts of F/B/I on the compute stream (see :class:`~pipesim.sim.engine.OpCosts`):
recompute is placed at the start of the backward that needs it (it runs before that backward's own math), and
the TP share of a pass is drawn as a strip ending with the pass, its length the share; where inside the pass
the collectives fall is not modelled.

The expert-parallel token all-to-alls (dispatch and combine, group ``EP``) and the context-parallel key/value
exchanges (``CP``) of a pass also run inside it (:mod:`pipesim.cost.moe_ops`); with a real model they are
drawn on the rank's communication lane, one bar per pass and kind, as long as their whole duration
(:class:`Exchanges`, from the per-stage :class:`~pipesim.cost.times.PassTimes`) and carrying their bytes
(:mod:`pipesim.cost.traffic`): the all-to-alls end with the pass, the CP exchanges just before them (a
layer's attention precedes its MLP). A ring CP exchange overlaps the attention, so part or all of it is hidden
(its ``exposed_s`` says how much is not); the all-to-alls and an all-gather CP exchange are never hidden. Where
inside the pass they fall is not modelled. :func:`exchange_rows` is the one placement rule; the Chrome trace
draws the same bars.

With ZeRO-3 / FSDP each parameter all-gather (``FSDP_AG``) and gradient reduce-scatter (``FSDP_RS``) inside the
passes is a bar of its own on the communication lane's collective sub-lane, where the prefetch model of
:mod:`pipesim.cost.fsdp` places it, with its bytes (:func:`pipesim.sim.exchanges.fsdp_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pipesim.cost.fsdp import FsdpSpans
from pipesim.cost.memory import ACTIVATION_OVERHEAD, RankMemory
from pipesim.cost.traffic import StageTraffic, stage_traffic
from pipesim.sim.compare import CompareRequest, build_requested, synthetic_costs
from pipesim.sim.engine import OpCosts, SpanKind, Timeline
from pipesim.sim.exchanges import Exchanges, exchange_rows, fsdp_rows, pair_rows
from pipesim.sim.iterations import run_iterations
from pipesim.sim.metrics import PipelineMetrics, activation_deltas
from schedules.ir import Schedule

if TYPE_CHECKING:  # pragma: no cover
    from pipesim.sim.scenario import SimulationReport

__all__ = [
    "Lane",
    "SpanGroup",
    "MemorySeries",
    "GanttSeries",
    "gantt_series",
    "report_series",
    "simulate_series",
    "stage_chunks",
    "GROUP_ORDER",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int32]


class Lane:
    """Where in a rank's row a group is drawn."""

    COMPUTE = "compute"  # the rank's compute lane
    DETAIL = "detail"  # a strip on the compute lane (recompute, TP share of a pass)
    P2P = "p2p"  # the rank's communication lane: sends
    COLLECTIVE = "collective"  # the communication lane: DP gradient reduction, FSDP / ZeRO-3 collectives
    EXCHANGE = "exchange"  # the communication lane: EP all-to-alls and CP key/value exchanges inside passes


# Drawing order and legend order of the groups: (key, legend label, lane).
GROUP_ORDER: tuple[tuple[str, str, str], ...] = (
    ("F", "F forward", Lane.COMPUTE),
    ("B", "B backward", Lane.COMPUTE),
    ("FB", "F&B overlapped pair (DualPipe)", Lane.COMPUTE),
    ("I", "I backward (inputs)", Lane.COMPUTE),
    ("W", "W backward (weights)", Lane.COMPUTE),
    ("OPT", "optimizer step", Lane.COMPUTE),
    ("RECOMPUTE", "recompute", Lane.DETAIL),
    ("TP", "TP collectives", Lane.DETAIL),
    ("SEND_ACTIVATION", "send activation", Lane.P2P),
    ("SEND_GRAD", "send gradient", Lane.P2P),
    ("CP", "CP key/value exchange", Lane.EXCHANGE),
    ("EP", "EP all-to-all (dispatch, combine)", Lane.EXCHANGE),
    ("FSDP_AG", "FSDP/ZeRO-3 parameter all-gather", Lane.COLLECTIVE),
    ("FSDP_RS", "FSDP/ZeRO-3 gradient reduce-scatter", Lane.COLLECTIVE),
    ("DP_REDUCE", "DP gradient reduce", Lane.COLLECTIVE),
)

_KIND_KEY = {
    SpanKind.F: "F",
    SpanKind.B: "B",
    SpanKind.I: "I",
    SpanKind.W: "W",
    SpanKind.OPTIMIZER: "OPT",
    SpanKind.SEND_ACTIVATION: "SEND_ACTIVATION",
    SpanKind.SEND_GRAD: "SEND_GRAD",
    SpanKind.DP_REDUCE: "DP_REDUCE",
}


@dataclass(frozen=True, eq=False)
class SpanGroup:
    """Bars of one kind, as parallel arrays sorted by (rank, start). ``peer`` is a send's receiving rank
    (else -1); ``stage`` and ``microbatch`` are -1 where they do not apply (optimizer). EP, CP and FSDP bars
    also carry ``bytes`` (moved by one GPU in the bar), EP and CP bars ``exposed_s`` (the part not hidden
    behind compute)."""

    key: str
    label: str
    lane: str
    rank: IntArray
    stage: IntArray
    microbatch: IntArray
    peer: IntArray
    start_s: FloatArray
    end_s: FloatArray
    duration_s: FloatArray
    bytes: FloatArray | None = None
    exposed_s: FloatArray | None = None
    pair_stage: IntArray | None = None  # F&B pairs: the backward's stage and microbatch (the forward's above)
    pair_microbatch: IntArray | None = None

    @property
    def size(self) -> int:
        """Number of bars."""
        return int(self.start_s.shape[0])

    def subset(self, mask: npt.NDArray[np.bool_]) -> SpanGroup:
        """The bars where ``mask`` is true (order kept, so still sorted by (rank, start))."""
        fields = (
            "rank",
            "stage",
            "microbatch",
            "peer",
            "start_s",
            "end_s",
            "duration_s",
            "bytes",
            "exposed_s",
            "pair_stage",
            "pair_microbatch",
        )
        return replace(self, **{f: getattr(self, f)[mask] for f in fields if getattr(self, f) is not None})


@dataclass(frozen=True, eq=False)
class MemorySeries:
    """Activation bytes held by each rank over time, as steps: rank r holds ``bytes[r][i]`` from
    ``time_s[r][i]`` until ``time_s[r][i+1]``. Each series starts at (0, 0) and ends at the step time."""

    time_s: tuple[FloatArray, ...]
    bytes: tuple[FloatArray, ...]

    def peak_bytes(self) -> tuple[float, ...]:
        """Largest value of each rank's series."""
        return tuple(float(b.max()) if b.size else 0.0 for b in self.bytes)


@dataclass(frozen=True, eq=False)
class GanttSeries:
    """Everything one schedule's chart shows: its bars, per-rank memory over time and metrics (and the
    timeline they come from)."""

    name: str
    num_ranks: int
    groups: tuple[SpanGroup, ...]
    memory: MemorySeries
    metrics: PipelineMetrics
    num_stages: int
    timeline: Timeline
    stage_to_rank: tuple[int, ...] = ()
    rank_memory: tuple[RankMemory, ...] = ()
    costs: OpCosts | None = None
    traffic: StageTraffic | None = None
    exchanges: Exchanges | None = None
    fsdp: tuple[FsdpSpans, ...] = ()
    pair_rows: tuple[int, ...] = ()  # timeline rows of the forwards that lead overlapped F&B pairs

    @property
    def num_bars(self) -> int:
        """Bars of every group."""
        return sum(g.size for g in self.groups)

    def group(self, key: str) -> SpanGroup | None:
        """The group ``key`` if this chart has any bar of it."""
        return next((g for g in self.groups if g.key == key), None)

    @property
    def chunks(self) -> tuple[int, ...]:
        """Model chunk of each global stage on its rank (see :func:`stage_chunks`)."""
        return stage_chunks(self.stage_to_rank)

    def total_memory(self) -> MemorySeries | None:
        """Memory per GPU of each rank over time, when :attr:`rank_memory` is known: the rank's weights,
        gradients, optimizer state, transient working set and reserve (constant over the step) plus
        ACTIVATION_OVERHEAD x its stashed activations at each moment. The maximum of rank r's series is
        ``rank_memory[r].peak``, the figure ``simulate`` and ``plan`` report."""
        if not self.rank_memory:
            return None
        values = []
        for m, held in zip(self.rank_memory, self.memory.bytes, strict=True):
            static = m.weights + m.grads + m.optimizer + m.transient + m.reserve
            values.append(static + ACTIVATION_OVERHEAD * held)
        return MemorySeries(time_s=self.memory.time_s, bytes=tuple(values))


def stage_chunks(stage_to_rank: Sequence[int]) -> tuple[int, ...]:
    """Model chunk of each global stage on its rank: 0 for the rank's lowest stage, 1 for its next, ...
    (interleaved placement: stage s is chunk s // p; V-shape: rank r's stages r and 2p-1-r are chunks 0, 1)."""
    seen: dict[int, int] = {}
    out = []
    for rank in stage_to_rank:
        out.append(seen.get(rank, 0))
        seen[rank] = out[-1] + 1
    return tuple(out)


def _group(key: str, label: str, lane: str, rows: dict[str, npt.NDArray]) -> SpanGroup:
    order = np.lexsort((rows["start_s"], rows["rank"]))

    def take(name: str, dtype: npt.DTypeLike) -> npt.NDArray:
        return np.ascontiguousarray(rows[name][order], dtype=dtype)

    start, end = take("start_s", np.float64), take("end_s", np.float64)
    extra: dict[str, npt.NDArray] = {
        name: take(name, np.float64) for name in ("bytes", "exposed_s") if name in rows
    }
    extra.update({name: take(name, np.int32) for name in ("pair_stage", "pair_microbatch") if name in rows})
    return SpanGroup(
        key=key,
        label=label,
        lane=lane,
        rank=take("rank", np.int32),
        stage=take("stage", np.int32),
        microbatch=take("microbatch", np.int32),
        peer=take("peer", np.int32),
        start_s=start,
        end_s=end,
        duration_s=end - start,
        **extra,
    )


def _memory(schedule: Schedule, costs: OpCosts, timeline: Timeline) -> MemorySeries:
    n = timeline.num_actions
    op = timeline.kind[:n].astype(np.int64)
    stage = timeline.stage[:n].astype(np.int64)
    delta = activation_deltas(op, stage, costs.activation_bytes, costs.weight_stash_bytes)
    when = np.where(op == 0, timeline.start_s[:n], timeline.end_s[:n])
    step = timeline.step_time_s
    times, values = [], []
    offsets = timeline.rank_offsets
    for r in range(timeline.num_ranks):
        lo, hi = int(offsets[r]), int(offsets[r + 1])
        # Program order is time order on a rank (one compute stream), so no sort is needed.
        times.append(np.concatenate(([0.0], when[lo:hi], [step])))
        held = np.concatenate(([0.0], np.cumsum(delta[lo:hi])))
        values.append(np.concatenate((held, held[-1:])))
    return MemorySeries(time_s=tuple(times), bytes=tuple(values))


def gantt_series(
    schedule: Schedule,
    costs: OpCosts,
    timeline: Timeline,
    metrics: PipelineMetrics,
    rank_memory: Sequence[RankMemory] = (),
    exchanges: Exchanges | None = None,
    fsdp: Sequence[FsdpSpans] = (),
) -> GanttSeries:
    """Group ``timeline`` (from ``simulate(schedule, costs)``) into bars per kind and per-rank activation memory
    over time; zero-length spans are left out (they draw nothing). ``rank_memory`` (one per rank, from
    :func:`pipesim.sim.scenario.simulate_scenario`) adds the whole memory per GPU; ``exchanges`` the EP and CP
    bars (:func:`pipesim.sim.exchanges.exchange_rows`), ``fsdp`` (one per global stage) the FSDP / ZeRO-3
    collectives' (:func:`pipesim.sim.exchanges.fsdp_rows`). See the module docstring."""
    if rank_memory and len(rank_memory) != schedule.num_ranks:
        raise ValueError(f"rank_memory has {len(rank_memory)} entries for {schedule.num_ranks} ranks")
    rows: dict[str, npt.NDArray] = {
        "rank": timeline.rank,
        "stage": timeline.stage,
        "microbatch": timeline.microbatch,
        "peer": timeline.peer,
        "start_s": timeline.start_s,
        "end_s": timeline.end_s,
    }
    nonzero = timeline.end_s > timeline.start_s
    by_key: dict[str, dict[str, npt.NDArray]] = {}
    pairs = pair_rows(timeline, schedule.overlapped) if costs.hides_in_pairs else None
    pair_index: tuple[int, ...] = ()
    if pairs is not None:  # a pair is one bar of its own kind, not a long forward and an invisible backward
        by_key["FB"], first = pairs
        nonzero[first] = False  # the forwards the pairs replace (their backwards have zero length already)
        pair_index = tuple(first.tolist())
    for kind, key in _KIND_KEY.items():
        mask = (timeline.kind == kind) & nonzero
        if mask.any():
            by_key[key] = {name: arr[mask] for name, arr in rows.items()}

    # Recompute at the start of B/I; TP share of F and B/I as a strip ending with the pass.
    n = timeline.num_actions
    op = timeline.kind[:n]
    stage = timeline.stage[:n].astype(np.int64)
    compute = {name: arr[:n] for name, arr in rows.items()}
    if n:
        backward = (op == SpanKind.B) | (op == SpanKind.I)
        rec = np.where(backward, np.asarray(costs.recompute_s)[stage], 0.0)
        tp = np.where(
            op == SpanKind.F,
            np.asarray(costs.tp_comm_forward_s)[stage],
            np.where(backward, np.asarray(costs.tp_comm_backward_s)[stage], 0.0),
        )
        for key, share, at_start in (("RECOMPUTE", rec, True), ("TP", tp, False)):
            mask = share > 0
            if mask.any():
                part = {name: arr[mask] for name, arr in compute.items()}
                if at_start:
                    part["end_s"] = part["start_s"] + share[mask]
                else:
                    part["start_s"] = part["end_s"] - share[mask]
                by_key[key] = part
    if exchanges is not None:
        by_key.update(exchange_rows(timeline, exchanges))
    by_key.update(fsdp_rows(timeline, fsdp))

    groups = tuple(_group(key, label, lane, by_key[key]) for key, label, lane in GROUP_ORDER if key in by_key)
    return GanttSeries(
        name=schedule.name,
        num_ranks=schedule.num_ranks,
        groups=groups,
        memory=_memory(schedule, costs, timeline),
        metrics=metrics,
        num_stages=schedule.num_stages,
        timeline=timeline,
        stage_to_rank=tuple(schedule.stage_to_rank),
        rank_memory=tuple(rank_memory),
        costs=costs,
        exchanges=exchanges,
        fsdp=tuple(fsdp),
        pair_rows=pair_index,
    )


def report_series(report: SimulationReport, iterations: int | None = None) -> GanttSeries:
    """The chart series of a simulated scenario, with its memory per rank (the numbers ``simulate`` prints),
    the bytes its transfers move and its expert all-to-alls and context-parallel exchanges; ``iterations``
    consecutive iterations are drawn under the scenario's optimizer mode (None: one under ``sync``, the
    measured back-to-back run under ``post-validation``), the metrics are per iteration."""
    sc = report.scenario
    traffic = stage_traffic(sc.model, sc.layout, report.schedule.stage_to_rank)
    exchanges = Exchanges.of(report.stage_passes, traffic, sc.layout.cp_comm)
    run = run_iterations(report.schedule, report.costs, sc.optimizer, iterations)
    series = gantt_series(
        run.schedule, report.costs, run.timeline, report.metrics, report.memory, exchanges, report.stage_fsdp
    )
    return replace(series, traffic=traffic)


def simulate_series(request: CompareRequest, iterations: int | None = None) -> list[GanttSeries]:
    """Simulate every schedule of ``request`` (as ``pipesim compare`` does, under ``request.optimizer``) and
    return its chart series; ``iterations`` consecutive iterations are drawn (None: one under ``sync``, the
    measured back-to-back run under ``post-validation``), the metrics are per iteration."""
    out = []
    for schedule in build_requested(request):
        costs = synthetic_costs(schedule, request)
        run = run_iterations(schedule, costs, request.optimizer, iterations)
        out.append(gantt_series(run.schedule, costs, run.timeline, run.metrics))
    return out
