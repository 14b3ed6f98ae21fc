"""The topology model's group key (what the cost caches share units by): groups keyed alike cost alike.

A group inside one server is keyed by its local GPUs, because every server of a built cluster is a copy of one
template (topologies.routing reads every in-server link from server 0); the test checks the consequence the
caches rely on, on every preset: the same local pattern in different servers times the same for every
collective, algorithm and size, and groups across servers keep their own GPUs as key."""

from __future__ import annotations

import random

import pytest

from pipesim.comm.costs import ALGORITHMS
from pipesim.comm.topology import TopologyCommModel
from topologies import build_cluster
from topologies.builders import preset_names


@pytest.mark.parametrize("preset", preset_names())
def test_one_local_pattern_costs_alike_in_every_server(preset: str) -> None:
    g = build_cluster(preset, 3)
    per = g.graph["gpus_per_node"]
    comm = TopologyCommModel.for_cluster(g, 3 * per)
    rng = random.Random(per)
    for _ in range(6):
        local = rng.sample(range(per), rng.randint(2, min(per, 8)))
        groups = [[s * per + i for i in local] for s in range(3)]
        keys = {comm.group_key(grp) for grp in groups}
        assert keys == {("server", *local)}
        for op, algos in ALGORITHMS.items():
            if op == "send-recv":
                continue
            for size in (1e3, 1e6, 1e9):
                times = {comm.collective_s(op, size, grp) for grp in groups}
                assert len(times) == 1, (op, size, times)
            for algo in algos:
                costs = {comm.cost(op, grp, algo, _check=False) for grp in groups}
                assert len(costs) == 1, (op, algo)


def test_groups_across_servers_are_keyed_by_their_gpus() -> None:
    g = build_cluster("dgx-h100", 4)
    comm = TopologyCommModel.for_cluster(g, 32)
    assert comm.group_key([0, 8]) == ("gpus", 0, 8)
    assert comm.group_key([8, 16]) != comm.group_key([0, 8])
    assert comm.group_key([3, 1]) == ("server", 3, 1)  # order kept: a ring's order is part of its cost
