"""Speed of ``pipesim plan`` on a mixture-of-experts model (issue 12, part 6).

DeepSeek-V3 (671B, 256 experts, 61 layers) on 1,024 H100 SXM (dgx-h100 topology, 128 nodes), global batch
8192, sequence 4096, fp8, uneven layers allowed (61 is prime), the default search space with cp, ep and etp
searched (ep over the divisors of 256, etp 1 or tp, cp 1 only at this length). Target (issue 12): at most
30 s on the 2-core development machine, top 16 simulated in full.

Prints layouts enumerated, candidates estimated, feasible, seconds end to end next to the target (and this
process's CPU seconds, the figure to read on a shared machine), the candidates per second of the estimate
phase and the winner. Every candidate's memory is estimated (or bounded above HBM by its weights, gradients
and optimizer state alone); the step time of each that fits (pipesim.plan.estimate.Estimator.screen).
The on-disk facts cache (pipesim.plan.facts) is whatever ``PIPESIM_CACHE_DIR`` points at: set it to an empty
directory for a cold run.

Issue 17 asks the same of 2,048 H100 (``--nodes 256``).

Run: python benchmarks/plan_moe.py [--workers N] [--nodes 128|256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesim.plan.executors import ExecutorSpec  # noqa: E402
from pipesim.plan.search import PlanCluster, PlanRequest, SearchSpace, plan  # noqa: E402
from pipesim.specs.gpu import get_gpu  # noqa: E402
from pipesim.specs.model import get_model  # noqa: E402

TARGET_S = 30.0  # seconds end to end on the 2-core development machine (issue 12, part 6; issue 17, part 3)


def main(workers: int, nodes: int) -> None:
    """Plan once on ``nodes`` DGX H100 nodes and print one row and the winner."""
    req = PlanRequest(
        get_model("deepseek-v3"),
        PlanCluster(get_gpu("h100-sxm"), nodes, 8, "dgx-h100"),
        8192,
        seq_length=4096,
        precision="fp8",
        space=SearchSpace(uneven_layers=True),
        top_k=16,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    res = plan(req, ExecutorSpec(workers=workers))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"DeepSeek-V3, {8 * nodes:,} x H100 SXM (dgx-h100, {nodes} nodes), global batch 8192, seq 4096, fp8, "
        "uneven layers"
    )
    print(
        f"{'workers':>7} {'enumerated':>10} {'candidates':>10} {'feasible':>8} {'seconds':>8} {'CPU s':>8} "
        f"{'cand/s':>8}"
    )
    print(
        f"{workers:>7} {res.enumerated:>10,} {res.candidates:>10,} {res.feasible:>8,} {dt:>8.2f} {cpu:>8.2f} "
        f"{res.candidates_per_s:>8,.0f} (target <= {TARGET_S:.0f} s)"
    )
    if res.entries:
        best = res.best
        print(f"best: {best.candidate.label()}  {best.step_time_s:.2f} s/step  MFU {best.mfu:.1%}")
    else:
        print("no layout fits")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=128)
    args = parser.parse_args()
    main(args.workers, args.nodes)
