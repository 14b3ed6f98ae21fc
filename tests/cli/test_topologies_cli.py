"""CLI: pipesim topo list | show | draw."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import invoke as run


def test_topo_list() -> None:
    code, out, _ = run("topo", "list", "--json")
    assert code == 0
    names = [row["name"] for row in json.loads(out)]
    assert {"dgx-a100", "dgx-h100", "dgx1-v100", "dgx2", "nvl72", "pcie-8gpu"} <= set(names)
    code, out, _ = run("topo", "list")
    assert code == 0 and "dgx-h100" in out and "GB/s = 1e9 B/s" in out


def test_topo_show_dgx_h100_four_nodes() -> None:
    code, out, _ = run("topo", "show", "dgx-h100", "--nodes", "4")
    assert code == 0, out
    assert "GPUs 32" in out
    assert "nvlink" in out and "infiniband" in out
    # 18 NVLink4 links per GPU x 32 GPUs; 450 GB/s per GPU per direction; 8 NDR NICs x 50 GB/s / 8 GPUs.
    assert "576" in out
    assert "per GPU, GB/s: NVLink 450.0" in out and "network 50.0" in out
    # Bisection: servers 0-1 vs 2-3, 16 NICs x 50 GB/s = 800 GB/s.
    assert "bisection, GB/s: 800.0" in out


def test_topo_show_json_and_oversubscription() -> None:
    code, out, _ = run("topo", "show", "dgx-h100", "--nodes", "64", "--oversubscription", "2", "--json")
    assert code == 0
    d = json.loads(out)
    # 64 servers, 2 leaves per rail; the cut between servers 0-31 and 32-63 is the leaf uplinks:
    # 8 rails x 2 leaves x (32 x 50 GB/s / 2) / 2 directions-of-the-cut... one side's leaves: 8 x 800 GB/s.
    assert d["bisection_Bps"] == 8 * 32 * 50e9 / 2
    assert d["gpus"] == 512


def test_topo_draw_writes_self_contained_html(tmp_path: Path) -> None:
    out_file = tmp_path / "topo.html"
    code, out, _ = run("topo", "draw", "pcie-8gpu", "-o", str(out_file))
    assert code == 0
    html = out_file.read_text()
    assert "<html" in html and "pipesim-topology" in html and "<script src=" not in html
    # plotly.js is embedded (megabytes of script), not loaded from a CDN <script src=...>.
    assert len(html) > 1_000_000
    assert '<script src="https://cdn.plot.ly' not in html
    assert "node0\\u002fgpu3" in html  # device names in the hover text (plotly escapes "/")
    first = html
    run("topo", "draw", "pcie-8gpu", "-o", str(out_file))
    assert out_file.read_text() == first  # byte-for-byte deterministic


def test_topo_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    code, _, err = run("topo", "show", "dgx-z900")
    assert code == 2 and err.count("\n") == 1 and "valid presets" in err
    bad = tmp_path / "box.toml"
    bad.write_text("[node]\ngpus = 4\ncpus = 1\n[node.pcie]\nbandwidth_GBps = -3\nlatency_us = 1\n")
    code, _, err = run("topo", "show", str(bad))
    assert code == 2 and err.strip() == f"error: {bad}: node.pcie.bandwidth_GBps = -3 must be > 0"
    code, _, err = run("topo", "draw", "pcie-8gpu", "-o", str(tmp_path / "missing" / "t.html"))
    assert code == 2 and "does not exist" in err


def test_drawing_labels_devices_and_colours_rails() -> None:
    from pipesim.figures.topology import topology_figure
    from topologies import build_cluster

    g = build_cluster("dgx-h100", 4, fabric="rail")
    fig = topology_figure(g)
    names = [t.name for t in fig.data if t.mode == "lines"]
    # DGX H100: 8 rails of NDR 400 Gb/s = 50 GB/s, one NIC per GPU, NVLink 4 at 450 GB/s per direction.
    assert "nvlink: 450 GB/s" in names
    assert [n for n in names if "rail" in n] == [f"infiniband rail {r}: 50 GB/s" for r in range(8)]
    for r in range(8):  # rail r joins NIC r of each of the 4 servers to its leaf
        trace = next(t for t in fig.data if t.mode == "lines" and t.name.startswith(f"infiniband rail {r}:"))
        assert sum(1 for x in trace.x if x is None) == 4
    gpus = next(t for t in fig.data if t.name == "gpu")
    assert list(gpus.text[:8]) == [str(i) for i in range(8)] and len(gpus.text) == 32
    boxes = [a.text for a in fig.layout.annotations if a.text.startswith("node")]
    assert boxes == ["node0", "node1", "node2", "node3"] and len(fig.layout.shapes) == 4
