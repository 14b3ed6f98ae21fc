"""The outputs of ``pipesim plan``: the ranked table, breakdown, explanation, energy, Megatron-LM arguments and
the winner's scenario TOML; JSON and CSV forms; the HTML chart and scenario files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from pipesim.cli.options import EnergyFlags
from pipesim.cli.render import GIB, console, count_text, emit_json, render_energy
from pipesim.io.units import counted
from pipesim.specs.gpu import defaults_note

if TYPE_CHECKING:
    from rich.table import Table

__all__ = ["PlanOutputs", "plan_outputs"]


@dataclass(frozen=True)
class PlanOutputs:
    """What ``plan`` prints and writes: rows shown (0: all), format, the rejection table, files."""

    show: int
    as_json: bool
    as_csv: bool
    explain: bool
    output: str | None
    scenario_out: str | None
    image: str | None = None
    plotlyjs: str = "embed"


def plan_outputs(
    result: Any, out: PlanOutputs, energy_flags: EnergyFlags, probes: tuple[tuple[int, float | None], ...]
) -> None:
    """Write ``plan``'s files and print its tables, JSON or CSV."""
    from pipesim.cli.config import section_keys
    from pipesim.io.megatron import format_megatron_args
    from pipesim.io.scenario_file import WinnerCluster, experiment_toml

    req = result.request
    best = result.best
    limit = out.show or None
    winner_layout = best.candidate.layout(req)
    cl = req.cluster
    toml_text = experiment_toml(
        req.model,
        cl.gpu,
        winner_layout,
        WinnerCluster(cl.topology, cl.nodes, cl.gpus_per_node, cl.level.intra_Bps, cl.level.inter_Bps),
        section_keys()["layout"],
        f"winner of: pipesim plan --model {req.model.name} ({result.candidates} candidates)",
    )
    files: list[tuple[str, bytes]] = []
    if out.scenario_out is not None:
        files.append((out.scenario_out, toml_text.encode("utf-8")))
    if out.output is not None:
        from pipesim.figures.page import page_files, render_page
        from pipesim.figures.plan import plan_page

        files += page_files(out.output, render_page(plan_page(result), out.plotlyjs), out.plotlyjs)
    if out.image is not None:
        from pipesim.figures.plan import plan_figure
        from pipesim.figures.static import figure_bytes

        files.append((out.image, figure_bytes(plan_figure(result), out.image)))
    if files:
        from pipesim.io.atomic import write_outputs

        write_outputs(files)  # all rendered first: nothing is written unless everything is
    energy = _plan_energy(result, energy_flags)
    if out.as_json:
        data = result.as_dict(limit)
        data["energy"] = energy.as_dict()
        if probes:
            data["nodes_search"] = [{"nodes": n, "best_days": d} for n, d in probes]
        data["megatron_args"] = format_megatron_args(req.model, winner_layout)
        data["config_toml"] = toml_text
        emit_json(data)
        return
    if out.as_csv:
        click.echo(_plan_csv(result, limit), nl=False)
        return
    con = console()
    where = (
        f" ({cl.topology}, {counted(cl.nodes, 'node')})"
        if cl.topology
        else f" ({counted(cl.nodes, 'node')} of {cl.gpus_per_node}, two-level: {cl.level.intra_Bps / 1e9:g} / "
        f"{cl.level.inter_Bps / 1e9:g} GB/s per GPU inside / across nodes, GB/s = 1e9 B/s)"
    )
    con.print(
        f"{req.model.name} on {cl.num_gpus} x {cl.gpu.name}{where}: global batch {req.global_batch_size}, "
        f"seq {req.seq}, {req.precision}, attention {req.attention}",
        highlight=False,
    )
    if note := defaults_note(cl.gpu):
        con.print(note, highlight=False)
    if probes:
        con.print(
            "nodes searched: "
            + ", ".join(f"{n} ({d:.1f} d)" if d is not None else f"{n} (no fit)" for n, d in probes),
            highlight=False,
        )
    con.print(_plan_table(result, limit))
    _print_alike(con, result.entries[:limit] if limit else result.entries)
    con.print(_breakdown_table(result, min(limit or 5, 5)))
    over = result.candidates - result.feasible
    fit = (
        f"{result.feasible:,} fit in memory (the other {over:,} were rejected on their estimated memory, without "
        "timing them)"
        if over
        else "all fit in memory"
    )
    rows = sum(e.simulated is not None for e in result.entries)
    merged = (
        f" ({result.simulated} candidates, with the schedules merged into them)"
        if result.simulated > rows
        else ""
    )
    con.print(
        f"{result.enumerated:,} layouts enumerated, {result.candidates:,} candidates estimated in "
        f"{result.estimate_s:.1f} s ({result.candidates_per_s:,.0f} candidates/s; plan {result.elapsed_s:.1f} s), "
        f"{fit}; the best {rows} simulated in full{merged}. DO = distributed "
        f"optimizer (shard: on/off, fsdp = full FSDP, hsdpS = hybrid with S-GPU shards), SP = sequence "
        f"parallel. Winner: MFU {best.mfu:.1%}, HFU {best.hfu:.1%} "
        f"({best.hardware_tflops_per_gpu:.1f} hardware TFLOP/s per GPU, recompute counted).",
        highlight=False,
    )
    if out.explain:
        con.print(_explain_table(result))
    if req.tokens is not None:
        t = best.training(req.tokens)
        con.print(
            f"Training {count_text(req.tokens)} tokens with the winner: {t['train_days']:.1f} days, "
            f"{t['gpu_hours']:,.0f} GPU-hours on {cl.num_gpus} GPUs.",
            highlight=False,
        )
    render_energy(energy)
    con.print("\nMegatron-LM arguments of the winner:", highlight=False)
    click.echo(format_megatron_args(req.model, winner_layout))
    con.print(
        "\nExperiment file of the winner (--scenario-out FILE; pipesim simulate --config FILE, gantt --config FILE):",
        highlight=False,
    )
    click.echo(toml_text, nl=False)


