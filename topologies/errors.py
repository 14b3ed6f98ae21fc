"""The error type for bad topology input (files, presets, groups)."""

from __future__ import annotations

__all__ = ["TopologyError"]


class TopologyError(ValueError):
    """Bad topology input. The message is one line naming the bad value (and, for files, the file and key),
    the rule it breaks and what would be valid; the CLI prints it and exits with status 2."""
