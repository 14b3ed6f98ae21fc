"""``pipesim calibrate``: fit a GPU profile to measured step times and write it as a GPU TOML."""

from __future__ import annotations

import csv
import math
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from pipesim.cli.group import short_help
from pipesim.cli.options import (
    ClusterFlags,
    Hardware,
    LayoutFlags,
    cluster_options,
    hardware_options,
    layout_options,
    plain_options,
)
from pipesim.errors import InputError

if TYPE_CHECKING:
    from pipesim.calib.fit import Run

__all__ = ["calibrate_cmd", "read_runs_csv"]

CALIBRATE_HELP = """Fit a GPU profile to your own measured step times.

RUNS is a CSV file with a header row; its columns are simulate's flags with dashes as underscores (model,
topology, nodes, tp, pp, dp, vpp, micro_batch_size, global_batch_size, seq_length, precision, recompute,
sequence_parallel, distributed_optimizer, ...; booleans true/false) plus the measured step_time_s; lines
starting with # are comments. A missing column or an empty cell takes the flag's default; an unknown column
is refused. Prints the fitted values, every run's measured and predicted time and residual, and a k-fold
holdout error, and writes the profile (-o) as a GPU TOML that every --gpu accepts. A fit that leaves any run
more than 50% from its measurement is refused (the measurements are outside what the model can fit), as is a
--fit constant no run depends on; errors cite file lines as an editor numbers them. Example:

\b
  pipesim calibrate pipesim/data/samples/nemo-h100-runs.csv --gpu h100-sxm -o my-h100.toml
  pipesim simulate --gpu my-h100.toml --model llama2-7b --precision fp8 --gpus 8

With --trace STEP.json (torch.profiler's export_chrome_trace of one step on the first pipeline rank) the CSV
holds the one traced run: GPU kernels are matched by name to pipesim's operators (GEMM, fused attention,
element-wise, NCCL) and gemm_max, attention, hbm and nccl are fitted so that each kind's kernel time matches
the trace (16-bit runs without context or expert parallelism). Example:

\b
  pipesim calibrate tests/data/kineto_step.csv --gpu h100-sxm --trace tests/data/kineto_step.json
"""

CALIBRATE_KEYS = ("gemm_max", "gemm_max_fp8", "gemm_max_fp4", "attention", "hbm", "step_overhead_s")


@click.command("row")
@plain_options("schedule")
@hardware_options()
@layout_options()
@cluster_options()
def _row_cmd(schedule: str | None, hw: Hardware, lay: LayoutFlags, cluster: ClusterFlags) -> Any:
    """One CSV row parsed as simulate's flags: its Scenario."""
    from pipesim.cli.simulate import build_scenario
    from pipesim.sim.scenario import build_scenario_schedule

    sc = build_scenario(hw, lay, cluster, schedule)
    build_scenario_schedule(sc)  # the layout must split the model
    return sc


def _column_spellings() -> dict[str, str]:
    """Each long spelling of simulate's flags with dashes as underscores (``tensor_model_parallel_size``,
    ``num_layers_per_virtual_pipeline_stage``, ``intra_node_GBps``) -> the column's canonical name."""
    out: dict[str, str] = {}
    for p in _row_cmd.params:
        if not isinstance(p, click.Option) or p.name in (None, "gpu_arg"):
            continue
        name = "model" if p.name == "model_arg" else p.name
        for opt in (*p.opts, *p.secondary_opts):
            if opt.startswith("--") and not opt.startswith("--no-"):
                out[opt[2:].replace("-", "_")] = name
        out[name] = name
    return out


def _row_args(row: dict[str, str], where: str) -> list[str]:
    """simulate-style arguments of a CSV row (booleans as flags, empty cells left to the defaults)."""
    options = {p.name: p for p in _row_cmd.params if isinstance(p, click.Option)}
    args: list[str] = []
    for column, text in row.items():
        if column == "step_time_s" or text is None or not text.strip():
            continue
        opt = options[{"model": "model_arg"}.get(column, column)]
        value = text.strip()
        if opt.is_flag:
            low = value.lower()
            if low not in ("true", "false"):
                raise InputError(f"{where}: column {column!r} must be true or false, got {text!r}")
            if low == "true":
                args.append(opt.opts[0])
            elif opt.secondary_opts:
                args.append(opt.secondary_opts[0])
        else:
            args += [opt.opts[0], value]
    return args


def _csv_rows(path: str) -> list[tuple[int, list[str]]]:
    """(physical 1-based line number where the row starts, cells) of every CSV row of ``path``, the header
    first; comment lines (starting with #) and blank lines left out."""
    try:
        with open(
            path, newline="", encoding="utf-8-sig"
        ) as fh:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            kept = [(n, line) for n, line in enumerate(fh, start=1) if not line.lstrip().startswith("#")]
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text (a CSV file with a header row)") from None
    reader = csv.reader(line for _, line in kept)
    rows: list[tuple[int, list[str]]] = []
    consumed = 0  # source lines the reader has taken so far: the next row starts at kept[consumed]
    try:
        for cells in reader:
            start, consumed = kept[consumed][0], reader.line_num
            if cells:
                rows.append((start, cells))
    except csv.Error as exc:
        raise InputError(
            f"{path} line {kept[min(consumed, len(kept) - 1)][0]}: not valid CSV ({exc})"
        ) from None
    return rows


