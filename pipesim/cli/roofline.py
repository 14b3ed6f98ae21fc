"""``pipesim roofline``: every operator of one transformer layer on the GPU's roofline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from pipesim.cli.group import short_help
from pipesim.cli.options import (
    ClusterFlags,
    Hardware,
    LayoutFlags,
    cluster_options,
    hardware_options,
    layout_options,
    plain_options,
)
from pipesim.cli.render import console, emit_json, split_names
from pipesim.cli.targets import check_targets
from pipesim.errors import InputError

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["roofline_cmd"]

ROOFLINE_LAYOUT = (
    "tp",
    "micro_batch_size",
    "seq_length",
    "precision",
    "attention",
    "recompute",
    "sequence_parallel",
    "tp_comm_overlap",
)

ROOFLINE_HELP = """Show every operator of one transformer layer on the GPU's roofline.

For each op (norms, QKV, attention, output projection, MLP GEMMs, element-wise kernels, TP collectives) of one
layer, one microbatch, one tensor-parallel rank: FLOPs, HBM bytes, arithmetic intensity, attainable FLOP/s =
min(peak, intensity x HBM bandwidth), predicted FLOP/s and time (the simulator's own per-op cost model),
compute- or memory-bound, and share of the layer's time. Example:

\b
  pipesim roofline --model llama3-70b --gpu h100-sxm --tp 8 --micro-batch-size 1 --seq-length 8192 \\
      --precision bf16,fp8 -o roofline.html

\b
Definitions:
  intensity     FLOPs per byte of HBM traffic (memory-bound kernels: nominal arithmetic per element)
  attainable    min(peak at the op's precision, intensity x HBM bandwidth)   [Williams et al. 2009]
  predicted     FLOPs / predicted time (the cost model's efficiencies included)
  ridge         peak / HBM bandwidth: ops with a higher intensity can be compute-bound
  units         MB = 1e6 bytes, GFLOP = 1e9, TFLOP/s = 1e12 FLOP/s, us = 1e-6 s
"""


@click.command("roofline", help=ROOFLINE_HELP, short_help=short_help("roofline"))
@hardware_options(model_required=True)
@layout_options(ROOFLINE_LAYOUT)
@cluster_options(("gpus_per_node", "intra_node_gbps", "topology", "max_gpus"))
@plain_options(
    "output",
    "image_path",
    "plotlyjs",
    "as_json",
    "wide",
    "config",
    output={"help": "Write the interactive HTML page here."},
)
def roofline_cmd(
    hw: Hardware,
    lay: LayoutFlags,
    cluster: ClusterFlags,
    output: str | None,
    image_path: str | None,
    plotlyjs: str,
    as_json: bool,
) -> None:
    from pipesim.cost.roofline import check_precision, roofline
    from pipesim.figures.roofline import TABLE_LEGEND
    from pipesim.io.atomic import write_outputs
    from pipesim.specs.layout import TRAIN_PRECISIONS

    precisions = split_names(lay.precision, "--precision")
    if not precisions:
        raise InputError("--precision is empty; give bf16, fp16, fp8, fp4, tf32 or fp32 (or a comma list)")
    model, gpu = hw.need_model(), hw.gpu
    cluster = cluster.for_gpu(gpu)
    for prec in precisions:
        check_precision(gpu, prec)
    check_targets({"-o": output}, image_path, report="the roofline tables")
    layout = lay.layout(
        global_batch_size=lay.micro_batch_size,
        precision=precisions[0] if precisions[0] in TRAIN_PRECISIONS else "bf16",
    )
    comm = cluster.comm(lay.tp)
    if cluster.topology:
        comm_note = f"TP collectives timed on the {cluster.topology} topology"
    else:
        comm_note = (
            f"TP collectives: ring at {cluster.intra_node_gbps:g} GB/s (1e9 B/s) per GPU inside a node (--topology "
            "for a real graph)"
        )
    tables = [roofline(model, layout, gpu, prec, comm=comm) for prec in precisions]
    files: list[tuple[str, bytes]] = []
    if output is not None:
        from pipesim.figures.page import page_files
        from pipesim.figures.roofline import roofline_html

        page = roofline_html(tables, [*_roofline_notes(tables), comm_note], plotlyjs)
        files += page_files(output, page, plotlyjs)
    if image_path is not None:
        from pipesim.figures.roofline import roofline_figure
        from pipesim.figures.static import figure_bytes

        files.append((image_path, figure_bytes(roofline_figure(tables), image_path)))
    write_outputs(files)  # all rendered first: a failure leaves no file behind
    if as_json:
        emit_json(
            {
                "model": model.name,
                "gpu": gpu.name,
                "tp": lay.tp,
                "micro_batch_size": lay.micro_batch_size,
                "seq_length": layout.seq(model),
                "attention": lay.attention,
                "recompute": lay.recompute,
                "sequence_parallel": lay.sequence_parallel,
                "roofs_flops_per_s": tables[0].roofs,
                "tables": [t.as_dict() for t in tables],
            }
        )
        return
    con = console()
    for t in tables:
        con.print(_roofline_rich_table(t))
    for note in [TABLE_LEGEND, *_roofline_notes(tables), comm_note]:
        con.print(note, highlight=False)
    for path in (output, image_path):
        if path is not None:
            con.print(f"wrote {path}", highlight=False)


def _roofline_notes(tables: Sequence[Any]) -> list[str]:
    first = tables[0]
    notes = [
        f"{first.model.name} on {first.gpu.name}: one layer, one microbatch, one of tp={first.layout.tp} ranks; "
        f"HBM {first.gpu.hbm_Bps / 1e12:g} TB/s",
        "Memory-bound kernels carry nominal FLOPs per element (placement only; their time is bytes / bandwidth). "
        "Attention runs in 16-bit under fp8 (Transformer Engine's recipe).",
    ]
    for t in tables[1:]:
        notes.append(
            f"{t.precision} vs {first.precision}: layer {t.layer_s * 1e3:.3f} ms vs {first.layer_s * 1e3:.3f} ms "
            f"({first.layer_s / t.layer_s:.2f}x)"
        )
    return notes


def _roofline_rich_table(table: Any) -> Table:
    from pipesim.figures.roofline import TABLE_COLUMNS, table_rows

    title = (
        f"{table.precision}: peak {table.gpu.peak(table.precision) / 1e12:g} TFLOP/s, ridge "
        f"{table.ridge_flops_per_byte:.0f} FLOP/byte; layer F {table.forward_s * 1e3:.3f} ms + B "
        f"{table.backward_s * 1e3:.3f} ms = {table.layer_s * 1e3:.3f} ms"
    )
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for i, col in enumerate(TABLE_COLUMNS):
        out.add_column(col, justify="left" if i in (0, 1, 2, 9) else "right", no_wrap=True)
    for row in table_rows(table):
        out.add_row(*row)
    return out
