"""Paths on cluster graphs, found by structure instead of all-pairs shortest paths.

Every server of a built cluster is a copy of one template, so paths inside a server are searched once on the
template (a few dozen devices) and reused for every server; paths between servers are
``GPU -> NIC`` (template) + ``NIC -> leaf -> spine -> leaf -> NIC`` (fabric, cached per leaf pair) +
``NIC -> GPU`` (template). Data never transits a GPU or a NIC that is not an endpoint (NCCL does not forward
through third GPUs, and NICs are leaves of the PCIe tree).

Edge keys: a link inside server ``s`` is ``(s, u, v)`` with local names (``gpu0``, ``nvswitch``); a fabric
link is ``(-1, u, v)`` with global names. Both are directed (u sends to v).
"""

from __future__ import annotations

import math
from functools import lru_cache

import networkx as nx

from topologies.errors import TopologyError
from topologies.graph import Link, efficiency, gpu_nodes, link

__all__ = ["Router", "EdgeKey"]

EdgeKey = tuple[int, str, str]


class Router:
    """Path and capacity queries on a graph built by :func:`topologies.builders.build_cluster`."""

    def __init__(self, g: nx.Graph) -> None:
        for key in ("nodes", "gpus_per_node", "efficiency"):
            if key not in g.graph:
                raise TopologyError(
                    f"graph attribute {key!r} is missing; build graphs with topologies.build_cluster"
                )
        self.g = g
        self.nodes: int = int(g.graph["nodes"])
        self.gpus_per_node: int = int(g.graph["gpus_per_node"])
        self.gpus: list[str] = gpu_nodes(g)
        if len(self.gpus) != self.nodes * self.gpus_per_node:
            raise TopologyError(
                f"topology has {len(self.gpus)} GPUs, expected nodes x gpus_per_node = "
                f"{self.nodes} x {self.gpus_per_node}"
            )
        # The template: server 0 with the prefix stripped.
        prefix = "node0/"
        self.local: nx.Graph = nx.relabel_nodes(
            g.subgraph(n for n in g if n.startswith(prefix)), lambda n: n[len(prefix) :], copy=True
        )
        self.local_kind: dict[str, str] = {n: str(k) for n, k in self.local.nodes(data="kind")}
        self.local_nics: list[str] = sorted(
            (n for n, k in self.local_kind.items() if k == "nic"), key=lambda n: int(n[3:])
        )
        self.nvswitch: str | None = next((n for n, k in self.local_kind.items() if k == "nvswitch"), None)
        self._local_link: dict[tuple[str, str], Link] = {}
        self._link_memo: dict[tuple[object, ...], Link] = {}
        self._leaf_cache: dict[tuple[int, int], tuple[str, str]] = {}
        self._leaf_path_cache: dict[tuple[str, str], tuple[EdgeKey, ...]] = {}
        self._fabric: nx.Graph | None = None
        self._cap: dict[EdgeKey, float] = {}
        self._lat: dict[EdgeKey, float] = {}
        self.local_path = lru_cache(maxsize=None)(self._local_path)
        self.nic_of = lru_cache(maxsize=None)(self._nic_of)

    # ---- capacities -------------------------------------------------------------------------------------
    def _link_of(self, key: EdgeKey) -> Link:
        s, u, v = key
        if s >= 0:
            lk = self._local_link.get((u, v))
            if lk is None:
                lk = link(self.local, u, v)
                self._local_link[(u, v)] = lk
            return lk
        # Fabric links: thousands of identical edges, so validate each distinct attribute set once.
        try:
            a = self.g.adj[u][v]
        except KeyError:
            raise TopologyError(f"no link between {u} and {v}") from None
        memo = (a.get("kind"), a.get("bandwidth_Bps"), a.get("latency_s"), a.get("count", 1))
        lk = self._link_memo.get(memo)
        if lk is None:
            lk = link(self.g, u, v)
            self._link_memo[memo] = lk
        return lk

    def capacity_Bps(self, key: EdgeKey) -> float:
        """Effective bandwidth of a directed link: line rate x the calibrated efficiency of its kind."""
        k = key if key[0] < 0 else (0, key[1], key[2])
        c = self._cap.get(k)
        if c is None:
            lk = self._link_of(key)
            c = lk.bandwidth_Bps * efficiency(self.g, lk.kind)
            self._cap[k] = c
        return c

    def line_Bps(self, key: EdgeKey) -> float:
        """Line rate of a directed link (B/s per direction)."""
        return self._link_of(key).bandwidth_Bps

    def latency_s(self, key: EdgeKey) -> float:
        """One-way latency of a link."""
        k = key if key[0] < 0 else (0, key[1], key[2])
        lat = self._lat.get(k)
        if lat is None:
            lat = self._link_of(key).latency_s
            self._lat[k] = lat
        return lat

    def kind(self, key: EdgeKey) -> str:
        """Link kind (nvlink, pcie, ...)."""
        return self._link_of(key).kind

    # ---- locations ---------------------------------------------------------------------------------------
    def locate(self, rank: int) -> tuple[int, str]:
        """(server, local GPU name) of global rank ``rank``."""
        return rank // self.gpus_per_node, f"gpu{rank % self.gpus_per_node}"

    # ---- paths inside a server ---------------------------------------------------------------------------
    def _local_path(self, a: str, b: str) -> tuple[tuple[str, str], ...]:
        """Directed local edges from ``a`` to ``b`` inside one server: fewest hops, then the widest
        bottleneck, then the lexicographically smallest; only ``a`` and ``b`` may be GPUs or NICs."""
        if a == b:
            return ()
        blocked = {"gpu", "nic"}
        allowed = [n for n, k in self.local_kind.items() if k not in blocked or n in (a, b)]
        sub = self.local.subgraph(allowed)
        try:
            paths = list(nx.all_shortest_paths(sub, a, b))
        except nx.NetworkXNoPath:
            raise TopologyError(
                f"no path from {a} to {b} inside a server of {self.g.graph.get('name')}"
            ) from None

        def score(p: list[str]) -> tuple[float, list[str]]:
            bw = min(self._link_of((0, u, v)).bandwidth_Bps for u, v in zip(p, p[1:], strict=False))
            return (-bw, p)

        best = min(paths, key=score)
        return tuple(zip(best, best[1:], strict=False))

    def local_hops(self, a: str, b: str) -> float:
        """Hops of :meth:`local_path` from ``a`` to ``b`` inside a server; infinity if there is no path."""
        try:
            return len(self.local_path(a, b))
        except TopologyError:
            return math.inf

    def _nic_of(self, gpu: str) -> int:
        """Index of the NIC closest to local GPU ``gpu``: fewest hops, then the NIC whose index matches the
        GPU's position (GPU i of 8 with 8 NICs -> NIC i, so equally near GPUs spread over their NICs);
        -1 if the server has no NIC."""
        if not self.local_nics:
            return -1
        pos = int(gpu[3:]) * len(self.local_nics) / self.gpus_per_node
        # A NIC behind another tray's PCIe (NVL72-style racks) is out of this GPU's reach: skip it.
        candidates = [
            (hops, abs(i - pos), i)
            for i, nic in enumerate(self.local_nics)
            if (hops := self.local_hops(gpu, nic)) < math.inf
        ]
        if not candidates:
            raise TopologyError(f"{gpu} of {self.g.graph.get('name')} reaches no NIC inside its server")
        return min(candidates)[2]

    @property
    def rails_disjoint(self) -> bool:
        """True on rail-optimized fabrics: NIC j of every server hangs off rail j's own leaves, so traffic of
        different rails shares no fabric link (the spine is reached through per-leaf uplinks)."""
        return self.g.graph.get("fabric") == "rail"

    def direct_gpu_links(self) -> bool:
        """True if some GPUs of a server are joined by direct links (NVLink mesh or bridges)."""
        return any(self.local_kind[u] == "gpu" and self.local_kind[v] == "gpu" for u, v in self.local.edges)

    # ---- paths through the fabric ------------------------------------------------------------------------
    def _nic_leaf(self, server: int, nic_index: int) -> tuple[str, str]:
        """(global NIC name, its leaf switch), cached."""
        key = (server, nic_index)
        hit = self._leaf_cache.get(key)
        if hit is None:
            nic = f"node{server}/nic{nic_index}"
            if nic not in self.g:
                raise TopologyError(f"{nic} does not exist")
            leaf = next((str(nb) for nb in self.g[nic] if self.g.nodes[nb].get("kind") == "switch"), None)
            if leaf is None:
                raise TopologyError(f"{nic} is not connected to the fabric")
            hit = (nic, leaf)
            self._leaf_cache[key] = hit
        return hit

    def leaf_of(self, server: int, nic_index: int) -> str:
        """Leaf switch of NIC ``nic_index`` of ``server``."""
        return self._nic_leaf(server, nic_index)[1]

    def _leaf_path(self, la: str, lb: str) -> tuple[EdgeKey, ...]:
        key = (la, lb)
        hit = self._leaf_path_cache.get(key)
        if hit is None:
            if la == lb:
                hit = ()
            else:
                if self._fabric is None:
                    self._fabric = nx.Graph(
                        self.g.subgraph(n for n, k in self.g.nodes(data="kind") if k == "switch")
                    )
                p = nx.shortest_path(self._fabric, la, lb)
                hit = tuple((-1, u, v) for u, v in zip(p, p[1:], strict=False))
            self._leaf_path_cache[key] = hit
        return hit

    def fabric_path(self, sa: int, nic_a: int, sb: int, nic_b: int) -> tuple[EdgeKey, ...]:
        """Directed fabric links from NIC ``nic_a`` of server ``sa`` to NIC ``nic_b`` of server ``sb``."""
        na, la = self._nic_leaf(sa, nic_a)
        nb, lb = self._nic_leaf(sb, nic_b)
        return ((-1, na, la), *self._leaf_path(la, lb), (-1, lb, nb))

    def gpu_path(self, a: int, b: int) -> tuple[EdgeKey, ...]:
        """Directed links from global rank ``a`` to ``b``. Between servers the data leaves through the NIC
        on the destination GPU's rail (NCCL's PXN routing keeps rail traffic on its rail)."""
        sa, ga = self.locate(a)
        sb, gb = self.locate(b)
        if sa == sb:
            return tuple((sa, u, v) for u, v in self.local_path(ga, gb))
        nic = self.nic_of(gb)
        if nic < 0:
            raise TopologyError(f"server node{sa} has no NIC to reach node{sb}")
        out = tuple((sa, u, v) for u, v in self.path_to_nic(ga, nic))
        back = tuple((sb, v, u) for u, v in reversed(self.path_to_nic(gb, nic)))
        return out + self.fabric_path(sa, nic, sb, nic) + back

    def path_to_nic(self, gpu: str, nic_index: int) -> tuple[tuple[str, str], ...]:
        """Local edges from ``gpu`` to NIC ``nic_index`` of its server. A GPU with no PCIe path to that NIC
        (another tray of an NVL72-style rack) hands its data over NVLink to a GPU next to the NIC, which sends
        it on: NCCL's PXN (PCI x NVLink) routing."""
        nic = self.local_nics[nic_index]
        if self.local_hops(gpu, nic) < math.inf:
            return self.local_path(gpu, nic)
        proxies = [g for g, k in self.local_kind.items() if k == "gpu" and self.nic_of(g) == nic_index]
        if not proxies:
            raise TopologyError(f"no GPU of {self.g.graph.get('name')} reaches {nic} inside its server")
        proxy = min(proxies, key=lambda g: (self.local_hops(gpu, g), int(g[3:])))
        return self.local_path(gpu, proxy) + self.local_path(proxy, nic)