def read_runs_csv(path: str, gpu_arg: str) -> list[Run]:
    """Measured runs from ``path`` (format in CALIBRATE_HELP), each simulated on ``gpu_arg``. Errors and run
    labels cite physical file lines (1-based, comment lines counted)."""
    from pipesim.calib.fit import Run

    columns = {"model"} | {p.name for p in _row_cmd.params if p.name not in (None, "model_arg", "gpu_arg")}
    spellings = _column_spellings()
    rows = _csv_rows(path)
    if not rows:
        raise InputError(f"{path}: no header row (a header row and one row per measured run)")
    header_line, typed = rows[0]
    header = [spellings.get(c.strip(), c.strip()) for c in typed]  # every flag spelling: its canonical name
    bad = [t for t, c in zip(typed, header, strict=True) if c not in columns and c != "step_time_s"]
    if bad:
        raise InputError(
            f"{path}: unknown column {bad[0]!r}; valid: {', '.join(sorted(columns))}, step_time_s"
        )
    for j, c in enumerate(header):
        if c in header[:j]:
            first = header.index(c)
            spelt = f", as {typed[first]!r} and {typed[j]!r}" if typed[first] != typed[j] else ""
            raise InputError(
                f"{path} line {header_line}: column {typed[j]!r} appears twice (cells {first + 1} and "
                f"{j + 1}{spelt}); name each column once"
            )
    if "step_time_s" not in header:
        raise InputError(f"{path}: missing column 'step_time_s' (the measured seconds per step)")
    if len(rows) == 1:
        raise InputError(f"{path}: no rows (a header row and one row per measured run)")
    runs = []
    for i, cells in rows[1:]:
        where = f"{path} line {i}"
        if len(cells) != len(header):
            raise InputError(
                f"{where}: {len(cells)} cells, but the header (line {header_line}) has {len(header)} columns; "
                "one cell per column (an empty cell takes the default)"
            )
        row = dict(zip(header, cells, strict=True))
        step_text = row["step_time_s"].strip()
        try:
            step = float(step_text)
        except ValueError:
            raise InputError(f"{where}: step_time_s={step_text!r} must be a number of seconds") from None
        if not (math.isfinite(step) and step > 0):
            raise InputError(
                f"{where}: step_time_s={step_text!r} must be a finite number of seconds > 0 (the measured "
                "seconds per step)"
            )
        args = [*_row_args(row, where), "--gpu", gpu_arg]
        try:
            sc = _row_cmd.main(args, standalone_mode=False)
        except click.UsageError as exc:
            raise InputError(f"{where}: {exc.format_message()}") from None
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        runs.append(
            Run(sc.model, sc.layout, sc.comm, step, f"line {i}: {row.get('model', '')}", sc.model.name)
        )
    return runs


