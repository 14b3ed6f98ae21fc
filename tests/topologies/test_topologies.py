"""Topology builders, presets and TOML validation."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from topologies import TopologyError, build_cluster, gpu_nodes, link, links_by_kind, preset_names
from topologies.graph import EDGE_KINDS, NODE_KINDS, check_connected
from topologies.spec import load_spec

PRESETS = ["dgx-a100", "dgx-h100", "dgx1-v100", "dgx2", "nvl72", "pcie-8gpu", "pcie-8gpu-nvbridge"]


def test_presets_listed() -> None:
    assert preset_names() == sorted(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_graph_is_well_typed(name: str) -> None:
    g = build_cluster(name, 2)
    for n, kind in g.nodes(data="kind"):
        assert kind in NODE_KINDS, n
    for u, v in g.edges:
        lk = link(g, u, v)
        assert lk.kind in EDGE_KINDS and lk.bandwidth_Bps > 0 and lk.latency_s >= 0
    assert nx.is_connected(g)
    assert len(gpu_nodes(g)) == 2 * g.graph["gpus_per_node"]


def test_gpu_order_is_server_major() -> None:
    g = build_cluster("dgx2", 2)
    gpus = gpu_nodes(g)
    assert gpus[:2] == ["node0/gpu0", "node0/gpu1"]
    assert gpus[15] == "node0/gpu15" and gpus[16] == "node1/gpu0"


def nvlink_per_gpu_Bps(name: str) -> float:
    g = build_cluster(name, 1)
    return sum(
        link(g, "node0/gpu0", nb).bandwidth_Bps
        for nb in g["node0/gpu0"]
        if link(g, "node0/gpu0", nb).kind == "nvlink"
    )


@pytest.mark.parametrize(
    ("name", "bidirectional_GBps"),
    [
        # published.md section 7: NVLink2 300 GB/s (V100, 6 links), NVLink3 600 GB/s (A100, 12 links),
        # NVLink4 900 GB/s (H100, 18 links), NVLink5 1,800 GB/s (B200-class); all bidirectional totals.
        ("dgx1-v100", 300),
        ("dgx2", 300),
        ("dgx-a100", 600),
        ("dgx-h100", 900),
        ("nvl72", 1800),
    ],
)
def test_nvlink_per_gpu_matches_published_totals(name: str, bidirectional_GBps: float) -> None:
    assert 2 * nvlink_per_gpu_Bps(name) == pytest.approx(bidirectional_GBps * 1e9)


def test_dgx1_cube_mesh_every_gpu_has_six_links_and_no_switch() -> None:
    # NVIDIA/nccl issue #671 (DGX-1 V100 topology dump): 6 NVLinks per GPU, some pairs doubled.
    g = build_cluster("dgx1-v100", 1)
    assert not any(k == "nvswitch" for _, k in g.nodes(data="kind"))
    for i in range(8):
        gpu = f"node0/gpu{i}"
        links = sum(link(g, gpu, nb).count for nb in g[gpu] if link(g, gpu, nb).kind == "nvlink")
        assert links == 6
    assert link(g, "node0/gpu0", "node0/gpu3").count == 2
    assert not g.has_edge("node0/gpu0", "node0/gpu5")


def test_nic_speeds() -> None:
    # HDR 200 Gb/s = 25 GB/s, NDR 400 Gb/s = 50 GB/s per direction (published.md section 7).
    a = build_cluster("dgx-a100", 2)
    h = build_cluster("dgx-h100", 2)
    assert link(a, "node0/nic0", "fabric/rail0/leaf0").bandwidth_Bps == pytest.approx(25e9)
    assert link(h, "node0/nic0", "fabric/rail0/leaf0").bandwidth_Bps == pytest.approx(50e9)
    assert sum(1 for _, k in a.nodes(data="kind") if k == "nic") == 16


def test_links_by_kind_counts() -> None:
    g = build_cluster("dgx-a100", 1)
    kinds = links_by_kind(g)
    assert kinds["nvlink"][0] == 8 * 12  # 12 NVLinks per A100
    assert kinds["upi"][0] == 1


def test_rail_fabric_and_oversubscription() -> None:
    g = build_cluster("dgx-h100", 64)  # 32 servers per leaf -> 2 leaves per rail
    assert g.has_edge("node0/nic3", "fabric/rail3/leaf0")
    assert g.has_edge("node40/nic3", "fabric/rail3/leaf1")
    full = link(g, "fabric/rail3/leaf1", "fabric/spine").bandwidth_Bps
    assert full == pytest.approx(32 * 50e9)
    g4 = build_cluster("dgx-h100", 64, oversubscription=4)
    assert link(g4, "fabric/rail3/leaf1", "fabric/spine").bandwidth_Bps == pytest.approx(full / 4)


def test_fat_tree_puts_a_server_on_one_leaf() -> None:
    g = build_cluster("dgx-a100", 8, fabric="fat-tree")  # 20 ports / 8 NICs -> 2 servers per leaf
    assert {nb for j in range(8) for nb in g[f"node3/nic{j}"] if nb.startswith("fabric")} == {"fabric/leaf1"}


def test_link_accessor_raises_on_missing_attribute() -> None:
    g = nx.Graph()
    g.add_edge("a", "b", kind="nvlink", latency_s=0.0)
    with pytest.raises(TopologyError, match="bandwidth_Bps"):
        link(g, "a", "b")
    with pytest.raises(TopologyError, match="no link"):
        link(g, "a", "c")


def test_unknown_preset_lists_valid_ones() -> None:
    with pytest.raises(TopologyError, match="valid presets: dgx-a100"):
        build_cluster("dgx-z900", 1)


def test_bad_node_count() -> None:
    with pytest.raises(TopologyError, match="nodes=0"):
        build_cluster("dgx-a100", 0)


GOOD = """
name = "mybox"
[node]
gpus = 4
cpus = 1
pcie_switches = 2
nics = 1
[node.pcie]
bandwidth_GBps = 31.52
latency_us = 0.5
[node.nic]
kind = "infiniband"
bandwidth_Gbps = 200
latency_us = 0.6
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mybox.toml"
    p.write_text(text)
    return p


