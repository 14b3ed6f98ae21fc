"""pipesim's command line. click lives here and only here; each command parses, builds specs, calls one
pipesim function and renders the result."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from pipesim.compare import CompareRequest, compare_schedules
from pipesim.errors import InputError
from pipesim.metrics import PipelineMetrics
from schedules import ScheduleError, schedule_names

# Errors that are the user's input, not our bug: printed as one line, exit status 2.
USER_ERRORS: tuple[type[Exception], ...] = (InputError, ScheduleError)

GIB = 2**30


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


class PipesimGroup(click.Group):
    """A click group that turns bad-input exceptions into one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            fail(str(exc))


def emit_json(data: object) -> None:
    """Print ``data`` as indented JSON (keys in insertion order, so output is byte-for-byte stable)."""
    click.echo(json.dumps(data, indent=2))


def console() -> Console:
    """A rich console writing to click's stdout (so CliRunner captures it), without colour when not a tty."""
    return Console(file=click.get_text_stream("stdout"), width=140, soft_wrap=False)


@click.group(cls=PipesimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipesim")
def main() -> None:
    """pipesim: simulate pipeline-parallel training schedules on GPU clusters.

    Step time, pipeline bubbles, activation memory and communication for GPipe, 1F1B, interleaved 1F1B and
    more, before you spend the GPU-hours.
    """


def _split_names(text: str | None) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()] if text else []


def _ms(value: float, flag: str) -> float:
    if not value >= 0:
        raise InputError(f"{flag}={value} must be >= 0 (milliseconds)")
    return value / 1000.0


def scenario_request(
    pp: int,
    microbatches: int,
    vpp: int,
    schedules_opt: str | None,
    forward_time: float,
    backward_time: float,
    p2p_time: float,
    activation_bytes: float,
    schedule_files: Sequence[str],
) -> CompareRequest:
    """The scenario of ``compare``'s options (shared by ``gantt``)."""
    names = _split_names(schedules_opt)
    if not names and not schedule_files:
        names = ["gpipe", "1f1b", "interleaved-1f1b"]
    if activation_bytes < 0:
        raise InputError(f"--activation-bytes={activation_bytes} must be >= 0")
    return CompareRequest(
        schedules=tuple(names),
        schedule_files=tuple(schedule_files),
        pp=pp,
        microbatches=microbatches,
        vpp=vpp,
        forward_s=_ms(forward_time, "--forward-time"),
        backward_s=_ms(backward_time, "--backward-time"),
        p2p_s=_ms(p2p_time, "--p2p-time"),
        activation_bytes=activation_bytes,
    )


COMPARE_HELP = """Compare pipeline schedules side by side on one scenario.

With no flags: GPipe, 1F1B and interleaved 1F1B (vpp 2) on 4 ranks and 8 microbatches, forward 1 ms and
backward 2 ms per microbatch for a whole stage, 0.05 ms per transfer.

\b
Definitions:
  step time      end of the last span of the step
  bubble         idle fraction of the pipeline phase: 1 - busy / (ranks x time);
                 (p-1)/(m+p-1) for GPipe/1F1B, (p-1)/(v*m+p-1) interleaved
  bubble/ideal   Megatron-LM's form: idle / busy; (p-1)/m, interleaved (p-1)/(v*m)
  peak act       most activations a rank holds, in microbatches of one whole stage
                 (an interleaved chunk counts 1/v) and in bytes (GiB = 2^30 bytes)
  p2p / exposed  total transfer time / idle time that only transfers caused
"""


@main.command("compare", help=COMPARE_HELP)
@click.option("--pp", type=int, default=4, show_default=True, help="Pipeline stages (ranks).")
@click.option("--microbatches", "-m", type=int, default=8, show_default=True, help="Microbatches per step.")
@click.option(
    "--vpp", type=int, default=2, show_default=True, help="Model chunks per rank (interleaved schedules)."
)
@click.option(
    "--schedules",
    "schedules_opt",
    default=None,
    help=f"Comma list of schedules [default: gpipe,1f1b,interleaved-1f1b]. Known: {', '.join(schedule_names())}.",
)
@click.option(
    "--forward-time", type=float, default=1.0, show_default=True, help="ms per microbatch, whole stage."
)
@click.option(
    "--backward-time",
    type=float,
    default=2.0,
    show_default=True,
    help="ms per microbatch, whole stage, full backward.",
)
@click.option(
    "--p2p-time", type=float, default=0.05, show_default=True, help="ms per transfer between ranks."
)
@click.option(
    "--activation-bytes",
    type=float,
    default=float(GIB),
    show_default=True,
    help="Activation bytes per microbatch per whole stage.",
)
@click.option(
    "--schedule-file",
    "schedule_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A PyTorch per-rank schedule CSV to simulate (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON: a list with one object per schedule.")
def compare_cmd(
    pp: int,
    microbatches: int,
    vpp: int,
    schedules_opt: str | None,
    forward_time: float,
    backward_time: float,
    p2p_time: float,
    activation_bytes: float,
    schedule_files: Sequence[str],
    as_json: bool,
) -> None:
    request = scenario_request(
        pp, microbatches, vpp, schedules_opt, forward_time, backward_time, p2p_time, activation_bytes,
        schedule_files,
    )  # fmt: skip
    results = compare_schedules(request)
    if as_json:
        emit_json([r.as_dict() for r in results])
        return
    console().print(compare_table(results, request))


