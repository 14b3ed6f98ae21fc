"""A plain dict registry of schedule families, looked up by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from schedules.classic import gpipe, interleaved_microbatch_rule, interleaved_one_f_one_b, one_f_one_b
from schedules.dualpipe import dualpipe, dualpipe_rule, dualpipe_v, dualpipe_v_rule
from schedules.greedy import default_memory_limit
from schedules.ir import Schedule, ScheduleError
from schedules.pytorch_orders import interleaved_zb_rule, interleaved_zero_bubble, looped_bfs
from schedules.v_memory import v_memory_schedule
from schedules.zb_auto import auto_zero_bubble
from schedules.zero_bubble import zb_h1, zb_h2, zb_v

__all__ = ["ScheduleFamily", "REGISTRY", "register", "get_family", "build_schedule", "schedule_names"]


Rule = Callable[[int, int, int], "str | None"]
InFlight = Callable[[int, int, int, int], float]


@dataclass(frozen=True)
class ScheduleFamily:
    """A named schedule generator and the facts the planner needs without building it.

    ``build(pp, microbatches, vpp)`` returns the schedule; ``uses_vpp`` says whether vpp (model chunks per rank)
    means anything to it (others ignore it); ``chunks_per_rank`` is the fixed chunk count of schedules that
    have one (V-shape: 2), else None; ``split_backward`` says whether it uses I/W instead of B.

    ``rule(pp, microbatches, chunks)`` says why the family cannot take those sizes (None if it can); without
    one, the planner builds the schedule to find out. ``in_flight(pp, microbatches, chunks, rank)`` is the
    family's closed-form peak of stashed microbatches on ``rank`` (units of the rank's whole stage) for the
    families whose bubble is 1F1B's divided by the chunks (SC21 Section 2.2); None means the planner profiles
    a built schedule instead. ``placement`` is ``"loop"`` (stage s on rank s mod pp: one chunk, or
    interleaved), ``"v"`` (rank r holds stages r and 2pp-1-r) or ``None`` (read it from the built schedule).
    ``planned`` says whether ``pipesim plan`` searches the family by default (it does not search the ones its
    closed-form estimate cannot yet track; they are still planned when named). ``chains`` is how many copies
    of the model the stages form (:attr:`schedules.ir.Schedule.chain_starts`; 2 for bidirectional DualPipe).
    """

    name: str
    description: str
    build: Callable[[int, int, int], Schedule]
    uses_vpp: bool = False
    chunks_per_rank: int | None = None
    split_backward: bool = False
    rule: Rule | None = None
    in_flight: InFlight | None = None
    placement: str | None = None
    planned: bool = True
    chains: int = 1

    def chunks(self, vpp: int) -> int:
        """Model chunks per rank this family uses when asked for ``vpp``."""
        if self.chunks_per_rank is not None:
            return self.chunks_per_rank
        return vpp if self.uses_vpp else 1

    def stage_placement(self, pp: int, chunks: int) -> tuple[int, ...] | None:
        """Rank of every global stage, or None when it must be read from a built schedule."""
        return _placement(self.placement, pp, chunks)


@cache
def _placement(kind: str | None, pp: int, chunks: int) -> tuple[int, ...] | None:
    """:meth:`ScheduleFamily.stage_placement` of a family whose placement is ``kind`` (cached)."""
    if chunks == 1:
        return tuple(range(pp))
    if kind == "loop":
        return tuple(s % pp for s in range(pp * chunks))
    if kind == "v" and chunks == 2:
        return tuple(range(pp)) + tuple(range(pp - 1, -1, -1))
    return None


def _no_rule(p: int, m: int, v: int) -> str | None:
    return None


def _gpipe_in_flight(p: int, m: int, v: int, r: int) -> float:
    """GPipe stashes every microbatch before the first backward."""
    return float(m)


def _one_f_one_b_in_flight(p: int, m: int, v: int, r: int) -> float:
    """1F1B: rank r runs p - r warm-up forwards (SC21 Section 2.2.1)."""
    return float(min(m, p - r))


def _interleaved_in_flight(p: int, m: int, v: int, r: int) -> float:
    """Interleaved 1F1B: min(v m, 2 (p - r - 1) + (v - 1) p + 1) chunk-microbatches, / v in whole stages; on
    rank 0 that is p (1 + (p - 1)/(p v)) (Korthikanti et al. 2022, Section 4.2.3)."""
    if v < 2:
        return _one_f_one_b_in_flight(p, m, v, r)
    return min(v * m, 2 * (p - r - 1) + (v - 1) * p + 1) / v


def _dualpipe_v_rule(p: int, m: int, v: int) -> str | None:
    return dualpipe_v_rule(p, m)


def _dualpipe_rule(p: int, m: int, v: int) -> str | None:
    return dualpipe_rule(p, m)


REGISTRY: dict[str, ScheduleFamily] = {}


def register(family: ScheduleFamily) -> ScheduleFamily:
    """Add ``family`` to the registry (a later registration of the same name replaces the earlier one)."""
    REGISTRY[family.name] = family
    return family


def schedule_names() -> list[str]:
    """Registered schedule names, in registration order."""
    return list(REGISTRY)


def get_family(name: str) -> ScheduleFamily:
    """Look up a schedule family; an unknown name raises :class:`ScheduleError` listing the valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ScheduleError(f"unknown schedule {name!r}; valid: {', '.join(REGISTRY)}") from None


