"""pipesim's command-line entry point (``pipesim = "cli:main"``); the commands live in :mod:`pipesim.cli`."""

from pipesim.cli import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    main()
