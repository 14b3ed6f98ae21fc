"""The ``pipesim`` command group: loads each command's module only when that command runs (so ``pipesim
--help`` imports click and nothing heavy), and turns bad input into one line on stderr with exit status 2."""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
import threading
import traceback
from typing import Any, NoReturn

import click

from pipesim.errors import InputError

__all__ = ["COMMANDS", "ErrorBoundary", "PipesimGroup", "describe", "fail", "main", "user_errors"]

# name -> (module, attribute, one-line help). The help line is the command's own short_help too (each command
# module reads it from here), so `pipesim --help` lists the commands without importing them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "calibrate": (
        "pipesim.cli.calibrate",
        "calibrate_cmd",
        "Fit a GPU profile to your own measured step times.",
    ),
    "collective": (
        "pipesim.cli.collective",
        "collective_cmd",
        "Time a collective on a topology, as an nccl-tests-style sweep over message sizes.",
    ),
    "compare": (
        "pipesim.cli.compare",
        "compare_cmd",
        "Compare pipeline schedules side by side on one scenario.",
    ),
    "gantt": (
        "pipesim.cli.gantt",
        "gantt_cmd",
        "Draw Gantt charts of simulated steps (HTML, Chrome trace, image).",
    ),
    "gpu": (
        "pipesim.cli.gpu",
        "gpu_group",
        "GPU presets and their calibrated profiles: where every number comes from.",
    ),
    "plan": (
        "pipesim.cli.plan",
        "plan_cmd",
        "Search every valid parallel layout, rank by throughput, explain, estimate training time.",
    ),
    "roofline": (
        "pipesim.cli.roofline",
        "roofline_cmd",
        "Show every operator of one transformer layer on the GPU's roofline.",
    ),
    "simulate": (
        "pipesim.cli.simulate",
        "simulate_cmd",
        "Predict one training step of a real model on real GPUs.",
    ),
    "topo": (
        "pipesim.cli.topo",
        "topo_group",
        "Cluster topologies: list the presets, summarize or draw one.",
    ),
}


def short_help(name: str) -> str:
    """The one-line help of command ``name`` (shared by the group listing and the command itself)."""
    return COMMANDS[name][2]


def user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's input, not our bug: printed as one line, exit status 2."""
    from schedules import ScheduleError
    from topologies import TopologyError

    return (InputError, ScheduleError, TopologyError)


def fail(message: str) -> NoReturn:
    """Print ``error: message`` to stderr and exit with status 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _usage_fail(exc: click.UsageError) -> NoReturn:
    """A usage error (a flag click rejects, a missing required flag): one line, its message and where to look
    (``(see pipesim plan --help)``); exit status 2."""
    where = exc.ctx.command_path if exc.ctx is not None else "pipesim"
    message = " ".join(exc.format_message().split())  # click's messages may wrap a list of choices
    click.echo(f"error: {message} (see '{where} --help')", err=True)
    sys.exit(2)


ARGV_KEY = "pipesim.argv"
_STREAM_ERRNOS = (errno.ENOSPC, errno.EPIPE, errno.EIO, errno.EBADF, errno.EDQUOT)


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's own flush at exit does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def describe(exc: BaseException) -> str | None:
    """The one-line message of an exception that is the user's input or environment (a file that cannot be
    read or written, input too deep or too large), or None for a bug."""
    if isinstance(exc, user_errors()):
        return str(exc)
    if isinstance(exc, OSError):
        if (
            exc.filename is None and exc.errno in _STREAM_ERRNOS
        ):  # printing failed: a full disk, a closed pipe
            _silence_stdout()
            return f"cannot write to standard output: {exc.strerror or exc}"
        what = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{what}{exc.strerror or exc}"
    if isinstance(exc, UnicodeDecodeError):
        return f"input is not UTF-8 text ({exc.reason} at byte {exc.start})"
    if isinstance(exc, RecursionError):
        return "input is nested too deeply to read (Python's recursion limit); flatten it"
    if isinstance(exc, MemoryError):
        return "out of memory; lower the sizes (microbatches, ranks, nodes) or the --max-* limits"
    if isinstance(exc, OverflowError):
        return f"a number is too large to compute with ({exc}); give smaller values"
    return None


def report_bug(exc: BaseException) -> NoReturn:
    """A genuine bug: the traceback, then one line asking to report it; exit status 1."""
    traceback.print_exception(exc)
    click.echo(
        "pipesim: internal error (a bug, not your input): please report it with the command line and the "
        "traceback above",
        err=True,
    )
    sys.exit(1)


class ErrorBoundary(click.Group):
    """A click group whose failures become one line and exit status 2 (:func:`describe`); anything else is a
    bug, reported with its traceback (:func:`report_bug`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a flag click itself rejects: one line too, with where to look
            _usage_fail(exc)
        except (click.exceptions.Exit, click.Abort, SystemExit, KeyboardInterrupt):
            raise
        except click.ClickException as exc:
            fail(exc.format_message())
        except Exception as exc:
            message = describe(exc)
            if message is None:
                report_bug(exc)
            from pipesim.cli.config import annotate

            fail(annotate(ctx.meta, message))

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:  # the group's own options
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            _usage_fail(exc)


class PipesimGroup(ErrorBoundary):
    """The top-level group: commands are imported from :data:`COMMANDS` on first use."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV_KEY] = tuple(args)  # what the user typed, for messages that name the flag
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attr, _ = entry
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=PipesimGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="pipesim")
@click.pass_context
def main(ctx: click.Context) -> None:
    """pipesim: simulate pipeline-parallel training schedules on GPU clusters.

    Step time, pipeline bubbles, activation memory and communication for GPipe, 1F1B, interleaved 1F1B and
    more, before you spend the GPU-hours.
    """
    from pipesim.io.atomic import exit_on_sigterm

    if ctx.invoked_subcommand is None:  # bare `pipesim`: the help, and success
        click.echo(ctx.get_help())
        ctx.exit(0)
    if threading.current_thread() is threading.main_thread():
        exit_on_sigterm()
