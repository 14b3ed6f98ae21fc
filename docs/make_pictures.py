"""Generate the tutorial's pictures and terminal outputs from the real commands.

Each picture is written by a ``pipesim`` command run as a user runs it, with ``--image`` (kaleido and the
system Chromium); terminal outputs are captured as printed to a pipe. Everything lands in docs/generated/ (not committed: CI regenerates it before
``mkdocs build --strict``).

    python docs/make_pictures.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "generated"

GANTT = ["gantt", "--model", "gpt-1.7b", "--gpu", "a100-80gb", "--tp", "2", "--pp", "4", "--vpp", "2",
         "--global-batch-size", "16", "--schedules", "1f1b,interleaved-1f1b,zb-v"]  # fmt: skip
SIMULATE = ["simulate", "--model", "gpt-1.7b", "--gpu", "a100-80gb", "--tp", "2", "--pp", "4", "--vpp", "2",
            "--global-batch-size", "16"]  # fmt: skip
COMPARE = ["compare", "--pp", "4", "--microbatches", "8"]
PLAN = ["plan", "--model", "gpt-1.7b", "--gpu", "a100-80gb", "--nodes", "2", "--global-batch-size", "64",
        "--top-k", "4"]  # fmt: skip
ROOFLINE = ["roofline", "--model", "gpt-1.7b", "--gpu", "h100-sxm", "--tp", "2", "--precision", "bf16,fp8"]
TOPOLOGY = ["topo", "draw", "dgx-h100", "--nodes", "4", "--fabric", "rail"]


def pipesim(*args: str) -> str:
    """Run ``pipesim ARGS`` from the repository (as ``python -m cli``) and return what it printed."""
    done = subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pipesim {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for args, name in ((COMPARE, "compare"), (SIMULATE, "simulate")):
        text = f"$ pipesim {' '.join(args)}\n" + pipesim(*args)
        (OUT / f"{name}.txt").write_text(text, encoding="utf-8")
    for args, name in ((GANTT, "gantt"), (PLAN, "plan"), (ROOFLINE, "roofline"), (TOPOLOGY, "topology")):
        pipesim(*args, "--image", str(OUT / f"{name}.png"))
    print(f"wrote {', '.join(sorted(p.name for p in OUT.iterdir()))} to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
