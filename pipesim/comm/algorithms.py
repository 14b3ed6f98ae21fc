"""Tree, NVLS, hierarchical and all-to-all collectives on a topology graph (see
:mod:`pipesim.comm.topology` for the model)."""

from __future__ import annotations

import math
from collections import defaultdict

from pipesim.comm.costs import CollectiveCost, bottleneck_bw, path_latency
from pipesim.comm.rings import RingAlgorithms
from topologies.graph import efficiency
from topologies.routing import EdgeKey

__all__ = ["GroupAlgorithms"]


class GroupAlgorithms(RingAlgorithms):
    """Double binary tree, NVLink SHARP, hierarchical rail rings and direct all-to-all."""

    @staticmethod
    def _double_binary_tree(m: int) -> list[list[tuple[int, int]]]:
        """(parent, child) edges of two complementary binary trees over m servers: a heap-ordered tree and
        its mirror (i -> m-1-i), so a server internal in one tree is (mostly) a leaf in the other."""
        t1 = [((c - 1) // 2, c) for c in range(1, m)]
        t2 = [(m - 1 - p, m - 1 - c) for p, c in t1]
        return [t1, t2]

    def _tree(self, group: tuple[int, ...]) -> CollectiveCost:
        r = self.router
        servers = self._by_server(group)
        m = len(servers)
        # Chain inside each server: every GPU forwards the buffer up (reduce) and down (broadcast).
        chain_bw, chain_hop = math.inf, 0.0
        for loc in sorted({loc for _, loc in servers}):
            names = [f"gpu{i}" for i in loc]
            names = self._order(names[0], names[1:], None)
            loads: dict[EdgeKey, float] = defaultdict(float)
            for a, b in zip(names, names[1:], strict=False):
                for u, v in r.local_path(a, b):
                    loads[(0, u, v)] += 1.0
                for u, v in r.local_path(b, a):
                    loads[(0, u, v)] += 1.0
                chain_hop = max(chain_hop, path_latency(r, ((0, u, v) for u, v in r.local_path(a, b))))
            if loads:
                chain_bw = min(chain_bw, bottleneck_bw(loads, r))
        s_per_byte = 1.0 / chain_bw if chain_bw < math.inf else 0.0
        depth = 0
        net_hop = 0.0
        if m > 1:
            # Between servers: each tree carries half the buffer up and down every parent-child edge, spread
            # over the rails of the GPUs the server has in the group.
            net: dict[EdgeKey, float] = defaultdict(float)
            rails_of = [sorted({r.nic_of(f"gpu{i}") for i in loc}) for _, loc in servers]
            for tree in self._double_binary_tree(m):
                by_rails: dict[tuple[int, ...], list[tuple[int, int]]] = defaultdict(list)
                for p, c in tree:
                    by_rails[tuple(rails_of[c])].append((servers[p][0], servers[c][0]))
                for rails, hops in sorted(by_rails.items()):
                    part, h = self._fabric_loads(
                        hops, {nic: 0.5 / len(rails) for nic in rails}, both_ways=True
                    )
                    net_hop = max(net_hop, h)
                    for key, load in part.items():
                        net[key] += load
            s_per_byte = max(s_per_byte, 1.0 / bottleneck_bw(net, r))
            depth = math.ceil(math.log2(m + 1))
        k = max(len(loc) for _, loc in servers)
        latency = self.base_latency_s + 2 * ((k - 1) * chain_hop + depth * net_hop)
        return CollectiveCost("tree", latency, s_per_byte, 1.0 / s_per_byte)

    # nvls ---------------------------------------------------------------------------------------------------
    def _nvls(self, group: tuple[int, ...]) -> CollectiveCost | None:
        r = self.router
        servers = self._by_server(group)
        sw = r.nvswitch
        if len(servers) != 1 or sw is None or not r.local.nodes[sw].get("in_switch_reduction", False):
            return None
        n = len(group)
        eff = efficiency(self.graph, "nvls")
        bw = min(r.line_Bps((0, f"gpu{i}", sw)) * eff for i in servers[0][1])
        hop = 2 * r.latency_s((0, "gpu0", sw))
        return CollectiveCost("nvls", self.base_latency_s + 2 * hop, (n + 1) / n / bw, bw)

    # hierarchical -------------------------------------------------------------------------------------------
    def _rail_rings_bw(self, servers: list[tuple[int, tuple[int, ...]]]) -> tuple[float, float]:
        """Bus bandwidth and hop latency of k concurrent rings across servers, ring i joining local GPU i
        of every server (all servers hold the same number k of group GPUs)."""
        r = self.router
        k, m = len(servers[0][1]), len(servers)
        intra_bw, intra_hop = math.inf, 0.0
        for loc in sorted({loc for _, loc in servers}):
            # Inside a server, ring i leaves GPU loc[i] for its NIC and arrives from that NIC.
            part: dict[EdgeKey, float] = defaultdict(float)
            for i in range(k):
                g = f"gpu{loc[i]}"
                lpath = r.local_path(g, r.local_nics[r.nic_of(g)])
                intra_hop = max(intra_hop, sum(r.latency_s((0, u, v)) for u, v in lpath))
                for u, v in lpath:
                    part[(0, u, v)] += 1.0
                    part[(0, v, u)] += 1.0
            intra_bw = min(intra_bw, bottleneck_bw(part, r))
        hops = [(servers[j][0], servers[(j + 1) % m][0]) for j in range(m)]
        if all(loc == servers[0][1] for _, loc in servers):
            weights: dict[int, float] = defaultdict(float)
            for i in range(k):
                weights[r.nic_of(f"gpu{servers[0][1][i]}")] += 1.0
            fabric, fab_hop = self._fabric_loads(hops, dict(weights))
        else:  # rails differ per server: walk every ring
            fabric, fab_hop = defaultdict(float), 0.0
            for i in range(k):
                for j, (sa, sb) in enumerate(hops):
                    nic = r.nic_of(f"gpu{servers[(j + 1) % m][1][i]}")
                    path = r.fabric_path(sa, nic, sb, nic)
                    fab_hop = max(fab_hop, path_latency(r, path))
                    for key in path:
                        fabric[key] += 1.0
        return min(intra_bw, bottleneck_bw(fabric, r)), 2 * intra_hop + fab_hop

    def _hierarchical(self, op: str, group: tuple[int, ...]) -> CollectiveCost | None:
        servers = self._by_server(group)
        m = len(servers)
        k = len(servers[0][1])
        if m < 2 or k < 2 or any(len(loc) != k for _, loc in servers):
            return None
        intra = [self._intra_ring(loc) for _, loc in servers]
        intra_bw = min(bw for bw, _ in intra)
        intra_hop = max(hop for _, hop in intra)
        rail_bw, rail_hop = self._rail_rings_bw(servers)
        rs_ag = (k - 1) / k / intra_bw  # intra reduce-scatter or all-gather of the whole buffer
        if op == "all-reduce":
            spb = 2 * rs_ag + 2 * (m - 1) / m / k / rail_bw
            steps_intra, steps_rail = 2 * (k - 1), 2 * (m - 1)
        else:  # all-gather / reduce-scatter
            spb = rs_ag + (m - 1) / m / k / rail_bw
            steps_intra, steps_rail = k - 1, m - 1
        lat = self.base_latency_s + steps_intra * intra_hop + steps_rail * rail_hop
        return CollectiveCost("hierarchical", lat, spb, min(intra_bw, rail_bw))

    # all-to-all ---------------------------------------------------------------------------------------------
    def _all_to_all(self, group: tuple[int, ...]) -> CollectiveCost:
        """Every GPU sends size/n to every other at once. Inside a server the pair paths share links;
        traffic leaving a server goes out through each GPU's own NIC (all-to-all cannot aggregate NICs:
        nccl-tests issue #267) and crosses the spine when the peer's server hangs off another leaf."""
        r = self.router
        n = len(group)
        servers = self._by_server(group)
        loads: dict[EdgeKey, float] = defaultdict(float)  # in units of size/n bytes
        hop = 0.0
        for s, loc in servers:
            names = [f"gpu{i}" for i in loc]
            for a in names:
                for b in names:
                    if a != b:
                        for u, v in r.local_path(a, b):
                            loads[(s, u, v)] += 1.0
                        hop = max(hop, path_latency(r, ((s, u, v) for u, v in r.local_path(a, b))))
        if len(servers) > 1:
            leaf_group: dict[int, str] = {}
            count_by_leaf: dict[str, int] = defaultdict(int)
            for s, loc in servers:
                leaf_group[s] = r.leaf_of(s, max(0, r.nic_of(f"gpu{loc[0]}")))
                leaf_group[s] = leaf_group[s].rsplit("/", 1)[-1]  # same leaf index across rails
                count_by_leaf[leaf_group[s]] += len(loc)
            for s, loc in servers:
                remote = n - len(loc)
                far = n - count_by_leaf[leaf_group[s]]
                for i in loc:
                    nic = r.nic_of(f"gpu{i}")
                    path = r.fabric_path(s, nic, s, nic)  # NIC -> leaf and back: its own port, both ways
                    nic_name = f"node{s}/nic{nic}"
                    leaf = r.leaf_of(s, nic)
                    loads[(-1, nic_name, leaf)] += remote
                    loads[(-1, leaf, nic_name)] += remote
                    for u, v in r.local_path(f"gpu{i}", r.local_nics[nic]):
                        loads[(s, u, v)] += remote
                        loads[(s, v, u)] += remote
                    if far:
                        loads[(-1, leaf, "fabric/spine")] += far
                        loads[(-1, "fabric/spine", leaf)] += far
                    hop = max(hop, 2 * path_latency(r, path))
        bw = bottleneck_bw(loads, r)  # bytes of (size/n) per second
        return CollectiveCost("direct", self.base_latency_s + hop, 1.0 / (n * bw), n * bw)
