"""``pipesim gpu show``: every number pipesim uses for a GPU and where it comes from."""

from __future__ import annotations

import click

from pipesim.cli.flags import presets
from pipesim.cli.group import short_help
from pipesim.cli.options import plain_options
from pipesim.cli.render import console, emit_json

__all__ = ["gpu_group"]


@click.group("gpu", short_help=short_help("gpu"))
def gpu_group() -> None:
    """GPU presets and their calibrated efficiency profiles."""


@gpu_group.command("show")
@click.argument("gpu_arg", metavar="GPU", shell_complete=presets("gpu"))
@plain_options("as_json", "config")
def gpu_show_cmd(gpu_arg: str, as_json: bool) -> None:
    """Every number pipesim uses for GPU (a preset name or a GPU .toml) and where it comes from: datasheet
    values, hardware facts, and the published measurements each efficiency value was fitted to."""
    from rich.table import Table

    from pipesim.cli.config import inline_spec
    from pipesim.io.readers import resolve_gpu
    from pipesim.specs.gpu import provenance

    rows = provenance(inline_spec(gpu_arg) or resolve_gpu(gpu_arg))
    if as_json:
        emit_json([{"name": n, "value": v, "unit": u, "source": src} for n, v, u, src in rows])
        return
    table = Table(title=f"GPU {gpu_arg}", title_justify="left")
    for col in ("name (unit)", "value", "source"):
        table.add_column(col, overflow="fold", justify="right" if col == "value" else "left")
    for n, v, u, src in rows:
        table.add_row(f"{n} ({u})" if u else n, v, src)
    console(table).print(table)
