"""Writing output files safely: all-or-nothing, with the mode a plain ``open()`` would give, through
whatever already sits at the path.

Rules (one place for every command):
- ``-`` is standard output.
- A path ending in ``/`` or naming a directory is refused; so is a missing or unwritable directory.
- A regular file (new or existing) is written to a temporary file beside it and renamed over it, so a
  failure never leaves a half-written file; the result has the existing file's mode, or ``0o666`` less the
  umask for a new one (what ``open(path, "w")`` gives; ``mkstemp`` alone would give 0600).
- A symlink is followed: its target is replaced, the link stays.
- A FIFO, character device or other non-regular file is written through in place (never replaced).
- Temporary files are removed on any exception, including KeyboardInterrupt and the SystemExit that
  :func:`exit_on_sigterm` turns SIGTERM into.
- :func:`write_outputs` writes several files of one command only after all their contents exist, and refuses
  two outputs on one path before any work (:func:`check_distinct_outputs`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from pipesim.errors import InputError

__all__ = [
    "STDOUT",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_distinct_outputs",
    "check_output_path",
    "exit_on_sigterm",
    "write_outputs",
]

STDOUT = "-"


def _target(path: str | Path) -> Path:
    """The file a write to ``path`` lands in: symlinks followed (a dangling one: its target)."""
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def check_output_path(path: str | Path) -> Path:
    """Return ``path`` as a Path if it can be written (see the module rules), else raise :class:`InputError`
    naming it and what is wrong."""
    text = os.fspath(path)
    if text == STDOUT:
        return Path(STDOUT)
    if not text:
        raise InputError("an output path is empty; give a file name (or - for standard output)")
    if text.endswith(("/", os.sep)):
        raise InputError(f"cannot write {text}: it names a directory; give a file name inside it")
    p = Path(text)
    target = _target(p)
    if target.is_dir():
        raise InputError(f"cannot write {p}: it is a directory")
    if target.exists() and not target.is_file():
        if not os.access(target, os.W_OK):
            raise InputError(f"cannot write {p}: not writable")
        return p  # FIFO or device: written through
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {p}: directory {parent} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise InputError(f"cannot write {p}: the file is not writable")
    return p


def check_distinct_outputs(outputs: Mapping[str, str | Path | None]) -> None:
    """Refuse, before any work, two outputs (flag -> path; None = not asked) that name the same file or both
    standard output."""
    seen: dict[str, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        text = os.fspath(path)
        key = STDOUT if text == STDOUT else os.path.realpath(text)
        if key in seen:
            raise InputError(f"{seen[key]} and {flag} both write {text}; give each output its own path")
        seen[key] = flag


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _stage(target: Path, data: bytes) -> str:
    """Write ``data`` to a temporary file beside ``target`` with the mode the final file gets; its path."""
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else _new_file_mode()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with _named(target), os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
    except BaseException:
        _remove(tmp)
        raise
    return tmp


@contextlib.contextmanager
def _named(target: Path) -> Iterator[None]:
    """Give a write error without a file name (a full disk: ENOSPC) ``target``'s name, so the message names
    the output file and not standard output."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(target)) from None


def _remove(tmp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def _write_through(path: Path, data: bytes) -> None:
    if os.fspath(path) == STDOUT:
        out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
        if out is None:
            sys.stdout.write(data.decode("utf-8"))
        else:
            out.write(data)
        sys.stdout.flush()
        return
    with _named(path), open(path, "wb") as fh:
        fh.write(data)


def write_outputs(outputs: Sequence[tuple[str | Path, bytes]]) -> None:
    """Write every (path, data): regular files are staged first and renamed into place only when all are
    staged, so a failure leaves none of them changed; FIFOs, devices and ``-`` are written last, in place."""
    staged: list[tuple[str, Path]] = []
    direct: list[tuple[Path, bytes]] = []
    try:
        for path, data in outputs:
            p = check_output_path(path)
            target = _target(p)
            if os.fspath(p) == STDOUT or (target.exists() and not target.is_file()):
                direct.append((p, data))
            else:
                staged.append((_stage(target, data), target))
        for tmp, target in staged:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in staged:
            _remove(tmp)
        raise
    for p, data in direct:
        _write_through(p, data)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` by the module's rules (all-or-nothing for a regular file)."""
    write_outputs([(path, data)])


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit(143)`` so that cleanup (``finally``, temporary files) runs, as it does
    for SIGINT's KeyboardInterrupt. Call once from a program's entry point (main thread only)."""
    signal.signal(signal.SIGTERM, _raise_exit)
