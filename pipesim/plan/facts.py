"""An on-disk cache of what the planner learns from built schedules: each profiled family's
:class:`pipesim.plan.profiles.Profile` and bubble factor, keyed by the integers and rounded ratios they are
computed from, so that a later plan (in another process) does not rebuild the same zero-bubble orders.

Every cached value is a deterministic function of its key and of the code that computes it: the file's name
carries a hash of that code (the ``schedules`` package, the engine under ``pipesim/sim`` and the planner's
profile and estimate modules), so any change to it starts a new, empty file and a plan's result never depends
on what is cached, only its speed. The directory is ``$PIPESIM_CACHE_DIR``, else ``$XDG_CACHE_HOME/pipesim``
(``~/.cache/pipesim``); ``PIPESIM_CACHE_DIR=off`` turns the cache off. Files are replaced atomically; several
processes may write, the last writer merging what it read.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["FactsCache", "facts_cache", "code_version"]

_ROOT = Path(__file__).resolve().parents[2]
_SOURCES = (
    "schedules",
    "pipesim/sim",
    "pipesim/plan/profiles.py",
    "pipesim/plan/schedule_facts.py",
    "pipesim/plan/estimate.py",
)


@cache
def code_version() -> str:
    """A hash of the source the cached facts are computed by (see the module docstring)."""
    digest = hashlib.sha256()
    for name in _SOURCES:
        path = _ROOT / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            digest.update(str(f.relative_to(_ROOT)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _directory() -> Path | None:
    env = os.environ.get("PIPESIM_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pipesim"


class FactsCache:
    """Tables of cached facts, loaded from ``path`` on first use (``None``: in memory only)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._tables: dict[str, dict[Any, Any]] | None = None
        self._new: dict[str, dict[Any, Any]] = {}

    def _load(self) -> dict[str, dict[Any, Any]]:
        if self._tables is None:
            self._tables = self._read()
        return self._tables

    def _read(self) -> dict[str, dict[Any, Any]]:
        if self.path is None:
            return {}
        try:
            with open(self.path, "rb") as fh:
                data = pickle.load(fh)
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, table: str, key: Any) -> Any:
        """The cached value of ``key`` in ``table``, or None."""
        return self._load().get(table, {}).get(key)

    def put(self, table: str, key: Any, value: Any) -> None:
        """Remember ``value`` for ``key`` (written by :meth:`flush`)."""
        self._load().setdefault(table, {})[key] = value
        self._new.setdefault(table, {})[key] = value

    def take_new(self) -> dict[str, dict[Any, Any]]:
        """What was learnt since the last :meth:`flush` or :meth:`take_new`, handed over (a worker process
        returns it to the planner, which :meth:`merge` s it and writes the file once)."""
        new, self._new = self._new, {}
        return new

    def merge(self, new: dict[str, dict[Any, Any]]) -> None:
        """Remember what another process learnt (:meth:`take_new`) as if learnt here."""
        tables = self._load()
        for table, values in new.items():
            tables.setdefault(table, {}).update(values)
            self._new.setdefault(table, {}).update(values)

    def flush(self) -> None:
        """Write what was learnt since the last flush, merged with the file as it is now (atomic replace;
        a cache that cannot be written is left alone)."""
        if not self._new or self.path is None:
            self._new.clear()
            return
        merged = self._read()
        for table, values in self._new.items():
            merged.setdefault(table, {}).update(values)
        self._new.clear()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(merged, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self.path)
        except OSError:
            return


_CACHES: dict[Path | None, FactsCache] = {}


def facts_cache() -> FactsCache:
    """This process's cache for the current directory setting and code version."""
    directory = _directory()
    path = None if directory is None else directory / f"plan-facts-{code_version()}.pkl"
    hit = _CACHES.get(path)
    if hit is None:
        hit = _CACHES[path] = FactsCache(path)
    return hit
