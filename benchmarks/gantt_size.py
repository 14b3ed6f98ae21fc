"""Page size and headless-Chromium render time of a large Gantt page.

The target (issue 5): a 64-rank, 512-microbatch interleaved 1F1B schedule with vpp 2 gives a page of at most
30 MB that renders within 10 s. Prints the span count, build time, page size and two render times: the boot
script's own (JSON parse + Plotly.newPlot + one frame) and the wall time from navigation to drawn.

    python benchmarks/gantt_size.py [--pp 64] [--microbatches 512] [--vpp 2] [--keep page.html]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesim.figures.gantt import gantt_page  # noqa: E402
from pipesim.sim.compare import CompareRequest  # noqa: E402
from pipesim.sim.series import simulate_series  # noqa: E402
from tests.chromium import BrowserError, Chromium, find_chromium  # noqa: E402

SIZE_LIMIT_BYTES = 30e6  # issue 5: at most 30 MB
RENDER_LIMIT_S = 10.0  # issue 5: renders within 10 s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", default="interleaved-1f1b")
    parser.add_argument("--pp", type=int, default=64)
    parser.add_argument("--microbatches", type=int, default=512)
    parser.add_argument("--vpp", type=int, default=2)
    parser.add_argument("--keep", help="also write the page here")
    args = parser.parse_args()

    request = CompareRequest(
        schedules=(args.schedule,), pp=args.pp, microbatches=args.microbatches, vpp=args.vpp
    )
    t0 = time.perf_counter()
    panels = simulate_series(request)
    t1 = time.perf_counter()
    page = gantt_page(panels, [("schedule", args.schedule)], gpu_memory_bytes=80 * 2**30)
    t2 = time.perf_counter()
    data = page.encode()
    spans = sum(p.num_bars for p in panels)
    compute = sum(g.size for p in panels for g in p.groups if g.key in "FBIW")
    print(f"{args.schedule} pp={args.pp} m={args.microbatches} vpp={args.vpp}")
    print(f"bars drawn: {spans} ({compute} compute, {spans - compute} communication)")
    print(f"simulate + series: {t1 - t0:.2f} s; figure + page: {t2 - t1:.2f} s")
    print(f"page size: {len(data) / 1e6:.2f} MB (limit {SIZE_LIMIT_BYTES / 1e6:g} MB)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "gantt.html"
        path.write_bytes(data)
        if find_chromium() is None:
            print("render time: not measured (no Chromium on this machine)")
            return
        try:
            with Chromium(timeout_s=120) as browser:
                tab = browser.new_tab(1400, 900)
                tab.go_offline()
                start = time.perf_counter()
                tab.navigate(path.resolve().as_uri())
                boot_ms = tab.evaluate("window.pipesimReady")
                # Two more frames: the drawn SVG has been painted once, not just built.
                tab.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                wall = time.perf_counter() - start
                errors = tab.console_errors()
        except BrowserError as exc:
            print(f"render time: not measured ({exc})")
            return
    print(
        f"render time: {wall:.2f} s wall from navigation to painted (boot script {boot_ms / 1e3:.2f} s; limit {RENDER_LIMIT_S:g} s)"
    )
    print(f"console errors: {len(errors)}")
    ok = len(data) <= SIZE_LIMIT_BYTES and wall <= RENDER_LIMIT_S and not errors
    print("within targets" if ok else "OUTSIDE TARGETS")


if __name__ == "__main__":
    main()
