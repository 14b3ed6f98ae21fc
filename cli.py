"""pipesim's command line. click lives here and only here; each command parses, builds specs, calls one
pipesim function and renders the result."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from pipesim.comm.base import CommModel, LevelCommModel
from pipesim.comm.factory import ClusterSpec, build_comm
from pipesim.errors import InputError
from pipesim.io.readers import resolve_gpu, resolve_model
from pipesim.sim.compare import DEFAULT_SCHEDULES, DEFAULT_STASH_FRACTION, CompareRequest, compare_schedules
from pipesim.sim.iterations import OPTIMIZER_MODES, run_iterations
from pipesim.sim.metrics import PipelineMetrics
from pipesim.sim.scenario import Scenario, SimulationReport, check_gpu_count, simulate_scenario
from pipesim.specs.gpu import gpu_names
from pipesim.specs.layout import ATTENTION, RECOMPUTE, TRAIN_PRECISIONS, Layout
from pipesim.specs.model import model_names
from pipesim.specs.placement import parse_order
from schedules import REGISTRY, ScheduleError, get_family, schedule_names
from topologies import TopologyError

# Errors that are the user's input, not our bug: printed as one line, exit status 2.
USER_ERRORS: tuple[type[Exception], ...] = (InputError, ScheduleError, TopologyError)

GIB = 2**30


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


class PipesimGroup(click.Group):
    """A click group that turns bad-input exceptions into one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            fail(str(exc))
        except click.UsageError as exc:  # a flag click itself rejects: one line too, with where to look
            _usage_fail(exc)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:  # the group's own options
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            _usage_fail(exc)


def _usage_fail(exc: click.UsageError) -> NoReturn:
    where = exc.ctx.command_path if exc.ctx is not None else "pipesim"
    fail(f"{exc.format_message()} (see '{where} --help')")


