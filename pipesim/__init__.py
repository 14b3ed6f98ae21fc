"""pipesim: simulate pipeline-parallel training on GPU clusters before you spend the GPU-hours."""

from pipesim.errors import InputError
from pipesim.sim.engine import OpCosts, Timeline, simulate
from pipesim.sim.metrics import PipelineMetrics, pipeline_metrics

__all__ = ["InputError", "OpCosts", "PipelineMetrics", "Timeline", "pipeline_metrics", "simulate"]
__version__ = "0.1.0"
