"""Peak memory and time of the largest runs the default work budgets accept (issue 15, part 3).

Each row is one fresh ``pipesim`` process just under one limit of :mod:`pipesim.sim.budget`:
4,000,000 compute actions (--max-actions), 250,000 Gantt bars (--max-bars), 32,768 topology GPUs
(--max-gpus). Peak memory is the process's maximum resident set size (getrusage). Target: every row under
about 2 GiB.

Run: python benchmarks/budgets.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNS = {
    "compare, 1f1b, 8 ranks x 250,000 microbatches (4.0M actions)": [
        "compare", "--schedules", "1f1b", "--pp", "8", "-m", "250000", "--json",
    ],
    "simulate gpt-1.7b, 1 rank x 2,000,000 microbatches (4.0M actions)": [
        "simulate", "--model", "gpt-1.7b", "--global-batch-size", "2000000", "--json",
    ],
    "gantt page, 1f1b, 16 ranks x 7,812 microbatches (249,984 bars)": [
        "gantt", "--schedules", "1f1b", "--pp", "16", "-m", "7812", "-o", "{tmp}/page.html",
    ],
    "topo show dgx-h100, 4,096 nodes (32,768 GPUs)": ["topo", "show", "dgx-h100", "--nodes", "4096", "--json"],
}  # fmt: skip

PROBE = (
    "import resource, sys\n"
    "sys.path.insert(0, {root!r})\n"
    "from cli import main\n"
    "code = 0\n"
    "try:\n"
    "    main({args!r}, prog_name='pipesim')\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def measure(args: list[str], tmp: str) -> tuple[int, float, float]:
    """(exit status, peak RSS in GiB, seconds) of one fresh process running ``pipesim ARGS``."""
    args = [a.replace("{tmp}", tmp) for a in args]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(root=str(ROOT), args=args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    code, kib = proc.stderr.strip().splitlines()[-1].split()
    return int(code), int(kib) * 1024 / 2**30, seconds


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'run at the limit':<70} {'exit':>4} {'peak GiB':>9} {'s':>7}")
        for label, args in RUNS.items():
            code, gib, seconds = measure(args, tmp)
            print(f"{label:<70} {code:>4} {gib:>9.2f} {seconds:>7.1f}")


if __name__ == "__main__":
    main()
