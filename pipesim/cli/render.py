"""Terminal and JSON output shared by the commands: the rich console, JSON printing, number formats and the
energy table of ``simulate`` and ``plan``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from pipesim.errors import InputError
from pipesim.io.units import counted

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from pipesim.sim.energy import EnergyReport

__all__ = ["GIB", "console", "count_text", "emit_json", "gib", "render_energy", "split_names"]

GIB = 2**30


def split_names(text: str | None, flag: str | None = None) -> list[str]:
    """The stripped items of a comma list (``None``: none). With ``flag`` (the option it came from) an empty
    list or an empty item (``""``, ``"1f1b,"``, ``"1,,2"``) is refused naming the flag; without, dropped."""
    if text is None:
        return []
    items = [n.strip() for n in text.split(",")]
    if flag is not None and not all(items):
        raise InputError(f"{flag}={text!r} has an empty item; give a comma list without blanks, e.g. a,b")
    return [n for n in items if n]


def count_text(n: float) -> str:
    """A count with the suffix users type (2T, 300B, 15M): the K/M/B/T of --tokens."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.4g}{suffix}"
    return f"{n:.4g}"


def gib(x: float) -> str:
    """Bytes in GiB (2^30 bytes), two decimals."""
    return f"{x / GIB:.2f}"


def emit_json(data: object) -> None:
    """Print ``data`` as indented JSON (keys in insertion order, so output is byte-for-byte stable)."""
    click.echo(json.dumps(data, indent=2))


def console(fit: Table | None = None) -> Console:
    """A rich console writing to click's stdout (so CliRunner captures it): as wide as the terminal (140
    columns when piped, or as wide as ``fit`` needs), tables folded rather than cut, no trailing spaces,
    colour on terminals only (:func:`pipesim.terminal.make_console`); ``--wide`` prints tables whole."""
    from pipesim.terminal import make_console

    ctx = click.get_current_context(silent=True)
    wide = bool(ctx is not None and ctx.meta.get("pipesim.wide"))
    return make_console(click.get_text_stream("stdout"), fit=fit, wide=wide)


def _fig(value: float | None, spec: str) -> str:
    """``value`` formatted, or "unknown" (an energy without the GPU's TDP)."""
    return "unknown" if value is None else format(value, spec)


def render_energy(energy: EnergyReport) -> None:
    """The energy and cost lines of ``simulate`` (and ``plan``): per step, per run with ``--tokens``, cost with
    ``--price-per-gpu-hour``, then the assumptions."""
    from rich.table import Table

    con = console()
    con.print("Energy and cost (facility energy, PUE included; kWh = 3.6e6 J)", highlight=False)
    table = Table()
    table.add_column("", no_wrap=True)
    table.add_column("per step", justify="right", no_wrap=True)
    from pipesim.cli.specs import given

    run = energy.steps > 1 or given("tokens")  # --tokens within one step: a run of 1 step, still shown
    if run:
        table.add_column(f"run ({counted(energy.steps, 'step')})", justify="right", no_wrap=True)
    # One unit per row, said in its label (a run's time and energy in larger units than a step's).
    rows = [
        ("time (step: s; run: h)" if run else "time (s)", f"{energy.step_time_s:.3f}",
         f"{energy.run_time_s / 3600:,.1f}"),
        ("days", "", f"{energy.run_time_s / 86400:,.1f}"),
        ("GPU-hours", f"{energy.num_gpus * energy.step_time_s / 3600:,.3f}", f"{energy.gpu_hours:,.0f}"),
        ("energy (step: kWh; run: MWh)" if run else "energy (kWh)", _fig(energy.kwh_per_step, ",.3f"),
         _fig(energy.mwh_per_run, ",.1f")),
        ("power, facility (kW)", _fig(None if energy.facility_power_w is None else energy.facility_power_w / 1e3,
                                      ",.1f"), ""),
    ]  # fmt: skip
    if not run:
        rows.pop(1)
    if energy.cost is not None:
        per_step = energy.cost / energy.steps if energy.steps else 0.0
        rows.append(("cost (your currency)", f"{per_step:,.2f}", f"{energy.cost:,.0f}"))
    for label, step, whole in rows:
        table.add_row(label, step, *([whole] if run else []))
    con.print(table)
    for line in energy.assumptions():
        con.print(f"  {line}", highlight=False)
