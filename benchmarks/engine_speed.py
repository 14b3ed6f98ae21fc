"""Speed and memory of schedule generation and simulation, for every registered family (issue 17, part 5).

For each family in the registry and pp = 4, 8, 16, 64, the microbatch count is chosen so that the schedule has
about ``--actions`` actions (default 1e6; a multiple of 2 pp, which every family accepts: interleaved 1F1B
needs a multiple of pp, DualPipeV at least 2 pp). Each case is generated and simulated ``--runs`` times
(default 5) and the median of each phase is reported:

* ``generate_s``: building the schedule (``schedules.build_schedule``); target >= 5 M actions/s;
  ``generate_first_s`` is the first of the runs: the zero-bubble and V-memory orders extended from a few
  small reference builds (schedules.periodic) keep what those builds showed in the process, so the first
  build of a case pays for them and the later ones (the median) do not (the compiled kernels of
  schedules.compiled are loaded before any case, as the engine's are: about a second once per process);
* ``simulate_s``: the timeline engine (``pipesim.sim.engine.simulate``); target >= 10 M actions/s
  (``actions_per_s`` = actions / simulate_s);
* ``metrics_s``: ``pipeline_metrics`` on the timeline (reported, no target);
* ``peak_bytes_per_action``: peak memory traced (tracemalloc, numpy buffers included) while simulating,
  in one extra run, divided by the actions; target <= 100 bytes/action;
* ``timeline_bytes_per_action``: the bytes the finished :class:`Timeline` arrays hold, per action.

Costs are uniform (F 0.25 ms, B 0.5 ms, W a third of B for split-backward families, 10 us transfers, 100 MB
of activations): the engine's work does not depend on the values.

A case whose generations take more than 10 s in all stops repeating (``runs`` in the record). Run:
``python benchmarks/engine_speed.py`` (a few minutes on 2 cores; the automatic zero-bubble orders extend a
periodic steady state found on small builds, schedules.periodic: their first build takes about a second at
pp 64, and the V-memory orders whose search has not settled within the sampled sizes (zb-v-half at pp 16,
both at pp 64) are built directly, by the compiled list scheduler of schedules.compiled, about 0.15 s per build),
``--quick`` (1e5 actions, 3 runs), ``--json`` for the records, ``--schedules`` to pick families, ``--clock cpu``
on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesim.sim.engine import OpCosts, Timeline, simulate  # noqa: E402
from pipesim.sim.metrics import pipeline_metrics  # noqa: E402
from schedules import build_schedule  # noqa: E402
from schedules.compiled import load_all  # noqa: E402
from schedules.ir import Schedule  # noqa: E402
from schedules.registry import get_family, schedule_names  # noqa: E402

GENERATE_TARGET = 5e6  # actions/s, issue 17 part 2
SIMULATE_TARGET = 10e6  # actions/s, issue 17 part 1
MEMORY_TARGET = 100.0  # bytes/action, issue 17 part 4
PPS = (4, 8, 16, 64)
VPP = 4  # chunks per rank for families that take vpp
SLOW_CASE_S = 10.0  # stop repeating a case once its generations took this long (its figure is far off anyway)


def microbatches_for(name: str, pp: int, vpp: int, actions: int) -> int:
    """The multiple of 2 pp that brings ``name``'s schedule closest to ``actions`` actions."""
    family = get_family(name)
    per_microbatch = pp * family.chunks(vpp) * (3 if family.split_backward else 2)
    step = 2 * pp
    return max(step, round(actions / per_microbatch / step) * step)


def uniform_costs(schedule: Schedule, split: bool) -> OpCosts:
    """The benchmark's costs (see the module docstring)."""
    return OpCosts.uniform(
        schedule.num_stages,
        0.25e-3,
        0.5e-3,
        weight_s=0.5e-3 / 3 if split else 0.0,
        p2p_s=1e-5,
        activation_bytes=1e8,
    )


def timeline_bytes(timeline: Timeline) -> int:
    """Bytes held by the timeline's arrays."""
    return sum(v.nbytes for v in vars(timeline).values() if hasattr(v, "nbytes"))


