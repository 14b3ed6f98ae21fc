"""pipesim: simulate pipeline-parallel training on GPU clusters before you spend the GPU-hours.

The entry points are imported on first use, so ``import pipesim`` stays cheap (no numpy, no plotly):

* specs: :class:`Model` (:class:`~pipesim.specs.model.ModelSpec`), :class:`GPU`
  (:class:`~pipesim.specs.gpu.GPUSpec`), :class:`Layout`, :class:`Scenario`; ``get_model`` / ``get_gpu``
  give presets;
* runs: :func:`simulate`, :func:`compare`, :func:`plan`, :func:`roofline` (:mod:`pipesim.api`), whose results
  have ``to_dict()``, ``to_pandas()`` and a notebook table;
* pictures: :func:`gantt_figure`;
* the engine: ``OpCosts``, ``Timeline``, ``pipeline_metrics``, ``PipelineMetrics``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from pipesim.errors import InputError

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "Model": ("pipesim.specs.model", "ModelSpec"),
    "GPU": ("pipesim.specs.gpu", "GPUSpec"),
    "Layout": ("pipesim.specs.layout", "Layout"),
    "Scenario": ("pipesim.sim.scenario", "Scenario"),
    "SimulationReport": ("pipesim.sim.scenario", "SimulationReport"),
    "get_model": ("pipesim.specs.model", "get_model"),
    "get_gpu": ("pipesim.specs.gpu", "get_gpu"),
    "simulate": ("pipesim.api", "simulate"),
    "compare": ("pipesim.api", "compare"),
    "Comparison": ("pipesim.api", "Comparison"),
    "plan": ("pipesim.plan", ""),  # the planner package itself, callable as pipesim.api.plan
    "roofline": ("pipesim.api", "roofline"),
    "gantt_figure": ("pipesim.api", "gantt_figure"),
    "OpCosts": ("pipesim.sim.engine", "OpCosts"),
    "Timeline": ("pipesim.sim.engine", "Timeline"),
    "PipelineMetrics": ("pipesim.sim.metrics", "PipelineMetrics"),
    "pipeline_metrics": ("pipesim.sim.metrics", "pipeline_metrics"),
}

__all__ = [
    "InputError",
    "Model",
    "GPU",
    "Layout",
    "Scenario",
    "SimulationReport",
    "get_model",
    "get_gpu",
    "simulate",
    "compare",
    "Comparison",
    "plan",
    "roofline",
    "gantt_figure",
    "OpCosts",
    "Timeline",
    "PipelineMetrics",
    "pipeline_metrics",
]

if TYPE_CHECKING:  # pragma: no cover - what static checkers see
    from pipesim.api import Comparison, compare, gantt_figure, plan, roofline, simulate
    from pipesim.sim.engine import OpCosts, Timeline
    from pipesim.sim.metrics import PipelineMetrics, pipeline_metrics
    from pipesim.sim.scenario import Scenario, SimulationReport
    from pipesim.specs.gpu import GPUSpec as GPU
    from pipesim.specs.gpu import get_gpu
    from pipesim.specs.layout import Layout
    from pipesim.specs.model import ModelSpec as Model
    from pipesim.specs.model import get_model


def __getattr__(name: str) -> Any:
    """Import an entry point on first use (PEP 562)."""
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'pipesim' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr) if attr else import_module(module)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
