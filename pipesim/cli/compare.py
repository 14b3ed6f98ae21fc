"""``pipesim compare``: pipeline schedules side by side, on a synthetic scenario or (``--model``) a real one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from pipesim.cli.group import short_help
from pipesim.cli.options import (
    LAYOUT_NAMES,
    ClusterFlags,
    Hardware,
    LayoutFlags,
    SyntheticFlags,
    cluster_options,
    hardware_options,
    layout_options,
    plain_options,
    synthetic_options,
)
from pipesim.cli.render import GIB, console, emit_json, gib
from pipesim.cli.specs import given
from pipesim.cli.synthetic import refuse_model_flags
from pipesim.errors import InputError
from pipesim.sim.budget import MAX_ACTIONS, check_actions

if TYPE_CHECKING:
    from rich.table import Table

    from pipesim.sim.compare import CompareRequest
    from pipesim.sim.metrics import PipelineMetrics
    from pipesim.sim.scenario import SimulationReport

__all__ = ["compare_cmd", "compare_on_model", "compare_table", "model_compare_table", "scenario_options"]

COMPARE_HELP = """Compare pipeline schedules side by side on one scenario.

With no flags: GPipe, 1F1B and interleaved 1F1B (vpp 2) on 4 ranks and 8 microbatches, forward 1 ms and
backward 2 ms per microbatch for a whole stage, 0.05 ms per transfer: a synthetic demo, the only place where
--pp and --vpp default to 4 and 2. With --model the layout flags default as in every command (pp 1, vpp 1,
one GPU), the global batch is --global-batch-size or micro batch x dp x -m, and the default schedules drop
interleaved-1f1b unless --vpp > 1.

\b
Definitions:
  step time      end of the last span of the step
  bubble         idle fraction of the pipeline phase: 1 - busy / (ranks x time);
                 (p-1)/(m+p-1) for GPipe/1F1B, (p-1)/(v*m+p-1) interleaved
  bubble/ideal   Megatron-LM's form: idle / busy; (p-1)/m, interleaved (p-1)/(v*m)
  peak act       most activations a rank holds, in microbatches of one whole stage
                 (an interleaved chunk counts 1/v) and in bytes (GiB = 2^30 bytes)
  p2p / exposed  total transfer time / idle time that only transfers caused,
                 both summed over ranks
  DP hidden      (--dp-time) gradient reduction that ran while its rank still
                 computed, summed over ranks (all of it: pp x --dp-time)
  DP exposed     how far the reductions extend the step past the pipeline phase

