"""The planner's memory screen (issue 17, part 3): a layout is timed only when it fits, and one whose state
alone (weights, gradients, optimizer state, the backward's working set and the reserve) is above HBM is
rejected on that bound. The bound must never reject a layout that fits, must be at most the layout's peak,
and the plan must still name the exact closest layout and the exact peak of its example."""

from __future__ import annotations

import pytest

from pipesim.errors import InputError
from pipesim.plan.estimate import Estimator, MemoryBound, MemoryEstimate
from pipesim.plan.search import PlanCluster, PlanRequest, SearchSpace, enumerate_space, plan
from pipesim.plan.space import GIB
from pipesim.specs.gpu import get_gpu
from pipesim.specs.model import get_model


def _request(model: str, nodes: int) -> PlanRequest:
    return PlanRequest(
        get_model(model),
        PlanCluster(get_gpu("h100-sxm"), nodes, 8),
        64,
        seq_length=4096,
        top_k=0,
        space=SearchSpace(micro_batch_sizes=(1,)),
    )


def _estimator(req: PlanRequest) -> Estimator:
    return Estimator(req.model, req.cluster.gpu, req.cluster.comm(), req.efficiency, req.reserve_bytes)


@pytest.fixture(autouse=True)
def _no_disk_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPESIM_CACHE_DIR", "off")


def test_screen_bounds_are_below_the_peak_and_never_reject_a_fit() -> None:
    # Llama 2 70B on 32 H100: 1,872 layouts rejected on the bound, 791 out of memory on their activations,
    # 529 fit (counted when this test was written; the test requires each kind to occur).
    req = _request("llama2-70b", 4)
    screen, exact = _estimator(req), _estimator(req)
    seen = {"bound": 0, "oom": 0, "fit": 0}
    for c in enumerate_space(req)[0]:
        layout = c.layout(req)
        s = screen.screen(layout, c.schedule, c.vpp)
        m = exact.memory_as(layout, c.schedule, c.vpp)
        if isinstance(s, MemoryBound):
            assert not m.fits and s.lower_bytes <= m.peak_memory_bytes, c.label()
            assert s.lower_bytes > s.capacity_bytes == m.capacity_bytes
            seen["bound"] += 1
        else:
            assert isinstance(s, MemoryEstimate) and s == m, c.label()
            seen["fit" if m.fits else "oom"] += 1
    assert min(seen.values()) > 0, seen


def _oom_by_brute_force(req: PlanRequest) -> list[tuple[int, str, MemoryEstimate]]:
    est = _estimator(req)
    rows = []
    for c in enumerate_space(req)[0]:
        m = est.memory_as(c.layout(req), c.schedule, c.vpp)
        if not m.fits:
            rows.append((c.index, c.label(), m))
    return rows


def test_plan_names_the_exact_closest_layout_and_example() -> None:
    req = _request("llama2-70b", 4)
    oom = _oom_by_brute_force(req)
    res = plan(req)
    assert res.rejected["memory"] == len(oom)
    index, label, m = oom[0]  # the first in enumeration order is the example, with its exact peak
    over = (m.peak_memory_bytes - m.capacity_bytes) / GIB
    assert (
        res.examples["memory"] == f"{label}: needs {m.peak_memory_bytes / GIB:.1f} GiB, {over:.1f} GiB over"
    )
    best = min(oom, key=lambda row: (row[2].peak_memory_bytes, row[0]))
    assert res.closest is not None
    assert (res.closest[0].index, res.closest[1]) == (best[0], best[2])


def test_nothing_fits_names_the_exact_closest_layout() -> None:
    # Llama 2 70B on 16 H100: every layout is out of memory, most of them on the bound alone.
    req = _request("llama2-70b", 2)
    oom = _oom_by_brute_force(req)
    best = min(oom, key=lambda row: (row[2].peak_memory_bytes, row[0]))
    with pytest.raises(InputError) as err:
        plan(req)
    assert f"closest: {best[1]} needs {best[2].peak_memory_bytes / GIB:.1f} GiB per GPU" in str(err.value)
