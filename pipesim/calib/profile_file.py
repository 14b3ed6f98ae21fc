"""Writing a fitted GPU profile as a GPU TOML that every ``--gpu`` accepts (the format of
:mod:`pipesim.io.readers`: ``base`` preset, ``[efficiency]`` values, ``[source]`` per value)."""

from __future__ import annotations

from collections.abc import Sequence

from pipesim.specs.efficiency import EFFICIENCY_KEYS, Efficiency
from pipesim.specs.gpu import GPUSpec

__all__ = ["profile_toml"]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def profile_toml(base: GPUSpec, eff: Efficiency, name: str, header: Sequence[str] = ()) -> str:
    """TOML text of a GPU ``name`` = preset ``base`` with profile ``eff``: every efficiency value, and each
    value's source (``eff.sources``). ``header`` lines become leading comments."""
    lines = [f"# {h}" for h in header]
    lines += [f"base = {_quote(base.name)}", f"name = {_quote(name)}", "", "[efficiency]"]
    for key in EFFICIENCY_KEYS:
        value = getattr(eff, key)
        lines.append(f"{key} = {value}" if isinstance(value, int) else f"{key} = {float(f'{value:.6g}')!r}")
    lines += ["", "[source]"]
    for key in EFFICIENCY_KEYS:
        if key in eff.sources:
            lines.append(f"{key} = {_quote(eff.sources[key])}")
    return "\n".join(lines) + "\n"
