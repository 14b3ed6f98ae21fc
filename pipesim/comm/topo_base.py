"""The state every topology algorithm shares: the router, the global-rank -> GPU mapping, validated
groups, their servers, and the fabric loads of server-to-server hops."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import networkx as nx

from pipesim.comm.costs import CollectiveCost, path_latency
from pipesim.errors import InputError
from topologies.errors import TopologyError
from topologies.routing import EdgeKey, Router

__all__ = ["TopologyBase"]


class TopologyBase:
    """Router, rank mapping and caches of a :class:`pipesim.comm.topology.TopologyCommModel`."""

    def __init__(self, graph: nx.Graph, gpus: Sequence[str] | None = None) -> None:
        self.router = Router(graph)
        self.graph = graph
        order = list(self.router.gpus if gpus is None else gpus)
        index = {name: i for i, name in enumerate(self.router.gpus)}
        missing = [n for n in order if n not in index]
        if missing:
            raise TopologyError(
                f"GPU {missing[0]!r} does not exist in topology {graph.graph.get('name')}; "
                f"valid: {self.router.gpus[0]} .. {self.router.gpus[-1]}"
            )
        if len(set(order)) != len(order):
            dup = next(n for n in order if order.count(n) > 1)
            raise TopologyError(f"GPU {dup!r} is listed twice; each rank needs its own GPU")
        self.gpus = order
        self._phys = [index[n] for n in order]  # global rank -> physical GPU number in the graph
        self.base_latency_s = float(graph.graph.get("base_latency_s", 0.0))
        self._costs: dict[tuple[str, str, tuple[int, ...]], CollectiveCost | None] = {}
        self._groups: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._options: dict[tuple[str, tuple[int, ...]], list[CollectiveCost]] = {}
        self._intra_cache: dict[tuple[int, ...], tuple[float, float]] = {}
        self._order_cache: dict[tuple[str, tuple[str, ...], str | None], list[str]] = {}
        self._pattern_cache: dict[
            tuple[tuple[int, ...], tuple[int, ...], int], tuple[dict[EdgeKey, float], float]
        ] = {}

    # ---- group handling ----------------------------------------------------------------------------------
    def _group(self, ranks: Sequence[int]) -> tuple[int, ...]:
        """Physical GPU numbers of ``ranks``, validated once per distinct group."""
        key = tuple(ranks)
        hit = self._groups.get(key)
        if hit is not None:
            return hit
        n = len(self.gpus)
        out = []
        for r in key:
            if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < n:
                raise InputError(f"rank {r!r} does not exist: the model has {n} GPUs (ranks 0-{n - 1})")
            out.append(self._phys[r])
        if len(set(out)) != len(out):
            raise InputError(f"group {list(key)[:8]}... names a rank twice")
        group = tuple(out)
        self._groups[key] = group
        return group

    def group_key(self, ranks: Sequence[int]) -> tuple[object, ...]:
        """A key equal for groups whose collectives cost alike: a group inside one server is keyed by its local
        GPUs, since every server is a copy of one template (:class:`topologies.routing.Router` reads every
        in-server link and path from server 0); any other group by its physical GPUs."""
        group = self._group(ranks)
        per = self.router.gpus_per_node
        base = group[0] // per * per
        if all(0 <= g - base < per for g in group):
            return ("server", *(g - base for g in group))
        return ("gpus", *group)

    def _by_server(self, group: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
        """Servers in order of first appearance with their local GPU indices (sorted)."""
        per = self.router.gpus_per_node
        servers: dict[int, list[int]] = {}
        for g in group:
            servers.setdefault(g // per, []).append(g % per)
        return [(s, tuple(sorted(loc))) for s, loc in servers.items()]

    def _fabric_loads(
        self, hops: Sequence[tuple[int, int]], weights: dict[int, float], both_ways: bool = False
    ) -> tuple[dict[EdgeKey, float], float]:
        """Fabric loads of server-to-server hops ``(s, s_next)``, each sending ``weights[nic]`` flows on
        every rail ``nic`` (NIC j -> NIC j). On rail-optimized fabrics rails share no link, so only one rail
        per distinct weight is walked: the bottleneck is the same. Returns (loads, slowest hop latency)."""
        r = self.router
        if r.rails_disjoint:
            reps: dict[float, int] = {}
            for nic, w in sorted(weights.items()):
                reps.setdefault(w, nic)
            weights = {nic: w for w, nic in reps.items()}
        loads: dict[EdgeKey, float] = defaultdict(float)
        hop = 0.0
        for nic, w in weights.items():
            for s, t in hops:
                path = r.fabric_path(s, nic, t, nic)
                for key in path:
                    loads[key] += w
                if both_ways:
                    for _, u, v in path:
                        loads[(-1, v, u)] += w
            if hops:
                hop = max(hop, path_latency(r, r.fabric_path(hops[0][0], nic, hops[0][1], nic)))
        return loads, hop

    def _p2p(self, a: int, b: int) -> CollectiveCost:
        path = self.router.gpu_path(a, b)
        bw = min(self.router.capacity_Bps(k) for k in path)
        lat = self.base_latency_s + path_latency(self.router, path)
        return CollectiveCost("direct", lat, 1.0 / bw, bw)