def compare_table(results: Sequence[PipelineMetrics], request: CompareRequest) -> Table:
    """The side-by-side table of ``pipesim compare``."""
    table = Table(
        title=(
            f"pp={request.pp}  microbatches={request.microbatches}  F={request.forward_s * 1e3:g} ms  "
            f"B={request.backward_s * 1e3:g} ms  p2p={request.p2p_s * 1e3:g} ms  (per whole stage)"
        ),
        title_justify="left",
    )
    table.add_column("schedule", no_wrap=True)
    for col in (
        "pp",
        "vpp",
        "m",
        "step ms",
        "bubble",
        "bubble/ideal",
        "peak act mb",
        "peak act GiB",
        "p2p ms",
    ):
        table.add_column(col, justify="right", no_wrap=True, min_width=len(col))
    table.add_column("p2p exposed ms", justify="right", no_wrap=True, min_width=14)
    for r in results:
        table.add_row(
            r.schedule,
            str(r.pp),
            str(r.vpp),
            str(r.microbatches),
            f"{r.step_time_s * 1e3:.3f}",
            f"{r.bubble_ratio:.1%}",
            f"{r.bubble_over_ideal:.3f}",
            f"{r.peak_activation_microbatches:g}",
            f"{r.peak_activation_bytes / GIB:.2f}",
            f"{r.p2p_time_s * 1e3:.3f}",
            f"{r.p2p_exposed_s * 1e3:.3f}",
        )
    return table


# --- pipesim gantt -------------------------------------------------------------------------------------------

GANTT_HELP = """Draw Gantt charts of simulated steps: one self-contained HTML page (opens offline) and/or a
Chrome trace (opens in Perfetto) and/or a static PNG/SVG.

Takes the same scenario flags as compare. The page shows one chart per schedule on a shared time axis: a lane
per rank with its communication lane under it, bars coloured by op and labelled with the microbatch, hover
with stage, microbatch, start, end and duration, grey gaps for bubbles, and under each chart the activation
memory of every rank over time (with the GPU's capacity when --gpu-memory-gib is given).
"""

# The scenario options are compare's own Parameter objects, so the two commands never drift apart.
SCENARIO_PARAMS = [p for p in compare_cmd.params if p.name != "as_json"]


@main.command("gantt", help=GANTT_HELP)
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), help="HTML page to write.")
@click.option(
    "--trace", "trace_path", type=click.Path(dir_okay=False), help="Chrome-trace JSON to write (Perfetto)."
)
@click.option(
    "--image",
    "image_path",
    type=click.Path(dir_okay=False),
    help="Static figure to write, .png or .svg (needs Chromium or Chrome).",
)
@click.option(
    "--gpu-memory-gib", type=float, default=None, help="GPU memory capacity in GiB (2^30 B), drawn as a line."
)
def gantt_cmd(
    output: str | None,
    trace_path: str | None,
    image_path: str | None,
    gpu_memory_gib: float | None,
    **scenario: Any,
) -> None:
    from pipesim.figures.gantt import gantt_page
    from pipesim.figures.static import check_image_target, export_image
    from pipesim.fileio import atomic_write_text, check_output_path
    from pipesim.timeseries import simulate_series
    from pipesim.trace import chrome_trace_json

    if not (output or trace_path or image_path):
        raise InputError(
            "nothing to write: give -o PAGE.html, --trace TRACE.json and/or --image FIG.png|.svg"
        )
    if gpu_memory_gib is not None and not gpu_memory_gib > 0:
        raise InputError(f"--gpu-memory-gib={gpu_memory_gib} must be > 0 (GiB = 2^30 bytes)")
    # Check every target before simulating, so a bad path fails fast and nothing is half-written.
    for path in (output, trace_path):
        if path:
            check_output_path(path)
    if image_path:
        check_image_target(image_path)
    request = scenario_request(**scenario)
    panels = simulate_series(request)
    capacity = gpu_memory_gib * GIB if gpu_memory_gib is not None else None
    scenario_rows = [
        ("schedules", ", ".join(p.name for p in panels)),
        ("pp", str(request.pp)),
        ("microbatches", str(request.microbatches)),
        ("vpp", str(request.vpp)),
        ("F", f"{request.forward_s * 1e3:g} ms"),
        ("B", f"{request.backward_s * 1e3:g} ms"),
        ("p2p", f"{request.p2p_s * 1e3:g} ms"),
        ("activations", f"{request.activation_bytes / GIB:g} GiB"),
        ("GPU memory", f"{gpu_memory_gib:g} GiB" if gpu_memory_gib is not None else "not given"),
        ("times", "per microbatch, whole stage"),
    ]
    page = gantt_page(panels, scenario_rows, gpu_memory_bytes=capacity) if (output or image_path) else ""
    if output:
        atomic_write_text(output, page)
        click.echo(f"wrote {output} ({len(page.encode()) / 1e6:.1f} MB, {len(panels)} schedules)")
    if trace_path:
        atomic_write_text(trace_path, chrome_trace_json([(p.name, p.num_stages, p.timeline) for p in panels]))
        click.echo(f"wrote {trace_path} (Chrome trace; open in https://ui.perfetto.dev)")
    if image_path:
        export_image(page, image_path)
        click.echo(f"wrote {image_path}")


gantt_cmd.params[len(gantt_cmd.params) :] = SCENARIO_PARAMS


if __name__ == "__main__":  # pragma: no cover
    main()
