"""The error type for bad user input anywhere in the engine."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["InputError", "check_choice", "is_count"]


class InputError(ValueError):
    """Bad user input. The message is one line that names the bad value, the rule it breaks and what would
    be valid; the CLI prints it and exits with status 2."""


def check_choice(name: str, value: object, valid: Sequence[str]) -> None:
    """Refuse ``value`` of the setting ``name`` unless it is one of ``valid``: ``name=value; valid: a, b``."""
    if value not in valid:
        raise InputError(f"{name}={value!r}; valid: {', '.join(valid)}")


def is_count(value: object) -> bool:
    """Whether ``value`` is a positive integer: an ``int`` >= 1, not a bool (``True`` is an int in Python),
    not a float such as ``2.0``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
