"""The planner's fast paths give the figures of the plain ones: the vectorised held-memory walk equals the
scalar walk (also for a profile read back from the arrays the facts cache stores), the vectorised Pareto front
the pairwise one, an estimate sharing cached pieces with other
candidates equals one computed alone, one layout estimated under each of its schedules equals each
candidate's own layout estimated, the exposed gradient reduction read from its per-placement limit equals the
walk at every pipeline length, and a plan read from the on-disk facts cache equals one that built every
schedule."""

from __future__ import annotations

import pickle
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import pipesim.plan.schedule_facts as schedule_facts_mod
from pipesim.plan import facts, request
from pipesim.plan.dp_exposure import DpExposure, RankRounds, dp_exposed_s, limit_by_rounds
from pipesim.plan.estimate import Estimator
from pipesim.plan.evaluate import layout_key
from pipesim.plan.executors import ExecutorSpec
from pipesim.plan.profiles import Profile, pareto, profile_schedule
from pipesim.plan.search import PlanCluster, PlanRequest, SearchSpace, enumerate_space, plan
from pipesim.specs.gpu import get_gpu
from pipesim.specs.model import get_model
from schedules import REGISTRY, build_schedule
from schedules.ir import HELD_DELTA


def _pairwise_front(points: set[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    front = [
        q
        for q in points
        if not any(f != q and all(x >= y for x, y in zip(f, q, strict=True)) for f in points)
    ]
    return tuple(sorted(front))


def test_pareto_equals_pairwise_definition() -> None:
    rng = random.Random(3)
    for _ in range(500):
        d, n = rng.randint(1, 6), rng.randint(0, 40)
        pts = {tuple(rng.randint(0, 4) for _ in range(d)) for _ in range(n)}
        assert pareto(pts) == _pairwise_front(pts)


def _scalar_peaks(schedule, weights: list[list[float]]) -> list[float]:
    """Every state along each rank's program (no pruning), dotted with the weights left to right."""
    placement = schedule.stage_to_rank
    out = []
    for r in range(schedule.num_ranks):
        local = [s for s in range(schedule.num_stages) if placement[s] == r]
        c = len(local)
        vec = [0] * (2 * c)
        best = 0.0
        for a in schedule.actions(r):
            i = local.index(a.stage)
            vec[i] += HELD_DELTA[a.op][0]
            vec[c + i] += HELD_DELTA[a.op][1]
            best = max(best, sum(x * w for x, w in zip(vec, weights[r], strict=True)))
        out.append(best)
    return out


@pytest.mark.parametrize("name", [n for n, f in REGISTRY.items() if f.planned and f.in_flight is None])
def test_held_peaks_equal_the_scalar_walk(name: str) -> None:
    fam = REGISTRY[name]
    p, chunks = 4, fam.chunks(3)
    sched = build_schedule(name, p, 10, chunks)
    prof = profile_schedule(sched)
    rng = random.Random(len(name))
    weights = [[rng.uniform(1e8, 5e9) for _ in range(2 * len(prof.local[r]))] for r in range(p)]
    got = prof.held_peaks(np.array(weights)).tolist()
    assert got == _scalar_peaks(sched, weights)  # bit-identical, not approximately


def test_a_profile_read_back_from_its_stored_arrays_walks_alike() -> None:
    # The facts cache stores a profile as (placement, local stages, counts per rank, vectors); read back, it has
    # the same states and held peaks, on the one-state-per-rank fast path too.
    sched = build_schedule("zb-h1", 4, 10, 1)
    prof = profile_schedule(sched)
    back = pickle.loads(pickle.dumps((prof.placement, prof.local, prof.counts, prof.vectors)))
    again = Profile(*back)
    assert again.states == prof.states == Profile.of(prof.placement, prof.local, prof.states).states
    assert prof.vectors.dtype == np.int16
    rng = random.Random(11)
    weights = np.array([[rng.uniform(1e8, 5e9) for _ in range(2)] for _ in range(4)])
    assert again.held_peaks(weights).tolist() == prof.held_peaks(weights).tolist()
    single = Profile.of((0, 1, 2), ((0,), (1,), (2,)), (((3, 1),), ((2, 0),), ((1, 1),)))
    expected = [
        max(sum(x * w for x, w in zip(v, ws, strict=True)) for v in vs)
        for vs, ws in zip(single.states, weights[:3].tolist(), strict=True)
    ]
    assert single.held_peaks(weights[:3]).tolist() == expected


def _request(**kw) -> PlanRequest:
    return PlanRequest(
        get_model("llama2-7b"), PlanCluster(get_gpu("h100-sxm"), 2, 8), 64, seq_length=2048, top_k=0, **kw
    )


def test_shared_pieces_give_the_estimate_of_a_candidate_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPESIM_CACHE_DIR", "off")
    req = _request()
    cands, _, _ = enumerate_space(req)
    shared = Estimator(req.model, req.cluster.gpu, req.cluster.comm(), req.efficiency, req.reserve_bytes)
    together = [shared.estimate(c.layout(req)) for c in cands]
    rng = random.Random(7)
    for i in rng.sample(range(len(cands)), 25):
        alone = Estimator(req.model, req.cluster.gpu, req.cluster.comm(), req.efficiency, req.reserve_bytes)
        assert alone.estimate(cands[i].layout(req)) == together[i], cands[i].label()


@pytest.mark.parametrize("optimizer", ["sync", "post-validation"])
def test_one_layout_under_each_schedule_equals_each_candidates_own_layout(
    optimizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPESIM_CACHE_DIR", "off")
    req = _request(space=SearchSpace(fsdp=("full",)), optimizer=optimizer)
    cands, _, _ = enumerate_space(req)
    args = (req.model, req.cluster.gpu, req.cluster.comm(), req.efficiency, req.reserve_bytes, optimizer)
    shared, alone = Estimator(*args), Estimator(*args)
    bases: dict[tuple[object, ...], object] = {}
    schedules = {c.schedule for c in cands}
    assert len(schedules) >= 10
    for c in cands:
        base = bases.setdefault(layout_key(c), c.layout(req))
        assert shared.estimate_as(base, c.schedule, c.vpp) == alone.estimate(c.layout(req)), c.label()


def test_dp_exposure_limit_equals_the_walk_at_every_pipeline_length() -> None:
    rng = random.Random(5)
    for _ in range(300):
        p = rng.randint(1, 6)
        stages = sorted(
            (
                (s, rng.uniform(0.0, 0.3), rng.randrange(p), rng.uniform(0, 0.1), rng.uniform(0.1, 0.3))
                for s in rng.sample(range(3 * p), rng.randint(1, 3 * p))
            ),
            reverse=True,
        )
        args = (tuple(stages), rng.randint(1, 4), rng.random() < 0.8, p)
        wave, split = rng.uniform(0, 0.05), rng.random() < 0.5
        for optimizer in ("sync", "post-validation"):
            exp = DpExposure.of(*args, wave, split, optimizer)
            for pipeline in (0.0, 0.05, 0.2, 0.5, 1.0, 3.0, 30.0):
                walk = dp_exposed_s(*args, pipeline, wave, split, optimizer)
                assert exp.at(pipeline) == pytest.approx(walk, abs=1e-12), (stages, pipeline)
            assert exp.at(max(exp.from_s, 0.0) + 100.0) == exp.exposed_s


def test_dp_limit_by_rounds_is_the_walk_over_all_ranks_at_once() -> None:
    rng = random.Random(9)
    for _ in range(300):
        p, c = rng.randint(1, 8), rng.randint(1, 4)
        by_rank = np.array([[s for s in range(p * c) if s % p == r] for r in range(p)])  # interleaved
        placement = [s % p for s in range(p * c)]
        dp = np.array([rng.choice([0.0, rng.uniform(0.0, 0.3)]) for _ in range(p * c)])
        w, b = np.array([rng.uniform(0, 0.1) for _ in dp]), np.array([rng.uniform(0.1, 0.3) for _ in dp])
        stages = tuple(
            (s, float(dp[s]), placement[s], float(w[s]), float(b[s]))
            for s in range(p * c - 1, -1, -1)
            if dp[s] > 0
        )
        if not stages:
            continue
        order = by_rank[:, ::-1].T
        rounds = RankRounds(order.astype(float), dp[order], w[order], b[order], dp[order] > 0)
        nb, overlap, wave, split = (
            rng.randint(1, 4),
            rng.random() < 0.8,
            rng.uniform(0, 0.05),
            rng.random() < 0.5,
        )
        for optimizer in ("sync", "post-validation"):
            fast = limit_by_rounds(rounds, nb, overlap, wave, split, optimizer)
            slow = DpExposure.of(stages, nb, overlap, p, wave, split, optimizer)
            assert fast == (slow.exposed_s, slow.from_s), (stages, optimizer)


@pytest.mark.parametrize("optimizer", ["sync", "post-validation"])
def test_two_chain_layouts_never_share_pieces_with_one_chain_ones(
    optimizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dualpipe-v (one chain) and bidirectional dualpipe (two model copies) place stages alike: 0..p-1, p-1..0.
    monkeypatch.setenv("PIPESIM_CACHE_DIR", "off")
    req = _request(space=SearchSpace(schedules=("dualpipe-v", "dualpipe")), optimizer=optimizer)
    cands, _, _ = enumerate_space(req)
    args = (req.model, req.cluster.gpu, req.cluster.comm(), req.efficiency, req.reserve_bytes, optimizer)
    shared = Estimator(*args)
    one_chain = [c for c in cands if c.schedule == "dualpipe-v"]
    two_chains = [c for c in cands if c.schedule == "dualpipe"]
    assert one_chain and two_chains
    for c in one_chain:
        shared.estimate(c.layout(req))
    rng = random.Random(11)
    for c in rng.sample(two_chains, min(12, len(two_chains))):
        alone = Estimator(*args)
        assert shared.estimate(c.layout(req)) == alone.estimate(c.layout(req)), c.label()


@pytest.mark.parametrize("workers", [1, 2])
def test_plan_from_the_facts_cache_equals_a_plan_that_built_every_schedule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    # With worker processes, what each learnt travels back with its estimates and the planner writes it.
    monkeypatch.setenv("PIPESIM_CACHE_DIR", str(tmp_path))
    space = SearchSpace(schedules=("1f1b", "zb-h1", "zb-1p", "zb-2p", "interleaved-zb", "zb-v"))
    req = replace(_request(space=space))
    request._ESTIMATORS.clear()
    facts._CACHES.clear()
    first = plan(req, ExecutorSpec(workers=workers))
    assert len(list(tmp_path.glob("plan-facts-*.pkl"))) == 1, "the first plan writes what it learnt, once"

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a schedule was built although its profile was cached")

    request._ESTIMATORS.clear()
    facts._CACHES.clear()
    monkeypatch.setattr(schedule_facts_mod, "build_timed", refuse)
    second = plan(req)
    assert second.as_dict() == first.as_dict()
    request._ESTIMATORS.clear()
    facts._CACHES.clear()


def test_facts_cache_off_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPESIM_CACHE_DIR", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    facts._CACHES.clear()
    cache = facts.facts_cache()
    cache.put("bubble", ("x",), 1.0)
    cache.flush()
    assert cache.path is None and not list(tmp_path.rglob("*"))
    facts._CACHES.clear()


def test_facts_cached_under_one_optimizer_mode_are_not_read_under_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timed zero-bubble orders are built for the mode and post-validation's bubble is a steady-state period:
    # a plan under post-validation after one under sync (same cache) equals one with no cache at all.
    space = SearchSpace(schedules=("zb-h1", "zb-v", "zb-2p"))
    monkeypatch.setenv("PIPESIM_CACHE_DIR", "off")
    request._ESTIMATORS.clear()
    facts._CACHES.clear()
    fresh = plan(_request(space=space, optimizer="post-validation"))
    monkeypatch.setenv("PIPESIM_CACHE_DIR", str(tmp_path))
    for optimizer in ("sync", "post-validation"):
        request._ESTIMATORS.clear()
        facts._CACHES.clear()
        after = plan(_request(space=space, optimizer=optimizer))
    assert after.as_dict() == fresh.as_dict()
    request._ESTIMATORS.clear()
    facts._CACHES.clear()
