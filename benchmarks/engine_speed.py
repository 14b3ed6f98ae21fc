"""Speed and memory of generate + simulate + metrics (issue 2, part 8).

Prints actions per second and peak traced memory per action for interleaved 1F1B (vpp=4) at about 10K
actions (pp=16, m=80: interleaving needs m to be a multiple of pp), 100K, the target size pp=64, m=1024
(524,288 actions) and 1M actions. Target: >= 1,000,000 actions/s and <= 200 bytes/action at the target size; time linear in actions.

Run: python benchmarks/engine_speed.py
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesim.sim.engine import OpCosts, simulate  # noqa: E402
from pipesim.sim.metrics import pipeline_metrics  # noqa: E402
from schedules import build_schedule  # noqa: E402


def one_run(pp: int, m: int, vpp: int) -> tuple[int, float]:
    """Generate, simulate and measure once; return (actions, seconds)."""
    t0 = time.perf_counter()
    schedule = build_schedule("interleaved-1f1b", pp, m, vpp)
    costs = OpCosts.uniform(schedule.num_stages, 0.25e-3, 0.5e-3, p2p_s=1e-5, activation_bytes=1e8)
    timeline = simulate(schedule, costs)
    pipeline_metrics(schedule, costs, timeline)
    return schedule.num_actions, time.perf_counter() - t0


def peak_bytes(pp: int, m: int, vpp: int) -> float:
    """Peak memory traced while generating, simulating and measuring (numpy buffers included)."""
    gc.collect()
    tracemalloc.start()
    n, _ = one_run(pp, m, vpp)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / n


def main() -> None:
    """Print the table."""
    print("interleaved-1f1b, vpp=4: generate + simulate + metrics (best of 3 runs)")
    print(
        f"{'pp':>4} {'microbatches':>12} {'actions':>10} {'seconds':>9} {'actions/s':>12} {'ns/action':>10}"
    )
    for pp, m in ((16, 80), (64, 192), (64, 1024), (64, 2048)):
        best = min(one_run(pp, m, 4)[1] for _ in range(3))
        n = 2 * pp * 4 * m
        print(f"{pp:>4} {m:>12} {n:>10,} {best:>9.3f} {n / best:>12,.0f} {best / n * 1e9:>10.0f}")
    print(f"peak memory at pp=64, m=1024, vpp=4: {peak_bytes(64, 1024, 4):.0f} bytes/action (target <= 200)")


if __name__ == "__main__":
    main()