\b
Split backward (zb-h1, zb-h2, zb-v, dualpipe-v, zb-1p, zb-2p): the full backward B
runs as I (input gradients, B - W) then W (--weight-time). Without --weight-time
W = B/2 (ZB paper Table 1: I and W each cost about 24*s*b*h^2 FLOPs per layer).
zb-1p/zb-2p (the ZB paper's automatic scheduler) and zb-v-half/zb-v-min are built
from these times under --memory-limit, with W keeping --weight-stash of the
activations.

\b
Optimizer modes (--optimizer):
  sync             a global barrier after every iteration; step time and bubble
                   of one step from t = 0 (the default)
  post-validation  ZB paper Section 4: no barrier, the next iteration's warm-up
                   overlaps this one's tail; step time = steady-state period
                   (T(N) - T(1)) / (N - 1) of N = 4 back-to-back iterations,
                   T(k) = end of iteration k; bubble = 1 - busy / (ranks x step);
                   each rank's DP reduction and optimizer step (--dp-time, a
                   --model's) run between its own iterations, after the
                   previous rank's partially reduced global state arrives
"""


SCENARIO_LAYOUT_HELP: dict[str, dict[str, Any]] = {
    "pp": {
        "help": "Pipeline-parallel size (ranks) [default: 1 with --model, as in every command; 4 without "
        "(the synthetic demo)].",
        "show_default": False,
    },
    "vpp": {
        "help": "Model chunks per pipeline rank (interleaved schedules) [default: 1 with --model, as in every "
        "command; 2 without (the synthetic demo)].",
        "show_default": False,
    },
}


def scenario_options(func: click.decorators.FC) -> click.decorators.FC:
    """The scenario flags of ``compare`` and ``gantt``: synthetic times, or a real model, layout and cluster."""
    for group in reversed(
        (
            synthetic_options(),
            hardware_options(),
            layout_options(LAYOUT_NAMES, **SCENARIO_LAYOUT_HELP),
            cluster_options(),
        )
    ):
        func = group(func)
    return func


@click.command("compare", help=COMPARE_HELP, short_help=short_help("compare"))
@scenario_options
@plain_options("as_json", "max_actions", "wide", "config")
def compare_cmd(
    as_json: bool,
    max_actions: int,
    synthetic: SyntheticFlags,
    hw: Hardware,
    lay: LayoutFlags,
    cluster: ClusterFlags,
) -> None:
    from pipesim.sim.compare import compare_schedules

    if hw.model is not None:  # real model: the scenario flags replace the synthetic times
        if synthetic.schedule_files:
            raise InputError(
                "--schedule-file cannot be combined with --model (per-stage costs need a registry schedule)"
            )
        reports = compare_on_model(synthetic, hw, lay, cluster, max_actions)
        if as_json:
            emit_json([r.as_dict() | {"schedule": r.scenario.layout.schedule} for r in reports])
            return
        heading, table = model_compare_table(reports)
        con = console(fit=table)
        con.print(heading, highlight=False)
        con.print(table)
        return
    refuse_model_flags()
    request = synthetic.request(*lay.synthetic_pipeline(), lay.dp_overlap)
    check_vpp_used(request.schedules, request.vpp)
    check_synthetic_flags_used(request)
    check_actions(synthetic_timelines(request), max_actions, file_actions(request))
    check_schedule_files(request)
    results = compare_schedules(request)
    if as_json:
        emit_json([r.as_dict() for r in results])
        return
    table = compare_table(results, request)
    console(fit=table).print(table)


def check_vpp_used(names: Sequence[str], vpp: int) -> None:
    """Refuse a typed ``--vpp`` > 1 that no schedule of ``names`` runs (only interleaved families take it;
    V-shapes and DualPipe run their own 2 chunks): it would be ignored."""
    from schedules import REGISTRY

    if not given("vpp") or vpp <= 1 or not names:
        return
    if not any(REGISTRY[n].uses_vpp or REGISTRY[n].chunks_per_rank == vpp for n in names if n in REGISTRY):
        raise InputError(
            f"--vpp={vpp} applies to interleaved schedules, and none of --schedules {','.join(names)} is one; "
            "add interleaved-1f1b (or another interleaved schedule) or drop --vpp"
        )


def check_synthetic_flags_used(request: CompareRequest) -> None:
    """Refuse a typed synthetic flag that no schedule of the request reads: ``--memory-limit`` (only the
    memory-aware orders take it) and ``--fb-time`` (only DualPipe's overlapped F&B pairs); each would be
    ignored without a word."""
    from schedules.timed import TIMED_FAMILIES

    names = request.schedules
    shown = ",".join(names) or "(files only)"
    if given("memory_limit") and not any(n in TIMED_FAMILIES for n in names):
        raise InputError(
            f"--memory-limit caps the memory-aware orders ({', '.join(TIMED_FAMILIES)}), and none of --schedules "
            f"{shown} is one; add one or drop --memory-limit"
        )
    if given("fb_time") and not any(n.startswith("dualpipe") for n in names):
        raise InputError(
            f"--fb-time times DualPipe's overlapped F&B pairs, and none of --schedules {shown} pairs passes; "
            "add dualpipe or dualpipe-v, or drop --fb-time"
        )


def check_schedule_files(request: CompareRequest) -> None:
    """Refuse ``--pp`` / ``-m`` typed next to a ``--schedule-file`` whose own ranks or microbatches differ:
    a file is simulated as written, so the flag would be ignored."""
    from schedules import read_csv

    for path in request.schedule_files:
        sched = read_csv(path)
        for flag, key, value, own in (
            ("--pp", "pp", request.pp, sched.num_ranks),
            ("-m/--microbatches", "microbatches", request.microbatches, sched.num_microbatches),
        ):
            if given(key) and value != own:
                raise InputError(
                    f"{flag}={value}, but schedule file {path} has {own} (it is simulated as written); "
                    f"drop {flag.split('/')[0]} or give {own}"
                )


def file_actions(request: CompareRequest) -> list[tuple[str, int]]:
    """(path, cells) of each ``--schedule-file``: its non-empty cells, counted before the file is parsed or
    validated (an overlapped F&B cell is one; communication cells are counted too: an upper bound), so a
    file too large to simulate is refused with its size first."""
    out = []
    for path in request.schedule_files:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                cells = sum(1 for line in fh for cell in line.split(",") if cell.strip())
        except OSError:
            continue  # unreadable: read_csv names the file and the reason
        out.append((str(path), cells))
    return out


def synthetic_timelines(
    request: CompareRequest, iterations: int | None = None
) -> list[tuple[str, int, int, int, bool]]:
    """The registry schedules of a synthetic request as :func:`pipesim.sim.budget.check_actions` counts them,
    over ``iterations`` consecutive iterations (default: 1 under ``--optimizer sync``, the 4 that
    post-validation's steady state is measured on); unknown names are left to the simulator's own message,
    CSV files are bounded by their size."""
    from schedules import REGISTRY

    repeat = iterations or (1 if request.optimizer == "sync" else 4)
    out = []
    for name in request.schedules:
        family = REGISTRY.get(name)
        if family is not None:
            chunks = family.chunks(request.vpp)
            out.append((name, request.pp, chunks, request.microbatches * repeat, family.split_backward))
    return out


def compare_on_model(
    synthetic: SyntheticFlags,
    hw: Hardware,
    lay: LayoutFlags,
    cluster: ClusterFlags,
    max_actions: int = MAX_ACTIONS,
) -> list[SimulationReport]:
    """``compare --model``: simulate each ``--schedules`` name on the real scenario (``--vpp`` for interleaved
    families, 1 for the others; ``-m`` microbatches per pipeline unless ``--global-batch-size``); all of them
    together at most ``max_actions`` compute actions. With no layout flag (one GPU) a model that does not fit
    is refused, as ``simulate`` refuses it."""
    from pipesim.cli.simulate import build_scenario, refuse_default_layout_oom, scenario_timeline
    from pipesim.sim.scenario import simulate_scenario
    from schedules import get_family

    synthetic_only = ("forward_time", "backward_time", "weight_time", "fb_time", "p2p_time", "activation_bytes",
                      "memory_limit", "dp_time", "dp_buckets", "weight_stash")  # fmt: skip
    typed = [name for name in synthetic_only if given(name)]
    if typed:
        flag = "--" + typed[0].replace("_", "-")
        raise InputError(
            f"{flag} sets the synthetic scenario's times; with --model every pass and transfer is timed by the "
            f"cost model: drop {flag} or --model"
        )
    microbatches = synthetic.microbatches
    if lay.global_batch_size is not None and given("microbatches"):
        raise InputError(
            "give -m/--microbatches or --global-batch-size, not both (with --model, microbatches = global batch "
            "/ (micro-batch x dp))"
        )
    if lay.global_batch_size is None and microbatches < 1:  # -m sets the global batch: name the flag typed
        raise InputError(f"-m/--microbatches={microbatches} must be >= 1")
    scenarios = []
    vpp_flag = lay.virtual_stages(hw.model)
    names = synthetic.names(vpp_flag)
    check_vpp_used(names, vpp_flag)
    for name in names:
        family = get_family(name)
        vpp = vpp_flag if family.uses_vpp else 1
        scenarios.append(
            build_scenario(hw, lay, cluster, name, microbatches, vpp, max_actions, synthetic.optimizer)
        )
    check_actions([scenario_timeline(sc.layout, sc.optimizer) for sc in scenarios], max_actions)
    reports = [simulate_scenario(sc) for sc in scenarios]
    for report in reports:
        refuse_default_layout_oom(report)
    return reports


def compare_table(results: Sequence[PipelineMetrics], request: CompareRequest) -> Table:
    """The side-by-side table of ``pipesim compare``."""
    from rich.table import Table

    from schedules import REGISTRY

    split = (
        any(REGISTRY[n].split_backward for n in request.schedules if n in REGISTRY) or request.schedule_files
    )
    w_part = f"W={request.weight_s * 1e3:g} ms  " if split else ""
    dp = request.dp_s > 0
    dp_part = (
        f"  DP={request.dp_s * 1e3:g} ms in {request.dp_buckets} buckets"
        f" ({'overlapped' if request.dp_overlap else 'after the flush'})"
        if dp
        else ""
    )
    pp, m = request.pp, request.microbatches
    if not request.schedules and results:  # only schedule files: their own sizes (as the rows show them)
        pp, m = results[0].pp, results[0].microbatches
    table = Table(
        title=(
            f"pp={pp}  microbatches={m}  F={request.forward_s * 1e3:g} ms  "
            f"B={request.backward_s * 1e3:g} ms  {w_part}p2p={request.p2p_s * 1e3:g} ms{dp_part}  (per whole stage; GiB = 2^30 bytes)"
        ),
        title_justify="left",
    )
    table.add_column("schedule", no_wrap=True)
    columns = [
        "pp",
        "vpp",
        "m",
        "step ms",
        "bubble",
        "bubble/ideal",
        "peak act microbatches",
        "peak act GiB",
        "p2p ms",
    ]
    columns += ["p2p exposed ms"] + (["DP hidden ms", "DP exposed ms"] if dp else [])
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    for r in results:
        cells = [
            r.schedule,
            str(r.pp),
            str(r.vpp),
            str(r.microbatches),
            f"{r.step_time_s * 1e3:.3f}",
            f"{r.bubble_ratio:.1%}",
            f"{r.bubble_over_ideal:.3f}",
            f"{r.peak_activation_microbatches:g}",
            f"{r.peak_activation_bytes / GIB:.2f}",
            f"{r.p2p_time_s * 1e3:.3f}",
            f"{r.p2p_exposed_s * 1e3:.3f}",
        ]
        if dp:
            cells += [f"{r.dp_hidden_s * 1e3:.3f}", f"{r.dp_exposed_s * 1e3:.3f}"]
        table.add_row(*cells)
    return table


def model_compare_table(reports: Sequence[SimulationReport]) -> tuple[str, Table]:
    """The heading (scenario and communication lines, printed above: a table title would wrap at the table's
    width) and the side-by-side table of ``pipesim compare --model``."""
    from rich.table import Table

    from pipesim.cli.simulate import communication_line
    from pipesim.specs.gpu import defaults_note
    from pipesim.terminal import verdict

    first = reports[0].scenario
    lay = first.layout
    heading = (
        f"{first.model.name} on {lay.num_gpus} x {first.gpu.name}: dp={lay.dp} tp={lay.tp} pp={lay.pp} "
        f"micro-batch={lay.micro_batch_size} global-batch={lay.global_batch_size} (GiB = 2^30 bytes)\n"
        f"{communication_line(first)}"
    )
    if note := defaults_note(first.gpu):
        heading += f"\n{note}"
    table = Table()
    table.add_column("schedule", no_wrap=True)
    for col in ("vpp", "m", "step s", "tokens/s", "TFLOP/s/GPU", "MFU", "bubble", "peak GiB", "verdict"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in reports:
        table.add_row(
            r.scenario.layout.schedule,
            str(r.schedule.chunks_per_rank),
            str(r.scenario.layout.num_microbatches),
            f"{r.step_time_s:.3f}",
            f"{r.tokens_per_s:,.0f}",
            f"{r.model_tflops_per_gpu:.1f}",
            f"{r.mfu:.1%}",
            f"{r.metrics.bubble_ratio:.1%}",
            gib(r.worst_memory.peak),
            verdict(r.fits, short=True),
        )
    return heading, table
