"""Speed of one end-to-end ``simulate`` of the SC21 Table 1 trillion-parameter configuration (issue 3, part 9).

3072 A100 GPUs, TP 8, PP 64, DP 6, global batch 3072, microbatch 1 (512 microbatches per pipeline, 65,536
actions), full recomputation. Measures the whole path a user waits for: build the scenario, generate the
schedule, compute per-stage costs, simulate, compute metrics and memory, and render the JSON report. Also times
the ``pipesim simulate ... --json`` command in a fresh process (Python start-up and imports included).
Target: <= 1 s end to end.

Run: python benchmarks/simulate_speed.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipesim.sim.scenario import Scenario, simulate_scenario  # noqa: E402
from pipesim.specs.gpu import get_gpu  # noqa: E402
from pipesim.specs.layout import Layout  # noqa: E402
from pipesim.specs.model import get_model  # noqa: E402

ARGS = [
    "simulate",
    "--model",
    "gpt-1t",
    "--gpu",
    "a100-80gb",
    "--tp",
    "8",
    "--pp",
    "64",
    "--dp",
    "6",
    "--gpus",
    "3072",
    "--micro-batch-size",
    "1",
    "--global-batch-size",
    "3072",
    "--recompute",
    "full",
    "--json",
]


def in_process() -> float:
    """Seconds for one scenario -> report -> JSON, in this process (imports already done)."""
    t0 = time.perf_counter()
    layout = Layout(tp=8, pp=64, dp=6, micro_batch_size=1, global_batch_size=3072, recompute="full")
    report = simulate_scenario(Scenario(get_model("gpt-1t"), get_gpu("a100-80gb"), layout))
    json.dumps(report.as_dict())
    return time.perf_counter() - t0


def fresh_process() -> float:
    """Seconds for ``python -m cli simulate ...`` in a new interpreter."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli", *ARGS], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    layout = Layout(tp=8, pp=64, dp=6, micro_batch_size=1, global_batch_size=3072, recompute="full")
    report = simulate_scenario(Scenario(get_model("gpt-1t"), get_gpu("a100-80gb"), layout))
    print(
        f"gpt-1t, 3072 GPUs, TP 8 x PP 64 x DP 6, batch 3072: {report.schedule.num_actions:,} actions, "
        f"predicted step {report.step_time_s:.2f} s, {report.hardware_tflops_per_gpu:.1f} hardware TFLOP/s per GPU"
    )
    runs = [in_process() for _ in range(5)]
    print(
        f"in process (scenario -> JSON): median {statistics.median(runs) * 1e3:.1f} ms, max {max(runs) * 1e3:.1f} ms"
    )
    cli_runs = [fresh_process() for _ in range(3)]
    print(
        f"fresh process (python -m cli simulate ... --json): median {statistics.median(cli_runs):.2f} s, "
        f"max {max(cli_runs):.2f} s  (target <= 1 s)"
    )


if __name__ == "__main__":
    main()
