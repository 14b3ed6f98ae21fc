"""Writing output files all-or-nothing."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pipesim.errors import InputError

__all__ = ["check_output_path", "atomic_write_text", "atomic_write_bytes"]


def check_output_path(path: str | Path) -> Path:
    """Return ``path`` as a Path if its directory exists and is writable, else raise :class:`InputError`."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {p}: directory {parent} is not writable")
    if p.is_dir():
        raise InputError(f"cannot write {p}: it is a directory")
    return p


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and an atomic rename, so a
    failure never leaves a half-written file behind."""
    p = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))
