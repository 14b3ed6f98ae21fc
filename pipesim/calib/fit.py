"""Fitting an :class:`pipesim.specs.efficiency.Efficiency` profile to measured step times.

A measured run is a :class:`Run` (model, layout, communication model, measured seconds per step). The fit
minimises the mean absolute relative error of pipesim's predicted step time over the runs by a deterministic
coordinate search: each fitted key in turn is set to the best of a few trial values inside its bounds, the
step shrinking each round (a derivative-free pattern search, Hooke and Jeeves, J. ACM 8(2), 1961). k-fold and
leave-one-group-out holdouts refit on the other runs and score the held-out ones.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from pipesim.comm.base import CommModel
from pipesim.errors import InputError
from pipesim.sim.scenario import Scenario, simulate_scenario
from pipesim.specs.efficiency import Efficiency
from pipesim.specs.gpu import GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec

__all__ = ["Run", "FIT_BOUNDS", "predict_step_s", "mae", "fit_profile", "kfold_holdout", "group_holdout"]

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
        if not self.measured_s > 0:
            raise InputError(f"run {self.label!r}: measured step time {self.measured_s} s must be > 0")

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
