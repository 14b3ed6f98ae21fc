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


COMPILED = ROOT / "schedules" / "compiled"  # the optional numba twins of the searches' hot loops


def test_schedules_uses_standard_library_only() -> None:
    # Outside schedules/compiled/ only the standard library; inside it numpy and numba as well, imported only
    # when a build uses the kernels (the next test runs the package with both unimportable).
    import sys

    for f in py_files("schedules"):
        allowed = {"schedules"} | ({"numpy", "numba"} if f.is_relative_to(COMPILED) else set())
        third_party = {m for m in imports(f) if m not in sys.stdlib_module_names and m not in allowed}
        assert not third_party, (f, third_party)


def test_schedules_build_without_numpy() -> None:
    # Every registered family, including a V-memory build large enough to want the kernels, and a timing,
    # with numpy and numba unimportable: the pure-Python references run.
    import subprocess
    import sys

    code = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("numpy", "numba"):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
from schedules import REGISTRY, build_schedule, validate
from schedules.timing import StageTimes, time_order
for name in sorted(REGISTRY):
    validate(build_schedule(name, 4, 8, 2))
big = build_schedule("zb-v-half", 16, 1100)
assert big.num_actions > 100_000
time_order(big, StageTimes.uniform(32, 1.0, 1.0, 1.0))
assert "numpy" not in sys.modules and "numba" not in sys.modules, sorted(sys.modules)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


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