def build_schedule(name: str, pp: int, microbatches: int, vpp: int = 1) -> Schedule:
    """Build the schedule ``name`` for ``pp`` ranks, ``microbatches`` microbatches and ``vpp`` chunks per rank."""
    for label, value in (("pp", pp), ("microbatches", microbatches), ("vpp", vpp)):
        if value < 1:
            raise ScheduleError(f"{label}={value} must be >= 1")
    return get_family(name).build(pp, microbatches, vpp)


register(
    ScheduleFamily(
        "gpipe",
        "GPipe: all forwards, then all backwards",
        lambda p, m, v: gpipe(p, m),
        rule=_no_rule,
        in_flight=_gpipe_in_flight,
    )
)
register(
    ScheduleFamily(
        "1f1b",
        "1F1B / PipeDream-Flush",
        lambda p, m, v: one_f_one_b(p, m),
        rule=_no_rule,
        in_flight=_one_f_one_b_in_flight,
    )
)
register(
    ScheduleFamily(
        "interleaved-1f1b",
        "Megatron-LM interleaved 1F1B with vpp model chunks per rank",
        interleaved_one_f_one_b,
        uses_vpp=True,
        placement="loop",
        rule=interleaved_microbatch_rule,
        in_flight=_interleaved_in_flight,
    )
)
register(
    ScheduleFamily(
        "zb-h1",
        "Zero Bubble ZB-H1: 1F1B memory, W passes fill the cool-down",
        lambda p, m, v: zb_h1(p, m),
        split_backward=True,
        rule=_no_rule,
    )
)
register(
    ScheduleFamily(
        "zb-h2",
        "Zero Bubble ZB-H2: 2p-1 warm-up forwards, zero steady-state bubble",
        lambda p, m, v: zb_h2(p, m),
        split_backward=True,
        rule=_no_rule,
    )
)
register(
    ScheduleFamily(
        "zb-v",
        "Zero Bubble ZB-V: V-shape (rank r holds stages r, 2p-1-r), 1F1B memory",
        lambda p, m, v: zb_v(p, m),
        chunks_per_rank=2,
        split_backward=True,
        rule=_no_rule,
        placement="v",
    )
)
register(
    ScheduleFamily(
        "dualpipe-v",
        "DualPipeV (DeepSeek): V-shape DualPipe cut in half; F&B pairs overlapped with --fb-time; needs m >= 2pp",
        lambda p, m, v: dualpipe_v(p, m),
        chunks_per_rank=2,
        split_backward=True,
        rule=_dualpipe_v_rule,
        placement="v",
    )
)
register(
    ScheduleFamily(
        "dualpipe",
        "DualPipe (DeepSeek-V3): two pipelines in opposite directions, two model copies per rank (2x parameters), "
        "m/2 microbatches each way; needs even pp, even m >= 2pp",
        lambda p, m, v: dualpipe(p, m),
        chunks_per_rank=2,
        split_backward=True,
        rule=_dualpipe_rule,
        placement="v",
        chains=2,
        planned=False,  # the planner's estimate is -15% .. +7% off (measured on llama2-7b and gpt3-175b plans)
    )
)
register(
    ScheduleFamily(
        "zb-1p",
        "ZB paper's automatic schedule under 1F1B's memory, pp microbatches (times F=I=W; compare passes real times)",
        lambda p, m, v: auto_zero_bubble(p, m, default_memory_limit("zb-1p", p), name="zb-1p"),
        split_backward=True,
        rule=_no_rule,
    )
)
register(
    ScheduleFamily(
        "zb-2p",
        "ZB paper's automatic schedule under 2*pp microbatches of memory (times F=I=W; compare passes real times)",
        lambda p, m, v: auto_zero_bubble(p, m, default_memory_limit("zb-2p", p), name="zb-2p"),
        split_backward=True,
        rule=_no_rule,
    )
)
register(
    ScheduleFamily(
        "interleaved-zb",
        "PyTorch's ScheduleInterleavedZeroBubble: interleaved ZB1P over vpp chunks per rank",
        interleaved_zero_bubble,
        uses_vpp=True,
        split_backward=True,
        rule=lambda p, m, v: interleaved_zb_rule(p, m),
        placement="loop",
    )
)
register(
    ScheduleFamily(
        "looped-bfs",
        "PyTorch's ScheduleLoopedBFS: breadth-first, all microbatches through one chunk, then the next",
        looped_bfs,
        uses_vpp=True,
        rule=_no_rule,
        placement="loop",
    )
)
register(
    ScheduleFamily(
        "zb-v-half",
        "V-Half (Qi et al. 2024, controllable memory): V-shape under (pp+2)//2 microbatches, about half of 1F1B's",
        lambda p, m, v: v_memory_schedule("zb-v-half", p, m),
        chunks_per_rank=2,
        split_backward=True,
        rule=_no_rule,
        placement="v",
        planned=False,  # the planner's estimate is 20-30% off for these memory-capped orders
    )
)
register(
    ScheduleFamily(
        "zb-v-min",
        "V-Min (Qi et al. 2024, controllable memory): V-shape under (pp+4)//3 microbatches, about a third of 1F1B's",
        lambda p, m, v: v_memory_schedule("zb-v-min", p, m),
        chunks_per_rank=2,
        split_backward=True,
        rule=_no_rule,
        placement="v",
        planned=False,  # the planner's estimate is 20-30% off for these memory-capped orders
    )
)
