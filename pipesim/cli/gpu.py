"""``pipesim gpu list`` (the presets) and ``pipesim gpu show`` (every number pipesim uses for a GPU and where it
comes from)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipesim.cli.flags import presets
from pipesim.cli.group import short_help
from pipesim.cli.options import plain_options
from pipesim.cli.render import console, emit_json

if TYPE_CHECKING:
    from pipesim.specs.gpu import GPUSpec

__all__ = ["gpu_group"]


@click.group("gpu", short_help=short_help("gpu"))
def gpu_group() -> None:
    """GPU presets and their calibrated efficiency profiles: list them, or show where every number of one
    comes from."""


@gpu_group.command("list")
@plain_options("as_json", "wide", as_json={"help": "Print JSON: one object per preset (SI units)."})
def gpu_list_cmd(as_json: bool) -> None:
    """List the GPU presets: dense peaks, HBM, board power and the server every command defaults to
    (``pipesim gpu show NAME`` for every number's source)."""
    from rich.table import Table

    from pipesim.specs.gpu import GPU_PRESETS

    def cluster(g: GPUSpec) -> str:
        srv = g.server
        return f"{srv.name} ({srv.topology})" if srv.topology else f"{srv.name} (two-level)"

    if as_json:
        emit_json(
            [
                {
                    "name": g.name,
                    "peak_flops": dict(g.peak_flops),
                    "hbm_bytes": g.hbm_bytes,
                    "hbm_Bps": g.hbm_Bps,
                    "tdp_w": g.tdp_w,
                    "server": g.server.name,
                    "topology": g.server.topology,
                }
                for g in GPU_PRESETS.values()
            ]
        )
        return
    table = Table(
        title="GPU presets (dense TFLOP/s = 1e12 FLOP/s; GB = 1e9 B; TB/s = 1e12 B/s)", title_justify="left"
    )
    for col in ("name", "BF16/FP16", "FP8", "FP4", "HBM GB", "HBM TB/s", "TDP W", "default cluster"):
        table.add_column(
            col, no_wrap=col == "name", justify="left" if col in ("name", "default cluster") else "right"
        )
    for g in GPU_PRESETS.values():
        peaks = g.peak_flops
        half = peaks.get("bf16", peaks.get("fp16"))
        table.add_row(
            g.name,
            f"{half / 1e12:g}" if half else "-",
            f"{peaks['fp8'] / 1e12:g}" if "fp8" in peaks else "-",
            f"{peaks['fp4'] / 1e12:g}" if "fp4" in peaks else "-",
            f"{g.hbm_bytes / 1e9:g}",
            f"{g.hbm_Bps / 1e12:g}",
            f"{g.tdp_w:g}" if g.tdp_w else "-",
            cluster(g),
        )
    console().print(table)


@gpu_group.command("show")
@click.argument("gpu_arg", metavar="GPU", shell_complete=presets("gpu"))
@plain_options("as_json", "config")
def gpu_show_cmd(gpu_arg: str, as_json: bool) -> None:
    """Every number pipesim uses for GPU (a preset name or a GPU .toml) and where it comes from: datasheet
    values, hardware facts, and the published measurements each efficiency value was fitted to."""
    from rich.markup import escape
    from rich.table import Table

    from pipesim.cli.config import inline_spec
    from pipesim.io.readers import resolve_gpu
    from pipesim.specs.gpu import provenance

    rows = provenance(inline_spec(gpu_arg) or resolve_gpu(gpu_arg))
    if as_json:
        emit_json([{"name": n, "value": v, "unit": u, "source": src} for n, v, u, src in rows])
        return
    table = Table(title=escape(f"GPU {gpu_arg}"), title_justify="left")
    for col in ("name (unit)", "value", "source"):
        table.add_column(col, overflow="fold", justify="right" if col == "value" else "left")
    for n, v, u, src in rows:
        table.add_row(escape(f"{n} ({u})" if u else n), escape(v), escape(src))  # sources quote "[server]"
    console(table).print(table)
