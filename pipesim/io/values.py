"""Typed values out of parsed JSON / TOML tables: every problem is one :class:`InputError` naming the file and
the key."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipesim.errors import InputError, is_count

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["read_text", "parse_toml", "req_int", "req_num", "req_bool", "req_str", "req_name"]


def req_int(src: str, data: Mapping[str, Any], key: str, default: int | None = None, prefix: str = "") -> int:
    """``data[key]`` as a positive integer (``default`` when absent or null, else an error)."""
    if key not in data or data[key] is None:
        if default is not None:
            return default
        raise InputError(f"{src}: missing key {prefix + key!r}")
    value = data[key]
    if not is_count(value):
        raise InputError(f"{src}: key {prefix + key!r} = {value!r} must be a positive integer")
    return value


def req_num(src: str, data: Mapping[str, Any], key: str, prefix: str = "") -> float:
    """``data[key]`` as a positive number."""
    if key not in data:
        raise InputError(f"{src}: missing key {prefix + key!r}")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise InputError(f"{src}: key {prefix + key!r} = {value!r} must be a finite positive number")
    return float(value)


def req_bool(src: str, data: Mapping[str, Any], key: str, default: bool, prefix: str = "") -> bool:
    """``data[key]`` as true / false (``default`` when absent)."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise InputError(f"{src}: key {prefix + key!r} = {value!r} must be true or false")
    return value


def req_str(src: str, data: Mapping[str, Any], key: str, default: str, prefix: str = "") -> str:
    """``data[key]`` as a string (``default`` when absent)."""
    value = data.get(key, default)
    if not isinstance(value, str):
        raise InputError(f"{src}: key {prefix + key!r} = {value!r} must be a string")
    return value


def req_name(src: str, data: Mapping[str, Any], key: str, default: str, prefix: str = "") -> str:
    """``data[key]`` as a name: non-empty printable text on one line (``default`` when absent)."""
    value = req_str(src, data, key, default, prefix)
    if not value.strip() or not value.isprintable():
        hint = f" (or leave the key out for {default!r})" if default.strip() else ""
        raise InputError(
            f"{src}: key {prefix + key!r} = {value!r} must be a non-empty name on one line{hint}"
        )
    return value


def read_text(path: Path, what: str) -> str:
    """The text of ``path``; a missing or unreadable file is one InputError naming ``what``."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} file {path}: {exc}") from None


def parse_toml(text: str, src: str) -> dict[str, Any]:
    """The table of TOML ``text``; a syntax error (or nesting too deep to read) is one InputError naming
    ``src``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{src}: not valid TOML ({exc})") from None
    except RecursionError:
        raise InputError(f"{src}: not valid TOML (nested too deeply to read)") from None
