"""The timeline simulator: when does every action, transfer and reduction of a schedule run?

Model (see DESIGN.md, "The engine"):

* each rank runs its program in order on one compute stream; an action starts when the rank is free and every
  signal it depends on (:func:`schedules.ir.depends_on`) is available on that rank;
* a signal produced on another rank travels as a transfer on the producer's send stream: it starts when the
  producer finishes and the stream is free (sends on one rank go one at a time, in program order) and lasts
  ``p2p_s`` of the stage boundary it crosses; the consumer may start when it ends;
* gradient reduction of each stage's parameters runs on a per-rank data-parallel stream in ``dp_buckets``
  equal buckets: with ``dp_overlap`` bucket k of a stage is ready k+1 / dp_buckets of the way through the
  stage's last gradient pass (B, or W with a split backward; layers produce their gradients in turn, as
  Megatron-LM's and PyTorch DDP's bucketed reductions use them), otherwise after all of the rank's compute;
  the stream reduces one bucket at a time, in order of readiness; the optimizer step then follows once every rank has reduced its gradients (gradient clipping needs
  the global norm).

* an overlapped forward-and-backward pair of a schedule (DualPipe's F&B, :attr:`schedules.Schedule.overlapped`)
  runs as one span of ``fb_pair_s`` once the inputs of both passes are there, when ``fb_pair_s`` is given;
  otherwise its two passes run one after the other.

Costs come in as numbers per stage (:class:`OpCosts`), so the engine knows nothing about models or GPUs.

Evaluation is a numpy wavefront: each round advances every rank whose next action has all its inputs, so the
Python loop runs once per "level" of the schedule (about the actions per rank), not once per action. Results are
exact (the same as an event-by-event simulation, which :mod:`tests` checks against a brute-force reference)
and deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from pipesim.sim.overlap import overlapped_pairs
from schedules.ir import (
    NUM_OPS,
    NUM_SIGNALS,
    Action,
    Op,
    Schedule,
    ScheduleError,
    consumer_stages,
    depends_on,
    produces,
)
from schedules.validate import deadlock_error

__all__ = ["OpCosts", "Timeline", "SpanKind", "Stream", "simulate", "decode_actions"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Stream(IntEnum):
    """The streams of a rank."""

    COMPUTE = 0
    P2P = 1
    DP = 2
    OPTIMIZER = 3


class SpanKind(IntEnum):
    """What a span of the timeline is: the four pass kinds (same values as :class:`schedules.Op`), then
    communication and the optimizer."""

    F = 0
    B = 1
    I = 2  # noqa: E741 - PyTorch's letter
    W = 3
    SEND_ACTIVATION = 4
    SEND_GRAD = 5
    DP_REDUCE = 6
    OPTIMIZER = 7


def _vec(values: Sequence[float] | float, n: int, name: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        return (float(values),) * n
    out = tuple(float(v) for v in values)
    if len(out) != n:
        raise ScheduleError(f"costs: {name} has {len(out)} entries, expected {n}")
    return out


@dataclass(frozen=True)
class OpCosts:
    """Per-stage costs of one microbatch, in seconds and bytes. Tuples are indexed by global (virtual) stage,
    ``p2p_s`` by stage boundary (entry s: between stage s and s+1, either direction).

    ``weight_s`` is the weight-gradient part W of the full backward B, so a split backward runs I = B - W then W.
    ``activation_bytes`` are stashed by F and freed by B; with a split backward I frees all but
    ``weight_stash_bytes``, which W frees. ``tp_comm_*_s`` and ``recompute_s`` are the parts of F and B (or I)
    spent in tensor-parallel communication and recomputation: they run on the compute stream and are reported,
    not added. ``dp_reduce_s`` is the gradient reduction of each stage's parameters; ``optimizer_s`` the
    optimizer step. ``fb_pair_s`` is the duration of one overlapped F&B pair (DualPipe notation; None: the
    pair's passes run one after the other).
    """

    forward_s: tuple[float, ...]
    backward_s: tuple[float, ...]
    weight_s: tuple[float, ...] = ()
    p2p_s: tuple[float, ...] = ()
    activation_bytes: tuple[float, ...] = ()
    weight_stash_bytes: tuple[float, ...] = ()
    tp_comm_forward_s: tuple[float, ...] = ()
    tp_comm_backward_s: tuple[float, ...] = ()
    recompute_s: tuple[float, ...] = ()
    dp_reduce_s: tuple[float, ...] = ()
    dp_overlap: bool = True
    dp_buckets: int = 1
    optimizer_s: float = 0.0
    fb_pair_s: float | None = None
    num_stages: int = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.forward_s)
        object.__setattr__(self, "num_stages", n)
        for name in (
            "backward_s",
            "weight_s",
            "activation_bytes",
            "weight_stash_bytes",
            "tp_comm_forward_s",
            "tp_comm_backward_s",
            "recompute_s",
            "dp_reduce_s",
        ):
            value = getattr(self, name)
            object.__setattr__(self, name, _vec(value if len(value) else 0.0, n, name))
        object.__setattr__(
            self, "p2p_s", _vec(self.p2p_s if len(self.p2p_s) else 0.0, max(n - 1, 0), "p2p_s")
        )
        for name in ("forward_s", "backward_s", "weight_s", "p2p_s", "dp_reduce_s", "activation_bytes"):
            bad = [v for v in getattr(self, name) if not v >= 0.0]
            if bad:
                raise ScheduleError(f"costs: {name} has {bad[0]}; times and sizes must be >= 0")
        for s, (b, w) in enumerate(zip(self.backward_s, self.weight_s, strict=True)):
            if w > b:
                raise ScheduleError(f"costs: stage {s} weight_s={w} exceeds backward_s={b}; W is part of B")
        if self.fb_pair_s is not None and not self.fb_pair_s >= 0:
            raise ScheduleError(f"costs: fb_pair_s={self.fb_pair_s} must be >= 0")
        if self.optimizer_s < 0:
            raise ScheduleError(f"costs: optimizer_s={self.optimizer_s} must be >= 0")
        if not isinstance(self.dp_buckets, int) or self.dp_buckets < 1:
            raise ScheduleError(f"costs: dp_buckets={self.dp_buckets} must be an integer >= 1")

    @classmethod
    def uniform(
        cls,
        num_stages: int,
        forward_s: float,
        backward_s: float,
        weight_s: float = 0.0,
        p2p_s: float = 0.0,
        activation_bytes: float = 0.0,
        weight_stash_bytes: float = 0.0,
    ) -> OpCosts:
        """The same costs on every stage."""
        return cls(
            forward_s=(float(forward_s),) * num_stages,
            backward_s=(float(backward_s),) * num_stages,
            weight_s=(float(weight_s),) * num_stages,
            p2p_s=(float(p2p_s),) * max(num_stages - 1, 0),
            activation_bytes=(float(activation_bytes),) * num_stages,
            weight_stash_bytes=(float(weight_stash_bytes),) * num_stages,
        )

    def duration_table(self) -> FloatArray:
        """Seconds per (op, stage): rows F, B, I = B - W, W."""
        f = np.asarray(self.forward_s, dtype=np.float64)
        b = np.asarray(self.backward_s, dtype=np.float64)
        w = np.asarray(self.weight_s, dtype=np.float64)
        return np.stack([f, b, b - w, w])


@dataclass(frozen=True, eq=False)
class Timeline:
    """Every span of a simulated step, as parallel arrays (one row per span).

    Rows ``0 .. num_actions-1`` are the compute actions in schedule order (rank by rank, program order, so rank
    r's actions are rows ``rank_offsets[r] .. rank_offsets[r+1]-1``); transfers, reductions and optimizer steps
    follow. ``peer`` is the receiving rank of a transfer (else -1). ``wait_on_transfer_s`` is, per compute
    action, how long the rank sat idle only because an input was still travelling.
    """

    num_ranks: int
    num_actions: int
    rank_offsets: IntArray
    rank: npt.NDArray[np.int32]
    stream: npt.NDArray[np.int8]
    kind: npt.NDArray[np.int8]
    stage: npt.NDArray[np.int32]
    microbatch: npt.NDArray[np.int32]
    peer: npt.NDArray[np.int32]
    start_s: FloatArray
    end_s: FloatArray
    wait_on_transfer_s: FloatArray

    @property
    def num_spans(self) -> int:
        """Number of spans of every kind."""
        return int(self.start_s.shape[0])

    @property
    def step_time_s(self) -> float:
        """End of the last span."""
        return float(self.end_s.max()) if self.num_spans else 0.0

    @property
    def pipeline_time_s(self) -> float:
        """End of the last compute action (the forward/backward phase of the step)."""
        return float(self.end_s[: self.num_actions].max()) if self.num_actions else 0.0

    def compute_slice(self) -> slice:
        """Rows of the compute actions."""
        return slice(0, self.num_actions)


def decode_actions(schedule: Schedule) -> tuple[npt.NDArray, npt.NDArray, npt.NDArray, npt.NDArray, IntArray]:
    """Flatten a schedule into numpy arrays: rank (int32), op (int8), stage (int32), microbatch (int32) and
    rank_offsets (int64, rank r's actions are offsets[r] .. offsets[r+1]-1)."""
    lengths = np.fromiter((len(p) for p in schedule.programs), dtype=np.int64, count=schedule.num_ranks)
    offsets = np.zeros(schedule.num_ranks + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    codes = (
        np.concatenate([np.frombuffer(p, dtype=np.int64) for p in schedule.programs if len(p)])
        if offsets[-1]
        else np.zeros(0, dtype=np.int64)
    )
    rank = np.repeat(np.arange(schedule.num_ranks, dtype=np.int32), lengths)
    rest, op = np.divmod(codes, NUM_OPS)
    del codes
    mb, stage = np.divmod(rest, schedule.num_stages)
    del rest
    return rank, op.astype(np.int8), stage.astype(np.int32), mb.astype(np.int32), offsets


def _check_complete_fast(
    schedule: Schedule, op: IntArray, stage: IntArray, mb: IntArray, rank: IntArray
) -> None:
    """Vectorized completeness check; on failure defer to the validator for a precise message."""
    s_count, m_count = schedule.num_stages, schedule.num_microbatches
    placement = np.asarray(schedule.stage_to_rank, dtype=np.int64)
    ok = bool(np.all(mb < m_count)) and bool(np.all(placement[stage] == rank))
    if ok:
        counts = np.bincount(
            (mb.astype(np.int64) * s_count + stage) * NUM_OPS + op, minlength=m_count * s_count * NUM_OPS
        ).reshape(m_count * s_count, NUM_OPS)
        f, b, i, w = counts.T
        ok = bool(np.all(f == 1)) and bool(
            np.all(((b == 1) & (i == 0) & (w == 0)) | ((b == 0) & (i == 1) & (w == 1)))
        )
    if not ok:
        from schedules.validate import check_complete

        check_complete(schedule)
        raise ScheduleError(
            f"schedule {schedule.name!r} is incomplete"
        )  # pragma: no cover - check_complete raises


def _dependency_tables(num_stages: int) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """From :func:`depends_on`, per (op, stage): the cross-stage dependency (signal, stage) and the same-stage
    dependency (signal, stage); -1 where there is none. Dependencies never change the microbatch."""
    cross_sig = np.full((NUM_OPS, num_stages), -1, dtype=np.int64)
    cross_stage = np.full((NUM_OPS, num_stages), -1, dtype=np.int64)
    own_sig = np.full((NUM_OPS, num_stages), -1, dtype=np.int64)
    own_stage = np.full((NUM_OPS, num_stages), -1, dtype=np.int64)
    for o in Op:
        for s in range(num_stages):
            for dep in depends_on(Action(s, o, 0), num_stages):
                if dep.cross_stage:
                    cross_sig[o, s], cross_stage[o, s] = int(dep.signal), dep.stage
                else:
                    own_sig[o, s], own_stage[o, s] = int(dep.signal), dep.stage
    return cross_sig, cross_stage, own_sig, own_stage


def simulate(schedule: Schedule, costs: OpCosts) -> Timeline:
    """Simulate one training step of ``schedule`` with ``costs``; see the module docstring for the model.

    Raises :class:`ScheduleError` if the schedule is incomplete or deadlocks (with the rank x step grid).
    """
    if costs.num_stages != schedule.num_stages:
        raise ScheduleError(
            f"costs cover {costs.num_stages} stages but schedule {schedule.name!r} has {schedule.num_stages}"
        )
    s_count, m_count, r_count = schedule.num_stages, schedule.num_microbatches, schedule.num_ranks
    rank, op, stage, mb, offsets = decode_actions(schedule)
    n = int(offsets[-1])
    _check_complete_fast(schedule, op, stage, mb, rank)
    mb_key = mb.astype(np.int64) * s_count

    # Producer of every signal, at schedules.ir.signal_index: F makes ACTIVATION, B and I INPUT_GRAD.
    producer = np.full(m_count * s_count * NUM_SIGNALS + 1, n, dtype=np.int64)  # last entry: "no dependency"
    makes = np.array([-1 if (g := produces(o)) is None else int(g) for o in Op], dtype=np.int64)[op]
    has = makes >= 0
    producer[((mb_key + stage) * NUM_SIGNALS + makes)[has]] = np.nonzero(has)[0]
    none_key = m_count * s_count * NUM_SIGNALS

    cross_sig, cross_stage, own_sig, own_stage = _dependency_tables(s_count)
    cs, cst = cross_sig[op, stage], cross_stage[op, stage]
    dep_cross = producer[np.where(cs >= 0, (mb_key + cst) * NUM_SIGNALS + cs, none_key)]
    os_, ost = own_sig[op, stage], own_stage[op, stage]
    dep_own = producer[np.where(os_ >= 0, (mb_key + ost) * NUM_SIGNALS + os_, none_key)]
    del cs, cst, os_, ost, makes, has, producer, mb_key
    if n < 2**31 - 1:
        dep_cross, dep_own = dep_cross.astype(np.int32), dep_own.astype(np.int32)

    placement = np.asarray(schedule.stage_to_rank, dtype=np.int64)
    durations = costs.duration_table()[op, stage]
    dep_pair = overlapped_pairs(schedule, costs.fb_pair_s, offsets, durations, dep_cross)
    # A producer sends when its cross-stage consumer lives on another rank: F(s) -> F(s+1), B/I(s) -> B/I(s-1).
    consumer_stage = np.asarray(consumer_stages(s_count), dtype=np.int64).reshape(NUM_OPS, s_count)[op, stage]
    valid_consumer = (consumer_stage >= 0) & (consumer_stage < s_count)
    consumer_rank = np.where(valid_consumer, placement[np.clip(consumer_stage, 0, s_count - 1)], -1)
    sends = valid_consumer & (consumer_rank != rank)
    p2p = np.asarray(costs.p2p_s + (0.0,), dtype=np.float64)
    boundary = np.where(op == 0, stage, stage - 1)  # boundary crossed by the send
    xfer = (
        np.where(sends, p2p[np.clip(boundary, 0, max(s_count - 2, 0))], 0.0) if s_count > 1 else np.zeros(n)
    )
    del boundary, consumer_stage, valid_consumer

    inf = np.inf
    start = np.zeros(n)
    finish = np.full(n + 1, inf)  # +inf until the action has run; entry n is "no dependency"
    finish[n] = 0.0
    arrive = finish.copy()  # when the output is available to its cross-stage consumer
    is_send = sends
    t_free = np.zeros(r_count)
    send_free = np.zeros(r_count)
    head = offsets[:-1].copy()
    stop = offsets[1:]
    everyone = np.arange(r_count)
    active = np.nonzero(head < stop)[0]
    while active.size:
        full = active.size == r_count
        idx = head if full else head[active]
        d1, d2 = dep_cross[idx], dep_own[idx]
        tf = t_free if full else t_free[active]
        st = np.maximum(np.maximum(tf, arrive[d1]), finish[d2])
        if dep_pair is not None:  # an F&B pair's forward also waits for its backward's input
            st = np.maximum(st, arrive[dep_pair[idx]])
        if st.max() == inf:  # some ranks wait for a signal not yet produced
            ready = st < inf
            if not ready.any():
                stuck = [int(h - o) for h, o in zip(head, offsets[:-1], strict=True)]
                raise deadlock_error(schedule, stuck)
            active = (everyone if full else active)[ready]
            idx, st, full = idx[ready], st[ready], False
        en = st + durations[idx]
        start[idx] = st
        finish[idx] = en
        # A sender's output leaves on its send stream once that is free; others are available at once.
        snd = is_send[idx]
        sf = send_free if full else send_free[active]
        leave = np.where(snd, np.maximum(en, sf), en)
        arr = leave + xfer[idx]
        arrive[idx] = arr
        if full:
            t_free[:] = en
            send_free[:] = np.where(snd, arr, sf)
            head += 1
        else:
            t_free[active] = en
            send_free[active] = np.where(snd, arr, sf)
            head[active] += 1
        active = np.nonzero(head < stop)[0]
    send_start = arrive[:n] - xfer

    start_a, finish_a = start[:n], finish[:n]
    # Idle time caused only by a transfer: start minus when it could have started had the input been local.
    prev_end = np.zeros(n)
    prev_end[1:] = finish_a[:-1]
    prev_end[offsets[:-1][offsets[:-1] < n]] = 0.0
    local_ready = np.maximum(np.maximum(prev_end, finish[dep_cross]), finish[dep_own])
    wait = np.where(dep_cross < n, np.maximum(start_a - local_ready, 0.0), 0.0)
    del prev_end, local_ready, dep_own

    # Transfers on the send streams.
    js = np.nonzero(sends)[0]
    t_rank = rank[js].astype(np.int32)
    t_kind = np.where(op[js] == 0, int(SpanKind.SEND_ACTIVATION), int(SpanKind.SEND_GRAD)).astype(np.int8)
    t_start = send_start[js]
    t_end = arrive[js]

    # Gradient reduction per stage on the DP stream, then the optimizer step.
    dp = np.asarray(costs.dp_reduce_s, dtype=np.float64)
    d_rank, d_stage, d_start, d_end = _dp_reductions(schedule, costs, op, stage, finish_a, rank, dp)
    rank_end = np.zeros(r_count)
    np.maximum.at(rank_end, rank, finish_a)
    if d_end.size:
        np.maximum.at(rank_end, d_rank, d_end)
    o_count = r_count if costs.optimizer_s > 0 else 0
    o_start = np.full(o_count, rank_end.max() if r_count else 0.0)
    o_end = o_start + costs.optimizer_s

    def cat(*parts: npt.ArrayLike, dtype: npt.DTypeLike) -> npt.NDArray:
        return np.concatenate([np.asarray(p, dtype=dtype) for p in parts])

    k = d_rank.size
    return Timeline(
        num_ranks=r_count,
        num_actions=n,
        rank_offsets=offsets,
        rank=cat(rank, t_rank, d_rank, np.arange(o_count), dtype=np.int32),
        stream=cat(
            np.full(n, Stream.COMPUTE),
            np.full(js.size, Stream.P2P),
            np.full(k, Stream.DP),
            np.full(o_count, Stream.OPTIMIZER),
            dtype=np.int8,
        ),
        kind=cat(
            op, t_kind, np.full(k, SpanKind.DP_REDUCE), np.full(o_count, SpanKind.OPTIMIZER), dtype=np.int8
        ),
        stage=cat(stage, stage[js], d_stage, np.full(o_count, -1), dtype=np.int32),
        microbatch=cat(mb, mb[js], np.full(k, -1), np.full(o_count, -1), dtype=np.int32),
        peer=cat(np.full(n, -1), consumer_rank[js], np.full(k, -1), np.full(o_count, -1), dtype=np.int32),
        start_s=cat(start_a, t_start, d_start, o_start, dtype=np.float64),
        end_s=cat(finish_a, t_end, d_end, o_end, dtype=np.float64),
        wait_on_transfer_s=wait,
    )


def _dp_reductions(
    schedule: Schedule,
    costs: OpCosts,
    op: npt.NDArray,
    stage: npt.NDArray,
    finish: FloatArray,
    rank: npt.NDArray,
    dp: FloatArray,
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Reduction spans (rank, stage, start, end), one per bucket of every stage with a non-zero ``dp_reduce_s``.

    With overlap, bucket k of K is ready (k+1)/K of the way through the stage's last gradient pass (the B or W
    that finishes last); otherwise when the rank's last compute action finishes. Each rank's DP stream reduces
    one bucket at a time, in order of readiness (ties: stage, then bucket).
    """
    stages = np.nonzero(dp > 0)[0]
    if not stages.size:
        empty_i = np.zeros(0, dtype=np.int64)
        empty_f = np.zeros(0)
        return empty_i, empty_i, empty_f, empty_f
    k_count = costs.dp_buckets
    durations = costs.duration_table()[op, stage]
    is_grad = np.nonzero((op == 1) | (op == 3))[0]
    # The last gradient pass of each stage: sort its passes by (stage, finish) and keep the last of each stage.
    order = is_grad[np.lexsort((finish[is_grad], stage[is_grad]))]
    last_of_stage = np.full(schedule.num_stages, -1, dtype=np.int64)
    last_of_stage[stage[order]] = order
    rank_compute_end = np.zeros(schedule.num_ranks)
    np.maximum.at(rank_compute_end, rank, finish)
    placement = np.asarray(schedule.stage_to_rank, dtype=np.int64)
    s_rank = np.repeat(placement[stages], k_count)
    s_stage = np.repeat(stages, k_count)
    bucket = np.tile(np.arange(k_count), stages.size)
    if costs.dp_overlap:
        last = last_of_stage[s_stage]
        end = finish[last]
        ready = end - durations[last] * (k_count - 1 - bucket) / k_count
    else:
        ready = rank_compute_end[s_rank]
    length = dp[s_stage] / k_count
    out_start = np.zeros(s_stage.size)
    out_end = np.zeros(s_stage.size)
    free = np.zeros(schedule.num_ranks)
    for pos in np.lexsort((bucket, s_stage, ready, s_rank)):  # one per bucket: thousands at most
        r = s_rank[pos]
        t0 = max(ready[pos], free[r])
        out_start[pos] = t0
        out_end[pos] = free[r] = t0 + length[pos]
    return s_rank, s_stage, out_start, out_end
