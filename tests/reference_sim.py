"""A tiny brute-force simulator, written as the recursive definition of the engine's model, for
differential tests of the vectorized engine (small schedules only)."""

from __future__ import annotations

import functools

from pipesim.sim.engine import OpCosts
from schedules import Action, Op, Schedule, Signal, depends_on, produces


def reference_times(schedule: Schedule, costs: OpCosts) -> dict[tuple[int, int], tuple[float, float]]:
    """(rank, step) -> (start, end) of every action, from the model's definition:

    start = max(end of the rank's previous action, arrival of each dependency);
    arrival = end for a local dependency; for a remote one, the end of its transfer, which starts at
    max(producer end, end of the previous transfer sent by the producer's rank) and lasts the boundary's p2p.
    With ``costs.p2p_blocking`` the rank's previous action ends, for its successor, when its send ends.
    """
    S = schedule.num_stages
    programs = [schedule.actions(r) for r in range(schedule.num_ranks)]
    where: dict[Action, tuple[int, int]] = {}
    producer: dict[tuple[Signal, int, int], Action] = {}
    for r, prog in enumerate(programs):
        for k, a in enumerate(prog):
            where[a] = (r, k)
            sig = produces(a.op)
            if sig is not None:
                producer[(sig, a.stage, a.microbatch)] = a

    def duration(a: Action) -> float:
        b, w = costs.backward_s[a.stage], costs.weight_s[a.stage]
        return {Op.F: costs.forward_s[a.stage], Op.B: b, Op.I: b - w, Op.W: w}[a.op]

    def consumer_rank(a: Action) -> int | None:
        target = a.stage + 1 if a.op is Op.F else a.stage - 1 if a.op in (Op.B, Op.I) else -1
        inside = max(a.stage, target) not in schedule.chain_starts  # the pair does not straddle two chains
        if 0 <= target < S and inside:
            return schedule.stage_to_rank[target]
        return None

    def sends(a: Action) -> bool:
        c = consumer_rank(a)
        return c is not None and c != schedule.stage_to_rank[a.stage]

    @functools.cache
    def end(r: int, k: int) -> float:
        return start(r, k) + duration(programs[r][k])

    @functools.cache
    def send_end(r: int, k: int) -> float:
        a = programs[r][k]
        prev = max((send_end(r, j) for j in range(k) if sends(programs[r][j])), default=0.0)
        boundary = a.stage if a.op is Op.F else a.stage - 1
        return max(end(r, k), prev) + costs.p2p_s[boundary]

    @functools.cache
    def start(r: int, k: int) -> float:
        a = programs[r][k]
        t = 0.0
        if k:
            t = send_end(r, k - 1) if costs.p2p_blocking and sends(programs[r][k - 1]) else end(r, k - 1)
        for dep in depends_on(a, S, schedule.chain_starts):
            pr, pk = where[producer[(dep.signal, dep.stage, dep.microbatch)]]
            t = max(t, send_end(pr, pk) if pr != r else end(pr, pk))
        return t

    return {(r, k): (start(r, k), end(r, k)) for r, prog in enumerate(programs) for k in range(len(prog))}