def _count_text(n: float) -> str:
    """A count with the suffix users type (2T, 300B, 15M): the K/M/B/T of --tokens."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.4g}{suffix}"
    return f"{n:.4g}"


def emit_json(data: object) -> None:
    """Print ``data`` as indented JSON (keys in insertion order, so output is byte-for-byte stable)."""
    click.echo(json.dumps(data, indent=2))


def console(fit: Table | None = None) -> Console:
    """A rich console writing to click's stdout (so CliRunner captures it), without colour when not a tty:
    140 columns, or as wide as ``fit`` needs so that no column is cut."""
    width = 140
    if fit is not None:
        probe = Console(width=1000)
        width = max(width, Measurement.get(probe, probe.options, fit).maximum)
    return Console(file=click.get_text_stream("stdout"), width=width, soft_wrap=False)


@click.group(cls=PipesimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipesim")
def main() -> None:
    """pipesim: simulate pipeline-parallel training schedules on GPU clusters.

    Step time, pipeline bubbles, activation memory and communication for GPipe, 1F1B, interleaved 1F1B and
    more, before you spend the GPU-hours.
    """


# --model / --gpu of the commands that need a real model (each application makes a fresh click parameter).
MODEL_REQUIRED = click.option(
    "--model", "model_arg", required=True, metavar="NAME|PATH", help="Model preset or config.json / .toml."
)
GPU_OPTION = click.option(
    "--gpu",
    "gpu_arg",
    default="a100-80gb",
    show_default=True,
    metavar="NAME|PATH",
    help="GPU preset or .toml.",
)


def _split_names(text: str | None) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def _ms(value: float, flag: str) -> float:
    if not value >= 0:
        raise InputError(f"{flag}={value} must be >= 0 (milliseconds)")
    return value / 1000.0


# --------------------------------------------------------------------------- real scenarios (simulate, compare)
SCENARIO_KEYS = (
    "model_arg",
    "gpu_arg",
    "tp",
    "dp",
    "micro_batch_size",
    "global_batch_size",
    "seq_length",
    "sequence_parallel",
    "recompute",
    "distributed_optimizer",
    "zero_stage",
    "precision",
    "attention",
    "dp_overlap",
    "tp_comm_overlap",
    "uneven_layers",
    "gpus",
    "gpus_per_node",
    "intra_node_gbps",
    "inter_node_gbps",
    "topology",
    "nodes",
    "rank_order",
)


def scenario_options(func: Any) -> Any:
    """The scenario flags shared by ``simulate`` and ``compare`` (Megatron-LM argument names). ``--pp`` and
    ``--vpp`` are not here: each command declares its own (compare's have synthetic-mode defaults)."""
    options = [
        click.option(
            "--model",
            "model_arg",
            default=None,
            metavar="NAME|PATH",
            help=f"Model preset ({', '.join(model_names())}) or a Hugging Face config.json / model .toml.",
        ),
        click.option(
            "--gpu",
            "gpu_arg",
            default="a100-80gb",
            show_default=True,
            metavar="NAME|PATH",
            help=f"GPU preset ({', '.join(gpu_names())}) or a GPU .toml.",
        ),
        click.option("--tp", type=int, default=1, show_default=True, help="Tensor-parallel size."),
        click.option(
            "--dp", type=int, default=None, help="Data-parallel size [default: --gpus / (tp x pp), else 1]."
        ),
        click.option(
            "--micro-batch-size", type=int, default=1, show_default=True, help="Sequences per microbatch."
        ),
        click.option(
            "--global-batch-size",
            type=int,
            default=None,
            help="Sequences per step [simulate default: 4 x pp microbatches per pipeline; compare: -m microbatches].",
        ),
        click.option("--seq-length", type=int, default=None, help="Sequence length [default: the model's]."),
        click.option(
            "--sequence-parallel", is_flag=True, help="Megatron sequence parallelism (needs tp > 1)."
        ),
        click.option(
            "--recompute",
            default="none",
            show_default=True,
            help=f"Activation recomputation: {', '.join(RECOMPUTE)}.",
        ),
        click.option("--distributed-optimizer", is_flag=True, help="Shard optimizer state over dp (ZeRO-1)."),
        click.option(
            "--zero-stage",
            type=int,
            default=0,
            show_default=True,
            help="ZeRO stage: 1 = --distributed-optimizer, 2 also shards gradients, 3 also weights (gathered "
            "per layer every microbatch). ZeRO-3 is idealized (NCCL-rate collectives perfectly overlapped): "
            "an upper bound, far above SC21's measured DeepSpeed ZeRO-3 (benchmarks/accuracy.py).",
        ),
        click.option(
            "--precision",
            default="bf16",
            show_default=True,
            help=f"GEMM precision: {', '.join(TRAIN_PRECISIONS)}.",
        ),
        click.option(
            "--attention",
            default="flash",
            show_default=True,
            help=f"Attention kernels: {', '.join(ATTENTION)} (unfused: scores materialised, as in Megatron-LM 2021-22).",
        ),
        click.option(
            "--dp-overlap/--no-dp-overlap",
            default=True,
            show_default=True,
            help="Overlap gradient reduction with the last backwards.",
        ),
        click.option(
            "--tp-comm-overlap/--no-tp-comm-overlap",
            default=True,
            show_default=True,
            help="Overlap backward TP collectives with weight-gradient GEMMs (Megatron's async TP all-reduce).",
        ),
        click.option("--uneven-layers", is_flag=True, help="Allow pp x vpp not dividing the layer count."),
        click.option("--gpus", type=int, default=None, help="Total GPUs; checked against dp x tp x pp."),
        click.option("--gpus-per-node", type=int, default=8, show_default=True, help="GPUs per node."),
        click.option(
            "--intra-node-GBps",
            "intra_node_gbps",
            type=float,
            default=240.0,
            show_default=True,
            help="Per-GPU bandwidth inside a node, GB/s = 1e9 B/s (default: DGX A100 NVLink).",
        ),
        click.option(
            "--inter-node-GBps",
            "inter_node_gbps",
            type=float,
            default=24.0,
            show_default=True,
            help="Per-GPU bandwidth across nodes, GB/s (default: one 200 Gb/s HDR NIC per GPU).",
        ),
        click.option(
            "--topology",
            default=None,
            metavar="NAME|FILE.toml",
            help="Time every TP/PP/DP collective on this cluster topology (preset or TOML; see `pipesim topo list`) "
            "instead of the two-level bandwidth model; replaces the --*-GBps and --gpus-per-node flags.",
        ),
        click.option(
            "--nodes",
            type=int,
            default=None,
            help="Servers of --topology in the cluster [default: just enough for dp x tp x pp].",
        ),
        click.option(
            "--rank-order",
            default="tp-dp-pp",
            show_default=True,
            help="How the (tp, dp, pp) grid maps onto GPUs, fastest-varying first (Megatron-LM: tp-dp-pp); "
            "rank g runs on GPU g, so e.g. dp-tp-pp spreads TP groups across servers.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _pop_scenario(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k) for k in SCENARIO_KEYS}


def build_scenario(
    args: dict[str, Any], pp: int, vpp: int, schedule: str | None, microbatches: int | None = None
) -> Scenario:
    """A :class:`Scenario` from the parsed scenario flags (``microbatches`` sets the default global batch)."""
    if not args["model_arg"]:
        raise InputError(f"--model is required; presets: {', '.join(model_names())} (or a config.json path)")
    model = resolve_model(args["model_arg"])
    gpu = resolve_gpu(args["gpu_arg"])
    tp, gpus = args["tp"], args["gpus"]
    for flag, value in (("--tp", tp), ("--pp", pp), ("--vpp", vpp)):
        if value < 1:
            raise InputError(f"{flag}={value} must be >= 1")
    dp = args["dp"]
    if dp is None:
        dp = gpus // (tp * pp) if gpus is not None and gpus % (tp * pp) == 0 and gpus >= tp * pp else 1
    mbs = args["micro_batch_size"]
    gbs = args["global_batch_size"]
    if gbs is None:
        gbs = mbs * dp * (microbatches if microbatches is not None else 4 * pp)
    if schedule is None:
        schedule = "interleaved-1f1b" if vpp > 1 else "1f1b"
    layout = Layout(
        tp=tp,
        pp=pp,
        dp=dp,
        vpp=vpp,
        micro_batch_size=mbs,
        global_batch_size=gbs,
        seq_length=args["seq_length"],
        sequence_parallel=args["sequence_parallel"],
        recompute=args["recompute"],
        distributed_optimizer=args["distributed_optimizer"],
        zero_stage=args["zero_stage"],
        precision=args["precision"],
        schedule=schedule,
        attention=args["attention"],
        dp_overlap=args["dp_overlap"],
        tp_comm_overlap=args["tp_comm_overlap"],
        uneven_layers=args["uneven_layers"],
    )
    check_gpu_count(layout, gpus)
    gpu.peak(layout.precision)  # fail early if the GPU lacks the precision
    for flag, value in (
        ("--intra-node-GBps", args["intra_node_gbps"]),
        ("--inter-node-GBps", args["inter_node_gbps"]),
    ):
        if not value > 0:
            raise InputError(f"{flag}={value} must be > 0")
    if args["gpus_per_node"] < 1:
        raise InputError(f"--gpus-per-node={args['gpus_per_node']} must be >= 1")
    comm: CommModel = LevelCommModel(
        gpus_per_node=args["gpus_per_node"],
        intra_Bps=args["intra_node_gbps"] * 1e9,
        inter_Bps=args["inter_node_gbps"] * 1e9,
    )
    if args["topology"]:
        comm = build_comm(ClusterSpec(args["topology"], args["nodes"]), layout.num_gpus)
    elif args["nodes"] is not None:
        raise InputError("--nodes needs --topology (the servers of which cluster?)")
    return Scenario(model, gpu, layout, comm, rank_order=parse_order(args["rank_order"]))


def scenario_request(
    *,
    pp: int,
    microbatches: int,
    vpp: int,
    schedules_opt: str | None,
    forward_time: float,
    backward_time: float,
    weight_time: float | None,
    memory_limit: float | None,
    p2p_time: float,
    activation_bytes: float,
    schedule_files: Sequence[str],
    dp_time: float = 0.0,
    dp_buckets: int = 4,
    dp_overlap: bool = True,
    optimizer: str = "sync",
    weight_stash: float = DEFAULT_STASH_FRACTION,
    fb_time: float | None = None,
) -> CompareRequest:
    """The scenario of ``compare``'s options (``gantt`` takes the same options and calls this too)."""
    names = _split_names(schedules_opt)
    if not names and not schedule_files:
        names = list(DEFAULT_SCHEDULES)
    if activation_bytes < 0:
        raise InputError(f"--activation-bytes={activation_bytes} must be >= 0")
    return CompareRequest(
        schedules=tuple(names),
        schedule_files=tuple(schedule_files),
        pp=pp,
        microbatches=microbatches,
        vpp=vpp,
        forward_s=_ms(forward_time, "--forward-time"),
        backward_s=_ms(backward_time, "--backward-time"),
        weight_s=_weight_s(weight_time, backward_time),
        memory_limit=memory_limit,
        p2p_s=_ms(p2p_time, "--p2p-time"),
        activation_bytes=activation_bytes,
        dp_s=_ms(dp_time, "--dp-time"),
        dp_buckets=_positive_int(dp_buckets, "--dp-buckets"),
        dp_overlap=dp_overlap,
        stash_fraction=_fraction(weight_stash, "--weight-stash"),
        optimizer=optimizer,
        fb_s=None if fb_time is None else _ms(fb_time, "--fb-time"),
    )


def _fraction(value: float, flag: str) -> float:
    """``value`` if it lies in [0, 1], else a one-line input error naming ``flag``."""
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{flag}={value:g} must be within [0, 1]")
    return value


def _positive_int(value: int, flag: str) -> int:
    if value < 1:
        raise InputError(f"{flag}={value} must be >= 1")
    return value


COMPARE_HELP = """Compare pipeline schedules side by side on one scenario.

With no flags: GPipe, 1F1B and interleaved 1F1B (vpp 2) on 4 ranks and 8 microbatches, forward 1 ms and
backward 2 ms per microbatch for a whole stage, 0.05 ms per transfer.

\b
Definitions:
  step time      end of the last span of the step
  bubble         idle fraction of the pipeline phase: 1 - busy / (ranks x time);
                 (p-1)/(m+p-1) for GPipe/1F1B, (p-1)/(v*m+p-1) interleaved
  bubble/ideal   Megatron-LM's form: idle / busy; (p-1)/m, interleaved (p-1)/(v*m)
  peak act       most activations a rank holds, in microbatches of one whole stage
                 (an interleaved chunk counts 1/v) and in bytes (GiB = 2^30 bytes)
  p2p / exposed  total transfer time / idle time that only transfers caused

\b
Split backward (zb-h1, zb-h2, zb-v, dualpipe-v, zb-1p, zb-2p): the full backward B
runs as I (input gradients, B - W) then W (--weight-time). Without --weight-time
W = B/2 (ZB paper Table 1: I and W each cost about 24*s*b*h^2 FLOPs per layer).
zb-1p/zb-2p are built by the ZB paper's automatic scheduler from these times
under --memory-limit, with W keeping --weight-stash of the activations.

\b
Optimizer modes (--optimizer):
  sync             a global barrier after every iteration; step time and bubble
                   of one step from t = 0 (the default)
  post-validation  ZB paper Section 4: no barrier, the next iteration's warm-up
                   overlaps this one's tail; step time = steady-state period
                   (T(N) - T(1)) / (N - 1) of N = 4 back-to-back iterations,
                   T(k) = end of iteration k; bubble = 1 - busy / (ranks x step)
"""


@main.command("compare", help=COMPARE_HELP)
@click.option("--pp", type=int, default=4, show_default=True, help="Pipeline stages (ranks).")
@click.option("--microbatches", "-m", type=int, default=8, show_default=True, help="Microbatches per step.")
@click.option(
    "--vpp", type=int, default=2, show_default=True, help="Model chunks per rank (interleaved schedules)."
)
@click.option(
    "--schedules",
    "schedules_opt",
    default=None,
    help=f"Comma list of schedules [default: gpipe,1f1b,interleaved-1f1b]. Known: {', '.join(schedule_names())}.",
)
@click.option(
    "--forward-time", type=float, default=1.0, show_default=True, help="ms per microbatch, whole stage."
)
@click.option(
    "--backward-time",
    type=float,
    default=2.0,
    show_default=True,
    help="ms per microbatch, whole stage, full backward.",
)
@click.option(
    "--weight-time",
    type=float,
    default=None,
    help="ms per microbatch, whole stage: the weight-gradient part W of the full backward, so I = B - W "
    "(split-backward schedules only). [default: half of --backward-time]",
)
@click.option(
    "--memory-limit",
    type=float,
    default=None,
    help="Activation cap for the greedy zb-1p/zb-2p orders, in microbatches of one stage per rank "
    "(>= 1). [default: pp for zb-1p, 2*pp for zb-2p]",
)
@click.option(
    "--p2p-time", type=float, default=0.05, show_default=True, help="ms per transfer between ranks."
)
@click.option(
    "--activation-bytes",
    type=float,
    default=float(GIB),
    show_default=True,
    help="Activation bytes per microbatch per whole stage.",
)
@click.option(
    "--dp-time",
    type=float,
    default=0.0,
    show_default=True,
    help="ms to reduce a whole stage's gradients over data parallelism (0: no DP). With --dp-overlap (the "
    "default) each bucket starts as soon as its gradients exist, during the stage's last B or W.",
)
@click.option(
    "--dp-buckets", type=int, default=4, show_default=True, help="Gradient buckets per stage for --dp-time."
)
@click.option(
    "--fb-time",
    type=float,
    default=None,
    help="ms per overlapped F&B pair of a whole stage (DualPipe's notation: the forward of one microbatch and "
    "the backward of another, each hiding the other's communication; dualpipe-v runs its pairs as one span). "
    "[default: no overlap, the pair's F then B]",
)
@click.option(
    "--optimizer",
    type=click.Choice(OPTIMIZER_MODES),
    default="sync",
    show_default=True,
    help="sync: a global barrier after each iteration; step and bubble of one step from t = 0. post-validation: "
    "the ZB paper's optimizer step without that barrier (its Section 4): the next iteration's warm-up overlaps "
    "this one's tail; step = steady-state period (T(N) - T(1))/(N - 1) of N = 4 back-to-back iterations.",
)
@click.option(
    "--weight-stash",
    "weight_stash",
    type=float,
    default=DEFAULT_STASH_FRACTION,
    show_default=True,
    help="Share of a microbatch's activations that W still needs after I (I frees the rest, W the stash); "
    "ZB paper Table 1: 32h/(34h + 5as), 32/34 with flash attention.",
)
@click.option(
    "--schedule-file",
    "schedule_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A PyTorch per-rank schedule CSV to simulate (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list with one object per schedule.")
@scenario_options
def compare_cmd(as_json: bool, **kwargs: Any) -> None:
    scenario_args = _pop_scenario(kwargs)  # the rest of kwargs are compare's synthetic options
    if scenario_args["model_arg"]:  # real model: the scenario flags replace the synthetic times
        _sync_only(kwargs["optimizer"])
        if kwargs["schedule_files"]:
            raise InputError(
                "--schedule-file cannot be combined with --model (per-stage costs need a registry schedule)"
            )
        names = _split_names(kwargs["schedules_opt"]) or list(DEFAULT_SCHEDULES)
        reports = compare_on_model(names, scenario_args, kwargs["pp"], kwargs["vpp"], kwargs["microbatches"])
        if as_json:
            emit_json([r.as_dict() | {"schedule": r.scenario.layout.schedule} for r in reports])
            return
        console().print(model_compare_table(reports))
        return
    request = scenario_request(**kwargs, dp_overlap=scenario_args["dp_overlap"])
    results = compare_schedules(request)
    if as_json:
        emit_json([r.as_dict() for r in results])
        return
    table = compare_table(results, request)
    console(fit=table).print(table)


def _sync_only(optimizer: str) -> None:
    """Real-model scenarios include DP reduction and the optimizer step, which post-validation does not place."""
    if optimizer != "sync":
        raise InputError(
            f"--optimizer {optimizer} is modelled for the synthetic scenario (the pipeline phase) only; a "
            "--model scenario's DP reduction and optimizer step need --optimizer sync"
        )


def _weight_s(weight_time: float | None, backward_time: float) -> float:
    """--weight-time in seconds: half the backward when not given; never more than the backward."""
    if weight_time is None:
        return _ms(backward_time, "--backward-time") / 2
    if weight_time > backward_time:
        raise InputError(
            f"--weight-time={weight_time:g} exceeds --backward-time={backward_time:g}: W is part of the full "
            f"backward B (I = B - W); valid: 0 to {backward_time:g}"
        )
    return _ms(weight_time, "--weight-time")


def compare_table(results: Sequence[PipelineMetrics], request: CompareRequest) -> Table:
    """The side-by-side table of ``pipesim compare``."""
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
    table = Table(
        title=(
            f"pp={request.pp}  microbatches={request.microbatches}  F={request.forward_s * 1e3:g} ms  "
            f"B={request.backward_s * 1e3:g} ms  {w_part}p2p={request.p2p_s * 1e3:g} ms{dp_part}  (per whole stage)"
        ),
        title_justify="left",
    )
    table.add_column("schedule", no_wrap=True)
    columns = ["pp", "vpp", "m", "step ms", "bubble", "bubble/ideal", "peak act mb", "peak act GiB", "p2p ms"]
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


# --------------------------------------------------------------------------- energy and cost (issue 8)
ENERGY_KEYS = ("tokens", "price_per_gpu_hour", "pue", "node_overhead_w")


def energy_options(func: Any) -> Any:
    """``--tokens``, ``--price-per-gpu-hour``, ``--pue`` and ``--node-overhead-W`` (model in
    :mod:`pipesim.sim.energy`)."""
    from pipesim.sim.energy import DEFAULT_NODE_OVERHEAD_W, DEFAULT_PUE

    options = [
        click.option(
            "--tokens",
            default=None,
            metavar="N",
            help="Train on N tokens (2T, 300B, 1.5e12): report the whole run's time, GPU-hours, MWh and cost.",
        ),
        click.option(
            "--price-per-gpu-hour",
            type=float,
            default=None,
            help="Money per GPU-hour; cost = GPU-hours x price.",
        ),
        click.option(
            "--pue",
            type=float,
            default=DEFAULT_PUE,
            show_default=True,
            help="Power usage effectiveness, facility / IT power (>= 1; assumption by default).",
        ),
        click.option(
            "--node-overhead-W",
            "node_overhead_w",
            type=float,
            default=DEFAULT_NODE_OVERHEAD_W,
            show_default=True,
            help="Watts per node besides the GPUs (CPUs, NICs, switches, fans; assumption by default).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _pop_energy(kwargs: dict[str, Any]) -> dict[str, Any]:
    from pipesim.sim.energy import check_price, check_pue, parse_count

    args = {k: kwargs.pop(k) for k in ENERGY_KEYS}
    check_pue(args["pue"])
    check_price(args["price_per_gpu_hour"])
    if not args["node_overhead_w"] >= 0:
        raise InputError(f"--node-overhead-W={args['node_overhead_w']} must be >= 0")
    args["tokens"] = None if args["tokens"] is None else parse_count(args["tokens"])
    return args


def report_energy(report: Any, args: dict[str, Any], gpus_per_node: int) -> Any:
    """The :class:`pipesim.sim.energy.EnergyReport` of a simulation, or None when the GPU has no TDP and no
    energy flag asked for one."""
    from pipesim.sim.energy import DEFAULT_NODE_OVERHEAD_W, DEFAULT_PUE, simulation_energy

    asked = args["tokens"] is not None or args["price_per_gpu_hour"] is not None
    asked = asked or args["pue"] != DEFAULT_PUE or args["node_overhead_w"] != DEFAULT_NODE_OVERHEAD_W
    if report.scenario.gpu.tdp_w is None and not asked:
        return None
    return simulation_energy(
        report,
        tokens=args["tokens"],
        pue=args["pue"],
        price_per_gpu_hour=args["price_per_gpu_hour"],
        node_overhead_w=args["node_overhead_w"],
        gpus_per_node=gpus_per_node,
    )


def _duration(seconds: float) -> str:
    days = seconds / 86400
    return f"{seconds / 3600:,.1f} h ({days:,.1f} days)" if days >= 1 else f"{seconds / 3600:,.2f} h"


def render_energy(energy: Any) -> None:
    """The energy and cost lines of ``simulate`` (and ``plan``): per step, per run with ``--tokens``, cost with
    ``--price-per-gpu-hour``, then the assumptions."""
    con = console()
    if energy is None:
        con.print("Energy: not computed (this GPU has no tdp_W; add it to the GPU TOML)", highlight=False)
        return
    con.print("Energy and cost (facility energy, PUE included; kWh = 3.6e6 J)", highlight=False)
    table = Table()
    table.add_column("", no_wrap=True)
    table.add_column("per step", justify="right", no_wrap=True)
    run = energy.steps > 1
    if run:
        table.add_column(f"run ({energy.steps:,} steps)", justify="right", no_wrap=True)
    rows = [
        ("time", f"{energy.step_time_s:.3f} s", _duration(energy.run_time_s)),
        ("GPU-hours", f"{energy.num_gpus * energy.step_time_s / 3600:,.3f}", f"{energy.gpu_hours:,.0f}"),
        ("energy", f"{energy.kwh_per_step:,.3f} kWh", f"{energy.mwh_per_run:,.1f} MWh"),
        ("power (facility)", f"{energy.facility_power_w / 1e3:,.1f} kW", ""),
    ]
    if energy.cost is not None:
        per_step = energy.cost / energy.steps if energy.steps else 0.0
        rows.append(("cost", f"{per_step:,.2f}", f"{energy.cost:,.0f}"))
    for label, step, whole in rows:
        table.add_row(label, step, *([whole] if run else []))
    con.print(table)
    for line in energy.assumptions():
        con.print(f"  {line}", highlight=False)


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
"""


@main.command("simulate", help=SIMULATE_HELP)
@click.option("--pp", type=int, default=1, show_default=True, help="Pipeline-parallel size.")
@click.option("--vpp", type=int, default=1, show_default=True, help="Model chunks per pipeline rank.")
@click.option(
    "--schedule",
    default=None,
    help=f"Pipeline schedule [default: interleaved-1f1b if vpp > 1 else 1f1b]. Known: {', '.join(schedule_names())}.",
)
@scenario_options
@energy_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--scenario",
    "scenario_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="A scenario TOML (e.g. written by pipesim plan); replaces the model, GPU, cluster and layout flags.",
)
def simulate_cmd(
    pp: int, vpp: int, schedule: str | None, as_json: bool, scenario_file: str | None, **kwargs: Any
) -> None:
    args = _pop_scenario(kwargs)
    energy_args = _pop_energy(kwargs)
    if scenario_file is not None:
        from pipesim.io.scenario_file import load_scenario_toml

        stored = load_scenario_toml(scenario_file)
        report = simulate_scenario(stored.scenario())
        args["gpus_per_node"] = stored.gpus_per_node
    else:
        if schedule is not None:
            get_family(schedule)  # unknown names list the valid ones
        report = simulate_scenario(build_scenario(args, pp, vpp, schedule))
    energy = report_energy(report, energy_args, args["gpus_per_node"])
    if as_json:
        emit_json({**report.as_dict(), "energy": energy.as_dict() if energy else None})
        return
    render_report(report)
    render_energy(energy)


def _gib(x: float) -> str:
    return f"{x / GIB:.2f}"


def render_report(report: SimulationReport) -> None:
    """The terminal view of ``pipesim simulate``: summary, time breakdown, memory per pipeline rank."""
    sc, lay = report.scenario, report.scenario.layout
    con = console()
    con.print(
        f"{sc.model.name} on {lay.num_gpus} x {sc.gpu.name}: dp={lay.dp} tp={lay.tp} pp={lay.pp} vpp={lay.vpp} "
        f"schedule={lay.schedule} micro-batch={lay.micro_batch_size} global-batch={lay.global_batch_size} "
        f"microbatches={lay.num_microbatches} seq={lay.seq(sc.model)} recompute={lay.recompute} "
        f"sp={'on' if lay.sequence_parallel else 'off'} precision={lay.precision} attention={lay.attention}",
        highlight=False,
    )
    con.print(f"communication: {sc.comm_description()}", highlight=False)
    con.print(f"placement: {sc.placement_description()}", highlight=False)
    summary = Table(title="Step", title_justify="left", show_header=False)
    summary.add_column("metric", no_wrap=True)
    summary.add_column("value", justify="right", no_wrap=True)
    rows = (
        ("step time", f"{report.step_time_s:.3f} s"),
        ("throughput", f"{report.tokens_per_s:,.0f} tokens/s  {report.samples_per_s:,.2f} samples/s"),
        ("model TFLOP/s per GPU", f"{report.model_tflops_per_gpu:.1f}"),
        ("hardware TFLOP/s per GPU", f"{report.hardware_tflops_per_gpu:.1f}"),
        (
            "MFU / HFU",
            f"{report.mfu:.1%} / {report.hfu:.1%}  (peak {report.peak_flops / 1e12:g} TFLOP/s {lay.precision})",
        ),
        ("bubble (of pipeline time)", f"{report.metrics.bubble_ratio:.1%}"),
        ("bubble / ideal (Megatron)", f"{report.metrics.bubble_over_ideal:.3f}"),
    )
    for k, v in rows:
        summary.add_row(k, v)
    con.print(summary)

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
    for key, label in labels.items():
        part = bd[key]
        share = "" if key == "recompute" else f"{part['exposed'] / step:.1%}"
        times.add_row(label, f"{part['total']:.3f}", f"{part['exposed']:.3f}", share)
    con.print(times)

    mem = Table(
        title=f"Memory per GPU by pipeline rank (GiB = 2^30 bytes; HBM {sc.gpu.hbm_bytes / GIB:.1f} GiB)",
        title_justify="left",
    )
    for col in (
        "rank",
        "weights",
        "grads",
        "optimizer",
        "activations",
        "transient",
        "reserve",
        "peak",
        "verdict",
    ):
        mem.add_column(col, justify="right", no_wrap=True)
    shown = list(report.memory)
    if len(shown) > 8:
        worst = report.worst_memory
        keep = {shown[0].rank, shown[-1].rank, worst.rank}
        shown = [m for m in shown if m.rank in keep]
    for m in shown:
        mem.add_row(
            str(m.rank),
            _gib(m.weights),
            _gib(m.grads),
            _gib(m.optimizer),
            _gib(m.activations),
            _gib(m.transient),
            _gib(m.reserve),
            _gib(m.peak),
            "fits" if m.fits else "OUT OF MEMORY",
        )
    con.print(mem)
    if len(shown) < len(report.memory):
        con.print(
            f"(showing first, last and most loaded of {len(report.memory)} pipeline ranks; --json lists all)"
        )
    verdict = "fits" if report.fits else "OUT OF MEMORY"
    worst = report.worst_memory
    con.print(
        f"Verdict: {verdict} (most loaded: pipeline rank {worst.rank}, {_gib(worst.peak)} of "
        f"{_gib(sc.gpu.hbm_bytes)} GiB)",
        highlight=False,
    )


def compare_on_model(
    names: Sequence[str], args: dict[str, Any], pp: int, vpp: int, microbatches: int
) -> list[SimulationReport]:
    """``compare --model``: simulate each named schedule on the real scenario."""
    reports = []
    for name in names:
        family = get_family(name)
        layout_vpp = vpp if family.uses_vpp else 1
        reports.append(simulate_scenario(build_scenario(args, pp, layout_vpp, name, microbatches)))
    return reports


def model_compare_table(reports: Sequence[SimulationReport]) -> Table:
    """The side-by-side table of ``pipesim compare --model``."""
    first = reports[0].scenario
    lay = first.layout
    table = Table(
        title=(
            f"{first.model.name} on {lay.num_gpus} x {first.gpu.name}: dp={lay.dp} tp={lay.tp} pp={lay.pp} "
            f"micro-batch={lay.micro_batch_size} global-batch={lay.global_batch_size} (GiB = 2^30 bytes)"
        ),
        title_justify="left",
    )
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
            _gib(r.worst_memory.peak),
            "fits" if r.fits else "OOM",
        )
    return table


# --- pipesim gantt -------------------------------------------------------------------------------------------

GANTT_HELP = """Draw Gantt charts of simulated steps: one self-contained HTML page (opens offline) and/or a
Chrome trace (opens in Perfetto) and/or a static PNG/SVG.

Takes the same scenario flags as compare. The page shows one chart per schedule on a shared time axis: a lane
per rank with its communication lane under it, bars coloured by op and labelled with the microbatch, hover
with stage, microbatch, start, end and duration, grey gaps for bubbles, and under each chart the activation
memory of every rank over time (with the GPU's capacity when --gpu-memory-gib is given).

--iterations N draws N consecutive iterations: under --optimizer sync each one starts after the previous one's
last span (the global barrier); under --optimizer post-validation they run back to back, the next iteration's
warm-up overlapping this one's tail (at least 2 are drawn; the default draws the 4 the steady state is measured
on). The metrics shown are per iteration.
"""

# The scenario options are compare's own Parameter objects, so the two commands never drift apart.
SCENARIO_PARAMS = [p for p in compare_cmd.params if p.name != "as_json"]


@main.command("gantt", help=GANTT_HELP)
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), help="HTML page to write.")
@click.option(
    "--trace", "trace_path", type=click.Path(dir_okay=False), help="Chrome-trace JSON to write (Perfetto)."
)
@click.option(
    "--image",
    "image_path",
    type=click.Path(dir_okay=False),
    help="Static figure to write, .png or .svg (needs Chromium or Chrome).",
)
@click.option(
    "--gpu-memory-gib", type=float, default=None, help="GPU memory capacity in GiB (2^30 B), drawn as a line."
)
@click.option(
    "--iterations",
    type=int,
    default=None,
    help="Consecutive iterations to draw [default: 1 under --optimizer sync, 4 under post-validation].",
)
@click.option(
    "--scenario",
    "scenario_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="A scenario TOML (e.g. the winner written by pipesim plan); replaces the scenario flags.",
)
def gantt_cmd(
    output: str | None,
    trace_path: str | None,
    image_path: str | None,
    gpu_memory_gib: float | None,
    iterations: int | None,
    scenario_file: str | None,
    **scenario: Any,
) -> None:
    from pipesim.figures.gantt import gantt_page
    from pipesim.figures.static import check_image_target, export_image
    from pipesim.io.atomic import atomic_write_text, check_output_path
    from pipesim.sim.series import simulate_series
    from pipesim.sim.trace import chrome_trace_json

    if not (output or trace_path or image_path):
        raise InputError(
            "nothing to write: give -o PAGE.html, --trace TRACE.json and/or --image FIG.png|.svg"
        )
    if gpu_memory_gib is not None and not gpu_memory_gib > 0:
        raise InputError(f"--gpu-memory-gib={gpu_memory_gib} must be > 0 (GiB = 2^30 bytes)")
    # Check every target before simulating, so a bad path fails fast and nothing is half-written.
    for path in (output, trace_path):
        if path:
            check_output_path(path)
    if image_path:
        check_image_target(image_path)
    if iterations is not None:
        _positive_int(iterations, "--iterations")
    model_args = _pop_scenario(scenario)
    capacity = gpu_memory_gib * GIB if gpu_memory_gib is not None else None
    if scenario_file is not None or model_args["model_arg"]:  # a real model: per-stage costs
        _sync_only(scenario["optimizer"])
        from pipesim.io.scenario_file import load_scenario
        from pipesim.sim.series import gantt_series

        if scenario_file is not None:
            reports = [simulate_scenario(load_scenario(scenario_file))]
        else:
            names = _split_names(scenario["schedules_opt"]) or list(DEFAULT_SCHEDULES)
            reports = compare_on_model(
                names, model_args, scenario["pp"], scenario["vpp"], scenario["microbatches"]
            )
        panels = []
        for r in reports:
            run = run_iterations(r.schedule, r.costs, "sync", iterations)
            panels.append(gantt_series(run.schedule, r.costs, run.timeline, r.metrics))
        sc = reports[0].scenario
        if capacity is None:
            capacity = sc.gpu.hbm_bytes
        scenario_rows = [
            ("schedules", ", ".join(p.name for p in panels)),
            ("model", sc.model.name),
            ("gpu", sc.gpu.name),
            ("layout", f"dp={sc.layout.dp} tp={sc.layout.tp} pp={sc.layout.pp} vpp={sc.layout.vpp}"),
            ("microbatches", str(sc.layout.num_microbatches)),
            ("micro batch", str(sc.layout.micro_batch_size)),
            ("recompute", sc.layout.recompute),
            ("GPU memory", f"{capacity / GIB:g} GiB"),
        ]
    else:
        request = scenario_request(**scenario, dp_overlap=model_args["dp_overlap"])
        panels = simulate_series(request, iterations)
        scenario_rows = [
            ("schedules", ", ".join(p.name for p in panels)),
            ("pp", str(request.pp)),
            ("microbatches", str(request.microbatches)),
            ("vpp", str(request.vpp)),
            ("F", f"{request.forward_s * 1e3:g} ms"),
            ("B", f"{request.backward_s * 1e3:g} ms"),
            ("p2p", f"{request.p2p_s * 1e3:g} ms"),
            ("activations", f"{request.activation_bytes / GIB:g} GiB"),
            ("GPU memory", f"{gpu_memory_gib:g} GiB" if gpu_memory_gib is not None else "not given"),
            ("times", "per microbatch, whole stage"),
            ("optimizer", request.optimizer),
        ]
    page = gantt_page(panels, scenario_rows, gpu_memory_bytes=capacity) if (output or image_path) else ""
    if output:
        atomic_write_text(output, page)
        click.echo(f"wrote {output} ({len(page.encode()) / 1e6:.1f} MB, {len(panels)} schedules)")
    if trace_path:
        atomic_write_text(trace_path, chrome_trace_json([(p.name, p.num_stages, p.timeline) for p in panels]))
        click.echo(f"wrote {trace_path} (Chrome trace; open in https://ui.perfetto.dev)")
    if image_path:
        export_image(page, image_path)
        click.echo(f"wrote {image_path}")


gantt_cmd.params[len(gantt_cmd.params) :] = SCENARIO_PARAMS


# --------------------------------------------------------------------------- roofline (issue 8)
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


@main.command("roofline", help=ROOFLINE_HELP)
@MODEL_REQUIRED
@GPU_OPTION
@click.option("--tp", type=int, default=1, show_default=True, help="Tensor-parallel size.")
@click.option("--micro-batch-size", type=int, default=1, show_default=True, help="Sequences per microbatch.")
@click.option("--seq-length", type=int, default=None, help="Sequence length [default: the model's].")
@click.option(
    "--precision",
    default="bf16",
    show_default=True,
    help="Number format of the GEMMs: bf16, fp16, fp8, tf32 or fp32; a comma list (bf16,fp8) compares them.",
)
@click.option(
    "--attention",
    default="flash",
    show_default=True,
    help="flash (fused) or unfused (scores, softmax, context).",
)
@click.option("--recompute", default="none", show_default=True, help="none, selective or full.")
@click.option("--sequence-parallel", is_flag=True, help="Megatron sequence parallelism (needs tp > 1).")
@click.option(
    "--tp-comm-overlap/--no-tp-comm-overlap",
    default=True,
    show_default=True,
    help="Overlap backward TP collectives.",
)
@click.option("--gpus-per-node", type=int, default=8, show_default=True, help="GPUs per node.")
@click.option(
    "--intra-node-GBps",
    "intra_node_gbps",
    type=float,
    default=240.0,
    show_default=True,
    help="Per-GPU bandwidth inside a node for the TP collectives, GB/s (same default as simulate).",
)
@click.option(
    "--topology",
    "roof_topology",
    default=None,
    metavar="NAME|FILE.toml",
    help="Time the TP collectives on this cluster topology (e.g. dgx-h100) instead of --intra-node-GBps.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the interactive HTML page here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the tables as JSON.")
def roofline_cmd(
    model_arg: str,
    gpu_arg: str,
    tp: int,
    micro_batch_size: int,
    seq_length: int | None,
    precision: str,
    attention: str,
    recompute: str,
    sequence_parallel: bool,
    tp_comm_overlap: bool,
    gpus_per_node: int,
    intra_node_gbps: float,
    roof_topology: str | None,
    output: str | None,
    as_json: bool,
) -> None:
    from pipesim.comm.base import LevelCommModel
    from pipesim.cost.roofline import check_precision, roofline
    from pipesim.figures.roofline import TABLE_LEGEND
    from pipesim.io.atomic import atomic_write_text, check_output_path
    from pipesim.io.readers import resolve_gpu, resolve_model
    from pipesim.specs.layout import TRAIN_PRECISIONS, Layout

    precisions = _split_names(precision)
    if not precisions:
        raise InputError("--precision is empty; give bf16, fp16, fp8, tf32 or fp32 (or a comma list)")
    model = resolve_model(model_arg)
    gpu = resolve_gpu(gpu_arg)
    for prec in precisions:
        check_precision(gpu, prec)
    if not intra_node_gbps > 0:
        raise InputError(f"--intra-node-GBps={intra_node_gbps} must be > 0")
    if gpus_per_node < 1:
        raise InputError(f"--gpus-per-node={gpus_per_node} must be >= 1")
    if output is not None:
        check_output_path(output)
    layout = Layout(
        tp=tp,
        micro_batch_size=micro_batch_size,
        global_batch_size=micro_batch_size,
        seq_length=seq_length,
        sequence_parallel=sequence_parallel,
        recompute=recompute,
        attention=attention,
        tp_comm_overlap=tp_comm_overlap,
        precision=precisions[0] if precisions[0] in TRAIN_PRECISIONS else "bf16",
    )
    if roof_topology:
        comm: Any = build_comm(ClusterSpec(roof_topology), tp)
        comm_note = f"TP collectives timed on the {roof_topology} topology"
    else:
        comm = LevelCommModel(gpus_per_node=gpus_per_node, intra_Bps=intra_node_gbps * 1e9)
        comm_note = f"TP collectives: ring at {intra_node_gbps:g} GB/s per GPU inside a node (--topology for a real graph)"
    tables = [roofline(model, layout, gpu, prec, comm=comm) for prec in precisions]
    if output is not None:
        from pipesim.figures.roofline import roofline_html

        atomic_write_text(output, roofline_html(tables, [*_roofline_notes(tables), comm_note]))
    if as_json:
        emit_json(
            {
                "model": model.name,
                "gpu": gpu.name,
                "tp": tp,
                "micro_batch_size": micro_batch_size,
                "seq_length": layout.seq(model),
                "attention": attention,
                "recompute": recompute,
                "sequence_parallel": sequence_parallel,
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
    if output is not None:
        con.print(f"wrote {output}", highlight=False)


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
    out = Table(title=title, title_justify="left")
    for i, col in enumerate(TABLE_COLUMNS):
        out.add_column(col, justify="left" if i in (0, 1, 2, 9) else "right", no_wrap=True)
    for row in table_rows(table):
        out.add_row(*row)
    return out


# ---- topologies and collectives ---------------------------------------------------------------------------


def _gbps(bw_Bps: float) -> str:
    return f"{bw_Bps / 1e9:,.1f}"


@main.group("topo")
def topo_group() -> None:
    """Cluster topologies: list the presets, summarize or draw one (a preset name or a TOML file)."""


@topo_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per preset.")
def topo_list_cmd(as_json: bool) -> None:
    """List the bundled topology presets."""
    from topologies import build_cluster, preset_names
    from topologies.summary import summarize

    rows = [summarize(build_cluster(name, 1)) for name in preset_names()]
    if as_json:
        emit_json(
            [
                {
                    "name": r.name,
                    "gpus_per_node": r.gpus_per_node,
                    "nvlink_per_gpu_Bps": r.nvlink_per_gpu_Bps,
                    "network_per_gpu_Bps": r.network_per_gpu_Bps,
                    "description": r.description,
                }
                for r in rows
            ]
        )
        return
    table = Table(title="topology presets (GB/s = 1e9 B/s, per direction, line rate)", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("GPUs/node", justify="right")
    table.add_column("NVLink/GPU GB/s", justify="right")
    table.add_column("network/GPU GB/s", justify="right")
    table.add_column("description")
    for r in rows:
        table.add_row(
            r.name,
            str(r.gpus_per_node),
            _gbps(r.nvlink_per_gpu_Bps),
            _gbps(r.network_per_gpu_Bps),
            r.description,
        )
    console().print(table)


TOPOLOGY_ARG = click.argument("topology", metavar="NAME|FILE.toml")
NODES_OPT = click.option("--nodes", type=int, default=1, show_default=True, help="Servers (racks for nvl72).")
FABRIC_OPT = click.option(
    "--fabric", type=click.Choice(["rail", "fat-tree"]), default=None, help="Override the fabric kind."
)
OVERSUB_OPT = click.option(
    "--oversubscription", type=float, default=None, help="Leaf down:up ratio (1 = full bisection)."
)


@topo_group.command("show")
@TOPOLOGY_ARG
@NODES_OPT
@FABRIC_OPT
@OVERSUB_OPT
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON (B/s, SI units).")
def topo_show_cmd(
    topology: str, nodes: int, fabric: str | None, oversubscription: float | None, as_json: bool
) -> None:
    """Summarize a cluster: GPUs, links by kind, per-GPU and bisection bandwidth (line rates, GB/s = 1e9 B/s
    per direction; bisection = max flow between the first and second half of the GPUs)."""
    from topologies import build_cluster
    from topologies.summary import summarize

    s = summarize(build_cluster(topology, nodes, fabric=fabric, oversubscription=oversubscription))
    if as_json:
        emit_json(s.as_dict())
        return
    out = click.echo
    out(f"{s.name}: {s.description}" if s.description else s.name)
    fabric_txt = (
        "none (one node)" if s.fabric == "none" else f"{s.fabric}, oversubscription {s.oversubscription:g}:1"
    )
    out(f"nodes {s.nodes}, GPUs {s.gpus} ({s.gpus_per_node} per node), fabric {fabric_txt}")
    out(f"NVLink SHARP (in-switch reduction): {'yes' if s.in_switch_reduction else 'no'}")
    table = Table(title="links by kind", title_justify="left")
    table.add_column("kind", no_wrap=True)
    table.add_column("links", justify="right")
    table.add_column("total GB/s per direction (line rate, 1e9 B/s)", justify="right")
    for kind, (count, bw) in s.links.items():
        table.add_row(kind, str(count), _gbps(bw))
    console().print(table)
    out(
        f"per GPU: NVLink {_gbps(s.nvlink_per_gpu_Bps)} GB/s, PCIe {_gbps(s.pcie_per_gpu_Bps)} GB/s, "
        f"network {_gbps(s.network_per_gpu_Bps)} GB/s"
    )
    out(f"bisection: {_gbps(s.bisection_Bps)} GB/s")


@topo_group.command("draw")
@TOPOLOGY_ARG
@NODES_OPT
@FABRIC_OPT
@OVERSUB_OPT
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="HTML file to write.")
def topo_draw_cmd(
    topology: str, nodes: int, fabric: str | None, oversubscription: float | None, output: str
) -> None:
    """Draw a cluster as a self-contained interactive HTML page (hover links for their bandwidth)."""
    from pipesim.figures.topology import write_topology_html
    from topologies import build_cluster

    write_topology_html(
        build_cluster(topology, nodes, fabric=fabric, oversubscription=oversubscription), output
    )
    click.echo(f"wrote {output}")


COLLECTIVE_HELP = """Time a collective on a topology, as an nccl-tests-style sweep over message sizes.

OP is all-reduce, all-gather, reduce-scatter, all-to-all, broadcast or send-recv (rank 0 to the last rank).
Sizes follow nccl-tests: the whole buffer, K/M/G = 2^10/2^20/2^30 bytes; -b 8 -e 8G -f 2 sweeps 8 B to 8 GiB.

\b
  algbw = size / time            (GB/s = 1e9 B/s)
  busbw = algbw x factor         all-reduce 2(n-1)/n; all-gather, reduce-scatter, all-to-all (n-1)/n;
                                 broadcast, send-recv 1   (NVIDIA/nccl-tests doc/PERFORMANCE.md)
"""


@main.command("collective", help=COLLECTIVE_HELP)
@click.argument(
    "op",
    type=click.Choice(["all-reduce", "all-gather", "reduce-scatter", "all-to-all", "broadcast", "send-recv"]),
)
@click.option("--topology", "-t", required=True, metavar="NAME|FILE.toml", help="Preset name or TOML file.")
@NODES_OPT
@click.option("--gpus", "-g", type=int, default=None, help="GPUs in the group (ranks 0..G-1) [default: all].")
@click.option(
    "--algo",
    type=click.Choice(["auto", "ring", "tree", "hierarchical", "nvls", "direct"]),
    default="auto",
    show_default=True,
    help="Algorithm; auto picks the fastest per size, as NCCL does.",
)
@click.option("-b", "--minbytes", default="8", show_default=True, help="Smallest size.")
@click.option("-e", "--maxbytes", default="8G", show_default=True, help="Largest size.")
@click.option("-f", "--stepfactor", type=int, default=2, show_default=True, help="Size multiplier per row.")
@FABRIC_OPT
@OVERSUB_OPT
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one row per size.")
def collective_cmd(
    op: str,
    topology: str,
    nodes: int,
    gpus: int | None,
    algo: str,
    minbytes: str,
    maxbytes: str,
    stepfactor: int,
    fabric: str | None,
    oversubscription: float | None,
    as_json: bool,
) -> None:
    from pipesim.comm.topology import TopologyCommModel, parse_size, size_sweep

    cluster = ClusterSpec(topology, nodes, fabric=fabric, oversubscription=oversubscription)
    n = nodes * cluster.node_gpus() if gpus is None else gpus
    if n < 2:
        raise InputError(f"--gpus={n} must be >= 2 for a collective")
    model = build_comm(cluster, n)
    assert isinstance(model, TopologyCommModel)
    graph = model.graph
    ranks = [0, n - 1] if op == "send-recv" else list(range(n))
    sizes = size_sweep(parse_size(minbytes), parse_size(maxbytes), stepfactor)
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


# --------------------------------------------------------------------------- plan (capacity planning)
PLAN_HELP = """Search every valid parallel layout, rank by throughput, explain, estimate training time.

Every layout (tp, pp, dp, vpp, micro-batch size, schedule, recompute, distributed optimizer, sequence
parallel) that uses all GPUs is checked against the model and the schedule's rules, estimated analytically,
and the fastest --top-k are simulated on the full timeline. Example:

\b
  pipesim plan --model llama3-70b --gpu h100-sxm --topology dgx-h100 --nodes 64 \\
      --global-batch-size 1024 --seq-length 8192 --tokens 15T

\b
Definitions:
  step s         seconds per optimizer step (simulated for the top --top-k, else estimated: est.)
  tokens/s       global batch x sequence length / step time, whole cluster
  TFLOP/s, MFU   model FLOPs (no recompute; Korthikanti eq. 7) per GPU per second, over the dense peak
  HFU            hardware FLOPs (recompute counted, SC21 eq. 3 with full recompute) over the peak
  peak, free     memory per GPU of the most loaded pipeline rank and HBM minus it; GiB = 2^30 bytes
  breakdown      exposed seconds per part of the best layouts: compute, TP comm, bubble, PP comm,
                 DP comm, optimizer (they add up to the step time)
  days, GPU-h    --tokens / tokens per second; x GPUs / 3600 (SC21 eq. 4 with simulated throughput)
"""


def _int_list(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    out = []
    for part in _split_names(text):
        try:
            out.append(int(part))
        except ValueError:
            raise InputError(f"{flag}={text!r}: {part!r} is not an integer; give e.g. 1,2,4") from None
    if not out:
        raise InputError(f"{flag}: give at least one value")
    return tuple(out)


def _onoff(text: str, flag: str) -> tuple[bool, ...]:
    choices = {"on": (True,), "off": (False,), "both": (False, True)}
    if text not in choices:
        raise InputError(f"{flag}={text!r}; valid: on, off, both")
    return choices[text]


@main.command("plan", help=PLAN_HELP)
@MODEL_REQUIRED
@GPU_OPTION
@click.option(
    "--topology",
    default=None,
    help="Topology preset (dgx-a100, dgx-h100, ...) or TOML; else a two-level model.",
)
@click.option("--nodes", type=int, default=None, help="Nodes in the cluster (GPUs = nodes x GPUs per node).")
@click.option(
    "--gpus", type=int, default=None, help="Total GPUs instead of --nodes (a multiple of the GPUs per node)."
)
@click.option(
    "--gpus-per-node", type=int, default=None, help="GPUs per node without --topology [default: 8]."
)
@click.option(
    "--intra-node-GBps",
    "intra_gbps",
    type=float,
    default=240.0,
    show_default=True,
    help="No topology: per-GPU NVLink GB/s.",
)
@click.option(
    "--inter-node-GBps",
    "inter_gbps",
    type=float,
    default=24.0,
    show_default=True,
    help="No topology: per-GPU network GB/s.",
)
@click.option("--global-batch-size", type=int, required=True, help="Sequences per optimizer step.")
@click.option("--seq-length", type=int, default=None, help="Sequence length [default: the model's].")
@click.option(
    "--tokens",
    "tokens_text",
    default=None,
    help="Training tokens (K/M/B/T suffixes, e.g. 15T): adds days and GPU-hours.",
)
@click.option(
    "--max-days",
    type=float,
    default=None,
    help="With --tokens: find the fewest nodes that train within this many days.",
)
@click.option(
    "--max-nodes", type=int, default=4096, show_default=True, help="Upper bound of the --max-days search."
)
@click.option("--tp", "tp_text", default=None, help="Only these tensor-parallel sizes (comma list).")
@click.option("--pp", "pp_text", default=None, help="Only these pipeline-parallel sizes (comma list).")
@click.option(
    "--vpp", "vpp_text", default=None, help="Only these chunk counts for interleaved schedules (comma list)."
)
@click.option("--max-tp", type=int, default=None, help="Largest tensor-parallel size.")
@click.option("--max-pp", type=int, default=None, help="Largest pipeline-parallel size.")
@click.option(
    "--micro-batch-size",
    "mbs_text",
    default="1,2,4,8",
    show_default=True,
    help="Micro-batch sizes (comma list).",
)
@click.option(
    "--schedules",
    "schedules_text",
    default=None,
    help="Schedules (comma list) [default: all but zb-v-half and zb-v-min, which the estimate cannot track "
    f"yet: {', '.join(n for n, f in REGISTRY.items() if f.planned)}].",
)
@click.option(
    "--recompute",
    "recompute_text",
    default="none,selective,full",
    show_default=True,
    help="Recompute modes (comma list).",
)
@click.option(
    "--distributed-optimizer", "do_text", default="both", show_default=True, help="on, off or both."
)
@click.option(
    "--sequence-parallel", "sp_text", default="both", show_default=True, help="on, off or both (tp > 1 only)."
)
@click.option("--allow-cross-node-tp", is_flag=True, help="Let tp exceed the GPUs per node (NVLink domain).")
@click.option("--uneven-layers", is_flag=True, help="Allow pp (x vpp) not dividing the layer count.")
@click.option("--precision", default="bf16", show_default=True, help="GEMM precision: bf16, fp16, fp8.")
@click.option("--attention", default="flash", show_default=True, help="Attention kernels: flash or unfused.")
@click.option(
    "--dp-overlap/--no-dp-overlap",
    default=True,
    show_default=True,
    help="Overlap gradient reduction with backward.",
)
@click.option(
    "--top-k", type=int, default=16, show_default=True, help="Layouts simulated on the full timeline."
)
@click.option(
    "--top", "show", type=int, default=10, show_default=True, help="Rows shown (JSON/CSV: all if 0)."
)
@click.option("--explain", is_flag=True, help="Count rejected layouts by reason.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: candidates, feasible, results.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the ranked results as CSV.")
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write an interactive HTML chart (step time vs peak memory).",
)
@click.option(
    "--scenario-out",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the winner's scenario TOML to this file.",
)
@click.option(
    "--workers", type=int, default=None, help="Local worker processes [default: the CPUs available]."
)
@click.option("--dask-scheduler", default=None, help="Run on this Dask scheduler (tcp://host:port).")
@click.option(
    "--price-per-gpu-hour", type=float, default=None, help="Money per GPU-hour: adds the winner's cost."
)
@click.option("--pue", type=float, default=None, help="Power usage effectiveness for the winner's energy.")
def plan_cmd(**kw: Any) -> None:
    from pipesim.io.readers import resolve_gpu, resolve_model
    from pipesim.plan.executors import ExecutorSpec, default_workers
    from pipesim.plan.search import (
        PlanCluster,
        PlanRequest,
        SearchSpace,
        fewest_nodes,
        parse_tokens,
        plan,
    )

    if kw["as_json"] and kw["as_csv"]:
        raise InputError("--json and --csv are exclusive; pick one")
    model = resolve_model(kw["model_arg"])
    gpu = resolve_gpu(kw["gpu_arg"])
    if kw["topology"] is not None:
        per = ClusterSpec(kw["topology"]).node_gpus()
        if kw["gpus_per_node"] is not None and kw["gpus_per_node"] != per:
            raise InputError(
                f"--gpus-per-node={kw['gpus_per_node']} contradicts topology {kw['topology']} ({per} per node)"
            )
    else:
        per = kw["gpus_per_node"] or 8
    nodes = kw["nodes"]
    if kw["gpus"] is not None:
        if nodes is not None:
            raise InputError("give --nodes or --gpus, not both")
        if kw["gpus"] < 1 or kw["gpus"] % per:
            raise InputError(f"--gpus={kw['gpus']} must be a positive multiple of the {per} GPUs per node")
        nodes = kw["gpus"] // per
    if nodes is None:
        if kw["max_days"] is None:
            raise InputError(
                "give --nodes N or --gpus N (or --max-days with --tokens to find the node count)"
            )
        nodes = 1
    for flag in ("intra_gbps", "inter_gbps"):
        if not kw[flag] > 0:
            raise InputError(
                f"--{'intra' if flag == 'intra_gbps' else 'inter'}-node-GBps={kw[flag]} must be > 0"
            )
    cluster = PlanCluster(
        gpu, nodes, per, kw["topology"], LevelCommModel(per, kw["intra_gbps"] * 1e9, kw["inter_gbps"] * 1e9)
    )
    space = SearchSpace(
        tp=_int_list(kw["tp_text"], "--tp"),
        pp=_int_list(kw["pp_text"], "--pp"),
        vpp=_int_list(kw["vpp_text"], "--vpp"),
        micro_batch_sizes=_int_list(kw["mbs_text"], "--micro-batch-size") or (1,),
        schedules=tuple(_split_names(kw["schedules_text"])) if kw["schedules_text"] else None,
        recompute=tuple(_split_names(kw["recompute_text"])),
        distributed_optimizer=_onoff(kw["do_text"], "--distributed-optimizer"),
        sequence_parallel=_onoff(kw["sp_text"], "--sequence-parallel"),
        max_tp=kw["max_tp"],
        max_pp=kw["max_pp"],
        allow_cross_node_tp=kw["allow_cross_node_tp"],
        uneven_layers=kw["uneven_layers"],
    )
    tokens = parse_tokens(kw["tokens_text"]) if kw["tokens_text"] is not None else None
    if kw["attention"] not in ("flash", "unfused"):
        raise InputError(f"--attention={kw['attention']!r}; valid: flash, unfused")
    request = PlanRequest(
        model=model,
        cluster=cluster,
        global_batch_size=kw["global_batch_size"],
        seq_length=kw["seq_length"],
        space=space,
        precision=kw["precision"],
        attention=kw["attention"],
        dp_overlap=kw["dp_overlap"],
        top_k=kw["top_k"],
        tokens=tokens,
    )
    if kw["show"] < 0:
        raise InputError(f"--top={kw['show']} must be >= 0")
    executor: ExecutorSpec[Any] = ExecutorSpec(
        workers=kw["workers"] if kw["workers"] is not None else default_workers(),
        dask_scheduler=kw["dask_scheduler"],
    )
    if kw["output"] is not None:
        from pipesim.io.atomic import check_output_path

        check_output_path(kw["output"])
    if kw["scenario_out"] is not None:
        from pipesim.io.atomic import check_output_path

        check_output_path(kw["scenario_out"])
    quiet = kw["as_json"] or kw["as_csv"]
    bar = _PlanProgress(enabled=not quiet and sys.stderr.isatty())
    probes: tuple[tuple[int, float | None], ...] = ()
    with bar:
        if kw["max_days"] is not None:
            if tokens is None:
                raise InputError("--max-days needs --tokens (e.g. --tokens 15T)")
            max_nodes = min(kw["max_nodes"], kw["nodes"]) if kw["nodes"] is not None else kw["max_nodes"]
            search = fewest_nodes(request, kw["max_days"], max_nodes, executor, bar.probe)
            result, probes = search.result, search.probes
        else:
            result = plan(request, executor, bar.update)
    _plan_outputs(result, kw, probes)


class _PlanProgress:
    """A rich progress bar on stderr (a no-op when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _PlanProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=sys.stderr),
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, phase: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        label = {"estimate": "estimating layouts", "simulate": "simulating the best"}.get(phase, phase)
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(label, total=total)
        self._progress.update(self._tasks[phase], completed=done, total=total)

    def probe(self, nodes: int, days: float | None) -> None:
        if self._progress is not None:
            got = f"{days:.1f} days" if days is not None else "nothing fits"
            self._progress.console.print(f"  {nodes} nodes: {got}", highlight=False)


def _plan_outputs(result: Any, kw: dict[str, Any], probes: tuple[tuple[int, float | None], ...]) -> None:
    from pipesim.io.megatron import format_megatron_args
    from pipesim.io.scenario_file import ScenarioFile, scenario_toml

    req = result.request
    best = result.best
    limit = kw["show"] or None
    winner_layout = best.candidate.layout(req)
    sf = ScenarioFile(
        req.model,
        req.cluster.gpu,
        winner_layout,
        req.cluster.topology,
        req.cluster.nodes,
        req.cluster.gpus_per_node,
        req.cluster.level.intra_Bps,
        req.cluster.level.inter_Bps,
    )
    toml_text = scenario_toml(
        sf, f"winner of: pipesim plan --model {req.model.name} ({result.candidates} candidates)"
    )
    if kw["scenario_out"] is not None:
        from pipesim.io.atomic import atomic_write_text

        atomic_write_text(kw["scenario_out"], toml_text)
    if kw["output"] is not None:
        from pipesim.figures.plan import write_plan_html

        write_plan_html(result, kw["output"])
    energy = _plan_energy(result, kw)
    if kw["as_json"]:
        data = result.as_dict(limit)
        data["energy"] = energy.as_dict() if energy is not None else None
        if probes:
            data["nodes_search"] = [{"nodes": n, "best_days": d} for n, d in probes]
        data["megatron_args"] = format_megatron_args(req.model, winner_layout)
        data["scenario_toml"] = toml_text
        emit_json(data)
        return
    if kw["as_csv"]:
        click.echo(_plan_csv(result, limit), nl=False)
        return
    con = console()
    cl = req.cluster
    where = (
        f" ({cl.topology}, {cl.nodes} nodes)" if cl.topology else f" ({cl.nodes} nodes of {cl.gpus_per_node})"
    )
    con.print(
        f"{req.model.name} on {cl.num_gpus} x {cl.gpu.name}{where}: global batch {req.global_batch_size}, "
        f"seq {req.seq}, {req.precision}, attention {req.attention}",
        highlight=False,
    )
    if probes:
        con.print(
            "nodes searched: "
            + ", ".join(f"{n} ({d:.1f} d)" if d is not None else f"{n} (no fit)" for n, d in probes),
            highlight=False,
        )
    con.print(_plan_table(result, limit))
    con.print(_breakdown_table(result, min(limit or 5, 5)))
    con.print(
        f"{result.enumerated:,} layouts enumerated, {result.candidates:,} candidates estimated, "
        f"{result.feasible:,} fit in memory; the top {result.simulated} simulated in full. DO = distributed "
        f"optimizer, SP = sequence parallel. Winner: MFU {best.mfu:.1%}, HFU {best.hfu:.1%} "
        f"({best.hardware_tflops_per_gpu:.1f} hardware TFLOP/s per GPU, recompute counted).",
        highlight=False,
    )
    if kw["explain"]:
        con.print(_explain_table(result))
    if req.tokens is not None:
        t = best.training(req.tokens)
        con.print(
            f"Training {_count_text(req.tokens)} tokens with the winner: {t['train_days']:.1f} days, "
            f"{t['gpu_hours']:,.0f} GPU-hours on {cl.num_gpus} GPUs.",
            highlight=False,
        )
    if energy is not None:
        render_energy(energy)
    con.print("\nMegatron-LM arguments of the winner:", highlight=False)
    click.echo(format_megatron_args(req.model, winner_layout))
    con.print(
        "\nScenario TOML of the winner (pipesim simulate --scenario FILE / pipesim gantt --scenario FILE):",
        highlight=False,
    )
    click.echo(toml_text, nl=False)


def _plan_energy(result: Any, kw: dict[str, Any]) -> Any:
    """The winner's :class:`pipesim.sim.energy.EnergyReport` (per step, and per run with --tokens), or None when
    the GPU has no board power and no energy flag asked for one. Busy fraction: compute (recompute and TP
    communication excluded, as simulate counts it) plus optimizer over the step (PlanEntry.busy_fraction)."""
    from pipesim.sim.energy import DEFAULT_PUE, run_energy, steps_for_tokens

    req, best = result.request, result.best
    asked = kw["price_per_gpu_hour"] is not None or kw["pue"] is not None
    if req.cluster.gpu.tdp_w is None and not asked:
        return None
    busy = best.busy_fraction
    steps = steps_for_tokens(req.tokens, best.tokens_per_step) if req.tokens is not None else 1
    return run_energy(
        req.cluster.gpu,
        req.cluster.num_gpus,
        best.step_time_s,
        busy,
        steps=steps,
        pue=kw["pue"] if kw["pue"] is not None else DEFAULT_PUE,
        gpus_per_node=req.cluster.gpus_per_node,
        price_per_gpu_hour=kw["price_per_gpu_hour"],
    )


def _plan_table(result: Any, limit: int | None) -> Table:
    from rich import box

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
    cols = [
        "#",
        "tp",
        "pp",
        "dp",
        "vpp",
        "mbs",
        "schedule",
        "recompute",
        "DO/SP",
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
        row = [
            str(i),
            str(c.tp),
            str(c.pp),
            str(c.dp),
            str(c.vpp),
            str(c.micro_batch_size),
            c.schedule,
            c.recompute,
            f"{'on' if c.distributed_optimizer else 'off'}/{'on' if c.sequence_parallel else 'off'}",
            f"{e.step_time_s:.3f}" + ("" if e.simulated else "*"),
            f"{e.tokens_per_s:,.0f}",
            f"{e.model_tflops_per_gpu:.1f}",
            f"{e.mfu:.1%}",
            f"{e.peak_memory_bytes / GIB:.1f}",
            f"{e.headroom_bytes / GIB:.1f}",
        ]
        if req.tokens is not None:
            t = e.training(req.tokens)
            row += [f"{t['train_days']:.1f}", _short(t["gpu_hours"])]
        table.add_row(*row)
    return table


def _short(x: float) -> str:
    """3,565,707 -> 3.57M (K, M, B = 1e3, 1e6, 1e9)."""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if x >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.0f}"


def _breakdown_table(result: Any, limit: int) -> Table:
    table = Table(title="Time breakdown of the best layouts (exposed seconds per step)", title_justify="left")
    parts = ("compute", "tp_comm", "bubble", "pp_comm", "dp_comm", "optimizer")
    labels = ("compute", "TP comm", "bubble", "PP comm", "DP comm", "optimizer")
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
        r.update({f"{k}_s": v for k, v in bd.items()})
        flat.append(r)
    writer = csv.DictWriter(buf, fieldnames=list(flat[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


if __name__ == "__main__":  # pragma: no cover
    main()
