"""Capacity planning: search space, analytic estimator, ranking and executors.

``pipesim.plan`` is also the API's :func:`pipesim.api.plan`: importing a submodule (``pipesim.plan.search``)
binds the package to the name ``plan`` in :mod:`pipesim`, so the package itself is callable and forwards to
it; ``pipesim.plan(model, gpu, nodes=..., global_batch_size=...)`` works however the planner was imported,
and ``help(pipesim.plan)`` / ``inspect.signature(pipesim.plan)`` show the function's parameters.
"""

from __future__ import annotations

import inspect
import sys
import types
from typing import Any

_PACKAGE_DOC = __doc__ or ""


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """:func:`pipesim.api.plan`."""
        from pipesim.api import plan

        return plan(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        """The signature of :func:`pipesim.api.plan` (what calling the package takes)."""
        from pipesim.api import plan

        return inspect.signature(plan)

    @property
    def __doc__(self) -> str:  # type: ignore[override]  # the function's documentation, then the package's
        from pipesim.api import plan

        return f"plan{inspect.signature(plan)}\n\n{inspect.getdoc(plan)}\n\nThe package: {_PACKAGE_DOC}"


sys.modules[__name__].__class__ = _CallablePackage
