"""Scenario files: one training scenario (model, GPU, cluster, layout) as TOML, written by ``pipesim plan``
for its winner and read by ``pipesim simulate --scenario`` and ``pipesim gantt --scenario``.

Format (units in the key names, as in the other pipesim TOML files)::

    [model]
    preset = "llama3-70b"       # a preset, or the ModelSpec fields inline (num_layers, hidden_size, ...)

    [gpu]
    preset = "h100-sxm"         # a preset, or inline: memory_GB, hbm_bandwidth_GBps, tdp_W, [gpu.peak_TFLOPS]

    [cluster]
    topology = "dgx-h100"       # a topologies preset or TOML path; omit for the two-level model below
    nodes = 64
    gpus_per_node = 8
    intra_node_GBps = 240.0     # two-level model only (GB/s = 1e9 B/s per GPU per direction)
    inter_node_GBps = 24.0

    [layout]                    # pipesim.specs.layout.Layout fields (Megatron-LM names)
    tp = 8
    pp = 4
    ...

Every problem raises :class:`InputError` naming the file and the key.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from pipesim.comm.base import CommModel, LevelCommModel
from pipesim.comm.factory import ClusterSpec, build_comm
from pipesim.errors import InputError
from pipesim.io.readers import MODEL_KEYS, gpu_from_table, model_from_table
from pipesim.sim.scenario import Scenario
from pipesim.specs.gpu import GPU_PRESETS, GPUSpec, get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import MODEL_PRESETS, ModelSpec, get_model
from schedules import ScheduleError, get_family

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ScenarioFile", "scenario_toml", "parse_scenario_toml", "load_scenario_toml", "load_scenario"]


@dataclass(frozen=True)
class ScenarioFile:
    """A scenario as stored: the specs plus how to build its communication model."""

    model: ModelSpec
    gpu: GPUSpec
    layout: Layout
    topology: str | None = None
    nodes: int | None = None
    gpus_per_node: int = 8
    intra_node_Bps: float = LevelCommModel.intra_Bps
    inter_node_Bps: float = LevelCommModel.inter_Bps

    def cluster(self) -> ClusterSpec:
        """The cluster as a :class:`pipesim.comm.factory.ClusterSpec`."""
        return ClusterSpec(
            self.topology,
            self.nodes if self.topology is not None else None,
            self.gpus_per_node,
            self.intra_node_Bps,
            self.inter_node_Bps,
        )

    def comm(self) -> CommModel:
        """The topology model on enough nodes for the layout, or the two-level model."""
        return build_comm(self.cluster(), self.layout.num_gpus)

    def scenario(self) -> Scenario:
        """The :class:`pipesim.sim.scenario.Scenario` to simulate."""
        return Scenario(self.model, self.gpu, self.layout, self.comm())


# --------------------------------------------------------------------------- writing
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


_MODEL_FIELDS = MODEL_KEYS
_LAYOUT_FIELDS = tuple(f.name for f in fields(Layout))


def scenario_toml(sf: ScenarioFile, comment: str = "") -> str:
    """The TOML text of ``sf`` (format in the module docstring); ``comment`` lines go on top."""
    lines = [f"# {line}" if line else "#" for line in comment.splitlines()]
    lines.append("# pipesim scenario: pipesim simulate --scenario FILE, pipesim gantt --scenario FILE")
    lines.append("")
    if MODEL_PRESETS.get(sf.model.name) == sf.model:
        lines += _table("model", [("preset", sf.model.name)])
    else:
        lines += _table("model", [(k, getattr(sf.model, k)) for k in _MODEL_FIELDS])
    if GPU_PRESETS.get(sf.gpu.name) == sf.gpu:
        lines += _table("gpu", [("preset", sf.gpu.name)])
    else:
        g = sf.gpu
        lines += _table(
            "gpu",
            [
                ("name", g.name),
                ("memory_GB", g.hbm_bytes / 1e9),
                ("hbm_bandwidth_GBps", g.hbm_Bps / 1e9),
                ("tdp_W", g.tdp_w),
            ],
        )
        lines += _table("gpu.peak_TFLOPS", [(p, v / 1e12) for p, v in g.peak_flops.items()])
    cluster: list[tuple[str, Any]] = [
        ("topology", sf.topology),
        ("nodes", sf.nodes),
        ("gpus_per_node", sf.gpus_per_node),
    ]
    if sf.topology is None:
        cluster += [
            ("intra_node_GBps", sf.intra_node_Bps / 1e9),
            ("inter_node_GBps", sf.inter_node_Bps / 1e9),
        ]
    lines += _table("cluster", cluster)
    lay = sf.layout
    items = [(k, getattr(lay, k)) for k in _LAYOUT_FIELDS]
    if lay.seq_length is None:
        items = [(k, sf.model.seq_length if k == "seq_length" else v) for k, v in items]
    lines += _table("layout", items)
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------- reading
def _section(src: str, data: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        if required:
            raise InputError(f"{src}: missing table [{key}]")
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{src}: [{key}] must be a table")
    return value


def _check_keys(src: str, table: str, data: dict[str, Any], valid: tuple[str, ...]) -> None:
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise InputError(f"{src}: unknown key '{table}.{unknown[0]}'; valid keys: {', '.join(valid)}")


def _model(src: str, data: dict[str, Any]) -> ModelSpec:
    if "preset" in data:
        _check_keys(src, "model", data, ("preset",))
        try:
            return get_model(str(data["preset"]))
        except InputError as exc:
            raise InputError(f"{src}: model.preset: {exc}") from None
    return _with_preset_hint(lambda: model_from_table(data, src, None, "model."), "model")


def _gpu(src: str, data: dict[str, Any]) -> GPUSpec:
    if "preset" in data:
        _check_keys(src, "gpu", data, ("preset",))
        try:
            return get_gpu(str(data["preset"]))
        except InputError as exc:
            raise InputError(f"{src}: gpu.preset: {exc}") from None
    return _with_preset_hint(lambda: gpu_from_table(data, src, "gpu", "gpu.", "scenario file"), "gpu")


T = TypeVar("T")


def _num(src: str, where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
        raise InputError(f"{src}: key '{where}' = {v!r} must be a finite positive number")
    return float(v)


def _with_preset_hint(read: Callable[[], T], table: str) -> T:
    """Run ``read``; a missing key also says that ``[table] preset = ...`` is the alternative."""
    try:
        return read()
    except InputError as exc:
        if "missing key" in str(exc) or "missing table" in str(exc):
            raise InputError(f"{exc} (or give {table}.preset)") from None
        raise


_CLUSTER_KEYS = ("topology", "nodes", "gpus_per_node", "intra_node_GBps", "inter_node_GBps")


def parse_scenario_toml(text: str, src: str = "<scenario>") -> ScenarioFile:
    """Parse scenario TOML text (``src`` names the file in errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{src}: not valid TOML ({exc})") from None
    except RecursionError:
        raise InputError(f"{src}: not valid TOML (nested too deeply to read)") from None
    _check_keys(src, "(top level)", data, ("model", "gpu", "cluster", "layout"))
    model = _model(src, _section(src, data, "model"))
    gpu = _gpu(src, _section(src, data, "gpu"))
    cl = _section(src, data, "cluster", required=False)
    _check_keys(src, "cluster", cl, _CLUSTER_KEYS)
    lay = _section(src, data, "layout")
    _check_keys(src, "layout", lay, _LAYOUT_FIELDS)
    for key, value in lay.items():
        expected = {f.name: f.type for f in fields(Layout)}[key]
        ok = (
            isinstance(value, bool)
            if expected in ("bool", "bool | None")
            else isinstance(value, str)
            if expected == "str"
            else isinstance(value, (int, float)) and not isinstance(value, bool)
            if expected == "float"
            else isinstance(value, int) and not isinstance(value, bool)
        )
        if not ok:
            raise InputError(f"{src}: key 'layout.{key}' = {value!r} must be of type {expected}")
    try:
        layout = Layout(**lay)
        layout.check_model(model, layout.pp * get_family(layout.schedule).chunks(layout.vpp))
    except (InputError, ScheduleError) as exc:
        raise InputError(f"{src}: [layout]: {exc}") from None
    topology = cl.get("topology")
    if topology is not None and not isinstance(topology, str):
        raise InputError(f"{src}: key 'cluster.topology' must be a preset name or path")
    nodes = cl.get("nodes")
    if nodes is not None and (isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1):
        raise InputError(f"{src}: key 'cluster.nodes' = {nodes!r} must be a positive integer")
    per = cl.get("gpus_per_node", 8)
    if isinstance(per, bool) or not isinstance(per, int) or per < 1:
        raise InputError(f"{src}: key 'cluster.gpus_per_node' = {per!r} must be a positive integer")
    intra = (
        _num(src, "cluster.intra_node_GBps", cl["intra_node_GBps"]) * 1e9
        if "intra_node_GBps" in cl
        else 240e9
    )
    inter = (
        _num(src, "cluster.inter_node_GBps", cl["inter_node_GBps"]) * 1e9 if "inter_node_GBps" in cl else 24e9
    )
    if nodes is not None and layout.num_gpus > nodes * per:
        raise InputError(
            f"{src}: layout needs dp x tp x pp = {layout.num_gpus} GPUs but cluster has {nodes} x {per} = {nodes * per}"
        )
    return ScenarioFile(model, gpu, layout, topology, nodes, per, intra, inter)


def load_scenario_toml(path: str | Path) -> ScenarioFile:
    """Read a scenario TOML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"scenario file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read scenario file {p}: {exc}") from None
    return parse_scenario_toml(text, str(p))


def load_scenario(path: str | Path) -> Scenario:
    """The reusable loader for commands that take ``--scenario FILE`` (simulate, gantt): the file's
    :class:`pipesim.sim.scenario.Scenario`, communication model built."""
    return load_scenario_toml(path).scenario()
