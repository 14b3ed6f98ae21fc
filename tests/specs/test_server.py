"""Each GPU preset's server (pipesim.specs.server): the cluster every command and the API default to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke

import pipesim
from pipesim.comm.base import LevelCommModel
from pipesim.comm.factory import ClusterSpec, build_comm, server_cluster, topology_gpus_per_node
from pipesim.comm.topology import TopologyCommModel
from pipesim.errors import InputError
from pipesim.io.readers import gpu_from_table, load_gpu_toml
from pipesim.io.values import parse_toml
from pipesim.plan.search import PlanCluster
from pipesim.sim.scenario import Scenario
from pipesim.specs.gpu import GPU_PRESETS, defaults_note, get_gpu
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model
from pipesim.specs.server import DGX_A100, FILE_DEFAULT_SERVER, ServerSpec


def test_every_preset_has_a_server_whose_topology_agrees() -> None:
    for name, gpu in GPU_PRESETS.items():
        srv = gpu.server
        assert srv.source, name
        if srv.topology is not None:
            assert topology_gpus_per_node(srv.topology) == srv.gpus_per_node, name
    assert get_gpu("a100-80gb").server is DGX_A100  # what benchmarks/accuracy.py calibrated on
    assert get_gpu("h100-sxm").server.topology == "dgx-h100"  # what accuracy_nemo.py calibrated on
    assert get_gpu("h200").server is get_gpu("h100-sxm").server
    assert get_gpu("gb200").server.topology == "nvl72" and get_gpu("gb200").server.gpus_per_node == 72


def test_two_level_figures_are_the_line_rate_at_the_measured_protocol_efficiency() -> None:
    # published.md s6.2: DGX A100 all-reduce busbw 230 GB/s of a 240 GB/s effective NVLink line rate;
    # s7: NVLink 4 450 GB/s and NVLink 5 900 GB/s per direction; s6.2: 46-48 GB/s per NDR NIC, 24 per HDR NIC.
    assert DGX_A100.intra_Bps == 240e9 and DGX_A100.inter_Bps == 24e9
    assert get_gpu("h100-sxm").server.intra_Bps == pytest.approx(450e9 * 230 / 240)  # 431.25 GB/s
    assert get_gpu("b200").server.intra_Bps == pytest.approx(900e9 * 230 / 240)  # 862.5 GB/s
    assert get_gpu("h100-sxm").server.inter_Bps == 47e9
    with pytest.raises(InputError, match="gpus_per_node=0"):
        ServerSpec("x", 0, 1e9, 1e9)


def test_the_api_and_the_planner_default_to_the_gpus_server() -> None:
    model, gpu = get_model("gpt-1.7b"), get_gpu("h100-sxm")
    lay = Layout(tp=2, dp=8, global_batch_size=16)
    sc = Scenario(model, gpu, lay)
    assert isinstance(sc.comm, TopologyCommModel) and sc.comm_description() == "topology dgx-h100"
    on_graph = Scenario(model, gpu, lay, build_comm(ClusterSpec("dgx-h100"), 16))
    assert pipesim.simulate(model, gpu, lay).step_time_s == pipesim.simulate(on_graph).step_time_s
    a100 = Scenario(model, get_gpu("a100-80gb"), lay)
    assert isinstance(a100.comm, LevelCommModel) and a100.comm.intra_Bps == 240e9
    cl = PlanCluster.on_server(get_gpu("gb200"), 2)
    assert (cl.topology, cl.gpus_per_node, cl.num_gpus) == ("nvl72", 72, 144)
    level = server_cluster(get_gpu("b200").server)
    assert level.topology is None and level.intra_node_Bps == pytest.approx(862.5e9)


def test_the_cli_names_the_default_cluster_and_a_two_level_flag_overrides_it() -> None:
    base = ["simulate", "--model", "gpt-1.7b", "--tp", "2", "--global-batch-size", "16"]
    code, out, err = invoke(*base, "--dp", "8", "--gpu", "h100-sxm")
    assert code == 0, err
    assert "communication: topology dgx-h100" in out
    code, out, _ = invoke(*base, "--dp", "8", "--gpu", "a100-80gb")
    assert "two-level: 8 GPUs/node, 240 GB/s per GPU inside a node, 24 GB/s per GPU across nodes" in out
    # One two-level flag: the two-level model, the server's figures for the others.
    code, out, _ = invoke(*base, "--dp", "8", "--gpu", "h100-sxm", "--inter-node-GBps", "100")
    assert "two-level: 8 GPUs/node, 431.25 GB/s per GPU inside a node, 100 GB/s per GPU across nodes" in out
    # --nodes works without --topology where the GPU's server is a topology preset: 2 x 8 GPUs, dp 8.
    code, out, err = invoke(*base, "--gpu", "h100-sxm", "--nodes", "2")
    assert code == 0, err
    assert "on 16 x h100-sxm: dp=8" in out and "topology dgx-h100" in out
    code, out, _ = invoke("gpu", "show", "h100-sxm")
    assert "DGX H100" in out and "dgx-h100" in out
    # A two-level bandwidth next to --topology would be ignored: refused in one line.
    code, _, err = invoke(*base, "--dp", "8", "--topology", "dgx-h100", "--inter-node-GBps", "100")
    assert (
        code == 2 and "--inter-node-GBps sets the two-level model, which --topology dgx-h100 replaces" in err
    )


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (
            'topology = "nvl72"\ngpus_per_node = 8',
            "key 'server.gpus_per_node' = 8 contradicts topology nvl72",
        ),
        ('topology = "nope"', "key 'server.topology': unknown topology 'nope'"),
        ("links = 3", "unknown key 'server.links'; valid keys: name, topology"),
        ("inter_node_GBps = -1", "key 'server.inter_node_GBps' = -1 must be a finite positive number"),
    ],
)
def test_a_gpu_file_server_table_is_checked(tmp_path: Path, server: str, message: str) -> None:
    path = tmp_path / "g.toml"
    path.write_text(f'base = "a100-80gb"\n[server]\n{server}\n')
    with pytest.raises(InputError) as info:
        load_gpu_toml(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_a_gpu_file_names_its_server() -> None:
    # A [server] table without a topology is the two-level model over the base preset's figures.
    src = 'base = "h100-sxm"\nname = "h20"\n[server]\nname = "HGX H20"\ninter_node_GBps = 50\nsource = "sheet"\n'
    gpu = gpu_from_table(parse_toml(src, "h20.toml"), "h20.toml", "h20")
    assert gpu.server == ServerSpec("HGX H20", 8, 450e9 * 230 / 240, 50e9, None, "sheet")
    # Without one, a file keeps its base preset's server; a file without a base gets DGX A100's.
    assert gpu_from_table(parse_toml('base = "gb200"\n', "x.toml"), "x.toml", "x").server.topology == "nvl72"
    plain = 'memory_GB = 96\nhbm_bandwidth_GBps = 4000\n[peak_TFLOPS]\nbf16 = 500\n[server]\ntopology = "dgx-h100"\n'
    gpu = gpu_from_table(parse_toml(plain, "p.toml"), "p.toml", "p")
    assert (gpu.server.topology, gpu.server.gpus_per_node, gpu.server.intra_Bps) == ("dgx-h100", 8, 240e9)
    bare = gpu_from_table(parse_toml(plain.split("[server]")[0], "p.toml"), "p.toml", "p")
    assert bare.server is FILE_DEFAULT_SERVER and bare.server.source.startswith(
        "default (the GPU file has no"
    )
    figures = (bare.server.gpus_per_node, bare.server.intra_Bps, bare.server.inter_Bps, bare.server.topology)
    assert figures == (DGX_A100.gpus_per_node, DGX_A100.intra_Bps, DGX_A100.inter_Bps, DGX_A100.topology)
    # ... and every report says so in one line; a preset, or a file with a base, borrows nothing.
    assert defaults_note(bare) == (
        "note: p uses defaults: A100-fitted efficiencies (no profile), DGX A100 links (no server table); "
        "`pipesim gpu show` lists them"
    )
    assert (
        defaults_note(gpu)
        == "note: p uses defaults: A100-fitted efficiencies (no profile); `pipesim gpu show` lists them"
    )
    assert defaults_note(get_gpu("a100-80gb")) == ""
    assert defaults_note(gpu_from_table(parse_toml('base = "a100-80gb"\n', "x.toml"), "x.toml", "x")) == ""


def test_reports_name_the_defaults_a_gpu_file_borrows(tmp_path: Path) -> None:
    path = tmp_path / "l40s.toml"
    path.write_text('name = "l40s"\nmemory_GB = 48\nhbm_bandwidth_GBps = 864\n[peak_TFLOPS]\nbf16 = 362\n')
    runs = (
        ("simulate", "--model", "gpt-1.7b", "--gpu", str(path), "--tp", "2", "--global-batch-size", "4"),
        ("compare", "--model", "gpt-1.7b", "--gpu", str(path), "--pp", "2", "-m", "4"),
        ("plan", "--model", "gpt-1.7b", "--gpu", str(path), "--nodes", "1", "--global-batch-size", "8"),
    )
    for args in runs:
        code, out, err = invoke(*args)
        assert code == 0, err
        assert "note: l40s uses defaults: A100-fitted efficiencies (no profile), DGX A100 links" in out, args


def test_gpu_list_shows_each_presets_default_cluster() -> None:
    code, out, err = invoke("gpu", "list")
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│")}
    assert set(rows) == set(GPU_PRESETS)
    assert "DGX H100 / HGX H200 (dgx-h100)" in rows["h100-sxm"] and "1978.9" in rows["h100-sxm"]
    assert "DGX A100 (two-level)" in rows["a100-80gb"]
    code, out, _ = invoke("gpu", "list", "--json")
    listed = {r["name"]: r for r in json.loads(out)}
    assert listed["gb200"]["topology"] == "nvl72" and listed["b200"]["topology"] is None
    assert listed["h100-sxm"]["peak_flops"]["fp8"] == 1978.9e12


def test_topo_list_names_the_gpus_each_topology_serves() -> None:
    code, out, err = invoke("topo", "list", "--json")
    assert code == 0, err
    serves = {r["name"]: r["default_for"] for r in json.loads(out)}
    assert serves["dgx-h100"] == ["h100-sxm", "h200"] and serves["nvl72"] == ["gb200"]
    assert serves["dgx-a100"] == []  # the A100s default to the two-level model they were calibrated on