def _plan_energy(result: Any, flags: EnergyFlags) -> Any:
    """The winner's :class:`pipesim.sim.energy.EnergyReport` (per step, and per run with --tokens; a GPU without
    a board power gets times, GPU-hours and cost, its energies unknown). Busy fraction: compute (recompute and TP
    communication excluded, as simulate counts it) plus optimizer over the step (PlanEntry.busy_fraction)."""
    from pipesim.sim.energy import run_energy, steps_for_tokens

    req, best = result.request, result.best
    flags.check_for(req.cluster.gpu)
    busy = best.busy_fraction
    steps = steps_for_tokens(req.tokens, best.tokens_per_step) if req.tokens is not None else 1
    return run_energy(
        req.cluster.gpu,
        req.cluster.num_gpus,
        best.step_time_s,
        busy,
        steps=steps,
        pue=flags.pue,
        node_overhead_w=flags.node_overhead_w,
        gpus_per_node=req.cluster.gpus_per_node,
        price_per_gpu_hour=flags.price_per_gpu_hour,
    )


def _plan_table(result: Any, limit: int | None) -> Table:
    from rich import box
    from rich.table import Table

    req = result.request
    hbm = req.cluster.gpu.hbm_bytes / GIB
    table = Table(
        title=(
            f"Best layouts (peak / free: memory per GPU in GiB = 2^30 bytes of {hbm:.1f} GiB HBM; "
            "* = estimated, others simulated)"
        ),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
    )
    par = (["cp"] if any(e.candidate.cp > 1 for e in result.entries) else []) + (
        ["ep", "etp"] if req.model.moe else []
    )
    cols = [
        "#",
        "tp",
        *par,
        "pp",
        "dp",
        "vpp",
        "mbs",
        "schedule",
        "recompute",
        "shard/SP" if req.space.fsdp else "DO/SP",
        "step s",
        "tokens/s",
        "TFLOP/s",
        "MFU",
        "peak",
        "free",
    ]
    if req.tokens is not None:
        cols += ["days", "GPU-h"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("schedule", "recompute") else "right", no_wrap=True)
    for i, e in enumerate(result.entries[:limit] if limit else result.entries, start=1):
        c = e.candidate
        extra = {"cp": c.cp, "ep": c.ep, "etp": c.etp}
        row = [
            str(i),
            str(c.tp),
            *(str(extra[k]) for k in par),
            str(c.pp),
            str(c.dp),
            str(c.vpp),
            str(c.micro_batch_size),
            c.schedule + (f" +{len(e.alike)}" if e.alike else ""),
            c.recompute,
            f"{c.sharding}/{'on' if c.sequence_parallel else 'off'}",
            f"{e.step_time_s:.3f}" + ("" if e.simulated else "*"),
            f"{e.tokens_per_s:,.0f}",
            f"{e.model_tflops_per_gpu:.1f}",
            f"{e.mfu:.1%}",
            f"{e.peak_memory_bytes / GIB:.1f}",
            f"{e.headroom_bytes / GIB:.1f}",
        ]
        if req.tokens is not None:
            t = e.training(req.tokens)
            row += [f"{t['train_days']:.1f}", f"{t['gpu_hours']:,.0f}"]  # as the sentence and energy table
        table.add_row(*row)
    return table


