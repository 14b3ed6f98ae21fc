"""The engine's data: per-stage costs in (:class:`OpCosts`), the simulated step out (:class:`Timeline`), and the
stream and span-kind codes the timeline's rows carry. No evaluation here (see :mod:`pipesim.sim.engine`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from schedules.ir import ScheduleError

__all__ = ["OpCosts", "RankStart", "Timeline", "SpanKind", "Stream", "FloatArray", "IntArray"]

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
    pair's passes run one after the other, unless the passes hold all-to-all time a pair hides).
    ``a2a_forward_s`` / ``a2a_backward_s`` are the parts of F and of the backward's input-gradient phase spent
    in expert all-to-alls (dispatch and combine): an overlapped F&B pair runs them on the communication stream
    behind the other half's compute (:mod:`pipesim.sim.overlap`). ``p2p_blocking``: a rank's compute waits for
    each of its own sends to complete before its next action (Megatron-LM's batched isend/irecv pairs waited
    on by the schedule, :attr:`pipesim.specs.layout.Layout.p2p_overlapped`); False: sends run on the send
    stream behind compute. ``validation_hop_s`` is the time of one hop of the partially
    reduced global state (gradient norm, NaN/Inf flag: a few bytes) from one pipeline rank to the next, which
    the optimizer step of each rank waits for under ``post-validation`` (:mod:`pipesim.sim.gradients`).
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
    p2p_blocking: bool = False
    validation_hop_s: float = 0.0
    a2a_forward_s: tuple[float, ...] = ()
    a2a_backward_s: tuple[float, ...] = ()
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
            "a2a_forward_s",
            "a2a_backward_s",
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
        for s in range(n):
            f, i = self.forward_s[s], self.backward_s[s] - self.weight_s[s]
            if not 0 <= self.a2a_forward_s[s] <= f or not 0 <= self.a2a_backward_s[s] <= i:
                raise ScheduleError(
                    f"costs: stage {s} all-to-all times ({self.a2a_forward_s[s]}, {self.a2a_backward_s[s]}) must "
                    f"be within 0 and F = {f}, I = {i}: they are part of the passes"
                )
        if self.fb_pair_s is not None and not self.fb_pair_s >= 0:
            raise ScheduleError(f"costs: fb_pair_s={self.fb_pair_s} must be >= 0")
        if self.optimizer_s < 0:
            raise ScheduleError(f"costs: optimizer_s={self.optimizer_s} must be >= 0")
        if not self.validation_hop_s >= 0:
            raise ScheduleError(f"costs: validation_hop_s={self.validation_hop_s} must be >= 0")
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

    @property
    def hides_in_pairs(self) -> bool:
        """Whether overlapped F&B pairs run as one span: a pair duration is given, or some pass holds
        all-to-all time that the other half of a pair can hide."""
        return self.fb_pair_s is not None or any(self.a2a_forward_s) or any(self.a2a_backward_s)

    def duration_table(self) -> FloatArray:
        """Seconds per (op, stage): rows F, B, I = B - W, W."""
        f = np.asarray(self.forward_s, dtype=np.float64)
        b = np.asarray(self.backward_s, dtype=np.float64)
        w = np.asarray(self.weight_s, dtype=np.float64)
        return np.stack([f, b, b - w, w])


@dataclass(frozen=True)
class RankStart:
    """Where each rank stands when a simulated iteration begins (the previous iteration's leftovers under
    ``post-validation``): ``compute_s`` per rank, when its compute stream (and data-parallel stream) is free
    for the iteration's first action (after its own optimizer step); ``send_s`` per rank, when its send
    stream is free (the previous iteration's last transfer may still be on the wire)."""

    compute_s: tuple[float, ...]
    send_s: tuple[float, ...]

    def check(self, num_ranks: int) -> None:
        """Raise :class:`ScheduleError` unless both tuples hold ``num_ranks`` finite times >= 0."""
        for name in ("compute_s", "send_s"):
            values = getattr(self, name)
            if len(values) != num_ranks:
                raise ScheduleError(f"start: {name} has {len(values)} entries, expected {num_ranks} ranks")
            if not all(0.0 <= v < float("inf") for v in values):
                raise ScheduleError(f"start: {name} must hold finite times >= 0, got {values}")


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
