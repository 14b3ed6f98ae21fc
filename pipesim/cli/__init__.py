"""pipesim's command line: one module per command, every flag declared once in :mod:`pipesim.cli.options`.
click lives here and only here; each command parses, builds specs, calls one pipesim function and renders."""

from pipesim.cli.group import main

__all__ = ["main"]