def measure(
    name: str, pp: int, actions: int, runs: int, clock: Any = time.perf_counter, method: str = "auto"
) -> dict[str, Any]:
    """One record: median generate / simulate / metrics seconds over ``runs`` runs (fewer when a generator is
    so slow that the runs would exceed SLOW_CASE_S; ``runs`` in the record says how many), and memory."""
    vpp = VPP if get_family(name).uses_vpp else 1
    m = microbatches_for(name, pp, vpp, actions)
    split = get_family(name).split_backward
    gen, sim, met = [], [], []
    for _ in range(runs):
        gc.collect()
        t0 = clock()
        schedule = build_schedule(name, pp, m, vpp)
        t1 = clock()
        costs = uniform_costs(schedule, split)
        t2 = clock()
        timeline = simulate(schedule, costs, method=method)
        t3 = clock()
        pipeline_metrics(schedule, costs, timeline)
        t4 = clock()
        gen.append(t1 - t0)
        sim.append(t3 - t2)
        met.append(t4 - t3)
        if sum(gen) > SLOW_CASE_S:
            break
    n = schedule.num_actions
    held = timeline_bytes(timeline)
    del timeline
    gc.collect()
    tracemalloc.start()
    simulate(schedule, costs, method=method)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    generate_s, simulate_s = statistics.median(gen), statistics.median(sim)
    return {
        "schedule": name,
        "pp": pp,
        "microbatches": m,
        "vpp": vpp,
        "actions": n,
        "generate_s": generate_s,
        "generate_first_s": gen[0],
        "simulate_s": simulate_s,
        "metrics_s": statistics.median(met),
        "actions_per_s": n / simulate_s,
        "generate_actions_per_s": n / generate_s,
        "peak_bytes_per_action": peak / n,
        "timeline_bytes_per_action": held / n,
        "runs": len(gen),
    }


def print_table(records: list[dict[str, Any]], runs: int) -> None:
    """The human-readable table, each figure next to its target."""
    print(
        f"generate + simulate, median of {runs} runs. Targets: generate >= {GENERATE_TARGET / 1e6:.0f} M actions/s, "
        f"simulate >= {SIMULATE_TARGET / 1e6:.0f} M actions/s, peak while simulating <= {MEMORY_TARGET:.0f} B/action"
    )
    head = (
        f"{'schedule':<17} {'pp':>3} {'m':>6} {'vpp':>3} {'actions':>9} {'gen s':>7} {'gen M/s':>8} {'1st M/s':>7} "
        f"{'sim s':>7} {'sim M/s':>8} {'metr s':>7} {'peak B/a':>8} {'tl B/a':>7} {'runs':>4}"
    )
    print(head)
    for r in records:
        gen_ok = "ok" if r["generate_actions_per_s"] >= GENERATE_TARGET else "<5"
        sim_ok = "ok" if r["actions_per_s"] >= SIMULATE_TARGET else "<10"
        mem_ok = "ok" if r["peak_bytes_per_action"] <= MEMORY_TARGET else ">100"
        print(
            f"{r['schedule']:<17} {r['pp']:>3} {r['microbatches']:>6} {r['vpp']:>3} {r['actions']:>9,} "
            f"{r['generate_s']:>7.3f} {r['generate_actions_per_s'] / 1e6:>5.2f}{gen_ok:>3} "
            f"{r['actions'] / r['generate_first_s'] / 1e6:>7.2f} "
            f"{r['simulate_s']:>7.3f} {r['actions_per_s'] / 1e6:>5.2f}{sim_ok:>3} "
            f"{r['metrics_s']:>7.3f} {r['peak_bytes_per_action']:>5.0f}{mem_ok:>4} "
            f"{r['timeline_bytes_per_action']:>6.0f} {r['runs']:>4}"
        )


def main() -> None:
    """Measure every family at every pp and print the table (or the JSON records)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the records as a JSON list")
    parser.add_argument("--quick", action="store_true", help="1e5 actions, 3 runs")
    parser.add_argument("--actions", type=float, default=None, help="actions per schedule (default 1e6)")
    parser.add_argument("--runs", type=int, default=None, help="runs per case (default 5)")
    parser.add_argument("--schedules", default="", help="comma-separated families (default: all registered)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed seconds; cpu: this process's CPU seconds (steadier on a shared machine)",
    )
    parser.add_argument(
        "--method",
        choices=("auto", "compiled", "wavefront"),
        default="auto",
        help="engine evaluation (wavefront: the numpy reference, the engine before issue 17)",
    )
    parser.add_argument("--pp", default=",".join(map(str, PPS)), help="comma-separated pipeline sizes")
    args = parser.parse_args()
    actions = int(args.actions if args.actions is not None else (1e5 if args.quick else 1e6))
    runs = args.runs if args.runs is not None else (3 if args.quick else 5)
    names = [n for n in args.schedules.split(",") if n] or schedule_names()
    pps = [int(p) for p in args.pp.split(",") if p]
    warm = build_schedule("1f1b", 2, 2)
    simulate(warm, OpCosts.uniform(2, 1.0, 1.0), method="compiled")  # load (or compile) the kernels first
    load_all()  # ... and the searching generators' (schedules.compiled)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    records = [measure(name, pp, actions, runs, clock, args.method) for name in names for pp in pps]
    for record in records:
        record["clock"] = args.clock
        record["method"] = args.method
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print_table(records, runs)
        print(f"clock: {args.clock}, engine: {args.method}")


if __name__ == "__main__":
    main()
