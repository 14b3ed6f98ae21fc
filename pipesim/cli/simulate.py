"""``pipesim simulate``: one training step of a real model on real GPUs, and the scenario builder that
``compare --model`` and ``gantt --model`` share."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipesim.cli.group import short_help
from pipesim.cli.options import (
    ClusterFlags,
    EnergyFlags,
    Hardware,
    LayoutFlags,
    cluster_options,
    energy_options,
    hardware_options,
    layout_options,
    plain_options,
)
from pipesim.cli.render import GIB, console, emit_json, gib, render_energy
from pipesim.cli.specs import given, require
from pipesim.errors import InputError
from pipesim.sim.budget import MAX_ACTIONS, check_actions, layout_timeline
from pipesim.specs.gpu import defaults_note

if TYPE_CHECKING:
    from rich.table import Table

    from pipesim.sim.energy import EnergyReport
    from pipesim.sim.scenario import Scenario, SimulationReport
    from pipesim.specs.layout import Layout
    from pipesim.specs.model import ModelSpec

__all__ = ["build_scenario", "refuse_default_layout_oom", "render_report", "report_energy", "simulate_cmd"]

SIMULATE_HELP = """Predict one training step of a real model on real GPUs.

Prints step time, throughput, model TFLOP/s per GPU, MFU and HFU, a time breakdown and a per-rank memory
breakdown with a fits / out-of-memory verdict. Example:

\b
  pipesim simulate --model gpt3-175b --gpu a100-80gb --tp 8 --pp 8 --dp 1 --vpp 3 \\
      --micro-batch-size 1 --global-batch-size 64 --recompute full

\b
Definitions:
  model TFLOP/s   model FLOPs (fwd + bwd, no recompute; Korthikanti eq. 7) / step / GPUs
  MFU / HFU       model / hardware (recompute included) FLOP/s over the GPU's dense peak
  bubble          idle fraction of the pipeline phase; bubble/ideal = idle / busy (Megatron form)
  breakdown       seconds per rank (mean over ranks); the exposed column adds up to the step time
  memory          per GPU of each pipeline rank, GiB = 2^30 bytes; verdict against the GPU's HBM
  --optimizer     sync: one step behind a global barrier; post-validation (ZB paper Section 4): each rank's
                  DP reduction and optimizer step between its own iterations, no barrier; step = steady
                  state (T(N) - T(1)) / (N - 1) of N = 4 back-to-back iterations
