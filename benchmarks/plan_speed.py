"""Speed of ``pipesim plan`` (issue 6, part 2; issue 17, part 3).

GPT-3 175B on 1,024 A100 80GB (dgx-a100 topology, 128 nodes), global batch 1536, the full default search
space (every registered schedule, micro-batches 1/2/4/8, recompute none/selective/full, distributed optimizer
and sequence parallelism on/off), top 16 simulated in full. Target (issue 17): >= 20,000 candidates estimated
per second in one process, more with 2 workers. For scale: Calculon's optimizer evaluates 200 to 440
configurations per second (issue 17).

Prints, per run (each in a fresh interpreter, so no in-memory cache is warm): layouts enumerated, candidates
estimated, feasible, seconds end to end (enumeration, estimates, full simulation of the top 16), seconds of
the estimate phase, CPU seconds of the plan (its worker processes included), and candidates per second of the
estimate phase next to the target (every candidate's memory is estimated, or bounded above HBM by its weights,
gradients and optimizer state alone; the step time of each that fits).
Runs: in process with an empty on-disk facts cache (pipesim.plan.facts: the
zero-bubble orders and schedule profiles are built), then in process and with 2 processes reading the facts
the first run wrote (a fresh temporary cache directory, so earlier plans on this machine do not count).

Run: python benchmarks/plan_speed.py
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesim.plan.executors import ExecutorSpec  # noqa: E402
from pipesim.plan.search import PlanCluster, PlanRequest, plan  # noqa: E402
from pipesim.specs.gpu import get_gpu  # noqa: E402
from pipesim.specs.model import get_model  # noqa: E402

TARGET = 20_000  # candidates per second of the estimate phase, one process (issue 17, part 3)


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the worker processes): the figure to read on a
    shared machine, where wall-clock seconds depend on the other jobs."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def one(workers: int, label: str) -> None:
    """Plan once with ``workers`` processes and print one row (run in a fresh interpreter: no warm caches)."""
    req = PlanRequest(
        get_model("gpt3-175b"), PlanCluster(get_gpu("a100-80gb"), 128, 8, "dgx-a100"), 1536, top_k=16
    )
    t0, c0 = time.perf_counter(), _cpu_s()
    res = plan(req, ExecutorSpec(workers=workers))
    dt, cpu = time.perf_counter() - t0, _cpu_s() - c0
    print(
        f"{label:<26} {res.enumerated:>10,} {res.candidates:>10,} {res.feasible:>8,} {dt:>8.2f} {cpu:>8.2f} "
        f"{res.estimate_s:>10.2f} {res.candidates_per_s:>8,.0f} (target >= {TARGET:,})",
        flush=True,
    )
    if label.startswith("cold"):
        best = res.best
        print(
            f"best: {best.candidate.label()}  {best.step_time_s:.2f} s/step  MFU {best.mfu:.1%}  HFU {best.hfu:.1%}"
        )


def main() -> None:
    """Print the figures, each executor in a fresh interpreter."""
    print("GPT-3 175B, 1,024 x A100 80GB (dgx-a100, 128 nodes), global batch 1536, default search space")
    print(
        f"{'run':<26} {'enumerated':>10} {'candidates':>10} {'feasible':>8} {'seconds':>8} {'CPU s':>8} "
        f"{'estimate s':>10} {'cand/s':>8}"
    )
    sys.stdout.flush()
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, PIPESIM_CACHE_DIR=cache)
        for workers, label in (
            (1, "cold facts, in-process"),
            (1, "warm facts, in-process"),
            (2, "warm facts, 2 processes"),
        ):
            subprocess.run([sys.executable, __file__, "--workers", str(workers), label], check=True, env=env)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--workers":
        one(int(sys.argv[2]), sys.argv[3])
    else:
        main()
