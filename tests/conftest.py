"""Shared test settings."""

from __future__ import annotations

import sys

from hypothesis import HealthCheck, settings

sys.setrecursionlimit(20000)  # the reference simulator recurses along dependency chains

settings.register_profile(
    "pipesim", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("pipesim")
