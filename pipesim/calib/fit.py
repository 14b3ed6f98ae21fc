"""Fitting an :class:`pipesim.specs.efficiency.Efficiency` profile to measured step times.

A measured run is a :class:`Run` (model, layout, communication model, measured seconds per step). The fit
minimises the mean absolute relative error of pipesim's predicted step time over the runs by a deterministic
coordinate search: each fitted key in turn is set to the best of a few trial values inside its bounds, the
step shrinking each round (a derivative-free pattern search, Hooke and Jeeves, J. ACM 8(2), 1961). k-fold and
leave-one-group-out holdouts refit on the other runs and score the held-out ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipesim.comm.base import CommModel
from pipesim.errors import InputError
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.specs.efficiency import Efficiency
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec

__all__ = [
    "Run",
    "FIT_BOUNDS",
    "FIT_RESIDUAL_LIMIT",
    "predict_step_s",
    "mae",
    "fit_profile",
    "kfold_holdout",
    "group_holdout",
    "check_fit_keys",
    "at_bounds",
    "check_fit",
]

# Keys a fit may move and their bounds (fractions of peak / HBM bandwidth, K elements, seconds).
FIT_BOUNDS: dict[str, tuple[float, float]] = {
    "gemm_max": (0.3, 1.0),
    "gemm_max_fp8": (0.2, 1.0),
    "gemm_max_fp4": (0.2, 1.0),
    "nccl": (0.1, 1.0),
    "gemm_half_dim": (0.0, 1024.0),
    "attention": (0.2, 1.0),
    "hbm": (0.4, 1.0),
    "kernel_overhead_s": (0.0, 3e-5),
    "step_overhead_s": (0.0, 2.0),
    "tp_overlap": (0.05, 1.0),
}

# A fit leaving any run (or, for a trace, any kernel kind) further than this relative error from its
# measurement is refused: the measurements are outside what the model can reach.
FIT_RESIDUAL_LIMIT = 0.5

# Keys only some runs exercise: (does this run use it, why no run does).
_USED_BY: dict[str, tuple[Callable[[Layout], bool], str]] = {
    "gemm_max": (lambda lay: lay.precision not in ("fp8", "fp4"), "every run is fp8 or fp4"),
    "gemm_max_fp8": (lambda lay: lay.precision == "fp8", "no run uses fp8"),
    "gemm_max_fp4": (lambda lay: lay.precision == "fp4", "no run uses fp4"),
    "attention": (lambda lay: lay.attention == "flash", "no run uses fused attention (attention=flash)"),
}


@dataclass(frozen=True)
class Run:
    """One measured training step: what ran (``model``, ``layout`` on ``comm``) and ``measured_s`` seconds
    per step; ``group`` names the run's family for leave-one-group-out holdouts (default: the model);
    ``label`` names it in reports."""

    model: ModelSpec
    layout: Layout
    comm: CommModel
    measured_s: float
    label: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.measured_s) and self.measured_s > 0):
            raise InputError(
                f"run {self.label!r}: measured step time {self.measured_s} s must be finite and > 0"
            )

    @property
    def family(self) -> str:
        """The holdout group: ``group`` or the model's name."""
        return self.group or self.model.name


def predict_step_s(run: Run, gpu: GPUSpec, eff: Efficiency) -> float:
    """pipesim's simulated seconds per step of ``run`` on ``gpu`` with profile ``eff``."""
    return simulate_scenario(Scenario(run.model, gpu, run.layout, run.comm, eff)).step_time_s


def mae(errors: Sequence[float]) -> float:
    """Mean absolute value of relative errors."""
    return sum(abs(e) for e in errors) / len(errors) if errors else 0.0


def _errors(runs: Sequence[Run], gpu: GPUSpec, eff: Efficiency) -> list[float]:
    return [(predict_step_s(r, gpu, eff) - r.measured_s) / r.measured_s for r in runs]


def fit_profile(
    runs: Sequence[Run],
    gpu: GPUSpec,
    base: Efficiency,
    keys: Sequence[str],
    rounds: int = 4,
    objective: Callable[[Efficiency], float] | None = None,
    note: str = "",
    first_round: int = 0,
) -> Efficiency:
    """``base`` with ``keys`` fitted to minimise ``objective`` (default: the step-time MAE over ``runs``) by
    coordinate search within :data:`FIT_BOUNDS`: per round and key, trial values base +/- step and +/- step/2
    (step starting at a quarter of the bound's span, halved ``first_round`` times for a local refit from a good
    start, and halving each round). Fitted keys' sources say ``note`` (what the fit used)."""
    bad = [k for k in keys if k not in FIT_BOUNDS]
    if bad:
        raise InputError(f"cannot fit {bad[0]!r}; fittable: {', '.join(FIT_BOUNDS)}")
    if not runs and objective is None:
        raise InputError("nothing to fit: no runs")
    score: Callable[[Efficiency], float] = objective or (lambda e: mae(_errors(runs, gpu, e)))
    cache: dict[tuple[float, ...], float] = {}

    def value(e: Efficiency) -> float:
        key = tuple(float(getattr(e, k)) for k in keys)
        if key not in cache:
            cache[key] = score(e)
        return cache[key]

    best = base
    best_v = value(best)
    for rnd in range(first_round, first_round + rounds):
        for k in keys:
            lo, hi = FIT_BOUNDS[k]
            step = (hi - lo) / 4 / 2**rnd
            cur = float(getattr(best, k))
            for trial in (cur - step, cur + step, cur - step / 2, cur + step / 2):
                t = min(hi, max(lo, trial))
                if t == cur:
                    continue
                cand = replace(best, **{k: t})
                v = value(cand)
                if v < best_v - 1e-12:
                    best, best_v = cand, v
    sources = dict(best.sources)
    for k in keys:
        sources[k] = note or f"fitted to {len(runs)} measured runs"
    return replace(best, sources=sources)


