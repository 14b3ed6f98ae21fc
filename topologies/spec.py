"""Cluster specifications: frozen dataclasses a builder turns into a graph, and their TOML reader.

A spec describes one server (GPUs, CPU sockets, PCIe switches, NICs, an optional NVSwitch plane, optional
direct NVLinks) and the fabric joining servers. Presets in ``topologies/presets/*.toml`` use the same format
as user files. Units are in the keys (``bandwidth_GBps`` = 1e9 B/s per direction, ``bandwidth_Gbps`` =
1e9 bit/s, ``latency_us``); the dataclasses hold SI units.

Errors name the file and the key: ``mybox.toml: node.nic.bandwidth_Gbps = -5 must be > 0``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topologies.errors import TopologyError
from topologies.graph import EDGE_KINDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "NVSwitchSpec",
    "NVLinkSpec",
    "NodeSpec",
    "FabricSpec",
    "ClusterSpec",
    "FABRIC_KINDS",
    "load_spec",
    "parse_spec",
    "read_toml",
]

FABRIC_KINDS = ("rail", "fat-tree")
NIC_KINDS = ("infiniband", "ethernet")


@dataclass(frozen=True)
class NVSwitchSpec:
    """An NVSwitch plane, modeled as one logical switch: every GPU joins it with ``links_per_gpu`` NVLinks of
    ``link_bandwidth_Bps`` each (per direction). ``chips`` is the physical switch count (drawn, not routed);
    ``in_switch_reduction`` enables NVLink SHARP (NVLS, NVSwitch gen 3 and later)."""

    generation: int
    links_per_gpu: int
    link_bandwidth_Bps: float
    latency_s: float
    chips: int = 1
    in_switch_reduction: bool = False


@dataclass(frozen=True)
class NVLinkSpec:
    """Direct GPU-GPU NVLinks (DGX-1 hybrid cube-mesh, NVLink bridges): ``pairs`` are (gpu_a, gpu_b, links)."""

    link_bandwidth_Bps: float
    latency_s: float
    pairs: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class NodeSpec:
    """One server. GPU i sits on PCIe switch i*pcie_switches//gpus (or CPU i*cpus//gpus without switches),
    NIC j on PCIe switch j*pcie_switches//nics, PCIe switch s on CPU s*cpus//pcie_switches; CPU sockets are
    paired on boards (2k -- 2k+1) by UPI."""

    gpus: int
    cpus: int
    pcie_switches: int
    nics: int
    pcie_bandwidth_Bps: float
    pcie_latency_s: float
    upi_bandwidth_Bps: float
    upi_latency_s: float
    nic_kind: str
    nic_bandwidth_Bps: float
    nic_latency_s: float
    nvswitch: NVSwitchSpec | None = None
    nvlink: NVLinkSpec | None = None


@dataclass(frozen=True)
class FabricSpec:
    """The network between servers: ``rail`` (NIC j of every server on rail j's leaf switches) or
    ``fat-tree`` (all NICs of a server on one leaf). A leaf has ``leaf_ports`` NIC-facing ports; its uplinks
    to the spine tier carry (leaf_ports x NIC bandwidth) / ``oversubscription``. The spine tier is one
    logical switch (ECMP over the spines is aggregated into the leaf uplink capacity)."""

    kind: str
    leaf_ports: int
    oversubscription: float
    switch_latency_s: float


@dataclass(frozen=True)
class ClusterSpec:
    """A named server design plus its fabric and the NCCL efficiency calibration."""

    name: str
    description: str
    node: NodeSpec
    fabric: FabricSpec
    efficiency: dict[str, float] = field(default_factory=dict)
    base_latency_s: float = 0.0
    source: str = "<spec>"


class _Table:
    """A TOML table being read: every access names ``source: prefix.key`` in its error."""

    def __init__(self, data: Any, source: str, prefix: str) -> None:
        if not isinstance(data, dict):
            raise TopologyError(f"{source}: {prefix or 'file'} must be a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.source = source
        self.prefix = prefix
        self.seen: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, msg: str) -> TopologyError:
        return TopologyError(f"{self.source}: {self.where(key)} {msg}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None, required: bool = False) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if required:
                raise self.fail(key, "is missing")
            return default
        return self.data[key]

    def number(self, key: str, default: float | None = None, *, positive: bool = True) -> float:
        v = self.get(key, default, required=default is None)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(key, f"= {v!r} must be a number")
        if not math.isfinite(v):
            raise self.fail(key, f"= {v} must be a finite number")
        if positive and not v > 0:
            raise self.fail(key, f"= {v} must be > 0")
        if not positive and v < 0:
            raise self.fail(key, f"= {v} must be >= 0")
        return float(v)

    def integer(self, key: str, default: int | None = None, *, minimum: int = 0) -> int:
        v = self.get(key, default, required=default is None)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"= {v!r} must be an integer")
        if v < minimum:
            raise self.fail(key, f"= {v} must be >= {minimum}")
        return int(v)

    def choice(self, key: str, choices: tuple[str, ...], default: str | None = None) -> str:
        v = self.get(key, default, required=default is None)
        if v not in choices:
            raise self.fail(key, f"= {v!r} is not valid; valid: {', '.join(choices)}")
        return str(v)

    def boolean(self, key: str, default: bool) -> bool:
        v = self.get(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, f"= {v!r} must be true or false")
        return v

    def text(self, key: str, default: str) -> str:
        v = self.get(key, default)
        if not isinstance(v, str):
            raise self.fail(key, f"= {v!r} must be a string")
        return v

    def table(self, key: str, required: bool = False) -> _Table | None:
        v = self.get(key, None, required=required)
        return None if v is None else _Table(v, self.source, self.where(key))

    def done(self) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            valid = ", ".join(sorted(self.seen))
            raise self.fail(extra[0], f"is not a known key; valid keys here: {valid}")


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error becomes a one-line :class:`TopologyError`."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise TopologyError(f"{p}: no such topology file") from None
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{p}: invalid TOML: {exc}".replace("\n", " ")) from None
    except RecursionError:
        raise TopologyError(f"{p}: invalid TOML: nested too deeply to read") from None
    except UnicodeDecodeError as exc:
        raise TopologyError(f"{p}: invalid TOML: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except IsADirectoryError:
        raise TopologyError(f"{p}: is a directory, not a topology TOML file") from None
    except OSError as exc:
        raise TopologyError(f"{p}: cannot read topology file ({exc.strerror or exc})") from None


def _nvswitch(t: _Table) -> NVSwitchSpec:
    spec = NVSwitchSpec(
        generation=t.integer("generation", minimum=1),
        links_per_gpu=t.integer("links_per_gpu", minimum=1),
        link_bandwidth_Bps=t.number("link_bandwidth_GBps") * 1e9,
        latency_s=t.number("latency_us", positive=False) * 1e-6,
        chips=t.integer("chips", 1, minimum=1),
        in_switch_reduction=t.boolean("in_switch_reduction", False),
    )
    t.done()
    return spec


def _nvlink(t: _Table, gpus: int) -> NVLinkSpec:
    bw = t.number("link_bandwidth_GBps") * 1e9
    lat = t.number("latency_us", positive=False) * 1e-6
    raw = t.get("pairs", required=True)
    if not isinstance(raw, list):
        raise t.fail("pairs", "must be a list of [gpu_a, gpu_b, links]")
    pairs: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int]] = set()
    for i, item in enumerate(raw):
        key = f"pairs[{i}]"
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in item)
        ):
            raise t.fail(key, f"= {item!r} must be [gpu_a, gpu_b, links] (three integers)")
        a, b, n = item
        for x in (a, b):
            if not 0 <= x < gpus:
                raise t.fail(key, f"names gpu{x} but node.gpus = {gpus} (valid 0-{gpus - 1})")
        if a == b:
            raise t.fail(key, f"links gpu{a} to itself")
        if n < 1:
            raise t.fail(key, f"has {n} links; it must be >= 1")
        pair = (min(a, b), max(a, b))
        if pair in seen:
            raise t.fail(key, f"repeats the pair gpu{pair[0]}-gpu{pair[1]}; give the link count once")
        seen.add(pair)
        pairs.append((pair[0], pair[1], n))
    t.done()
    return NVLinkSpec(bw, lat, tuple(pairs))


def _node(t: _Table) -> NodeSpec:
    gpus = t.integer("gpus", minimum=1)
    cpus = t.integer("cpus", 0)
    switches = t.integer("pcie_switches", 0)
    nics = t.integer("nics", 0)
    pcie = t.table("pcie", required=switches > 0 or cpus > 0)
    pcie_bw = pcie.number("bandwidth_GBps") * 1e9 if pcie else 1.0
    pcie_lat = pcie.number("latency_us", positive=False) * 1e-6 if pcie else 0.0
    if pcie:
        pcie.done()
    upi = t.table("upi", required=cpus > 1)
    upi_bw = upi.number("bandwidth_GBps") * 1e9 if upi else 1.0
    upi_lat = upi.number("latency_us", positive=False) * 1e-6 if upi else 0.0
    if upi:
        upi.done()
    nic = t.table("nic", required=nics > 0)
    nic_kind, nic_bw, nic_lat = "infiniband", 1.0, 0.0
    if nic:
        nic_kind = nic.choice("kind", NIC_KINDS)
        nic_bw = nic.number("bandwidth_Gbps") * 1e9 / 8
        nic_lat = nic.number("latency_us", positive=False) * 1e-6
        nic.done()
    if nics > 0 and switches == 0 and cpus == 0:
        raise t.fail("nics", f"= {nics} but there is no PCIe switch or CPU to attach them to")
    sw = t.table("nvswitch")
    nvl = t.table("nvlink")
    spec = NodeSpec(
        gpus=gpus,
        cpus=cpus,
        pcie_switches=switches,
        nics=nics,
        pcie_bandwidth_Bps=pcie_bw,
        pcie_latency_s=pcie_lat,
        upi_bandwidth_Bps=upi_bw,
        upi_latency_s=upi_lat,
        nic_kind=nic_kind,
        nic_bandwidth_Bps=nic_bw,
        nic_latency_s=nic_lat,
        nvswitch=_nvswitch(sw) if sw else None,
        nvlink=_nvlink(nvl, gpus) if nvl else None,
    )
    t.done()
    return spec


def _fabric(t: _Table | None) -> FabricSpec:
    if t is None:
        return FabricSpec("rail", 32, 1.0, 0.0)
    spec = FabricSpec(
        kind=t.choice("kind", FABRIC_KINDS, "rail"),
        leaf_ports=t.integer("leaf_ports", 32, minimum=1),
        oversubscription=t.number("oversubscription", 1.0),
        switch_latency_s=t.number("switch_latency_us", 0.0, positive=False) * 1e-6,
    )
    if spec.oversubscription < 1:
        raise t.fail("oversubscription", f"= {spec.oversubscription} must be >= 1 (1 = full bisection)")
    t.done()
    return spec


_CALIBRATION = Path(__file__).parent / "presets" / "_calibration.toml"
EFFICIENCY_KEYS = (*EDGE_KINDS, "nvls")


def _efficiency(t: _Table) -> dict[str, float]:
    out = {}
    for k in EFFICIENCY_KEYS:
        if t.has(k):
            v = t.number(k)
            if v > 1:
                raise t.fail(k, f"= {v} must be a fraction of line rate in (0, 1]")
            out[k] = v
    t.done()
    return out


def calibration() -> tuple[dict[str, float], float]:
    """The shared NCCL calibration (``presets/_calibration.toml``): efficiency per link kind and the fixed
    base latency of one collective in seconds."""
    root = _Table(read_toml(_CALIBRATION), str(_CALIBRATION), "")
    eff_t = root.table("efficiency", required=True)
    assert eff_t is not None
    eff = _efficiency(eff_t)
    missing = [k for k in EFFICIENCY_KEYS if k not in eff]
    if missing:
        raise TopologyError(f"{_CALIBRATION}: efficiency.{missing[0]} is missing")
    base = root.number("base_latency_us", positive=False) * 1e-6
    root.done()
    return eff, base


def parse_spec(data: dict[str, Any], source: str, default_name: str = "custom") -> ClusterSpec:
    """Validate parsed TOML ``data`` (from file ``source``) into a :class:`ClusterSpec`.

    Efficiencies default to the shared calibration; a user file may override them in ``[efficiency]``
    (e.g. with its own nccl-tests measurements)."""
    root = _Table(data, source, "")
    name = root.text("name", default_name)
    description = root.text("description", "")
    node_t = root.table("node", required=True)
    assert node_t is not None
    node = _node(node_t)
    fabric = _fabric(root.table("fabric"))
    eff, base = calibration()
    eff_t = root.table("efficiency")
    if eff_t is not None:
        eff.update(_efficiency(eff_t))
    root.done()
    return ClusterSpec(name, description, node, fabric, eff, base, source)


def load_spec(path: str | Path) -> ClusterSpec:
    """Read and validate a topology TOML file."""
    p = Path(path)
    return parse_spec(read_toml(p), str(p), default_name=p.stem)
