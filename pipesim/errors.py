"""The error type for bad user input anywhere in the engine."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad user input. The message is one line that names the bad value, the rule it breaks and what would
    be valid; the CLI prints it and exits with status 2."""
