"""Shared test settings and fixtures: the one CLI runner (:func:`invoke`), the one layout factory
(:func:`layout_factory`), and the ``browser`` / ``dask`` markers, which skip with a stated reason where
Chromium or Dask is missing (CI installs both and sets PIPESIM_TEST_ALL=1, which turns the skips into
failures)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

from pipesim.specs.layout import Layout

sys.setrecursionlimit(20000)  # the reference simulator recurses along dependency chains

settings.register_profile(
    "pipesim", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("pipesim")


def invoke(*args: str, prog_name: str | None = None) -> tuple[int, str, str]:
    """Run ``pipesim ARGS`` in process: (exit status, stdout, stderr)."""
    from cli import main

    result = CliRunner().invoke(main, list(args), prog_name=prog_name)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli() -> Callable[..., tuple[int, str, str]]:
    """The CLI runner as a fixture (:func:`invoke`)."""
    return invoke


def layout_factory(**base: Any) -> Callable[..., Layout]:
    """A function making :class:`Layout` from ``base`` fields updated by its keywords; without a
    ``global_batch_size`` anywhere it is one microbatch per replica (micro-batch size x dp)."""

    def make(**kw: Any) -> Layout:
        fields = {**base, **kw}
        fields.setdefault("global_batch_size", fields.get("micro_batch_size", 1) * fields.get("dp", 1))
        return Layout(**fields)

    return make


def _chromium() -> str | None:
    from tests.chromium import find_chromium

    return find_chromium()


MISSING: dict[str, Callable[[], str | None]] = {
    "browser": lambda: (
        None if _chromium() else "Chromium not found (apt-get install chromium; CI installs it)"
    ),
    "dask": lambda: (
        None
        if importlib.util.find_spec("distributed")
        else "Dask not installed (pip install 'pipesim[dask]'; CI installs it)"
    ),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: needs a headless Chromium")
    config.addinivalue_line("markers", "dask: needs dask.distributed")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    strict = os.environ.get("PIPESIM_TEST_ALL") == "1"
    reasons = {}
    for item in items:
        for name, missing in MISSING.items():
            if item.get_closest_marker(name) is None:
                continue
            if name not in reasons:
                reasons[name] = missing()
            if reasons[name] and not strict:
                item.add_marker(pytest.mark.skip(reason=reasons[name]))
