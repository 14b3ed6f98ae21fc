"""The import arrows of the package layout (README, developer section): schedules/ and topologies/ never import pipesim; nothing imports cli;
plotly only under pipesim/figures/; click only under pipesim/cli/, which nothing else imports."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STDLIB_ONLY = {"schedules"}
LEAVES = {"schedules", "topologies"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def py_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_leaves_do_not_import_pipesim_or_cli() -> None:
    for pkg in LEAVES:
        for f in py_files(pkg):
            assert not imports(f) & {"pipesim", "cli"}, f


def test_schedules_uses_standard_library_only() -> None:
    import sys

    for f in py_files("schedules"):
        third_party = {m for m in imports(f) if m not in sys.stdlib_module_names and m != "schedules"}
        assert not third_party, (f, third_party)


def test_nothing_imports_cli() -> None:
    for pkg in ("pipesim", "schedules", "topologies"):
        for f in py_files(pkg):
            assert "cli" not in imports(f), f


def test_plotly_only_in_figures() -> None:
    for pkg in ("pipesim", "schedules", "topologies"):
        for f in py_files(pkg):
            if "figures" in f.parts:
                continue
            assert "plotly" not in imports(f), f


def test_click_only_in_cli() -> None:
    for pkg in ("pipesim", "schedules", "topologies"):
        for f in py_files(pkg):
            if f.is_relative_to(ROOT / "pipesim" / "cli"):
                continue
            assert "click" not in imports(f), f


def full_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_only_the_cli_imports_the_cli() -> None:
    for pkg in ("pipesim", "schedules", "topologies"):
        for f in py_files(pkg):
            if f.is_relative_to(ROOT / "pipesim" / "cli"):
                continue
            assert not any(m == "pipesim.cli" or m.startswith("pipesim.cli.") for m in full_imports(f)), f