"""


def build_scenario(
    hw: Hardware,
    lay: LayoutFlags,
    cluster: ClusterFlags,
    schedule: str | None,
    microbatches: int | None = None,
    vpp: int | None = None,
    max_actions: int = MAX_ACTIONS,
    optimizer: str = "sync",
) -> Scenario:
    """The :class:`Scenario` of the parsed flags (``microbatches`` sets the default global batch, ``vpp``
    overrides ``--vpp``, ``optimizer`` is the optimizer mode); refuses a timeline of more than
    ``max_actions`` compute actions (all the iterations ``post-validation`` simulates) before any
    communication model or schedule is built."""
    from pipesim.sim.scenario import Scenario, check_gpu_count

    model = hw.need_model()
    cluster = cluster.for_gpu(hw.gpu)
    layout = lay.layout(
        schedule,
        microbatches=microbatches,
        gpus=cluster.world(),
        vpp=lay.virtual_stages(model) if vpp is None else vpp,
    )
    check_gpu_count(layout, cluster.gpus)
    refuse_unused_flags(layout, model)
    hw.gpu.peak(layout.precision)  # fail early if the GPU lacks the precision
    check_actions([scenario_timeline(layout, optimizer)], max_actions)
    comm = cluster.comm(layout.num_gpus)
    return Scenario(model, hw.gpu, layout, comm, rank_order=cluster.rank_grid(), optimizer=optimizer)


def refuse_unused_flags(layout: Layout, model: ModelSpec) -> None:
    """Refuse a flag the user gave that this scenario would ignore: the result would look like its effect."""
    from pipesim.cli.specs import given, typed
    from pipesim.specs.layout import Layout

    rules = (
        ("overlap_param_gather", not layout.distributed_optimizer,
         "it overlaps the distributed optimizer's parameter all-gather, and --distributed-optimizer is off"),
        ("fp8_recipe", layout.precision != "fp8", f"it is the fp8 scaling recipe, and precision is {layout.precision}"),
        ("moe_imbalance", not model.moe, f"it skews expert routing, and {model.name} is a dense model"),
        ("moe_imbalance", layout.ep == 1,
         "it skews routing across expert-parallel ranks, and at ep=1 every GPU holds every expert"),
        ("etp", not model.moe, f"it splits expert weights, and {model.name} is a dense model"),
        ("tp_comm_overlap_forward", layout.tp == 1, "it overlaps tensor-parallel collectives, and tp=1 has none"),
        ("cp_comm", layout.cp == 1, "it picks the context-parallel exchange, and cp=1 has none"),
    )  # fmt: skip
    defaults = Layout.__dataclass_fields__
    for name, unused, why in rules:  # a value other than the default (experiment files write every default)
        if given(name) and unused and getattr(layout, name) != defaults[name].default:
            raise InputError(f"--{name.replace('_', '-')} would change nothing: {why}; drop it")
    if typed("distributed_optimizer") and layout.fsdp != "none" and layout.distributed_optimizer:
        raise InputError(
            f"--distributed-optimizer (ZeRO-1) with --fsdp {layout.fsdp} (ZeRO-3, which shards the optimizer state "
            "already): drop --distributed-optimizer"
        )


def scenario_timeline(layout: Layout, optimizer: str) -> tuple[str, int, int, int, bool]:
    """:func:`pipesim.sim.budget.layout_timeline` of ``layout`` with every iteration ``optimizer`` simulates
    (one under ``sync``, :data:`pipesim.sim.iterations.DEFAULT_ITERATIONS` under ``post-validation``)."""
    from pipesim.sim.iterations import DEFAULT_ITERATIONS

    name, ranks, chunks, m, split = layout_timeline(layout)
    return name, ranks, chunks, m * (1 if optimizer == "sync" else DEFAULT_ITERATIONS), split


def report_energy(report: SimulationReport, energy: EnergyFlags, gpus_per_node: int) -> EnergyReport:
    """The energy of a simulation (a GPU without a TDP: times, GPU-hours and cost, the energies unknown)."""
    from pipesim.sim.energy import simulation_energy

    energy.check_for(report.scenario.gpu)
    return simulation_energy(
        report,
        tokens=energy.tokens,
        pue=energy.pue,
        price_per_gpu_hour=energy.price_per_gpu_hour,
        node_overhead_w=energy.node_overhead_w,
        gpus_per_node=gpus_per_node,
    )


@click.command("simulate", help=SIMULATE_HELP, short_help=short_help("simulate"))
@plain_options("schedule")
@hardware_options()
@layout_options()
@cluster_options()
@energy_options()
@plain_options("optimizer", "as_json", "max_actions", "wide", "config")
def simulate_cmd(
    schedule: str | None,
    optimizer: str,
    as_json: bool,
    max_actions: int,
    hw: Hardware,
    lay: LayoutFlags,
    cluster: ClusterFlags,
    energy: EnergyFlags,
) -> None:
    from pipesim.sim.scenario import simulate_scenario
    from schedules import get_family

    hw.need_model()
    if lay.global_batch_size is None:  # as plan: the run's batch is the user's, never guessed
        require("global_batch_size")
    if schedule is not None:
        get_family(schedule)  # unknown names list the valid ones
    scenario = build_scenario(hw, lay, cluster, schedule, max_actions=max_actions, optimizer=optimizer)
    report = simulate_scenario(scenario)
    refuse_default_layout_oom(report)
    energy_report = report_energy(report, energy, scenario.gpus_per_node())
    if as_json:
        emit_json({**report.as_dict(), "energy": energy_report.as_dict()})
        return
    render_report(report)
    render_energy(energy_report)


LAYOUT_CHOICES = ("tp", "pp", "dp", "vpp", "layers_per_virtual_stage", "gpus")


def refuse_default_layout_oom(report: SimulationReport) -> None:
    """With no layout flag typed the layout is one GPU; refuse it when it does not fit rather than report an
    out-of-memory step as if it were a result."""
    if report.fits or any(given(k) for k in LAYOUT_CHOICES):
        return
    sc, worst = report.scenario, report.worst_memory
    raise InputError(
        f"{sc.model.name} does not fit one {sc.gpu.name} (the layout when no --tp, --pp, --dp or --gpus is "
        f"given: peak {gib(worst.peak)} GiB of {gib(sc.gpu.hbm_bytes)} GiB); give a layout, or find one with "
        f"`pipesim plan --model {sc.model.name} --gpu {sc.gpu.name} --nodes N --global-batch-size "
        f"{sc.layout.global_batch_size}`"
    )


# How the step time is measured under each optimizer mode (pipesim.sim.iterations).
_STEP_LABEL = {"post-validation": "step time (s), steady state of back-to-back iterations"}


def communication_text(sc: Scenario) -> str:
    """The scenario's communication model in words, with GB/s defined when the text uses it."""
    comm = sc.comm_description()
    return comm + (" (GB/s = 1e9 B/s)" if "GB/s" in comm else "")


