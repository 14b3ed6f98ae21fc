"""NCCL-style rings on a topology graph: rings inside a server (greedy Hamiltonian cycles on direct
meshes, as NCCL's ring search), and rings across servers, one channel per rail."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence

from pipesim.comm.base import bus_factor
from pipesim.comm.costs import MAX_CYCLES, MAX_RINGS, CollectiveCost, bottleneck_bw
from pipesim.comm.topo_base import TopologyBase
from topologies.routing import EdgeKey

__all__ = ["RingAlgorithms"]


class RingAlgorithms(TopologyBase):
    """The ring algorithm (see :mod:`pipesim.comm.topology` for the model)."""

    # ring ---------------------------------------------------------------------------------------------------
    def _ring(self, op: str, group: tuple[int, ...]) -> CollectiveCost:
        """Ring: bytes per GPU = size x bus factor over the rings' bottleneck. Latency as NCCL's tuner
        counts it (NVIDIA/nccl src/graph/tuning.cc): base + intra-server steps x intra hop latency +
        inter-server steps x network hop latency, with 2(n-1) steps for all-reduce (n-1 otherwise) of which
        2m (all-reduce) or m-1 cross servers when the ring spans m > 1 servers."""
        n = len(group)
        m = len(self._by_server(group))
        bw, intra_hop, inter_hop = self._ring_bw(group)
        steps = 2 * (n - 1) if op == "all-reduce" else n - 1
        inter_steps = 0 if m == 1 else min(steps, 2 * m if op == "all-reduce" else m - 1)
        lat = self.base_latency_s + (steps - inter_steps) * intra_hop + inter_steps * inter_hop
        return CollectiveCost("ring", lat, bus_factor(op, n) / bw, bw)

    def _ring_bw(self, group: tuple[int, ...]) -> tuple[float, float, float]:
        """(bus bandwidth B/s, intra-server hop latency s, inter-server hop latency s) of NCCL's rings."""
        servers = self._by_server(group)
        if len(servers) == 1:
            bw, hop = self._intra_ring(servers[0][1])
            return bw, hop, 0.0
        return self._multi_server_ring(servers)

    def _intra_ring(self, local: tuple[int, ...]) -> tuple[float, float]:
        """Rings inside one server over local GPUs ``local`` (cached per set; every server is a copy)."""
        hit = self._intra_cache.get(local)
        if hit is not None:
            return hit
        r = self.router
        names = [f"gpu{i}" for i in local]

        def ring_loads(order: Sequence[str]) -> dict[EdgeKey, float]:
            loads: dict[EdgeKey, float] = defaultdict(float)
            for a, b in zip(order, list(order[1:]) + [order[0]], strict=True):
                for u, v in r.local_path(a, b):
                    loads[(0, u, v)] += 1.0
            return loads

        cycles = self._direct_cycles(names) if r.direct_gpu_links() else []
        if not cycles:
            cycles = [names]
        candidates = [ring_loads(c) for c in cycles]
        chosen = self._greedy_rings(candidates) if len(cycles) > 1 else [0]
        total: dict[EdgeKey, float] = defaultdict(float)
        for i in chosen:
            for k, v in candidates[i].items():
                total[k] += v / len(chosen)
        bw = bottleneck_bw(total, r)
        hop = max(
            sum(r.latency_s((0, u, v)) for u, v in r.local_path(a, b))
            for i in chosen
            for a, b in zip(cycles[i], cycles[i][1:] + cycles[i][:1], strict=True)
        )
        self._intra_cache[local] = (bw, hop)
        return bw, hop

    def _direct_cycles(self, names: list[str]) -> list[list[str]]:
        """Hamiltonian cycles over ``names`` using only direct GPU-GPU links, both directions (bounded)."""
        if len(names) == 2:
            return [names] if self.router.local.has_edge(names[0], names[1]) else []
        adj = {a: sorted(b for b in self.router.local[a] if b in names) for a in names}
        start = names[0]
        out: list[list[str]] = []

        def dfs(path: list[str], seen: set[str]) -> None:
            if len(out) >= MAX_CYCLES:
                return
            if len(path) == len(names):
                if start in adj[path[-1]]:
                    out.append(list(path))
                return
            for nb in adj[path[-1]]:
                if nb not in seen:
                    seen.add(nb)
                    path.append(nb)
                    dfs(path, seen)
                    path.pop()
                    seen.discard(nb)

        dfs([start], {start})
        return out

    def _greedy_rings(self, candidates: list[dict[EdgeKey, float]]) -> list[int]:
        """Indices of candidate rings picked one at a time, each time the one giving the highest combined
        bus bandwidth (every ring carries an equal share), keeping the best prefix: NCCL's search for
        parallel rings."""
        r = self.router
        chosen: list[int] = []
        counts: dict[EdgeKey, float] = defaultdict(float)
        best_prefix, best_total = 0, 0.0
        while len(chosen) < MAX_RINGS:
            t = len(chosen) + 1
            best_bw, best_i = -1.0, -1
            for i, cand in enumerate(candidates):
                keys = set(counts) | set(cand)
                bw = min(r.capacity_Bps(k) * t / (counts.get(k, 0.0) + cand.get(k, 0.0)) for k in keys)
                if bw > best_bw * (1 + 1e-9):
                    best_bw, best_i = bw, i
            chosen.append(best_i)
            for k, v in candidates[best_i].items():
                counts[k] += v
            if best_bw > best_total * (1 + 1e-9):
                best_prefix, best_total = len(chosen), best_bw
        return chosen[:best_prefix]

    def _order(self, start: str, middle: Sequence[str], end: str | None) -> list[str]:
        """Visit order start, middle..., end. On servers with direct GPU links (NVLink mesh, bridges), the
        permutation of ``middle`` with the widest narrowest hop (then fewest device hops) is chosen, as
        NCCL's ring search prefers NVLink; otherwise ``middle`` keeps its order."""
        r = self.router
        if not r.direct_gpu_links() or len(middle) < 2 or len(middle) > 7:
            return [start, *middle] + ([end] if end else [])
        key = (start, tuple(middle), end)
        hit = self._order_cache.get(key)
        if hit is not None:
            return hit

        def hop(a: str, b: str) -> tuple[float, int]:
            p = r.local_path(a, b)
            return min(r.capacity_Bps((0, u, v)) for u, v in p), len(p)

        best: tuple[float, int] = (-1.0, 0)
        best_order: list[str] = [start, *middle]
        for perm in itertools.permutations(middle):
            order = [start, *perm] + ([end] if end else [])
            hops = [hop(a, b) for a, b in zip(order, order[1:], strict=False)]
            score = (min(h[0] for h in hops), -sum(h[1] for h in hops))
            if score > best:
                best, best_order = score, order
        self._order_cache[key] = best_order
        return best_order

    def _server_pattern(
        self, local: tuple[int, ...], local_next: tuple[int, ...], channels: int
    ) -> tuple[dict[EdgeKey, float], float]:
        """Loads (flows per channel-average) on one server's links for ``channels`` rings that enter through
        the NIC of the entry GPU's rail and leave through the NIC of the next server's entry rail."""
        key = (local, local_next, channels)
        hit = self._pattern_cache.get(key)
        if hit is not None:
            return hit
        r = self.router
        k, k_next = len(local), len(local_next)
        loads: dict[EdgeKey, float] = defaultdict(float)
        hop = 0.0
        w = 1.0 / channels
        for c in range(channels):
            pos = c % k
            e = f"gpu{local[pos]}"
            nic_in = r.local_nics[r.nic_of(e)]
            nic_out = r.local_nics[r.nic_of(f"gpu{local_next[c % k_next]}")]
            rot = [f"gpu{local[(pos + i) % k]}" for i in range(k)]
            if k == 1:
                order = rot
            else:
                x = min(rot[1:], key=lambda g: (r.local_hops(g, nic_out), rot.index(g)))
                order = self._order(e, [g for g in rot[1:] if g != x], x)
            flows = [tuple((v, u) for u, v in reversed(r.local_path(e, nic_in)))]
            flows += [r.local_path(a, b) for a, b in zip(order, order[1:], strict=False)]
            flows.append(r.path_to_nic(order[-1], r.nic_of(f"gpu{local_next[c % k_next]}")))
            for f in flows:
                hop = max(hop, sum(r.latency_s((0, u, v)) for u, v in f))
                for u, v in f:
                    loads[(0, u, v)] += w
        self._pattern_cache[key] = (loads, hop)
        return loads, hop

    def _multi_server_ring(self, servers: list[tuple[int, tuple[int, ...]]]) -> tuple[float, float, float]:
        r = self.router
        m = len(servers)
        channels = max(len(loc) for _, loc in servers)
        bw, intra_hop = math.inf, 0.0
        seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        for j in range(m):
            sig = (servers[j][1], servers[(j + 1) % m][1])
            if sig in seen:
                continue
            seen.add(sig)
            loads, hop = self._server_pattern(sig[0], sig[1], channels)
            bw = min(bw, bottleneck_bw(loads, r))
            intra_hop = max(intra_hop, hop)
        # Channel c crosses from each server to the next on the rail of the next server's entry GPU.
        weights: dict[int, float] = defaultdict(float)
        homogeneous = all(loc == servers[0][1] for _, loc in servers)
        if homogeneous:
            loc0 = servers[0][1]
            for c in range(channels):
                weights[r.nic_of(f"gpu{loc0[c % len(loc0)]}")] += 1.0 / channels
            hops = [(servers[j][0], servers[(j + 1) % m][0]) for j in range(m)]
            fabric, fab_hop = self._fabric_loads(hops, weights)
        else:
            fabric = defaultdict(float)
            fab_hop = 0.0
            for j in range(m):
                s_next, loc_next = servers[(j + 1) % m]
                per: dict[int, float] = defaultdict(float)
                for c in range(channels):
                    per[r.nic_of(f"gpu{loc_next[c % len(loc_next)]}")] += 1.0 / channels
                part, h = self._fabric_loads([(servers[j][0], s_next)], per)
                fab_hop = max(fab_hop, h)
                for key, v in part.items():
                    fabric[key] += v
        bw = min(bw, bottleneck_bw(fabric, r))
        return bw, intra_hop, intra_hop + fab_hop

    # tree ---------------------------------------------------------------------------------------------------
