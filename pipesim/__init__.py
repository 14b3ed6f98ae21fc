"""pipesim: simulate pipeline-parallel training on GPU clusters before you spend the GPU-hours.

The public names below are imported on first use (PEP 562 ``__getattr__``), so ``import pipesim.cli`` and
``pipesim --help`` do not pay for numpy."""

from __future__ import annotations

import importlib
from typing import Any

from pipesim.errors import InputError

__all__ = ["InputError", "OpCosts", "PipelineMetrics", "Timeline", "pipeline_metrics", "simulate"]
__version__ = "0.1.0"

_LAZY = {
    "OpCosts": "pipesim.sim.engine",
    "Timeline": "pipesim.sim.engine",
    "simulate": "pipesim.sim.engine",
    "PipelineMetrics": "pipesim.sim.metrics",
    "pipeline_metrics": "pipesim.sim.metrics",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipesim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
