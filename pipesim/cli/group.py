"""The ``pipesim`` command group: loads each command's module only when that command runs (so ``pipesim
--help`` imports click and nothing heavy), and turns bad input into one line on stderr with exit status 2."""

from __future__ import annotations

import importlib
import sys
from typing import Any, NoReturn

import click

from pipesim.errors import InputError

__all__ = ["COMMANDS", "PipesimGroup", "fail", "main", "user_errors"]

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
    where = exc.ctx.command_path if exc.ctx is not None else "pipesim"
    fail(f"{exc.format_message()} (see '{where} --help')")


class ErrorBoundary(click.Group):
    """A click group whose bad-input exceptions become one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a flag click itself rejects: one line too, with where to look
            _usage_fail(exc)
        except Exception as exc:
            if isinstance(exc, user_errors()):
                fail(str(exc))
            raise

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:  # the group's own options
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            _usage_fail(exc)


class PipesimGroup(ErrorBoundary):
    """The top-level group: commands are imported from :data:`COMMANDS` on first use."""

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


@click.group(cls=PipesimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipesim")
def main() -> None:
    """pipesim: simulate pipeline-parallel training schedules on GPU clusters.

    Step time, pipeline bubbles, activation memory and communication for GPipe, 1F1B, interleaved 1F1B and
    more, before you spend the GPU-hours.
    """
