"""The schedule IR: actions, schedules and the one dependency rule.

An *action* is one pass of one microbatch through one (virtual) pipeline stage:

* ``F`` forward,
* ``B`` full backward (input and weight gradients together),
* ``I`` backward for inputs only (zero-bubble split backward),
* ``W`` backward for weights only.

Text form follows PyTorch's ``torch.distributed.pipelining`` schedule CSVs: ``<stage><op><microbatch>``,
e.g. ``2F0`` or ``5I3``.

A :class:`Schedule` stores each rank's program as a compact ``array('q')`` of packed action codes, so that
schedules with millions of actions stay small (8 bytes per action) and can be handed to numpy without a copy.
This package uses the standard library only.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import InitVar, dataclass, field
from enum import IntEnum

from schedules.pairs import first_bad_pair

__all__ = [
    "Op",
    "Signal",
    "Action",
    "Dependency",
    "Schedule",
    "ScheduleError",
    "parse_action",
    "depends_on",
    "produces",
    "encode",
    "decode",
    "NUM_OPS",
    "HELD_DELTA",
    "NUM_SIGNALS",
    "signal_index",
    "consumer_stage",
    "consumer_stages",
]


class ScheduleError(ValueError):
    """A schedule or schedule request that cannot be built or run; the message is one user-facing line
    (or a line followed by a grid, for deadlocks)."""


class Op(IntEnum):
    """The four pass kinds, with PyTorch's letters."""

    F = 0
    B = 1
    I = 2  # noqa: E741 - PyTorch's letter for backward-for-inputs
    W = 3


NUM_OPS = len(Op)

# The one activation-memory rule, per Op: (change in stashed activations, change in weight-gradient stash),
# in microbatches of the action's stage. F stashes its activations; a full B frees them; a split backward's I
# frees all but the weight stash, which its W frees (Qi et al., Zero Bubble, ICLR 2024, Section 2 / Table 1).
# The simulator's peaks (pipesim.sim.metrics), the Gantt memory series and the planner's estimate all use it.
HELD_DELTA: tuple[tuple[int, int], ...] = ((1, 0), (-1, 0), (-1, 1), (0, -1))


class Signal(IntEnum):
    """What a finished action makes available to other actions."""

    ACTIVATION = 0  # output of F(s, m): needed by F(s+1, m) and by B/I(s, m)
    INPUT_GRAD = 1  # output of B(s, m) or I(s, m): needed by B/I(s-1, m) and by W(s, m)


_ACTION_RE = re.compile(r"^\s*(\d+)\s*([FBIW])\s*(\d+)\s*$")


@dataclass(frozen=True, order=True, slots=True)
class Action:
    """One pass: ``op`` of ``microbatch`` through global virtual stage ``stage``."""

    stage: int
    op: Op
    microbatch: int

    def __str__(self) -> str:
        return f"{self.stage}{self.op.name}{self.microbatch}"


def parse_action(text: str) -> Action:
    """Parse PyTorch's action text (``2F0``, ``5B3``, ``1I0``, ``1W0``) into an :class:`Action`.

    Raises :class:`ScheduleError` naming the text and the expected form.
    """
    match = _ACTION_RE.match(text)
    if match is None:
        raise ScheduleError(
            f"cannot parse action {text!r}: expected <stage><op><microbatch> with op one of F, B, I, W (e.g. 2F0)"
        )
    return Action(int(match.group(1)), Op[match.group(2)], int(match.group(3)))


@dataclass(frozen=True, slots=True)
class Dependency:
    """A signal an action waits for: ``signal`` of (``stage``, ``microbatch``).

    ``cross_stage`` is true when the producer is another stage (the signal may have to travel between ranks);
    false when it is the same stage, hence always the same rank.
    """

    signal: Signal
    stage: int
    microbatch: int
    cross_stage: bool


