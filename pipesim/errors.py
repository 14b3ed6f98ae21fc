"""The error type for bad user input anywhere in the engine."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["InputError", "check_choice"]


class InputError(ValueError):
    """Bad user input. The message is one line that names the bad value, the rule it breaks and what would
    be valid; the CLI prints it and exits with status 2."""


def check_choice(name: str, value: object, valid: Sequence[str]) -> None:
    """Refuse ``value`` of the setting ``name`` unless it is one of ``valid``: ``name=value; valid: a, b``."""
    if value not in valid:
        raise InputError(f"{name}={value!r}; valid: {', '.join(valid)}")
