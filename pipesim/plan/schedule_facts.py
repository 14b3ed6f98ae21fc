"""What the planner's estimator (:mod:`pipesim.plan.estimate`) learns from built schedules: the schedules
themselves (or why they cannot be built), their :class:`pipesim.plan.profiles.Profile` and the bubble factor
of a profiled family, each cached in memory and, for profiles and bubble factors, in the on-disk facts cache
(:mod:`pipesim.plan.facts`)."""

from __future__ import annotations

from typing import Any

from pipesim.plan.facts import facts_cache
from pipesim.plan.profiles import Profile, profile_microbatches, profile_schedule
from pipesim.sim.engine import OpCosts, simulate
from pipesim.sim.iterations import run_iterations
from schedules import Schedule, ScheduleError, build_schedule, get_family
from schedules.greedy import GreedyTimes
from schedules.iterations import check_optimizer_mode
from schedules.timed import build_timed

__all__ = ["ScheduleFacts"]


class ScheduleFacts:
    """Built schedules, profiles and bubble factors under one optimizer mode (cached). Not thread-safe."""

    def __init__(self, optimizer: str = "sync") -> None:
        self.optimizer = check_optimizer_mode(optimizer)
        self._schedules: dict[tuple[Any, ...], Schedule | str] = {}
        self._bubble: dict[tuple[Any, ...], float] = {}
        self._profiles: dict[tuple[Any, ...], Profile] = {}
        self.facts = facts_cache()  # profiles and bubble factors of earlier plans (pipesim.plan.facts)

    # ----------------------------------------------------------------- schedules and profiles
    def schedule(
        self, name: str, pp: int, m: int, chunks: int, variant: tuple[float, ...] | None = None
    ) -> Schedule | str:
        """The built schedule, or the reason it cannot be built (cached). ``variant`` = (I, W, P2P, stash
        fraction), relative to F, rebuilds a greedy zero-bubble family for those times as the simulator does
        (:func:`pipesim.sim.scenario._greedy_for_costs`); the registry's default order otherwise."""
        key = (name, pp, m, chunks, variant)
        hit = self._schedules.get(key)
        if hit is None:
            try:
                if variant is not None:
                    ri, rw, rc, sf = variant
                    hit = build_timed(name, pp, m, GreedyTimes(1.0, ri, rw, rc), None, sf, self.optimizer)
                else:
                    hit = build_schedule(name, pp, m, chunks)
            except ScheduleError as exc:
                hit = str(exc)
            self._schedules[key] = hit
        return hit

    def rule(self, name: str, pp: int, m: int, chunks: int) -> str | None:
        """Why schedule ``name`` cannot run ``m`` microbatches on ``pp`` ranks with ``chunks`` chunks, or None
        (the registry's rule; a family without one is built to find out)."""
        family_rule = get_family(name).rule
        if family_rule is not None:
            return family_rule(pp, m, chunks)
        built = self.schedule(name, pp, m, chunks)
        return built if isinstance(built, str) else None

    def profile(
        self, name: str, pp: int, m: int, chunks: int, variant: tuple[float, ...] | None = None
    ) -> Profile:
        """The cached :class:`Profile` of family ``name`` built with ``m`` microbatches."""
        key = (name, pp, m, chunks, variant, self.optimizer)  # timed orders are built for the mode
        hit = self._profiles.get(key)
        if hit is None:
            stored = self.facts.get("profile", key)
            if stored is not None:
                hit = Profile(*stored)
            else:
                built = self.schedule(name, pp, m, chunks, variant)
                assert not isinstance(built, str), built
                hit = profile_schedule(built)
                self.facts.put("profile", key, (hit.placement, hit.local, hit.counts, hit.vectors))
            self._profiles[key] = hit
        return hit

    def profiled_bubble(
        self,
        name: str,
        pp: int,
        m: int,
        chunks: int,
        f: float,
        b: float,
        w: float,
        variant: tuple[float, ...] | None = None,
    ) -> float:
        """Bubble factor of a profiled family (relative to 1F1B's (p-1) x per-microbatch work / chunks): its
        schedule, built at :func:`profile_microbatches`, simulated with uniform chunk costs F = 1 and B, W in
        the given ratios (rounded to 0.1, cached); one step under ``sync``, the steady-state step of
        back-to-back iterations under ``post-validation``."""
        rb = round(b / f * 10) / 10
        rw = min(round(w / f * 10) / 10, rb)
        mp = profile_microbatches(pp, m)
        key = (name, pp, mp, chunks, rb, rw, variant, self.optimizer)
        hit = self._bubble.get(key)
        if hit is None:
            hit = self.facts.get("bubble", key)
            if hit is not None:
                self._bubble[key] = hit
                return hit
            built = self.schedule(name, pp, mp, chunks, variant)
            if isinstance(built, str):
                mp = m
                built = self.schedule(name, pp, m, chunks, variant)
                assert not isinstance(built, str), built
            split = get_family(name).split_backward
            costs = OpCosts.uniform(built.num_stages, 1.0, rb, weight_s=rw if split else 0.0)
            if self.optimizer == "sync":
                t = simulate(
                    built, costs, method="compiled"
                ).step_time_s  # many small runs: the compiled pass
            else:
                t = run_iterations(built, costs, self.optimizer).metrics.step_time_s
            per_rank = chunks * (1.0 + rb)
            runs = mp / get_family(name).chains  # each microbatch runs one chain: 1/chains of a rank's chunks
            hit = (t - runs * per_rank) / ((pp - 1) * per_rank / chunks) if pp > 1 else 0.0
            self._bubble[key] = hit = max(hit, 0.0)
            self.facts.put("bubble", key, hit)
        return hit
