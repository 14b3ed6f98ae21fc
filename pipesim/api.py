"""The Python API: the entry points ``import pipesim`` gives, for scripts and notebooks.

Each takes specs or preset names and returns a result dataclass (``to_dict()``, ``to_pandas()``, a table in
notebooks; :mod:`pipesim.results`). They are thin: they build the same :class:`~pipesim.sim.scenario.Scenario`
or :class:`~pipesim.plan.search.PlanRequest` the CLI builds and call the same functions, so a number here is
the number ``pipesim simulate`` / ``compare`` / ``plan`` / ``roofline`` prints for the same inputs.

    >>> import pipesim
    >>> report = pipesim.simulate("gpt-1.7b", "a100-80gb", tp=2, pp=2, global_batch_size=8)
    >>> round(report.step_time_s, 3) > 0
    True
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from os import PathLike
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from pipesim.errors import InputError, is_count
from pipesim.io.readers import resolve_gpu, resolve_model
from pipesim.results import Result, flatten
from pipesim.sim.compare import default_schedule, default_schedules
from pipesim.sim.engine import OpCosts, Timeline
from pipesim.sim.engine import simulate as simulate_schedule
from pipesim.sim.scenario import Scenario, SimulationReport, simulate_scenario
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec
from schedules import get_family
from schedules.ir import Schedule

if TYPE_CHECKING:  # pragma: no cover
    from pipesim.cost.roofline import RooflineTable
    from pipesim.figures.gantt import Figure
    from pipesim.plan.search import PlanResult
    from pipesim.sim.series import GanttSeries

__all__ = ["Comparison", "compare", "gantt_figure", "plan", "roofline", "simulate"]

F = TypeVar("F", bound=Callable[..., Any])


def _input_errors(fn: F) -> F:
    """``fn`` with the leaf packages' bad-input errors (:class:`schedules.ScheduleError`,
    :class:`topologies.TopologyError`, kept free of pipesim imports) raised as :class:`InputError`, so that
    ``except pipesim.InputError`` catches every bad input of an API call (the message is unchanged)."""
    from schedules import ScheduleError
    from topologies import TopologyError

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ScheduleError, TopologyError) as exc:
            raise InputError(str(exc)) from None

    return cast(F, call)


def _spec(value: Any, kind: type, what: str, example: str, resolve: Callable[[str], Any]) -> Any:
    """``value`` when it is a ``kind`` already, else what ``resolve`` reads from its name or path; any other
    type is refused naming what to give."""
    if isinstance(value, kind):
        return value
    if not isinstance(value, (str, PathLike)):
        raise InputError(
            f"{what}={value!r} ({type(value).__name__}): give a {kind.__name__}, a preset name such as {example} "
            f"or the path of a {what} file"
        )
    return resolve(str(value))


def _model(model: ModelSpec | str) -> ModelSpec:
    return cast(ModelSpec, _spec(model, ModelSpec, "model", "'llama3-8b'", resolve_model))


def _gpu(gpu: GPUSpec | str) -> GPUSpec:
    return cast(GPUSpec, _spec(gpu, GPUSpec, "gpu", "'h100-sxm'", resolve_gpu))


def _layout(layout: Layout | None, changes: dict[str, Any], need_batch: bool = True) -> Layout:
    """``layout`` with ``changes`` (or a new Layout of them). As on the command line, the run's batch is the
    caller's to state (``global_batch_size=``, or a ``layout``), and the schedule defaults to
    interleaved-1f1b at vpp > 1, else 1f1b."""
    if layout is not None and not isinstance(layout, Layout):
        raise InputError(
            f"layout={layout!r} ({type(layout).__name__}): give a pipesim.Layout, or its fields as keywords "
            "(tp=2, pp=4, global_batch_size=64)"
        )
    valid = [f.name for f in fields(Layout) if f.init]
    unknown = sorted(k for k in changes if k not in valid)
    if unknown:
        raise InputError(f"unknown Layout field {unknown[0]!r}; valid: {', '.join(valid)}")
    if layout is None:
        if need_batch and "global_batch_size" not in changes:
            raise InputError(
                "give global_batch_size= (or a layout): the run's batch is yours to state, as with "
                "--global-batch-size"
            )
        if "schedule" not in changes:
            changes = {**changes, "schedule": default_schedule(changes.get("vpp", 1))}
        return Layout(**changes)
    return replace(layout, **changes)


def _schedule_names(schedules: Sequence[str] | str | None, vpp: int) -> list[str]:
    """A list of names, a comma-separated string (as ``--schedules`` takes), or None (the CLI's default)."""
    if schedules is None:
        return default_schedules(vpp)
    if isinstance(schedules, str):
        names = [n.strip() for n in schedules.split(",") if n.strip()]
    elif isinstance(schedules, Sequence) and all(isinstance(n, str) for n in schedules):
        names = list(schedules)
    else:
        raise InputError(
            f"schedules={schedules!r}: give a list of schedule names or a comma-separated string"
        )
    if not names:
        raise InputError("compare: give at least one schedule")
    return names


@overload
def simulate(schedule: Schedule, costs: OpCosts, /) -> Timeline: ...
@overload
def simulate(scenario: Scenario, /) -> SimulationReport: ...
@overload
def simulate(
    model: ModelSpec | str, gpu: GPUSpec | str, /, layout: Layout | None = None, **layout_fields: Any
) -> SimulationReport: ...
@_input_errors
def simulate(first: Any, second: Any = None, /, layout: Layout | None = None, **layout_fields: Any) -> Any:
    """Simulate one training step.

    * ``simulate(model, gpu, layout=None, **layout_fields)``: ``model`` and ``gpu`` are specs or what
      ``--model`` / ``--gpu`` accept (preset names, a ``config.json`` or TOML path); the layout is ``layout``
      with ``layout_fields`` replaced (``tp=8, pp=4, global_batch_size=64``). Returns the
      :class:`~pipesim.sim.scenario.SimulationReport` that ``pipesim simulate`` prints.
    * ``simulate(scenario)``: the same for a ready :class:`~pipesim.sim.scenario.Scenario`.
    * ``simulate(schedule, costs)``: the engine alone on a schedule and per-stage costs; returns the
      :class:`~pipesim.sim.engine.Timeline`.
    """
    if isinstance(first, Schedule):
        if not isinstance(second, OpCosts) or layout is not None or layout_fields:
            raise InputError("simulate(schedule, costs): costs must be an OpCosts and nothing else is taken")
        return simulate_schedule(first, second)
    if isinstance(first, Scenario):
        if second is not None or layout is not None or layout_fields:
            raise InputError("simulate(scenario) takes nothing else: the scenario holds the layout")
        return simulate_scenario(first)
    if second is None:
        raise InputError(
            "simulate(model, gpu, ...): give a GPU (a spec or a preset name such as 'a100-80gb')"
        )
    return simulate_scenario(Scenario(_model(first), _gpu(second), _layout(layout, layout_fields)))


@dataclass(frozen=True)
class Comparison(Result):
    """Several schedules simulated on one model, GPU and layout (what ``pipesim compare --model`` prints)."""

    reports: tuple[SimulationReport, ...]

    def __getitem__(self, schedule: str) -> SimulationReport:
        """The report of ``schedule``."""
        for r in self.reports:
            if r.schedule.name == schedule:
                return r
        raise KeyError(schedule)

    @property
    def best(self) -> SimulationReport:
        """The fastest schedule that fits in memory (else the fastest)."""
        fitting = [r for r in self.reports if r.fits] or list(self.reports)
        return min(fitting, key=lambda r: r.step_time_s)

    def as_dict(self) -> dict[str, Any]:
        """{"schedules": [each report's ``as_dict()`` with its schedule name]}."""
        return {"schedules": [{"schedule": r.schedule.name, **r.as_dict()} for r in self.reports]}

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per schedule."""
        return [flatten(d) for d in self.as_dict()["schedules"]]


@_input_errors
def compare(
    model: ModelSpec | str,
    gpu: GPUSpec | str,
    schedules: Sequence[str] | str | None = None,
    layout: Layout | None = None,
    **layout_fields: Any,
) -> Comparison:
    """Simulate each of ``schedules`` (a list of names or a comma-separated string; default: gpipe, 1f1b
    and, when vpp > 1, interleaved-1f1b, :data:`~pipesim.sim.compare.DEFAULT_SCHEDULES`) on one model, GPU
    and layout; schedules without model chunks run with vpp 1, as ``pipesim compare --model`` does."""
    base = _layout(layout, layout_fields)
    names = _schedule_names(schedules, base.vpp)
    m, g = _model(model), _gpu(gpu)
    reports = []
    for name in names:
        vpp = base.vpp if get_family(name).uses_vpp else 1
        reports.append(simulate_scenario(Scenario(m, g, replace(base, schedule=name, vpp=vpp))))
    return Comparison(tuple(reports))


@_input_errors
def plan(
    model: ModelSpec | str,
    gpu: GPUSpec | str,
    nodes: int,
    global_batch_size: int,
    gpus_per_node: int | None = None,
    topology: str | None = None,
    **request_fields: Any,
) -> PlanResult:
    """Search every layout of ``model`` on ``nodes`` x ``gpus_per_node`` GPUs (collectives on ``topology``'s
    graph when given; with neither, ``nodes`` servers like the GPU's own, :mod:`pipesim.specs.server`) and
    rank them, as ``pipesim plan`` does; ``request_fields`` are :class:`~pipesim.plan.search.PlanRequest`
    fields (``top_k``, ``tokens``, ``space``, ...)."""
    from pipesim.comm.factory import topology_gpus_per_node
    from pipesim.plan.search import PlanCluster, PlanRequest
    from pipesim.plan.search import plan as run_plan

    for key, value in (
        ("nodes", nodes),
        ("global_batch_size", global_batch_size),
        ("gpus_per_node", gpus_per_node),
    ):
        if value is not None and not is_count(value):
            raise InputError(f"{key}={value!r} must be a positive integer")
    if isinstance(request_fields.get("tokens"), str):  # the CLI's spelling: 15T, 300B, 2.5e12
        from pipesim.io.units import parse_count

        request_fields["tokens"] = parse_count(request_fields["tokens"], "tokens")
    g = _gpu(gpu)
    if topology is None and gpus_per_node is None:
        cluster = PlanCluster.on_server(g, nodes)
    else:  # a topology counts its own GPUs per server; a two-level request takes the server's figures
        if gpus_per_node is not None:
            per = gpus_per_node
        else:
            per = topology_gpus_per_node(topology) if topology else g.server.gpus_per_node
        cluster = PlanCluster(gpu=g, nodes=nodes, gpus_per_node=per, topology=topology)
    try:
        request = PlanRequest(
            model=_model(model), cluster=cluster, global_batch_size=global_batch_size, **request_fields
        )
    except TypeError as exc:
        raise InputError(f"PlanRequest: {exc}") from None
    return run_plan(request)


@_input_errors
def roofline(
    model: ModelSpec | str,
    gpu: GPUSpec | str,
    layout: Layout | None = None,
    precision: str | None = None,
    **layout_fields: Any,
) -> RooflineTable:
    """Every operator of one transformer layer on the GPU's roofline, as ``pipesim roofline`` tabulates it
    (draw it with :func:`pipesim.figures.roofline.roofline_figure`)."""
    from pipesim.cost.roofline import roofline as table

    return table(_model(model), _layout(layout, layout_fields, need_batch=False), _gpu(gpu), precision)


@_input_errors
def gantt_figure(
    results: SimulationReport | Comparison | GanttSeries | Sequence[SimulationReport | GanttSeries],
    gpu_memory_bytes: float | None = None,
    title: str | None = None,
) -> Figure:
    """The Gantt chart (with memory per rank) of simulated steps, as ``pipesim gantt`` draws it; with reports
    the capacity defaults to the GPU's HBM. Displays inline in a notebook."""
    from pipesim.figures.gantt import gantt_figure as draw
    from pipesim.sim.series import GanttSeries, report_series

    if isinstance(results, Comparison):
        items: list[Any] = list(results.reports)
    elif isinstance(results, (SimulationReport, GanttSeries)):
        items = [results]
    elif isinstance(results, Sequence) and not isinstance(results, str):
        items = list(results)
    else:
        items = [results]
    bad = [r for r in items if not isinstance(r, (SimulationReport, GanttSeries))]
    if bad or not items:
        what = f"{bad[0]!r} ({type(bad[0]).__name__})" if bad else "nothing"
        raise InputError(
            f"gantt_figure: got {what}; give a report of pipesim.simulate, a pipesim.compare result, or a list "
            "of reports"
        )
    panels = [r if isinstance(r, GanttSeries) else report_series(r) for r in items]
    if gpu_memory_bytes is None:
        hbm = [r.scenario.gpu.hbm_bytes for r in items if isinstance(r, SimulationReport)]
        gpu_memory_bytes = hbm[0] if hbm else None
    return draw(panels, gpu_memory_bytes=gpu_memory_bytes, title=title)