def produces(op: Op) -> Signal | None:
    """The signal an action of kind ``op`` produces when it finishes (W produces none)."""
    if op is Op.F:
        return Signal.ACTIVATION
    if op is Op.B or op is Op.I:
        return Signal.INPUT_GRAD
    return None


def depends_on(action: Action, num_stages: int, chain_starts: Sequence[int] = (0,)) -> tuple[Dependency, ...]:
    """The single source of truth for dependencies, used by the validator and the engine alike.

    The stages form one or more *chains* of consecutive stages (``chain_starts``: the first stage of each; one
    chain 0 .. S-1 unless a schedule says otherwise, :attr:`Schedule.chain_starts`); a microbatch runs through
    one chain, first stage to last and back:

    * F(s, m) waits for F(s-1, m) (the activation from the previous stage), none at a chain's first stage;
    * B(s, m) and I(s, m) wait for the input gradient of stage s+1 (from B or I of (s+1, m)), none at a
      chain's last stage, and for F(s, m) (its own stashed activations);
    * W(s, m) waits for I(s, m) (the input gradient pass of the same stage and microbatch).

    The cross-stage dependency, where there is one, comes first.
    """
    s, m = action.stage, action.microbatch
    if action.op is Op.F:
        return (Dependency(Signal.ACTIVATION, s - 1, m, True),) if s not in chain_starts and s > 0 else ()
    if action.op is Op.W:
        return (Dependency(Signal.INPUT_GRAD, s, m, False),)
    own = Dependency(Signal.ACTIVATION, s, m, False)
    if s + 1 < num_stages and s + 1 not in chain_starts:
        return (Dependency(Signal.INPUT_GRAD, s + 1, m, True), own)
    return (own,)


NUM_SIGNALS = len(Signal)


def signal_index(stage: int, microbatch: int, signal: Signal | int, num_stages: int) -> int:
    """The one flat index of a signal, ``(microbatch * num_stages + stage) * NUM_SIGNALS + signal``, used by
    the validator and the engine to mark what has been produced."""
    return (microbatch * num_stages + stage) * NUM_SIGNALS + int(signal)


def consumer_stage(op: Op, stage: int, num_stages: int, chain_starts: Sequence[int] = (0,)) -> int | None:
    """The inverse of :func:`depends_on`'s cross-stage dependency: the stage whose action waits for what
    ``op`` on ``stage`` produces (F(s) feeds F(s+1); B or I(s) feeds B or I(s-1)), or None when it leaves
    the pipeline (W, a chain's last stage's F, its first stage's backward). Derived from :func:`depends_on`."""
    signal = produces(op)
    if signal is None:
        return None
    for other in (stage - 1, stage + 1):
        if not 0 <= other < num_stages:
            continue
        for consumer in Op:
            for dep in depends_on(Action(other, consumer, 0), num_stages, chain_starts):
                if dep.cross_stage and dep.stage == stage and dep.signal == signal:
                    return other
    return None


def consumer_stages(num_stages: int, chain_starts: Sequence[int] = (0,)) -> tuple[tuple[int, ...], ...]:
    """:func:`consumer_stage` as a table ``[op][stage]``, -1 where there is none (for vectorised callers)."""
    return tuple(
        tuple(
            -1 if (c := consumer_stage(o, s, num_stages, chain_starts)) is None else c
            for s in range(num_stages)
        )
        for o in Op
    )


def encode(action: Action, num_stages: int) -> int:
    """Pack an action into one integer: ``(microbatch * num_stages + stage) * NUM_OPS + op``."""
    return (action.microbatch * num_stages + action.stage) * NUM_OPS + int(action.op)


def decode(code: int, num_stages: int) -> Action:
    """Inverse of :func:`encode`."""
    rest, op = divmod(code, NUM_OPS)
    microbatch, stage = divmod(rest, num_stages)
    return Action(stage, Op(op), microbatch)


def interleaved_placement(num_ranks: int, num_stages: int) -> tuple[int, ...]:
    """Stage s on rank s mod p (Megatron-LM's interleaved placement; plain pipelines have one stage per rank)."""
    return tuple(s % num_ranks for s in range(num_stages))


