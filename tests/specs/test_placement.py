"""Rank placement: Megatron-LM order, group crossings, rank -> GPU mapping, and what crossing costs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipesim.comm.topology import TopologyCommModel
from pipesim.errors import InputError
from pipesim.specs.placement import RankGrid, parse_order, rank_to_gpu
from topologies import TopologyError, build_cluster


def test_megatron_default_order() -> None:
    # Megatron-LM: tensor parallel fastest, then data parallel, then pipeline parallel.
    g = RankGrid(tp=2, dp=3, pp=2)
    assert g.rank(1, 0, 0) == 1
    assert g.rank(0, 1, 0) == 2
    assert g.rank(0, 0, 1) == 6
    assert g.tp_group(1, 1) == [8, 9]
    assert g.dp_group(0, 0) == [0, 2, 4]
    assert g.pp_group(1, 2) == [5, 11]


def test_other_order() -> None:
    g = RankGrid(tp=2, dp=3, pp=2, order=parse_order("dp-tp-pp"))
    assert g.dp_group(0, 0) == [0, 1, 2]
    assert g.tp_group(0, 0) == [0, 3]
    with pytest.raises(InputError, match="permutation of tp, dp, pp"):
        parse_order("tp-tp-pp")


@settings(max_examples=30, deadline=None)
@given(
    tp=st.integers(1, 4),
    dp=st.integers(1, 4),
    pp=st.integers(1, 4),
    order=st.permutations(["tp", "dp", "pp"]),
)
def test_groups_partition_the_ranks(tp: int, dp: int, pp: int, order: list[str]) -> None:
    g = RankGrid(tp, dp, pp, (order[0], order[1], order[2]))
    for dim in ("tp", "dp", "pp"):
        groups = g.groups(dim)
        flat = sorted(r for grp in groups for r in grp)
        assert flat == list(range(g.world_size))


def test_crossings_default_order() -> None:
    # tp=8 dp=2 pp=2 on 8-GPU nodes: TP groups fill a node; DP and PP groups all span 2 nodes.
    c = RankGrid(8, 2, 2).crossings(8)
    assert (c["tp"].crossing, c["tp"].groups, c["tp"].max_nodes) == (0, 4, 1)
    assert (c["dp"].crossing, c["dp"].groups) == (16, 16)
    assert c["pp"].crossing == 16


def test_crossings_tp_spread_over_nodes() -> None:
    # Order dp-tp-pp with dp=2: consecutive TP ranks are 2 apart, so a TP group of 8 spans 16 ranks = 2 nodes.
    c = RankGrid(8, 2, 2, parse_order("dp-tp-pp")).crossings(8)
    assert c["tp"].crossing == 4 and c["tp"].max_nodes == 2
    assert c["dp"].crossing == 0


def test_rank_to_gpu() -> None:
    g = build_cluster("dgx-a100", 2)
    names = rank_to_gpu(g, 12)
    assert names[0] == "node0/gpu0" and names[9] == "node1/gpu1"
    with pytest.raises(TopologyError, match="layout needs 32 GPUs .* has 16; use at least 4 nodes"):
        rank_to_gpu(g, 32)


def test_placing_tp_across_nodes_visibly_costs() -> None:
    # Same layout tp=8 dp=2 pp=1 on 2 DGX A100: TP all-reduce on its groups in Megatron order (inside a node)
    # versus dp-tp-pp order (TP spans both nodes).
    g = build_cluster("dgx-a100", 2)
    m = TopologyCommModel.for_cluster(g, 16)
    size = 32 << 20
    inside = RankGrid(8, 2, 1).tp_group(0, 0)
    across = RankGrid(8, 2, 1, parse_order("dp-tp-pp")).tp_group(0, 0)
    assert across == [0, 2, 4, 6, 8, 10, 12, 14]
    assert m.collective_s("all-reduce", size, across) > 1.3 * m.collective_s("all-reduce", size, inside)
