"""Accuracy on H100 and B200: NeMo's published FP8 rows and the Megatron-LM README H100 BF16 table.

One calibration per GPU profile for all its rows (pipesim/data/gpus/<gpu>.toml, fitted by ``--calibrate``);
the rows and every assumption about them are in ``reference_runs.py``. Step times are compared (NeMo's
tokens/s give them directly; TFLOP/s rows are converted with the framework's own FLOP formula). Holdout:
leave-one-model-out, each model's rows predicted by a profile refitted on every other model's rows (the refit
starts from the shipped profile and runs ``HOLDOUT_ROUNDS`` local coordinate rounds, steps 1/16 and 1/32 of
each bound's span).

Run: python benchmarks/accuracy_nemo.py [--calibrate] [--holdout]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import print_table  # noqa: E402
from reference_runs import megatron_runs, nemo_runs  # noqa: E402

from pipesim.calib.fit import Run, fit_profile, group_holdout, mae, predict_step_s  # noqa: E402
from pipesim.specs.efficiency import Efficiency  # noqa: E402
from pipesim.specs.gpu import GPUSpec, get_gpu  # noqa: E402

# What each GPU's calibration moves (the rest of its profile is hardware facts or carried over, see the
# profile's [source] table). B200 has two usable rows of one model: one constant.
FIT_KEYS = {
    "h100-sxm": ("gemm_max", "gemm_max_fp8", "attention", "hbm", "step_overhead_s", "tp_overlap"),
    "b200": ("gemm_max_fp8",),
}
HOLDOUT_ROUNDS = 2


def gpu_runs(gpu: str) -> dict[str, list[Run]]:
    """The calibration rows of ``gpu`` by data set (NeMo; and, for H100, the Megatron-LM README)."""
    out = {"NeMo performance summary (FP8)": nemo_runs(gpu)[0]}
    if gpu == "h100-sxm":
        out["Megatron-LM README (BF16)"] = megatron_runs()
    return out


def errors(runs: list[Run], gpu: GPUSpec, eff: Efficiency) -> list[tuple[Run, float, float]]:
    """(run, predicted s, relative error) per run."""
    out = []
    for r in runs:
        p = predict_step_s(r, gpu, eff)
        out.append((r, p, (p - r.measured_s) / r.measured_s))
    return out


def _published_tflops() -> list[float]:
    from reference_runs import MEGATRON_H100

    return [row[-1] for row in MEGATRON_H100]


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation of two equally long lists without ties (1 - 6 sum d^2 / (n (n^2 - 1)))."""
    n = len(a)
    ra = {i: r for r, i in enumerate(sorted(range(n), key=lambda i: a[i]))}
    rb = {i: r for r, i in enumerate(sorted(range(n), key=lambda i: b[i]))}
    return 1 - 6 * sum((ra[i] - rb[i]) ** 2 for i in range(n)) / (n * (n * n - 1))


def print_step_errors(errs: list[tuple[Run, float, float]]) -> None:
    """One line per run: its label, measured and predicted seconds per step, and the relative error."""
    columns = [("run", ""), ("measured s", ".3f"), ("predicted s", ".3f"), ("error", "+.1%")]
    print_table(columns, [(r.label, r.measured_s, p, e) for r, p, e in errs], indent="  ", header=False)


def report(gpu_name: str, eff: Efficiency | None = None, holdout: bool = False) -> dict[str, float]:
    """Print every row of ``gpu_name`` and each data set's MAE (and the leave-one-model-out holdout);
    return {data set: MAE}."""
    gpu = get_gpu(gpu_name)
    prof = eff or gpu.profile
    out: dict[str, float] = {}
    print(f"== {gpu_name}: " + ", ".join(f"{k}={getattr(prof, k):g}" for k in FIT_KEYS[gpu_name]))
    sets = gpu_runs(gpu_name)
    for name, runs in sets.items():
        print(f"-- {name}: seconds per step")
        errs = errors(runs, gpu, prof)
        print_step_errors(errs)
        out[name] = mae([e for *_, e in errs])
        print(f"  MAE over {len(errs)} rows: {out[name]:.2%}")
        if name.startswith("Megatron"):
            # TFLOP/s per GPU = the row's FLOPs / (step x GPUs): rank the published and predicted figures.
            flops = [r.measured_s * t for r, t in zip(runs, _published_tflops(), strict=True)]
            rho = spearman([f / p for f, (_, p, _) in zip(flops, errs, strict=True)], _published_tflops())
            out["Megatron-LM README rank correlation"] = rho
            print(f"  rank correlation of TFLOP/s per GPU with the published ranking (Spearman): {rho:+.2f}")
    refused = nemo_runs(gpu_name)[1]
    print(f"  NeMo rows left out ({len(refused)}): " + "; ".join(f"{i} {why}" for i, why in refused))
    cp_runs = nemo_runs(gpu_name, context_parallel=True)[0]
    if cp_runs:
        print("-- validation only (not fitted): NeMo context-parallel rows, seconds per step")
        cp_errs = errors(cp_runs, gpu, prof)
        print_step_errors(cp_errs)
        out["NeMo context-parallel rows (validation)"] = mae([e for *_, e in cp_errs])
        print(f"  MAE over {len(cp_errs)} rows: {out['NeMo context-parallel rows (validation)']:.2%}")
    if holdout:
        allruns = [r for runs in sets.values() for r in runs]
        nemo = sets["NeMo performance summary (FP8)"]
        groups = {r.family for r in nemo}
        if len(groups) < 2:
            # One model only: leave one row out instead.
            for i, r in enumerate(nemo):
                train = [x for j, x in enumerate(nemo) if j != i]
                fitted = fit_profile(train, gpu, prof, FIT_KEYS[gpu_name], HOLDOUT_ROUNDS + 2)  # from scratch
                e = errors([r], gpu, fitted)[0][2]
                print(f"  leave-one-row-out: {r.label}: {e:+.1%}")
        else:
            held = group_holdout(
                allruns, gpu, prof, FIT_KEYS[gpu_name], HOLDOUT_ROUNDS, groups, first_round=2
            )
            for g, v in held.items():
                print(f"  leave-one-model-out: {g:<14} MAE {v:.2%}")
            per_row = [v for g, v in held.items() for r in nemo if r.family == g]
            print(f"  leave-one-model-out MAE over the NeMo rows: {sum(per_row) / len(per_row):.2%}")
    return out


def calibrate(gpu_name: str) -> Efficiency:
    """Refit ``gpu_name``'s profile (its FIT_KEYS) on all its rows; print the values for its profile file."""
    gpu = get_gpu(gpu_name)
    runs = [r for rs in gpu_runs(gpu_name).values() for r in rs]
    fitted = fit_profile(runs, gpu, gpu.profile, FIT_KEYS[gpu_name], rounds=4)
    print(f"{gpu_name}: " + ", ".join(f"{k} = {getattr(fitted, k):.4g}" for k in FIT_KEYS[gpu_name]))
    return fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--calibrate", action="store_true", help="refit each GPU's profile and report with it"
    )
    parser.add_argument("--holdout", action="store_true", help="leave-one-model-out holdout (minutes)")
    args = parser.parse_args()
    for g in FIT_KEYS:
        report(g, calibrate(g) if args.calibrate else None, args.holdout)
        print()


if __name__ == "__main__":
    main()