def v_shape_placement(num_ranks: int) -> tuple[int, ...]:
    """V-shape placement (ZB-V, DualPipeV): rank r holds stages r and 2p-1-r."""
    return tuple(list(range(num_ranks)) + list(range(num_ranks - 1, -1, -1)))


@dataclass(frozen=True, eq=False)
class Schedule:
    """A pipeline schedule: per-rank programs of actions plus the stage-to-rank placement.

    ``programs[r]`` is rank r's actions in program order, packed by :func:`encode`. There is no idle
    padding: waiting is for the simulator to work out, never declared.

    ``overlapped[r]`` (empty: none) lists the positions k of rank r's program where the forward at k and the
    backward (B or I) at k+1 form one overlapped pair, DualPipe's "F&B" (DeepSeek-V3 report, arXiv:2412.19437,
    Section 3.2.1): an engine given a pair duration runs them as one span; otherwise they run one after the
    other.

    ``chain_starts`` splits the stages into chains of consecutive stages, each a whole copy of the model
    (:func:`depends_on`); every microbatch runs through exactly one of them (its *route*). One chain (``(0,)``)
    for every family but bidirectional DualPipe, whose two chains run in opposite directions over the ranks.
    """

    name: str
    num_ranks: int
    num_stages: int
    num_microbatches: int
    stage_to_rank: tuple[int, ...]
    programs: tuple[array, ...] = field(repr=False)
    overlapped: tuple[tuple[int, ...], ...] = field(default=(), repr=False)
    chain_starts: tuple[int, ...] = (0,)
    pairs_checked: InitVar[bool] = False

    def __post_init__(self, pairs_checked: bool) -> None:
        starts = self.chain_starts
        if (
            not starts
            or starts[0] != 0
            or any(b <= a for a, b in zip(starts, starts[1:], strict=False))
            or starts[-1] >= max(self.num_stages, 1)
        ):
            raise ScheduleError(
                f"schedule {self.name!r}: chain_starts {starts} must start at 0 and increase below "
                f"{self.num_stages} stages"
            )
        if self.num_stages % len(starts) or any(
            c != i * (self.num_stages // len(starts)) for i, c in enumerate(starts)
        ):
            raise ScheduleError(
                f"schedule {self.name!r}: chain_starts {starts} must split {self.num_stages} stages into equal chains"
            )
        if self.num_ranks < 1 or self.num_stages < 1 or self.num_microbatches < 1:
            raise ScheduleError(
                f"schedule {self.name!r}: ranks, stages and microbatches must be >= 1 "
                f"(got {self.num_ranks}, {self.num_stages}, {self.num_microbatches})"
            )
        if len(self.stage_to_rank) != self.num_stages:
            raise ScheduleError(
                f"schedule {self.name!r}: placement lists {len(self.stage_to_rank)} stages, expected {self.num_stages}"
            )
        if len(self.programs) != self.num_ranks:
            raise ScheduleError(
                f"schedule {self.name!r}: {len(self.programs)} rank programs, expected {self.num_ranks}"
            )
        bad = [r for r in self.stage_to_rank if not 0 <= r < self.num_ranks]
        if bad:
            raise ScheduleError(
                f"schedule {self.name!r}: placement names rank {bad[0]}, valid 0..{self.num_ranks - 1}"
            )
        if self.overlapped and not pairs_checked:
            self.check_overlapped()

    def check_overlapped(self) -> None:
        """Each pair is an F followed by a B or I of another microbatch on the same rank; pairs do not share
        an action. Run on construction unless the builder passes ``pairs_checked=True`` (generators whose
        pairs hold by construction, each proven by a test that calls this)."""
        if len(self.overlapped) != self.num_ranks:
            raise ScheduleError(
                f"schedule {self.name!r}: overlapped pairs for {len(self.overlapped)} ranks, expected {self.num_ranks}"
            )
        for r, (pairs, prog) in enumerate(zip(self.overlapped, self.programs, strict=True)):
            bad = first_bad_pair(pairs, prog, self.num_stages * NUM_OPS, NUM_OPS)
            if bad is not None:
                raise ScheduleError(
                    f"schedule {self.name!r}: rank {r} position {bad} is not an F followed by a B or I of another "
                    "microbatch (an overlapped F&B pair), or overlaps the previous pair"
                )

    @classmethod
    def from_actions(
        cls,
        name: str,
        num_ranks: int,
        num_microbatches: int,
        stage_to_rank: Sequence[int],
        programs: Sequence[Iterable[Action]],
        overlapped: Sequence[Sequence[int]] = (),
        chain_starts: Sequence[int] = (0,),
    ) -> Schedule:
        """Build a schedule from per-rank sequences of :class:`Action` (and overlapped pair positions, and the
        chains' first stages)."""
        num_stages = len(stage_to_rank)
        packed = tuple(array("q", (encode(a, num_stages) for a in prog)) for prog in programs)
        pairs = tuple(tuple(p) for p in overlapped) if any(overlapped) else ()
        return cls(
            name,
            num_ranks,
            num_stages,
            num_microbatches,
            tuple(stage_to_rank),
            packed,
            pairs,
            tuple(chain_starts),
        )

    def renamed(self, name: str) -> Schedule:
        """The same schedule under another name."""
        return Schedule(
            name,
            self.num_ranks,
            self.num_stages,
            self.num_microbatches,
            self.stage_to_rank,
            self.programs,
            self.overlapped,
            self.chain_starts,
            pairs_checked=True,  # the same pairs, checked when this schedule was built
        )

    @property
    def chunks_per_rank(self) -> int:
        """Virtual stages per rank (v); 1 for plain pipelines, 2 for V-shape schedules and DualPipe."""
        return self.num_stages // self.num_ranks

    @property
    def chain_length(self) -> int:
        """Stages per chain (one whole copy of the model; chains are of equal length): the model is split into
        this many stages, so one stage holds 1 / chain_length of it."""
        return self.num_stages // len(self.chain_starts)

    def chain_of(self, stage: int) -> int:
        """The index of the chain ``stage`` belongs to."""
        return sum(1 for c in self.chain_starts if c <= stage) - 1

    @property
    def num_actions(self) -> int:
        """Total number of actions over all ranks."""
        return sum(len(p) for p in self.programs)

    def actions(self, rank: int) -> tuple[Action, ...]:
        """Rank ``rank``'s program as :class:`Action` values."""
        return tuple(decode(c, self.num_stages) for c in self.programs[rank])

    def iter_actions(self) -> Iterator[tuple[int, int, Action]]:
        """Yield ``(rank, step, action)`` for every action."""
        for rank, prog in enumerate(self.programs):
            for step, code in enumerate(prog):
                yield rank, step, decode(code, self.num_stages)

    def text(self, rank: int) -> str:
        """Rank ``rank``'s program in PyTorch's text form, space separated."""
        return " ".join(str(a) for a in self.actions(rank))

    def uses_split_backward(self) -> bool:
        """True when any action is an I or W (zero-bubble style split backward)."""
        i_code, w_code = int(Op.I), int(Op.W)
        return any(c % NUM_OPS in (i_code, w_code) for p in self.programs for c in p)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (
            self.num_ranks == other.num_ranks
            and self.num_stages == other.num_stages
            and self.num_microbatches == other.num_microbatches
            and self.stage_to_rank == other.stage_to_rank
            and all(a == b for a, b in zip(self.programs, other.programs, strict=True))
            and self.overlapped == other.overlapped
            and self.chain_starts == other.chain_starts
        )

    def __hash__(self) -> int:
        return hash((self.num_ranks, self.num_stages, self.num_microbatches, self.stage_to_rank))