def test_user_toml_builds(tmp_path: Path) -> None:
    g = build_cluster(write(tmp_path, GOOD), 3)
    assert g.graph["name"] == "mybox"
    assert len(gpu_nodes(g)) == 12


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "bandwidth_Gbps = 200",
            "bandwidth_Gbps = -5",
            r"mybox.toml: node.nic.bandwidth_Gbps = -5 must be > 0",
        ),
        ("bandwidth_Gbps = 200\n", "\n", r"mybox.toml: node.nic.bandwidth_Gbps is missing"),
        (
            "bandwidth_GBps = 31.52",
            "bandwidth_GBps = 0",
            r"mybox.toml: node.pcie.bandwidth_GBps = 0 must be > 0",
        ),
        ("gpus = 4", "gpus = 4\ngpu = 2", r"mybox.toml: node.gpu is not a known key"),
        ('kind = "infiniband"', 'kind = "carrier-pigeon"', r"node.nic.kind = 'carrier-pigeon' is not valid"),
        ("gpus = 4", 'gpus = "four"', r"node.gpus = 'four' must be an integer"),
        ("name =", "[node.upi]\nname =", r"mybox.toml: "),
    ],
)
def test_toml_errors_name_file_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        build_cluster(write(tmp_path, GOOD.replace(old, new, 1)), 2)


def test_nvlink_pair_naming_missing_gpu(tmp_path: Path) -> None:
    text = (
        GOOD + "[node.nvlink]\nlink_bandwidth_GBps = 25\nlatency_us = 0.5\npairs = [[0, 1, 2], [2, 9, 1]]\n"
    )
    with pytest.raises(
        TopologyError, match=r"mybox.toml: node.nvlink.pairs\[1\] names gpu9 but node.gpus = 4"
    ):
        load_spec(write(tmp_path, text))


def test_disconnected_graph_is_reported(tmp_path: Path) -> None:
    # No PCIe tree and NVLink only between GPUs 0 and 1: GPUs 2 and 3 are islands.
    text = """
[node]
gpus = 4
[node.nvlink]
link_bandwidth_GBps = 25
latency_us = 0.5
pairs = [[0, 1, 4]]
"""
    with pytest.raises(
        TopologyError, match=r"mybox.toml: graph is disconnected: node0/gpu2 cannot reach node0/gpu0"
    ):
        build_cluster(write(tmp_path, text), 1)


def test_invalid_toml_syntax_names_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"mybox.toml: invalid TOML"):
        load_spec(write(tmp_path, "[node\ngpus = 4"))


def test_missing_file() -> None:
    with pytest.raises(TopologyError, match="no such topology file"):
        build_cluster("does/not/exist.toml", 1)


def test_multi_node_without_nics(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="node.nics = 0"):
        build_cluster(write(tmp_path, GOOD.replace("nics = 1", "nics = 0")), 2)


def test_user_efficiency_override(tmp_path: Path) -> None:
    g = build_cluster(write(tmp_path, GOOD + "[efficiency]\ninfiniband = 0.9\n"), 1)
    assert g.graph["efficiency"]["infiniband"] == 0.9
    assert g.graph["efficiency"]["nvlink"] == 0.8  # the shared calibration for the rest
    with pytest.raises(TopologyError, match=r"efficiency.pcie = 1.5 must be a fraction"):
        build_cluster(write(tmp_path, GOOD + "[efficiency]\npcie = 1.5\n"), 1)


def test_check_connected_on_plain_graph() -> None:
    g = nx.Graph()
    g.add_node("node0/gpu0", kind="gpu")
    g.add_node("node0/gpu1", kind="gpu")
    with pytest.raises(TopologyError, match="disconnected"):
        check_connected(g, "test")