def kfold_holdout(
    runs: Sequence[Run],
    gpu: GPUSpec,
    base: Efficiency,
    keys: Sequence[str],
    k: int = 5,
    rounds: int = 3,
    first_round: int = 0,
) -> tuple[float, list[float]]:
    """k-fold holdout: runs split round-robin into ``k`` folds; each fold is predicted by a profile fitted on
    the others. Returns (MAE over all held-out predictions, the held-out errors in run order)."""
    if k < 2 or k > len(runs):
        raise InputError(f"k-fold holdout needs 2 <= k <= runs ({len(runs)}), got k={k}")
    errs: list[float] = [0.0] * len(runs)
    for fold in range(k):
        train = [r for i, r in enumerate(runs) if i % k != fold]
        fitted = fit_profile(train, gpu, base, keys, rounds, first_round=first_round)
        for i, r in enumerate(runs):
            if i % k == fold:
                errs[i] = _errors([r], gpu, fitted)[0]
    return mae(errs), errs


def group_holdout(
    runs: Sequence[Run],
    gpu: GPUSpec,
    base: Efficiency,
    keys: Sequence[str],
    rounds: int = 3,
    only: Collection[str] | None = None,
    first_round: int = 0,
) -> Mapping[str, float]:
    """Leave-one-group-out (by :attr:`Run.family`, i.e. leave-one-model-out): per group (those in ``only``, if
    given), the MAE of its runs predicted by a profile fitted on every other group's runs. Groups with no other
    runs are skipped. ``first_round`` > 0 refits locally around ``base`` (see :func:`fit_profile`)."""
    out: dict[str, float] = {}
    for g in dict.fromkeys(r.family for r in runs):
        if only is not None and g not in only:
            continue
        train = [r for r in runs if r.family != g]
        if not train:
            continue
        fitted = fit_profile(train, gpu, base, keys, rounds, first_round=first_round)
        out[g] = mae(_errors([r for r in runs if r.family == g], gpu, fitted))
    return out


def _with(eff: Efficiency, key: str, value: float) -> Efficiency:
    values: dict[str, Any] = {key: value}
    return replace(eff, **values)


def check_fit_keys(runs: Sequence[Run], gpu: GPUSpec, base: Efficiency, keys: Sequence[str]) -> None:
    """Refuse ``keys`` (one line) unless each is a fittable key (:data:`FIT_BOUNDS`), named once, that moves
    at least one run's predicted step time (within its bounds)."""
    for j, k in enumerate(keys):
        if k not in FIT_BOUNDS:
            raise InputError(f"cannot fit {k!r}; fittable: {', '.join(FIT_BOUNDS)}")
        if k in keys[:j]:
            raise InputError(f"--fit names {k!r} twice; name each constant once")
    base_s: list[float] | None = None
    for k in keys:
        used = _USED_BY.get(k)
        if used is not None and not any(used[0](r.layout) for r in runs):
            raise InputError(f"cannot fit {k!r} to these runs: {used[1]}, so none depends on it")
        if base_s is None:
            base_s = [predict_step_s(r, gpu, base) for r in runs]
        lo, hi = FIT_BOUNDS[k]
        if all(
            math.isclose(predict_step_s(r, gpu, _with(base, k, v)), t, rel_tol=1e-12)
            for r, t in zip(runs, base_s, strict=True)
            for v in (lo, hi)
        ):
            raise InputError(
                f"cannot fit {k!r} to these runs: no run's predicted step time changes with it "
                f"(the same from {lo:g} to {hi:g})"
            )


def at_bounds(eff: Efficiency, keys: Sequence[str]) -> list[str]:
    """``key at its lower/upper bound x`` for each of ``keys`` whose value in ``eff`` is at a bound of
    :data:`FIT_BOUNDS`."""
    out = []
    for k in keys:
        lo, hi = FIT_BOUNDS[k]
        v = float(getattr(eff, k))
        if v <= lo or v >= hi:
            out.append(f"{k} at its {'lower' if v <= lo else 'upper'} bound {lo if v <= lo else hi:g}")
    return out


def check_fit(
    runs: Sequence[Run], errors: Sequence[float], fitted: Efficiency, keys: Sequence[str], source: str
) -> None:
    """Refuse (one line) a fit whose worst relative error over ``runs`` exceeds :data:`FIT_RESIDUAL_LIMIT`:
    the measurements in ``source`` are outside what the model can fit; the message names the worst run and the
    fitted constants left at a bound."""
    worst = max(range(len(runs)), key=lambda i: abs(errors[i]), default=None)
    if worst is None or abs(errors[worst]) <= FIT_RESIDUAL_LIMIT:
        return
    r, e = runs[worst], errors[worst]
    bounds = at_bounds(fitted, keys)
    raise InputError(
        f"{source}: the fit cannot reach the measurements: {r.label} is predicted "
        f"{r.measured_s * (1 + e):.4g} s against {r.measured_s:.4g} s measured ({e:+.1%}; a calibration stays "
        f"within {FIT_RESIDUAL_LIMIT:.0%})"
        + (f", with {', '.join(bounds)}" if bounds else ", with no fitted constant at a bound")
        + ": the measurements are outside what the model can fit (step_time_s is seconds per step)"
    )
