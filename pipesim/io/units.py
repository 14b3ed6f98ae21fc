"""Numbers as users type them: counts with decimal suffixes (``2T`` tokens), byte sizes with binary ones
(``8G``, ``512MiB``), and the finite-and-in-range check every float from a flag or a file passes where it
enters. One parser of each, used by the command line and the file readers alike."""

from __future__ import annotations

import math
import re

from pipesim.errors import InputError

__all__ = ["counted", "parse_count", "parse_size", "finite"]

_COUNT_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}
_COUNT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmbgtp]?)\s*$", re.IGNORECASE)
# nccl-tests sizes: K/M/G/T are powers of 1024 (nccl-tests src/common.cu parsesize); KiB/MiB/GiB/TiB too.
_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE_RE = re.compile(r"^\s*([0-9]+)\s*([KMGT]?)(I?B)?\s*$", re.IGNORECASE)


def parse_count(text: str, flag: str = "--tokens") -> float:
    """A count with an optional decimal suffix: ``2T`` = 2e12, ``300B`` = 3e11, ``15M``, ``1.5e12``
    (K 1e3, M 1e6, B or G 1e9, T 1e12, P 1e15). Raises :class:`InputError` naming ``flag`` for anything else,
    a count <= 0 or one too large to represent (``1e400``)."""
    m = _COUNT_RE.match(text)
    if not m:
        raise InputError(
            f"{flag}={text!r} is not a count; use a number with an optional K, M, B, T suffix (e.g. 2T)"
        )
    value = float(m.group(1)) * _COUNT_SUFFIX[m.group(2).lower()]
    if not math.isfinite(value):
        raise InputError(f"{flag}={text!r} is too large; give a finite count such as 15T")
    if not value > 0:
        raise InputError(f"{flag}={text!r} must be > 0")
    return value


def parse_size(text: str, flag: str = "size") -> int:
    """A byte size: a positive integer with an optional K, M, G or T (powers of 1024, as nccl-tests reads
    ``-b``/``-e``), optionally followed by ``B`` or ``iB``: ``8``, ``64K``, ``8G``, ``512MiB``. Raises
    :class:`InputError` naming ``flag`` otherwise."""
    m = _SIZE_RE.match(str(text))
    if not m or int(m.group(1)) < 1:
        raise InputError(
            f"{flag} {text!r} is not valid; use a positive integer with optional K, M, G, T "
            "(powers of 1024, e.g. 8, 64K, 8G, 512MiB)"
        )
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]


def finite(
    value: float,
    name: str,
    *,
    minimum: float | None = None,
    exclusive: bool = False,
    unit: str = "",
) -> float:
    """``value`` as a float if it is finite and at least ``minimum`` (above it when ``exclusive``), else
    :class:`InputError` naming ``name`` (the flag or key) and the valid range."""
    v = float(value)
    bound = ""
    if minimum is not None:
        bound = f" {'>' if exclusive else '>='} {minimum:g}"
    what = f" ({unit})" if unit else ""
    if not math.isfinite(v):
        raise InputError(f"{name}={value} must be a finite number{bound}{what}")
    if minimum is not None and (v <= minimum if exclusive else v < minimum):
        raise InputError(f"{name}={value:g} must be{bound}{what}")
    return v


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless n is 1: ``1 node``, ``2 nodes``, ``1,024 GPUs``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
