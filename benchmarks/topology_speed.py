"""Speed of topology building and collective costing (issue 4, part 7).

Targets: build a 2048-node (16,384-GPU) cluster in <= 5 s; cost one all-reduce over 4,096 GPUs (auto: ring,
tree and hierarchical evaluated, the fastest picked) in <= 100 ms on a fresh model (no cached paths); and show
how cheap repeated queries are once a group is cached.

Run: python benchmarks/topology_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipesim.comm.topology import TopologyCommModel  # noqa: E402
from pipesim.specs.placement import RankGrid  # noqa: E402
from topologies import build_cluster  # noqa: E402


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def main() -> None:
    """Print the timings."""
    for preset in ("dgx-h100", "dgx-a100", "pcie-8gpu"):
        t = best_of(3, lambda p=preset: build_cluster(p, 2048))  # type: ignore[misc]
        g = build_cluster(preset, 2048)
        print(
            f"build {preset} x 2048 nodes ({g.number_of_nodes():,} devices, {g.number_of_edges():,} links): "
            f"{t:.2f} s (target <= 5 s)"
        )
    g = build_cluster("dgx-h100", 512)
    ranks = list(range(4096))

    def fresh_all_reduce() -> None:
        TopologyCommModel.for_cluster(g, 4096).collective_s("all-reduce", 2**30, ranks)

    t = best_of(3, fresh_all_reduce)
    m = TopologyCommModel.for_cluster(g, 4096)
    c = m.best("all-reduce", 2**30, ranks)
    print(
        f"all-reduce 1 GiB over 4,096 GPUs (dgx-h100 x 512), fresh model incl. setup: {t * 1e3:.1f} ms "
        f"(target <= 100 ms); picks {c.algo}, {c.time_s(2**30) * 1e3:.2f} ms"
    )
    for algo in ("ring", "tree", "hierarchical"):
        tt = best_of(3, lambda a=algo: TopologyCommModel.for_cluster(g, 4096).cost("all-reduce", ranks, a))  # type: ignore[misc]
        print(f"  {algo:<12} alone, fresh model: {tt * 1e3:6.1f} ms")
    n = 10_000
    t0 = time.perf_counter()
    for i in range(n):
        m.collective_s("all-reduce", float(1 << (i % 30)), ranks)
    print(f"cached group, size sweep: {(time.perf_counter() - t0) / n * 1e6:.1f} us per query")
    # A plan-like loop: every (tp, dp, pp) layout of 4,096 GPUs, all its TP and DP groups, fresh model.
    layouts = [
        (tp, 4096 // tp // pp, pp)
        for tp in (1, 2, 4, 8)
        for pp in (1, 2, 4, 8, 16, 32)
        if 4096 % (tp * pp) == 0
    ]
    t0 = time.perf_counter()
    model = TopologyCommModel.for_cluster(g, 4096)
    groups = 0
    for tp, dp, pp in layouts:
        grid = RankGrid(tp, dp, pp)
        for grp in (grid.tp_group(0, 0), grid.dp_group(0, 0)):
            if len(grp) > 1:
                model.collective_s("all-reduce", 2**28, grp)
                groups += 1
    print(
        f"{len(layouts)} layouts of 4,096 GPUs, {groups} TP/DP groups costed: {time.perf_counter() - t0:.2f} s"
    )


if __name__ == "__main__":
    main()