def _print_alike(con: Any, entries: Any) -> None:
    """Under the table: which schedules a ``+N`` row stands for."""
    rows = [
        f"#{i} {' = '.join((e.candidate.schedule, *e.alike))}" for i, e in enumerate(entries, 1) if e.alike
    ]
    if rows:
        con.print(
            "+N: N more schedules with the same layout and identical results (step time, memory, breakdown): "
            + "; ".join(rows),
            highlight=False,
        )


def _breakdown_table(result: Any, limit: int) -> Table:
    from rich.table import Table

    table = Table(title="Time breakdown of the best layouts (exposed seconds per step)", title_justify="left")
    parts: tuple[str, ...] = ("compute", "tp_comm", "bubble", "pp_comm", "dp_comm", "optimizer")
    labels: tuple[str, ...] = ("compute", "TP comm", "bubble", "PP comm", "DP comm", "optimizer")
    if any(e.candidate.fsdp != "none" for e in result.entries[:limit]):
        parts, labels = parts[:-1] + ("fsdp_comm", "optimizer"), labels[:-1] + ("FSDP comm", "optimizer")
    if any(e.breakdown_s()["fixed"] > 0 for e in result.entries[:limit]):  # the profile's per-step cost
        parts, labels = parts + ("fixed",), labels + ("fixed",)
    table.add_column("#", justify="right")
    for lab in labels:
        table.add_column(lab, justify="right", no_wrap=True)
    table.add_column("step s", justify="right")
    for i, e in enumerate(result.entries[:limit], start=1):
        bd = e.breakdown_s()
        table.add_row(
            str(i), *(f"{bd[p]:.3f} ({bd[p] / e.step_time_s:.0%})" for p in parts), f"{e.step_time_s:.3f}"
        )
    return table


def _explain_table(result: Any) -> Table:
    from rich.table import Table

    from pipesim.plan.search import REASONS

    table = Table(title="Rejected layouts by reason", title_justify="left")
    table.add_column("reason", no_wrap=True)
    table.add_column("layouts", justify="right")
    table.add_column("example")
    for key, label in REASONS.items():
        n = result.rejected.get(key, 0)
        if n:
            table.add_row(label, f"{n:,}", result.examples.get(key, ""))
    table.add_row("feasible", f"{result.feasible:,}", "")
    return table


def _plan_csv(result: Any, limit: int | None) -> str:
    import csv
    import io

    rows = result.as_dict(limit)["results"]
    buf = io.StringIO()
    if not rows:
        return ""
    flat = []
    for r in rows:
        r = dict(r)
        bd = r.pop("time_breakdown_s")
        r["same_effect_schedules"] = " ".join(r["same_effect_schedules"])
        r.update({f"{k}_s": v for k, v in bd.items()})
        flat.append(r)
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()
