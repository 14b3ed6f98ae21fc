"""Experiment files: one TOML file holding a run's settings, read by every command through ``--config FILE``
and written by ``pipesim plan --scenario-out`` for its winner.

The keys are the commands' own long flag names with dashes as underscores (``--micro-batch-size`` is
``micro_batch_size``, ``--intra-node-GBps`` is ``intra_node_GBps``), so the units are in the key names as
in the flags. A key may stand at the top level or, where that reads better, in the section of its option
group: ``[layout]``, ``[cluster]``, ``[energy]`` or ``[pipeline]`` (compare's synthetic times). ``model``
and ``gpu`` are a preset name or a file path, as on the command line, or an inline table: ``[model]`` with
the fields of a model TOML, ``[gpu]`` with the keys of a GPU TOML (``memory_GB``, ``hbm_bandwidth_GBps``,
``[gpu.peak_TFLOPS]``, ``[gpu.efficiency]``, or ``base = "<preset>"`` with overrides)::

    model = "llama3-70b"
    gpu = "h100-sxm"

    [cluster]
    topology = "dgx-h100"
    nodes = 64

    [layout]
    tp = 8
    pp = 4
    dp = 16
    schedule = "interleaved-1f1b"
    vpp = 5
    micro_batch_size = 1
    global_batch_size = 1024
    recompute = "selective"

This module reads the file into entries (section, key, value) and inline specs, and writes one; which keys a
command takes, their types and how the command line overrides them is the CLI's business
(:mod:`pipesim.cli.config`), driven by the commands' own flags. Every problem raises :class:`InputError`
naming the file and the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pipesim.errors import InputError
from pipesim.io.readers import MODEL_KEYS, gpu_from_table, model_from_table
from pipesim.io.values import parse_toml, read_text
from pipesim.specs.efficiency import EFFICIENCY_KEYS
from pipesim.specs.gpu import GPU_PRESETS, GPUSpec
from pipesim.specs.layout import Layout
from pipesim.specs.model import MODEL_PRESETS, ModelSpec

__all__ = [
    "Entry",
    "ExperimentFile",
    "WinnerCluster",
    "experiment_toml",
    "parse_experiment",
    "read_experiment",
]

INLINE = ("model", "gpu")  # keys that may also be a table: an inline model or GPU


@dataclass(frozen=True)
class Entry:
    """One setting of an experiment file: its flag ``key``, where it stands (``layout.tp``) and its value."""

    key: str
    where: str
    value: Any


@dataclass(frozen=True)
class ExperimentFile:
    """An experiment file as read: its settings in file order and the inline model / GPU tables, resolved."""

    path: str
    entries: tuple[Entry, ...]
    model: ModelSpec | None = None
    gpu: GPUSpec | None = None


def parse_experiment(text: str, src: str, sections: Mapping[str, frozenset[str]]) -> ExperimentFile:
    """Parse experiment TOML ``text`` (``src`` names it in errors). ``sections`` maps each section name to the
    keys it may hold; a key elsewhere, a table that is no section, or a value nested deeper is refused."""
    data = parse_toml(text, src)
    entries: list[Entry] = []
    model = gpu = None
    for key, value in data.items():
        if key == "model" and isinstance(value, dict):
            model = model_from_table(value, src, None, "model.")
        elif key == "gpu" and isinstance(value, dict):
            gpu = gpu_from_table(value, src, "gpu", "gpu.", "experiment file")
        elif isinstance(value, dict):
            if key not in sections:
                valid = ", ".join(f"[{s}]" for s in (*sections, *INLINE))
                raise InputError(f"{src}: [{key}] is not a section; valid sections: {valid}")
            for sub, v in value.items():
                where = f"{key}.{sub}"
                if isinstance(v, dict):
                    raise InputError(f"{src}: [{where}] is nested too deep; sections hold plain values")
                if sub not in sections[key]:
                    home = [s for s, keys in sections.items() if sub in keys]
                    place = f"[{home[0]}] or the top level" if home else "the top level"
                    raise InputError(f"{src}: key '{where}' does not belong in [{key}]; put it in {place}")
                entries.append(Entry(sub, where, v))
        else:
            entries.append(Entry(key, key, value))
    return ExperimentFile(src, tuple(entries), model, gpu)


def read_experiment(path: str | Path, sections: Mapping[str, frozenset[str]]) -> ExperimentFile:
    """Read the experiment file at ``path`` (:func:`parse_experiment`)."""
    p = Path(path)
    return parse_experiment(read_text(p, "experiment"), str(p), sections)


# --------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class WinnerCluster:
    """The cluster of a written experiment: a topology on ``nodes`` servers, or the two-level model on
    ``gpus`` GPUs, ``gpus_per_node`` per node, with per-GPU bandwidths in bytes/s."""

    topology: str | None
    nodes: int
    gpus_per_node: int
    intra_node_Bps: float
    inter_node_Bps: float


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else json.dumps(str(v))
    return json.dumps(str(v))


def _table(name: str, items: list[tuple[str, Any]]) -> list[str]:
    return [f"[{name}]"] + [f"{k} = {_value(v)}" for k, v in items if v is not None] + [""]


def _gpu_tables(g: GPUSpec) -> list[str]:
    lines = _table(
        "gpu",
        [
            ("name", g.name),
            ("memory_GB", g.hbm_bytes / 1e9),
            ("hbm_bandwidth_GBps", g.hbm_Bps / 1e9),
            ("tdp_W", g.tdp_w),
        ],
    )
    lines += _table("gpu.peak_TFLOPS", [(p, v / 1e12) for p, v in g.peak_flops.items()])
    if g.efficiency is not None:
        lines += _table("gpu.efficiency", [(k, getattr(g.efficiency, k)) for k in EFFICIENCY_KEYS])
    srv = g.server  # its topology (if any) and the two-level figures a two-level flag would use
    lines += _table(
        "gpu.server",
        [
            ("name", srv.name),
            ("topology", srv.topology),
            ("gpus_per_node", srv.gpus_per_node),
            ("intra_node_GBps", srv.intra_Bps / 1e9),
            ("inter_node_GBps", srv.inter_Bps / 1e9),
            ("source", srv.source),
        ],
    )
    return lines


def experiment_toml(
    model: ModelSpec,
    gpu: GPUSpec,
    layout: Layout,
    cluster: WinnerCluster,
    layout_keys: frozenset[str],
    comment: str = "",
) -> str:
    """The experiment TOML of one run (format in the module docstring); ``comment`` lines go on top. A preset
    model or GPU is written by name, any other inline; every :class:`Layout` field is written under
    ``[layout]``, and one that no flag sets (not in ``layout_keys``) must hold its default."""
    lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
    lines.append("# pipesim experiment file: pipesim simulate --config FILE")
    lines.append("# (and gantt, compare, roofline, plan)")
    lines.append("")
    top = []
    if MODEL_PRESETS.get(model.name) == model:
        top.append(f"model = {_value(model.name)}")
    if GPU_PRESETS.get(gpu.name) == gpu:
        top.append(f"gpu = {_value(gpu.name)}")
    lines += [*top, ""] if top else []
    if MODEL_PRESETS.get(model.name) != model:
        lines += _table("model", [(k, getattr(model, k)) for k in MODEL_KEYS])
    if GPU_PRESETS.get(gpu.name) != gpu:
        lines += _gpu_tables(gpu)
    if cluster.topology is not None:
        lines += _table("cluster", [("topology", cluster.topology), ("nodes", cluster.nodes)])
    else:
        lines += _table(
            "cluster",
            [
                ("gpus", cluster.nodes * cluster.gpus_per_node),
                ("gpus_per_node", cluster.gpus_per_node),
                ("intra_node_GBps", cluster.intra_node_Bps / 1e9),
                ("inter_node_GBps", cluster.inter_node_Bps / 1e9),
            ],
        )
    items: list[tuple[str, Any]] = []
    for f in fields(Layout):
        value = getattr(layout, f.name)
        if f.name == "seq_length" and value is None:
            value = model.seq_length
        if f.name not in layout_keys:
            if value != f.default:
                raise InputError(
                    f"layout field {f.name}={value!r} has no flag, so an experiment file cannot hold it"
                )
            continue
        items.append((f.name, value))
    lines += _table("layout", items)
    return "\n".join(lines).rstrip("\n") + "\n"
