"""``pipesim plan``: search every valid parallel layout, rank by throughput, explain, estimate training time."""

from __future__ import annotations

import sys
from typing import Any

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
from pipesim.cli.plan_view import PlanOutputs, plan_outputs
from pipesim.cli.render import split_names
from pipesim.cli.specs import given
from pipesim.cli.targets import check_targets
from pipesim.errors import InputError
from pipesim.io.units import counted

__all__ = ["plan_cmd"]

PLAN_LAYOUT = (
    "global_batch_size",
    "seq_length",
    "precision",
    "attention",
    "dp_overlap",
    "tp_comm_overlap",
    "overlap_p2p_comm",
    "cuda_graphs",
    "uneven_layers",
)
PLAN_CLUSTER = (
    "topology",
    "nodes",
    "gpus",
    "gpus_per_node",
    "intra_node_gbps",
    "inter_node_gbps",
    "max_gpus",
)

PLAN_HELP = """Search every valid parallel layout, rank by throughput, explain, estimate training time.

Every layout (tp, pp, dp, vpp, micro-batch size, schedule, recompute, distributed optimizer, sequence
parallel) that uses all GPUs is checked against the model and the schedule's rules, estimated analytically,
and the fastest --top-k are simulated on the full timeline. Example:

\b
  pipesim plan --model llama3-70b --gpu h100-sxm --topology dgx-h100 --nodes 64 \\
      --global-batch-size 1024 --seq-length 8192 --tokens 15T

\b
Definitions:
  step s         seconds per optimizer step (simulated for the top --top-k, else estimated, marked *)
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
    for part in split_names(text, flag):
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


@click.command("plan", help=PLAN_HELP, short_help=short_help("plan"))
@hardware_options(model_required=True)
@cluster_options(PLAN_CLUSTER)
@layout_options(PLAN_LAYOUT, global_batch_size={"required": True, "help": "Sequences per optimizer step."})
@energy_options()
@plain_options("max_days", "max_nodes", "space_tp", "space_pp", "space_cp", "space_ep", "space_etp", "space_vpp", "max_tp", "max_pp", "space_mbs",
               "schedules", "space_recompute", "space_do", "space_fsdp", "space_fsdp_shard", "space_sp", "allow_cross_node_tp", "top_k", "show",
               "explain", "as_json", "as_csv", "output", "image_path", "plotlyjs", "wide", "scenario_out", "workers",
               "dask_scheduler", "max_actions", "config", "optimizer",
               output={"help": "Write an interactive HTML chart (step time vs peak memory)."},
               as_json={"help": "Print JSON: candidates, feasible, results."})  # fmt: skip
def plan_cmd(hw: Hardware, cluster: ClusterFlags, lay: LayoutFlags, energy: EnergyFlags, **kw: Any) -> None:
    from pipesim.plan.executors import ExecutorSpec, default_workers
    from pipesim.plan.search import PlanRequest, SearchSpace, fewest_nodes, plan

    if kw["as_json"] and kw["as_csv"]:
        raise InputError("--json and --csv are exclusive; pick one")
    model = hw.need_model()
    cluster = cluster.for_gpu(hw.gpu)
    plan_cluster = cluster.plan_cluster(hw.gpu, nodes_optional=kw["max_days"] is not None)
    space = SearchSpace(
        tp=_int_list(kw["space_tp"], "--tp"),
        pp=_int_list(kw["space_pp"], "--pp"),
        vpp=_int_list(kw["space_vpp"], "--vpp"),
        micro_batch_sizes=_int_list(kw["space_mbs"], "--micro-batch-size") or (1,),
        schedules=tuple(split_names(kw["schedules"], "--schedules")) if kw["schedules"] else None,
        recompute=tuple(split_names(kw["space_recompute"], "--recompute")),
        distributed_optimizer=_onoff(kw["space_do"], "--distributed-optimizer"),
        sequence_parallel=_onoff(kw["space_sp"], "--sequence-parallel"),
        max_tp=kw["max_tp"],
        max_pp=kw["max_pp"],
        allow_cross_node_tp=kw["allow_cross_node_tp"],
        uneven_layers=lay.uneven_layers,
        cp=_int_list(kw["space_cp"], "--cp"),
        ep=_int_list(kw["space_ep"], "--ep"),
        etp=_int_list(kw["space_etp"], "--etp"),
        fsdp=tuple(f for f in split_names(kw["space_fsdp"], "--fsdp") if f != "none"),
        fsdp_shard_sizes=_int_list(kw["space_fsdp_shard"], "--fsdp-shard-size"),
    )
    if lay.attention not in ("flash", "unfused"):
        raise InputError(f"--attention={lay.attention!r}; valid: flash, unfused")
    assert lay.global_batch_size is not None  # required by the flag
    request = PlanRequest(
        model=model,
        cluster=plan_cluster,
        global_batch_size=lay.global_batch_size,
        seq_length=lay.seq_length,
        space=space,
        precision=lay.precision,
        attention=lay.attention,
        dp_overlap=lay.dp_overlap,
        tp_comm_overlap=lay.tp_comm_overlap,
        overlap_p2p_comm=lay.overlap_p2p_comm,
        cuda_graphs=lay.cuda_graphs,
        top_k=kw["top_k"],
        tokens=energy.tokens,
        max_actions=kw["max_actions"],
        optimizer=kw["optimizer"],
    )
    if kw["show"] < 0:
        raise InputError(f"--top={kw['show']} must be >= 0")
    executor: ExecutorSpec[Any] = ExecutorSpec(
        workers=kw["workers"] if kw["workers"] is not None else default_workers(),
        dask_scheduler=kw["dask_scheduler"],
    )
    check_targets(
        {"-o": kw["output"], "--scenario-out": kw["scenario_out"]},
        kw["image_path"],
        report="the ranked layouts",
    )
    quiet = kw["as_json"] or kw["as_csv"]
    bar = _PlanProgress(enabled=not quiet and sys.stderr.isatty())
    probes: tuple[tuple[int, float | None], ...] = ()
    with bar:
        if kw["max_days"] is None and given("max_nodes"):
            raise InputError(
                "--max-nodes bounds the --max-days search; give --max-days (and --tokens) or drop it"
            )
        if kw["max_days"] is not None:
            if energy.tokens is None:
                raise InputError("--max-days needs --tokens (e.g. --tokens 15T)")
            max_nodes = min(kw["max_nodes"], cluster.nodes) if cluster.nodes is not None else kw["max_nodes"]
            search = fewest_nodes(request, kw["max_days"], max_nodes, executor, bar.probe)
            result, probes = search.result, search.probes
        else:
            result = plan(request, executor, bar.update)
    outputs = PlanOutputs(
        show=kw["show"],
        as_json=kw["as_json"],
        as_csv=kw["as_csv"],
        explain=kw["explain"],
        output=kw["output"],
        scenario_out=kw["scenario_out"],
        image=kw["image_path"],
        plotlyjs=kw["plotlyjs"],
    )
    plan_outputs(result, outputs, energy, probes)


class _PlanProgress:
    """A rich progress bar on stderr (a no-op when disabled)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _PlanProgress:
        if self.enabled:
            from rich.console import Console
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
            self._progress.console.print(f"  {counted(nodes, 'node')}: {got}", highlight=False)