def communication_line(sc: Scenario) -> str:
    """``communication: <model>`` (:func:`communication_text`)."""
    return f"communication: {communication_text(sc)}"


def render_report(report: SimulationReport) -> None:
    """The terminal view of ``pipesim simulate``: summary, time breakdown, memory per pipeline rank."""
    from rich.table import Table

    from pipesim.sim.scenario import chunks_per_rank

    sc, lay = report.scenario, report.scenario.layout
    con = console()
    con.print(
        f"{sc.model.name} on {lay.num_gpus} x {sc.gpu.name}: dp={lay.dp} tp={lay.tp} pp={lay.pp} vpp={chunks_per_rank(lay)} "
        f"schedule={lay.schedule} micro-batch={lay.micro_batch_size} global-batch={lay.global_batch_size} "
        f"microbatches={lay.num_microbatches} seq={lay.seq(sc.model)} recompute={lay.recompute} "
        f"sp={'on' if lay.sequence_parallel else 'off'} precision={lay.precision} attention={lay.attention}"
        + (f" cp={lay.cp} cp-comm={lay.cp_comm}" if lay.cp > 1 else "")
        + (
            f" ep={lay.ep} etp={lay.etp} edp={lay.edp} moe-imbalance={lay.moe_imbalance:g}"
            if sc.model.moe
            else ""
        ),
        highlight=False,
    )
    total, active = sc.model.num_params(mtp=True), sc.model.num_params(active=True, mtp=True)
    con.print(
        f"parameters: {total / 1e9:.2f} B total, {active / 1e9:.2f} B active per token", highlight=False
    )
    con.print(communication_line(sc), highlight=False)
    con.print(f"placement: {sc.placement_description()}", highlight=False)
    if note := defaults_note(sc.gpu):
        con.print(note, highlight=False)
    summary = Table(title="Step", title_justify="left", show_header=False)
    summary.add_column("metric", no_wrap=True)
    summary.add_column("value", justify="right", no_wrap=True)
    rows = (
        (_STEP_LABEL.get(sc.optimizer, "step time (s)"), f"{report.step_time_s:.3f}"),
        ("throughput (tokens/s)", f"{report.tokens_per_s:,.0f}"),
        ("throughput (samples/s)", f"{report.samples_per_s:,.2f}"),
        ("model TFLOP/s per GPU", f"{report.model_tflops_per_gpu:.1f}"),
        ("hardware TFLOP/s per GPU", f"{report.hardware_tflops_per_gpu:.1f}"),
        (f"dense peak TFLOP/s per GPU ({lay.precision})", f"{report.peak_flops / 1e12:g}"),
        ("MFU / HFU (of the peak)", f"{report.mfu:.1%} / {report.hfu:.1%}"),
        ("bubble (of pipeline time)", f"{report.metrics.bubble_ratio:.1%}"),
        ("bubble / ideal (Megatron)", f"{report.metrics.bubble_over_ideal:.3f}"),
    )
    for k, v in rows:
        summary.add_row(k, v)
    con.print(summary)
    con.print(_times_table(report))
    con.print(_memory_table(report))
    if len(report.memory) > 8:
        con.print(
            f"(showing first, last and most loaded of {len(report.memory)} pipeline ranks; --json lists all)"
        )
    from rich.text import Text

    from pipesim.terminal import verdict

    worst = report.worst_memory
    con.print(
        Text("Verdict: ")
        + verdict(report.fits)
        + Text(
            f" (most loaded: pipeline rank {worst.rank}, {gib(worst.peak)} of {gib(sc.gpu.hbm_bytes)} GiB)"
        ),
        highlight=False,
    )


