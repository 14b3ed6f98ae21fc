"""PyTorch's per-rank schedule CSV (``torch.distributed.pipelining``'s compute-only format).

One row per rank, one action per cell in PyTorch's text form (``0F0``, ``1B0``, ``1I0``, ``1W0``); empty cells
are idle slots and are skipped. Communication actions of PyTorch's ``compute_comms`` format (``SEND_F``,
``RECV_B``, ``UNSHARD``, ...) are skipped too: pipesim times transfers itself.

PyTorch's DualPipeV writes its overlapped forward-backward pairs as one cell, ``(0F3;7B2)OVERLAP_F_B``; such a
cell is read as its sub-actions in order, and a forward followed by a backward is recorded as an overlapped pair
(:attr:`schedules.Schedule.overlapped`), written back the same way.

The stage-to-rank placement is inferred from where each stage's actions appear.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from schedules.ir import Action, Op, Schedule, ScheduleError, parse_action

__all__ = ["dumps_csv", "loads_csv", "write_csv", "read_csv"]

_OVERLAP_RE = re.compile(r"^\s*\((?P<subs>[^()]*)\)\s*OVERLAP_F_B\s*$")
_COMM_RE = re.compile(r"^\s*\d+\s*(SEND_F|RECV_F|SEND_B|RECV_B|UNSHARD|RESHARD|REDUCE_GRAD)\s*\d*\s*$")


def dumps_csv(schedule: Schedule) -> str:
    """The schedule as PyTorch's per-rank CSV text. A schedule of several chains of stages (bidirectional
    DualPipe's two model copies) is refused: the format names stages of one chain only, so it would read back
    as a different, incomplete schedule."""
    if len(schedule.chain_starts) > 1:
        raise ScheduleError(
            f"schedule {schedule.name!r} runs {len(schedule.chain_starts)} chains of stages (first stages "
            f"{schedule.chain_starts}); PyTorch's schedule CSV holds one chain, so it cannot be written as one"
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for r in range(schedule.num_ranks):
        acts = [str(a) for a in schedule.actions(r)]
        pairs = schedule.overlapped[r] if schedule.overlapped else ()
        for k in reversed(pairs):
            acts[k : k + 2] = [f"({acts[k]};{acts[k + 1]})OVERLAP_F_B"]
        writer.writerow(acts)
    return buf.getvalue()


def loads_csv(text: str, name: str = "csv", source: str = "<string>") -> Schedule:
    """Parse PyTorch's per-rank CSV into a :class:`Schedule`; errors name ``source``, the row and the cell."""
    programs: list[list[Action]] = []
    pairs: list[list[int]] = []
    placement: dict[int, int] = {}
    max_mb = -1
    try:
        rows: Sequence[list[str]] = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ScheduleError(f"{source}: not a schedule CSV ({exc})") from None
    while rows and not any(c.strip() for c in rows[-1]):
        rows = rows[:-1]  # trailing blank lines
    if not rows:
        raise ScheduleError(f"{source}: no rows; expected one row of actions per rank")
    for r, row in enumerate(rows):
        prog: list[Action] = []
        rank_pairs: list[int] = []
        for c, cell in enumerate(row):
            if not cell.strip() or _COMM_RE.match(cell):
                continue
            overlap = _OVERLAP_RE.match(cell)
            texts = [s for s in overlap.group("subs").split(";") if s.strip()] if overlap else [cell]
            first = len(prog)
            for text in texts:
                try:
                    action = parse_action(text)
                except ScheduleError:
                    raise ScheduleError(
                        f"{source}: row {r + 1} (rank {r}), cell {c + 1}: cannot parse {cell!r}; "
                        f"expected <stage><op><microbatch> with op F, B, I or W, e.g. 2F0"
                    ) from None
                home = placement.setdefault(action.stage, r)
                if home != r:
                    raise ScheduleError(
                        f"{source}: row {r + 1} (rank {r}), cell {c + 1}: stage {action.stage} already runs on rank {home}"
                    )
                max_mb = max(max_mb, action.microbatch)
                prog.append(action)
            if len(texts) == 2 and prog[first].op is Op.F and prog[first + 1].op in (Op.B, Op.I):
                rank_pairs.append(first)
        programs.append(prog)
        pairs.append(rank_pairs)
    if not placement:
        raise ScheduleError(f"{source}: no actions; every stage 0..N-1 needs actions")
    gap = _first_gap(placement)
    if gap is not None:
        raise ScheduleError(f"{source}: stage {gap} never appears; every stage 0..N-1 needs actions")
    num_stages = len(placement)
    gap = _first_gap({a.microbatch for prog in programs for a in prog})
    if gap is not None:  # also bounds the microbatch count by the file's size
        raise ScheduleError(f"{source}: microbatch {gap} never appears; microbatches are numbered 0..M-1")
    return Schedule.from_actions(
        name, len(rows), max_mb + 1, [placement[s] for s in range(num_stages)], programs, pairs
    )


def _first_gap(indices: Iterable[int]) -> int | None:
    """The smallest index missing from 0..max(indices), or None when they are exactly 0..N-1 (found without
    walking up to a huge index such as 10^10)."""
    present = sorted(set(indices))
    if not present or present[-1] == len(present) - 1:
        return None
    return next(i for i, v in enumerate(present) if v != i)


def write_csv(schedule: Schedule, path: str | Path) -> None:
    """Write the schedule's CSV to ``path``."""
    Path(path).write_text(dumps_csv(schedule))


def read_csv(path: str | Path) -> Schedule:
    """Read a schedule CSV; a missing or unreadable file raises :class:`ScheduleError` naming it."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScheduleError(f"{p}: cannot read schedule file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ScheduleError(
            f"{p}: not a schedule CSV (not UTF-8 text: {exc.reason} at byte {exc.start})"
        ) from None
    return loads_csv(text, name=p.stem, source=str(p))
