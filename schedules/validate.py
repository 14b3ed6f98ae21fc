"""Prove a schedule complete, dependency-respecting and deadlock-free.

The check runs each rank's program in order, letting an action go only when every signal it depends on
(:func:`schedules.ir.depends_on`) has been produced. Running out of runnable actions before the end is a
deadlock (or an action placed before something it needs); the error prints the rank x step grid with each
rank's stuck step marked.
"""

from __future__ import annotations

from collections import Counter

from schedules.ir import (
    NUM_OPS,
    NUM_SIGNALS,
    Action,
    Op,
    Schedule,
    ScheduleError,
    decode,
    depends_on,
    produces,
    signal_index,
)

__all__ = ["validate", "check_complete", "check_deadlock_free", "deadlock_error", "format_grid"]


def check_complete(schedule: Schedule) -> None:
    """Every microbatch runs through exactly one chain of stages (:attr:`Schedule.chain_starts`; all stages
    for one chain), and every (stage, microbatch) of its chain has exactly one F and either exactly one B or
    exactly one I and one W, each on the rank its stage is placed on. Raises :class:`ScheduleError` naming the
    first problem."""
    s_count, m_count = schedule.num_stages, schedule.num_microbatches
    seen: Counter[int] = Counter()
    for rank, step, action in schedule.iter_actions():
        if not 0 <= action.stage < s_count:
            raise ScheduleError(
                f"rank {rank} step {step}: action {action} names stage {action.stage}, valid 0..{s_count - 1}"
            )
        if not 0 <= action.microbatch < m_count:
            raise ScheduleError(
                f"rank {rank} step {step}: action {action} names microbatch {action.microbatch}, "
                f"valid 0..{m_count - 1}"
            )
        home = schedule.stage_to_rank[action.stage]
        if home != rank:
            raise ScheduleError(
                f"rank {rank} step {step}: action {action} belongs to stage {action.stage} on rank {home}"
            )
        seen[(action.microbatch * s_count + action.stage) * NUM_OPS + int(action.op)] += 1
    for key, count in seen.items():
        if count > 1:
            raise ScheduleError(f"action {decode(key, s_count)} appears {count} times; each must appear once")
    length = schedule.chain_length
    for m in range(m_count):
        used = [
            c
            for c in range(len(schedule.chain_starts))
            if any(
                seen[(m * s_count + s) * NUM_OPS + k]
                for s in range(c * length, (c + 1) * length)
                for k in range(NUM_OPS)
            )
        ]
        if len(used) > 1:
            raise ScheduleError(
                f"microbatch {m} runs on stages of chains {used}; each microbatch runs through one chain "
                f"(first stages {schedule.chain_starts})"
            )
        first = used[0] * length if used else 0
        for s in range(first, first + length):
            base = (m * s_count + s) * NUM_OPS
            f, b, i, w = (seen[base + k] for k in range(NUM_OPS))
            if not f:
                raise ScheduleError(f"missing forward {Action(s, Op.F, m)}")
            if b and (i or w):
                raise ScheduleError(f"stage {s} microbatch {m} has both B and I/W; use one or the other")
            if not b and not (i and w):
                missing = Action(s, Op.B, m) if not (i or w) else Action(s, Op.W if i else Op.I, m)
                raise ScheduleError(f"missing backward {missing}")


def check_deadlock_free(schedule: Schedule) -> None:
    """Run every rank's program in order under the dependency rule; raise with the grid if it gets stuck."""
    s_count = schedule.num_stages
    done = bytearray(NUM_SIGNALS * s_count * schedule.num_microbatches)
    programs = [schedule.actions(r) for r in range(schedule.num_ranks)]
    heads = [0] * schedule.num_ranks
    remaining = sum(len(p) for p in programs)
    while remaining:
        progressed = False
        for r, prog in enumerate(programs):
            h = heads[r]
            while h < len(prog):
                action = prog[h]
                if not all(
                    dep.stage >= 0 and done[signal_index(dep.stage, dep.microbatch, dep.signal, s_count)]
                    for dep in depends_on(action, s_count, schedule.chain_starts)
                ):
                    break
                signal = produces(action.op)
                if signal is not None:
                    done[signal_index(action.stage, action.microbatch, signal, s_count)] = 1
                h += 1
            if h != heads[r]:
                remaining -= h - heads[r]
                heads[r] = h
                progressed = True
        if not progressed:
            raise deadlock_error(schedule, heads)


def deadlock_error(schedule: Schedule, stuck: list[int]) -> ScheduleError:
    """The one deadlock report (validator and engine): a line naming the schedule, then the rank x step grid
    with each rank's stuck step ``stuck[r]`` marked."""
    return ScheduleError(
        f"schedule {schedule.name!r} deadlocks: no rank can run its next action "
        f"(marked [..]; each waits for a signal that never comes)\n" + format_grid(schedule, stuck)
    )


def format_grid(schedule: Schedule, stuck: list[int] | None = None, width: int = 24) -> str:
    """The rank x step grid as text; ``stuck[r]`` (if given) is marked ``[..]`` and the view centred on it."""
    lines = []
    for r in range(schedule.num_ranks):
        acts = [str(a) for a in schedule.actions(r)]
        lo = 0
        if stuck is not None:
            lo = max(0, min(stuck[r] - width // 2, len(acts) - width))
            if stuck[r] < len(acts):
                acts[stuck[r]] = f"[{acts[stuck[r]]}]"
        view = acts[lo : lo + width]
        prefix = "... " if lo > 0 else ""
        suffix = " ..." if lo + width < len(acts) else ""
        state = "" if stuck is None or stuck[r] < len(acts) else "  (finished)"
        lines.append(f"rank {r:>3} | {prefix}{' '.join(view)}{suffix}{state}")
    return "\n".join(lines)


def validate(schedule: Schedule) -> None:
    """Check that ``schedule`` is complete and runs to the end without deadlock; raise :class:`ScheduleError`."""
    check_complete(schedule)
    check_deadlock_free(schedule)
