"""A plain dict registry of schedule families, looked up by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schedules.classic import gpipe, interleaved_one_f_one_b, one_f_one_b
from schedules.dualpipe import dualpipe_v
from schedules.greedy import default_memory_limit, greedy_zero_bubble
from schedules.ir import Schedule, ScheduleError
from schedules.zero_bubble import zb_h1, zb_h2, zb_v

__all__ = ["ScheduleFamily", "REGISTRY", "register", "get_family", "build_schedule", "schedule_names"]


@dataclass(frozen=True)
class ScheduleFamily:
    """A named schedule generator.

    ``build(pp, microbatches, vpp)`` returns the schedule; ``uses_vpp`` says whether vpp (model chunks per rank)
    means anything to it (others ignore it); ``chunks_per_rank`` is the fixed chunk count of schedules that
    have one (V-shape: 2), else None; ``split_backward`` says whether it uses I/W instead of B.
    """

    name: str
    description: str
    build: Callable[[int, int, int], Schedule]
    uses_vpp: bool = False
    chunks_per_rank: int | None = None
    split_backward: bool = False

    def chunks(self, vpp: int) -> int:
        """Model chunks per rank this family uses when asked for ``vpp``."""
        if self.chunks_per_rank is not None:
            return self.chunks_per_rank
        return vpp if self.uses_vpp else 1


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


register(ScheduleFamily("gpipe", "GPipe: all forwards, then all backwards", lambda p, m, v: gpipe(p, m)))
register(ScheduleFamily("1f1b", "1F1B / PipeDream-Flush", lambda p, m, v: one_f_one_b(p, m)))
register(
    ScheduleFamily(
        "interleaved-1f1b",
        "Megatron-LM interleaved 1F1B with vpp model chunks per rank",
        interleaved_one_f_one_b,
        uses_vpp=True,
    )
)
register(
    ScheduleFamily(
        "zb-h1",
        "Zero Bubble ZB-H1: 1F1B memory, W passes fill the cool-down",
        lambda p, m, v: zb_h1(p, m),
        split_backward=True,
    )
)
register(
    ScheduleFamily(
        "zb-h2",
        "Zero Bubble ZB-H2: 2p-1 warm-up forwards, zero steady-state bubble",
        lambda p, m, v: zb_h2(p, m),
        split_backward=True,
    )
)
register(
    ScheduleFamily(
        "zb-v",
        "Zero Bubble ZB-V: V-shape (rank r holds stages r, 2p-1-r), 1F1B memory",
        lambda p, m, v: zb_v(p, m),
        chunks_per_rank=2,
        split_backward=True,
    )
)
register(
    ScheduleFamily(
        "dualpipe-v",
        "DualPipeV (DeepSeek): V-shape DualPipe cut in half; F&B pairs run as F then B; needs m >= 2pp",
        lambda p, m, v: dualpipe_v(p, m),
        chunks_per_rank=2,
        split_backward=True,
    )
)
register(
    ScheduleFamily(
        "zb-1p",
        "Greedy zero-bubble order under a cap of pp microbatches (times F=I=W; compare passes real times)",
        lambda p, m, v: greedy_zero_bubble(p, m, default_memory_limit("zb-1p", p), name="zb-1p"),
        split_backward=True,
    )
)
register(
    ScheduleFamily(
        "zb-2p",
        "Greedy zero-bubble order under a cap of 2*pp microbatches (times F=I=W; compare passes real times)",
        lambda p, m, v: greedy_zero_bubble(p, m, default_memory_limit("zb-2p", p), name="zb-2p"),
        split_backward=True,
    )
)
