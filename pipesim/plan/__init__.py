"""Capacity planning: search space, analytic estimator, ranking and executors.

``pipesim.plan`` is also the API's :func:`pipesim.api.plan`: importing a submodule (``pipesim.plan.search``)
binds the package to the name ``plan`` in :mod:`pipesim`, so the package itself is callable and forwards to
it; ``pipesim.plan(model, gpu, nodes=..., global_batch_size=...)`` works however the planner was imported.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """:func:`pipesim.api.plan`."""
        from pipesim.api import plan

        return plan(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