@click.command("calibrate", help=CALIBRATE_HELP, short_help=short_help("calibrate"))
@click.argument("runs_csv", metavar="RUNS.csv", type=click.Path(dir_okay=False))
@plain_options(
    "gpu_arg", "output", "fit_text", "trace_in", "folds", "config",
    gpu_arg={"required": True, "metavar": "NAME", "help": "The GPU preset the runs were measured on."},
    output={"help": "GPU TOML to write (a profile every --gpu accepts)."},
)  # fmt: skip
def calibrate_cmd(
    runs_csv: str, gpu_arg: str, output: str | None, fit_text: str | None, trace_in: str | None, folds: int
) -> None:
    from pipesim.calib.fit import check_fit, check_fit_keys, fit_profile, kfold_holdout, mae, predict_step_s
    from pipesim.calib.profile_file import profile_toml
    from pipesim.io.atomic import atomic_write_text, check_output_path
    from pipesim.specs.gpu import GPU_PRESETS

    if output is not None:
        check_output_path(output)
    if gpu_arg not in GPU_PRESETS:
        raise InputError(f"--gpu={gpu_arg!r}: calibrate starts from a preset ({', '.join(GPU_PRESETS)})")
    if folds < 0 or folds == 1:
        raise InputError(
            f"--folds={folds}: k of the k-fold holdout must be 0 (no holdout) or 2 to the number of runs"
        )
    fit_keys = _fit_names(fit_text) if fit_text else None
    gpu = GPU_PRESETS[gpu_arg]
    runs = read_runs_csv(runs_csv, gpu_arg)
    if trace_in is not None:
        if fit_text:
            raise InputError(
                "give --fit or --trace, not both (--trace fits gemm_max, attention, hbm and nccl)"
            )
        _fit_trace(
            runs,
            gpu,
            trace_in,
            output,
            f"pipesim calibrate {runs_csv} --gpu {gpu_arg} --trace {trace_in}",
        )
        return
    folds_given = click.get_current_context().get_parameter_source("folds") != ParameterSource.DEFAULT
    if folds_given and folds > len(runs):
        valid = "0 (no holdout)" + (
            " or 2" if len(runs) == 2 else f" or 2 to {len(runs)}" if len(runs) > 2 else ""
        )
        raise InputError(
            f"--folds={folds}: {runs_csv} holds {len(runs)} run{'s' if len(runs) != 1 else ''}, and each "
            f"fold needs one; valid: {valid}"
        )
    if fit_keys is not None:
        keys = fit_keys
        check_fit_keys(runs, gpu, gpu.profile, keys)
    else:
        precisions = {r.layout.precision for r in runs}
        keys = tuple(
            k
            for k in CALIBRATE_KEYS
            if (k != "gemm_max_fp8" or "fp8" in precisions)
            and (k != "gemm_max_fp4" or "fp4" in precisions)
            and (k != "gemm_max" or precisions - {"fp8", "fp4"})
            and (k != "attention" or any(r.layout.attention == "flash" for r in runs))
        )
    note = f"fitted by pipesim calibrate to {runs_csv} ({len(runs)} runs)"
    fitted = fit_profile(runs, gpu, gpu.profile, keys, rounds=4, note=note)
    table = [(r, predict_step_s(r, gpu, gpu.profile), predict_step_s(r, gpu, fitted)) for r in runs]
    errs = [(after - r.measured_s) / r.measured_s for r, _, after in table]
    check_fit(runs, errs, fitted, keys, runs_csv)
    click.echo(
        f"fitted to {len(runs)} runs on {gpu.name}: "
        + ", ".join(f"{k} = {getattr(fitted, k):.4g}" for k in keys)
    )
    click.echo(f"{'run':<40} {'measured s':>11} {'before s':>9} {'after s':>9} {'residual':>9}")
    for (r, before, after), err in zip(table, errs, strict=True):
        click.echo(f"{r.label:<40} {r.measured_s:>11.4g} {before:>9.4g} {after:>9.4g} {err:>+9.1%}")
    click.echo(f"MAE after the fit: {mae(errs):.2%}")
    if folds:
        k = min(folds, len(runs))
        if k >= 2:
            held, _ = kfold_holdout(runs, gpu, gpu.profile, keys, k, rounds=3)
            capped = f" (the default {folds} folds, capped at the {len(runs)} runs)" if k < folds else ""
            click.echo(f"{k}-fold holdout MAE: {held:.2%}{capped}")
        else:
            click.echo("k-fold holdout: needs at least 2 runs")
    if output is not None:
        name = output.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".toml")
        atomic_write_text(
            output, profile_toml(gpu, fitted, name, [f"pipesim calibrate {runs_csv} --gpu {gpu_arg}"])
        )
        click.echo(f"wrote {output} (use it as --gpu {output})")


def _fit_names(fit_text: str) -> tuple[str, ...]:
    """The constants ``--fit`` names (a comma list), refused in one line if a name is empty."""
    names = tuple(k.strip() for k in fit_text.split(","))
    if not all(names):
        raise InputError(
            f"--fit={fit_text!r}: an empty name; valid: a comma list of constants such as gemm_max,hbm"
        )
    return names


def _fit_trace(runs: list[Run], gpu: Any, trace_path: str, output: str | None, command: str) -> None:
    """``calibrate --trace``: fit the per-op constants of the CSV's single run to a Kineto trace."""
    from pipesim.calib.fit import predict_step_s
    from pipesim.calib.profile_file import profile_toml
    from pipesim.calib.trace import fit_trace, read_kineto_trace
    from pipesim.io.atomic import atomic_write_text

    if len(runs) != 1:
        raise InputError(f"--trace needs a CSV with exactly one run (the traced one), got {len(runs)}")
    run = runs[0]
    measured = read_kineto_trace(trace_path)
    note = f"fitted by pipesim calibrate --trace to {trace_path}"
    fitted, rows = fit_trace(
        measured, run.model, run.layout, gpu, gpu.profile, run.comm, note, source=trace_path
    )
    click.echo(f"fitted to the kernels of {trace_path} ({run.label}) on {gpu.name}")
    click.echo(
        f"{'kernels':<12} {'key':<10} {'trace s':>9} {'before s':>9} {'after s':>9} {'before':>8} {'after':>8}"
    )
    for kind, key, got, before, after in rows:
        was, now = getattr(gpu.profile, key), getattr(fitted, key)
        click.echo(f"{kind:<12} {key:<10} {got:>9.4g} {before:>9.4g} {after:>9.4g} {was:>8.4g} {now:>8.4g}")
    before_s, after_s = predict_step_s(run, gpu, gpu.profile), predict_step_s(run, gpu, fitted)
    click.echo(
        f"step: measured {run.measured_s:.4g} s, predicted {before_s:.4g} s before, {after_s:.4g} s after "
        f"({(after_s - run.measured_s) / run.measured_s:+.1%})"
    )
    if output is not None:
        name = output.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".toml")
        atomic_write_text(output, profile_toml(gpu, fitted, name, [command]))
        click.echo(f"wrote {output} (use it as --gpu {output})")
