"""Running a sweep: in this process, on a local process pool, or on an existing Dask cluster.

Every executor maps a picklable function over a list of work items in chunks and returns the results in the
order of the items, so a sweep's output is identical whichever executor ran it.
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipesim.errors import InputError

__all__ = ["ExecutorSpec", "run_chunks", "chunked", "paused_gc"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ExecutorSpec(Generic[T]):
    """Where a sweep runs: ``workers`` local processes (1 = in this process), or the Dask scheduler at
    ``dask_scheduler`` (``tcp://host:port``), which takes precedence."""

    workers: int = 1
    dask_scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InputError(f"--workers={self.workers} must be >= 1")
        cpus = default_workers()
        if self.dask_scheduler is None and self.workers > cpus:  # more processes than CPUs only contend
            raise InputError(
                f"--workers={self.workers} exceeds the {cpus} CPUs this process may use (more processes only "
                f"contend for them); valid: 1 to {cpus}, or --dask-scheduler for a cluster"
            )
        if self.dask_scheduler is not None and "://" not in self.dask_scheduler:
            raise InputError(
                f"--dask-scheduler={self.dask_scheduler!r} is not an address; expected e.g. tcp://host:8786"
            )


@contextmanager
def paused_gc() -> Iterator[None]:
    """Run the body with CPython's cyclic garbage collector paused (reference counting still frees every
    object as usual). The planner allocates millions of small objects (candidates, estimates, cache keys)
    that live until the plan ends; each collection of the older generations walks all of them, which cost
    a DeepSeek-V3 plan about 15% of its time. Whatever cyclic garbage the body leaves is collected once the
    collector runs again."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Split ``items`` into consecutive chunks of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), max(size, 1))]


def default_workers() -> int:
    """Local processes to use by default: the CPUs this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def run_chunks(
    fn: Callable[[Sequence[T]], R],
    chunks: Sequence[Sequence[T]],
    spec: ExecutorSpec[T],
    progress: Callable[[int], None] | None = None,
) -> Iterator[R]:
    """Yield ``fn(chunk)`` for every chunk, in chunk order, running them as ``spec`` says.

    ``progress(n)`` is called with the number of items of each chunk as it completes. ``fn`` must be a
    module-level function (it is pickled for process pools and Dask).
    """
    if spec.dask_scheduler is not None:
        yield from _run_dask(fn, chunks, spec.dask_scheduler, progress)
        return
    if spec.workers == 1 or len(chunks) <= 1:
        for chunk in chunks:
            out = fn(chunk)
            if progress:
                progress(len(chunk))
            yield out
        return
    with ProcessPoolExecutor(max_workers=spec.workers) as pool:
        # Submitted so that each worker tends to take consecutive chunks (neighbours share costs its caches
        # keep: the planner sorts its candidates by layout), results yielded in chunk order.
        futures = {i: pool.submit(fn, chunks[i]) for i in _spread(len(chunks), spec.workers)}
        for i, chunk in enumerate(chunks):
            out = futures[i].result()
            if progress:
                progress(len(chunk))
            yield out


def _spread(n: int, workers: int) -> list[int]:
    """``range(n)`` cut into ``workers`` consecutive blocks and dealt one from each block in turn: a pool whose
    workers each take the next task gives each worker (mostly) one block."""
    size = max(1, -(-n // max(workers, 1)))
    blocks = [range(start, min(start + size, n)) for start in range(0, n, size)]
    return [i for row in itertools.zip_longest(*blocks) for i in row if i is not None]


def _run_dask(
    fn: Callable[[Sequence[T]], R],
    chunks: Sequence[Sequence[T]],
    address: str,
    progress: Callable[[int], None] | None,
) -> Iterator[R]:
    try:
        from distributed import Client
    except ImportError:
        raise InputError(
            "--dask-scheduler needs dask.distributed: pip install 'pipesim[dask]' (or 'dask[distributed]')"
        ) from None
    try:
        client = Client(address, timeout=10, set_as_default=False)
    except OSError as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        futures = client.map(fn, list(chunks), pure=False)
        for chunk, fut in zip(chunks, futures, strict=True):
            out = fut.result()
            if progress:
                progress(len(chunk))
            yield out
    finally:
        client.close()
