"""Sweep executors give identical, ordered results in-process, on a process pool and on Dask."""

from __future__ import annotations

import gc
from collections.abc import Sequence

import pytest

from pipesim.errors import InputError
from pipesim.plan.executors import ExecutorSpec, _spread, chunked, paused_gc, run_chunks


def square_all(chunk: Sequence[int]) -> list[int]:
    return [x * x for x in chunk]


ITEMS = list(range(103))
EXPECTED = [x * x for x in ITEMS]


def flat(spec: ExecutorSpec[int]) -> list[int]:
    seen: list[int] = []
    out = [y for part in run_chunks(square_all, chunked(ITEMS, 10), spec, seen.append) for y in part]
    assert sum(seen) == len(ITEMS)
    return out


def test_in_process() -> None:
    assert flat(ExecutorSpec(workers=1)) == EXPECTED


def test_process_pool() -> None:
    assert flat(ExecutorSpec(workers=2)) == EXPECTED


@pytest.mark.dask
def test_dask_local_cluster() -> None:
    import distributed  # in the test extra; the dask marker skips (or, under PIPESIM_TEST_ALL=1, fails) without it

    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as lc:
        assert flat(ExecutorSpec(dask_scheduler=lc.scheduler_address)) == EXPECTED


def test_bad_specs() -> None:
    with pytest.raises(InputError, match="--workers=0 must be >= 1"):
        ExecutorSpec(workers=0)
    with pytest.raises(InputError, match="not an address"):
        ExecutorSpec(dask_scheduler="localhost")


@pytest.mark.parametrize(("n", "workers"), [(0, 2), (1, 2), (5, 2), (7, 3), (4, 1), (10, 4)])
def test_spread_deals_consecutive_blocks_in_turn(n: int, workers: int) -> None:
    order = _spread(n, workers)
    assert sorted(order) == list(range(n))  # every chunk submitted once
    size = max(1, -(-n // workers))
    # The first of each block come first, in block order: worker k of a FIFO pool starts on block k.
    assert order[: -(-n // size) if n else 0] == list(range(0, n, size))


def test_paused_gc_restores_the_collector_even_on_error() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():  # nested: the inner one leaves it paused
            pass
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), paused_gc():
        raise ValueError("boom")
    assert gc.isenabled()
