"""``pipesim collective``: an nccl-tests-style sweep of one collective on a topology."""

from __future__ import annotations

import click

from pipesim.cli.flags import COLLECTIVE_OPS
from pipesim.cli.group import short_help
from pipesim.cli.options import ClusterFlags, cluster_options, plain_options
from pipesim.cli.render import emit_json
from pipesim.cli.topo import NODES_ONE
from pipesim.errors import InputError

__all__ = ["collective_cmd"]

COLLECTIVE_HELP = """Time a collective on a topology, as an nccl-tests-style sweep over message sizes.

OP is all-reduce, all-gather, reduce-scatter, all-to-all, broadcast or send-recv (rank 0 to the last rank).
Sizes follow nccl-tests: the whole buffer, K/M/G = 2^10/2^20/2^30 bytes; -b 8 -e 8G -f 2 sweeps 8 B to 8 GiB.

\b
  algbw = size / time            (GB/s = 1e9 B/s)
  busbw = algbw x factor         all-reduce 2(n-1)/n; all-gather, reduce-scatter, all-to-all (n-1)/n;
                                 broadcast, send-recv 1   (NVIDIA/nccl-tests doc/PERFORMANCE.md)
"""


@click.command("collective", help=COLLECTIVE_HELP, short_help=short_help("collective"))
@click.argument("op", type=click.Choice(COLLECTIVE_OPS))
@cluster_options(
    ("topology", "nodes", "gpus", "fabric", "oversubscription", "max_gpus"),
    topology={"required": True, "help": "Preset name or TOML file."},
    nodes=NODES_ONE,
    gpus={"help": "GPUs in the group (ranks 0..G-1) [default: all]."},
)
@plain_options("algo", "minbytes", "maxbytes", "stepfactor")
@plain_options("as_json", "wide", "config", as_json={"help": "Print JSON: one row per size."})
def collective_cmd(
    op: str, cluster: ClusterFlags, algo: str, minbytes: str, maxbytes: str, stepfactor: int, as_json: bool
) -> None:
    from pipesim.comm.topology import TopologyCommModel, size_sweep
    from pipesim.io.units import parse_size

    spec = cluster.spec()
    assert spec.nodes is not None  # --nodes defaults to 1 here
    n = spec.nodes * spec.node_gpus() if cluster.gpus is None else cluster.gpus
    if n < 2:
        raise InputError(f"--gpus={n} must be >= 2 for a collective")
    model = cluster.comm(n)
    assert isinstance(model, TopologyCommModel)
    graph = model.graph
    ranks = [0, n - 1] if op == "send-recv" else list(range(n))
    sizes = size_sweep(
        parse_size(minbytes, "-b/--minbytes"), parse_size(maxbytes, "-e/--maxbytes"), stepfactor
    )
    if op == "send-recv" and algo == "auto":
        algo = "direct"
    rows = model.sweep(op, ranks, sizes, algo)
    if as_json:
        emit_json(
            [
                {
                    "size_bytes": r.size_bytes,
                    "time_s": r.time_s,
                    "algbw_GBps": r.algbw_GBps,
                    "busbw_GBps": r.busbw_GBps,
                    "algo": r.algo,
                }
                for r in rows
            ]
        )
        return
    out = click.echo
    out(f"# {op} on {graph.graph['name']} x {graph.graph['nodes']} node(s), {len(ranks)} GPUs, algo {algo}")
    out("# size in bytes; time in us; algbw, busbw in GB/s (1 GB/s = 1e9 B/s)")
    out(f"#{'size':>14} {'time':>12} {'algbw':>9} {'busbw':>9}  algo")
    out(f"#{'(B)':>14} {'(us)':>12} {'(GB/s)':>9} {'(GB/s)':>9}")
    for r in rows:
        out(f"{r.size_bytes:>15} {r.time_s * 1e6:>12.2f} {r.algbw_GBps:>9.2f} {r.busbw_GBps:>9.2f}  {r.algo}")
    peak = max(rows, key=lambda r: r.busbw_GBps)
    out(f"# peak busbw {peak.busbw_GBps:.2f} GB/s at {peak.size_bytes} B")
