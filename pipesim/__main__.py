"""``python -m pipesim``: the same as the ``pipesim`` command."""

from __future__ import annotations

import importlib


def run() -> None:
    """Run the command-line interface (``cli.main``), loaded by name: no library module imports ``cli``."""
    importlib.import_module("cli").main(prog_name="pipesim")


if __name__ == "__main__":
    run()