def _times_table(report: SimulationReport) -> Table:
    from rich.table import Table

    bd = report.breakdown.as_dict()
    step = report.step_time_s
    times = Table(title="Time per rank (s, mean over pipeline ranks)", title_justify="left")
    times.add_column("part", no_wrap=True)
    for col in ("total", "exposed", "% of step"):
        times.add_column(col, justify="right", no_wrap=True)
    labels = {
        "compute": "compute",
        "recompute": "  of which recompute",
        "bubble": "pipeline bubble",
        "tp_comm": "TP communication",
        "pp_comm": "PP communication",
        "dp_comm": "DP communication",
        "optimizer": "optimizer step",
    }
    lay = report.scenario.layout
    if report.scenario.model.moe and lay.ep > 1:
        labels["ep_comm"] = "EP all-to-all"
    if lay.cp > 1:
        labels["cp_comm"] = "CP key/value exchange"
    if lay.zero_stage >= 3:
        labels["fsdp_comm"] = "FSDP gather/reduce-scatter"
    if bd["fixed"]["total"] > 0:  # the profile's per-iteration cost: data loading, gradient clipping, logging
        labels["fixed"] = "fixed per-step cost"
    for key, label in labels.items():
        part = bd[key]
        share = "" if key == "recompute" else f"{part['exposed'] / step:.1%}"
        times.add_row(label, f"{part['total']:.3f}", f"{part['exposed']:.3f}", share)
    return times


def _memory_table(report: SimulationReport) -> Table:
    from rich.table import Table

    mem = Table(
        title=f"Memory per GPU by pipeline rank (GiB = 2^30 bytes; HBM {report.scenario.gpu.hbm_bytes / GIB:.1f} GiB)",
        title_justify="left",
    )
    from pipesim.terminal import verdict

    moe = report.scenario.model.moe
    cols: tuple[str, ...] = (
        "rank",
        "weights",
        "grads",
        "optimizer",
        "activations",
        "transient",
        "reserve",
        "peak",
        "verdict",
    )
    cols += ("experts (w+g+opt)",) if moe else ()
    for col in cols:
        mem.add_column(col, justify="right", no_wrap=True)
    shown = list(report.memory)
    if len(shown) > 8:
        keep = {shown[0].rank, shown[-1].rank, report.worst_memory.rank}
        shown = [m for m in shown if m.rank in keep]
    for m in shown:
        parts = (m.weights, m.grads, m.optimizer, m.activations, m.transient, m.reserve, m.peak)
        experts = (gib(m.expert_weights + m.expert_grads + m.expert_optimizer),) if moe else ()
        mem.add_row(str(m.rank), *(gib(x) for x in parts), verdict(m.fits), *experts)
    return mem
