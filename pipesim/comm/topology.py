"""Topology-aware collective times: NCCL-style algorithms evaluated on the links of a cluster graph.

For a group of global ranks the model finds the devices, the paths between them (:mod:`topologies.routing`),
how many flows of the algorithm cross each directed link, and from that the bottleneck bandwidth
``min over links of capacity / flows``. Capacities are line rates times the calibrated NCCL efficiency of
the link kind (``topologies/presets/_calibration.toml``). Time is then a pure alpha-beta formula:

    time = latency_s + size_bytes * s_per_byte

with ``latency_s`` = NCCL's base latency + steps x the slowest hop's path latency, and ``s_per_byte`` =
(bytes each GPU moves per byte of buffer) / bottleneck bandwidth. Both terms are cached per (op, algorithm,
group), so a size sweep or thousands of layouts cost one path analysis per distinct group.

Sizes follow nccl-tests (NVIDIA/nccl-tests doc/PERFORMANCE.md): the whole buffer; algbw = size / time and
busbw = algbw x :func:`pipesim.comm.base.bus_factor`.

Algorithms (per op, see :data:`ALGORITHMS`):

* ``ring``: NCCL rings. Inside one server, rings follow the links (on direct-NVLink meshes such as DGX-1 a
  greedy set of Hamiltonian cycles, as NCCL's ring search does); across servers, C = GPUs-per-server channels,
  channel c entering each server through the NIC of rail c and leaving through the same rail, so every NIC
  carries one channel. Ring all-reduce moves 2(n-1)/n x size per GPU over 2(n-1) steps (Thakur,
  Rabenseifner & Gropp 2005; Patarasuk & Yuan 2009).
* ``tree``: all-reduce as NCCL's double binary tree between servers (Sanders, Speck & Traeff 2009; NCCL 2.4)
  with a chain inside each server; latency grows with log2(servers). Each tree carries half the buffer,
  reduce up and broadcast down, pipelined.
* ``hierarchical``: reduce-scatter inside each server, all-reduce (or all-gather / reduce-scatter) across
  servers on parallel per-rail rings over size / k, all-gather inside each server.
* ``nvls``: NVLink SHARP in-switch all-reduce (NVSwitch gen 3+): each GPU sends and receives
  size x (n+1)/n bytes through the switch, so busbw = 2(n-1)/(n+1) x the NVLS link rate and can exceed
  the wire rate (nccl-tests issues #153, #212, #312).
* ``direct``: all-to-all (every pair at once, one NIC per GPU: nccl-tests issue #267) and send/recv.
* ``auto``: the fastest at the given size, as NCCL's tuner picks.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import networkx as nx

from pipesim.comm.base import COLLECTIVES, bus_factor
from pipesim.errors import InputError
from topologies.errors import TopologyError
from topologies.graph import efficiency
from topologies.routing import EdgeKey, Router

__all__ = [
    "ALGORITHMS",
    "CollectiveCost",
    "SweepRow",
    "TopologyCommModel",
    "size_sweep",
]

ALGORITHMS: dict[str, tuple[str, ...]] = {
    "all-reduce": ("ring", "tree", "hierarchical", "nvls"),
    "all-gather": ("ring", "hierarchical"),
    "reduce-scatter": ("ring", "hierarchical"),
    "all-to-all": ("direct",),
    "broadcast": ("ring",),
    "send-recv": ("direct",),
}
MAX_RINGS = 16
MAX_CYCLES = 4096


@dataclass(frozen=True)
class CollectiveCost:
    """Alpha-beta cost of one algorithm on one group: ``time_s(size) = latency_s + size * s_per_byte``;
    ``bw_Bps`` is the bottleneck bandwidth the algorithm sees (for reporting)."""

    algo: str
    latency_s: float
    s_per_byte: float
    bw_Bps: float

    def time_s(self, size_bytes: float) -> float:
        """Seconds for a buffer of ``size_bytes``."""
        return self.latency_s + size_bytes * self.s_per_byte


@dataclass(frozen=True)
class SweepRow:
    """One message size of an nccl-tests-style sweep (GB/s = 1e9 B/s)."""

    size_bytes: int
    time_s: float
    algbw_GBps: float
    busbw_GBps: float
    algo: str


def _bw(loads: dict[EdgeKey, float], router: Router) -> float:
    """Bottleneck bandwidth: min over links of capacity / load (load in flows)."""
    best = math.inf
    for key, load in loads.items():
        if load > 0:
            best = min(best, router.capacity_Bps(key) / load)
    return best


def _path_latency(router: Router, path: Iterable[EdgeKey]) -> float:
    return sum(router.latency_s(k) for k in path)


class TopologyCommModel:
    """:class:`pipesim.comm.base.CommModel` on a topology graph. ``gpus`` lists GPU node names in global-rank
    order (rank i runs on ``gpus[i]``); by default all GPUs of the graph in server-major order."""

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

    @classmethod
    def for_cluster(cls, graph: nx.Graph, world_size: int) -> TopologyCommModel:
        """Model for ranks 0..world_size-1 on the GPUs :func:`pipesim.specs.placement.rank_to_gpu` assigns
        them; raises :class:`TopologyError` if the cluster has fewer GPUs than the layout needs."""
        from pipesim.specs.placement import rank_to_gpu

        if world_size < 1:
            raise InputError(f"world_size={world_size} must be >= 1")
        return cls(graph, rank_to_gpu(graph, world_size))

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

    def _by_server(self, group: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
        """Servers in order of first appearance with their local GPU indices (sorted)."""
        per = self.router.gpus_per_node
        servers: dict[int, list[int]] = {}
        for g in group:
            servers.setdefault(g // per, []).append(g % per)
        return [(s, tuple(sorted(loc))) for s, loc in servers.items()]

    # ---- public API --------------------------------------------------------------------------------------
    def algorithms(self, op: str, ranks: Sequence[int]) -> dict[str, CollectiveCost]:
        """Cost of every algorithm the hardware supports for ``op`` on ``ranks``."""
        if op not in ALGORITHMS:
            raise InputError(f"unknown collective {op!r}; valid: {', '.join(ALGORITHMS)}")
        out = {}
        for algo in ALGORITHMS[op]:
            c = self.cost(op, ranks, algo, _check=False)
            if c is not None:
                out[algo] = c
        return out

    def cost(self, op: str, ranks: Sequence[int], algo: str, _check: bool = True) -> CollectiveCost | None:
        """The cached alpha-beta cost of ``algo`` for ``op`` on ``ranks`` (None if the hardware lacks it,
        e.g. nvls without NVSwitch reduction). ``auto`` is resolved by :meth:`best`, not here."""
        if op not in ALGORITHMS:
            raise InputError(f"unknown collective {op!r}; valid: {', '.join(ALGORITHMS)}")
        if algo not in ALGORITHMS[op]:
            raise InputError(
                f"algorithm {algo!r} does not apply to {op}; valid: auto, {', '.join(ALGORITHMS[op])}"
            )
        group = self._group(ranks)
        key = (op, algo, group)
        if key not in self._costs:
            self._costs[key] = self._compute(op, algo, group)
        c = self._costs[key]
        if c is None and _check:
            raise InputError(
                f"algorithm {algo} is not available for {op} on these {len(group)} GPUs of {self.graph.graph.get('name')}"
            )
        return c

    def best(self, op: str, size_bytes: float, ranks: Sequence[int], algo: str = "auto") -> CollectiveCost:
        """The cost used for ``size_bytes``: ``algo``'s, or with ``auto`` the fastest available one."""
        if algo != "auto":
            c = self.cost(op, ranks, algo)
            assert c is not None
            return c
        key = (op, tuple(ranks))
        options = self._options.get(key)
        if options is None:
            options = list(self.algorithms(op, ranks).values())
            self._options[key] = options
        return min(options, key=lambda c: (c.time_s(size_bytes), ALGORITHMS[op].index(c.algo)))

    def collective_s(self, op: str, size_bytes: float, ranks: Sequence[int]) -> float:
        """Seconds for collective ``op`` of ``size_bytes`` (nccl-tests convention) over global ``ranks``,
        with the fastest algorithm (NCCL's auto choice)."""
        if op not in COLLECTIVES:
            raise InputError(f"unknown collective {op!r}; valid: {', '.join(COLLECTIVES)}")
        if len(ranks) <= 1 or size_bytes <= 0:
            self._group(ranks)
            return 0.0
        return self.best(op, size_bytes, ranks).time_s(size_bytes)

    def p2p_s(self, size_bytes: float, src: int, dst: int) -> float:
        """Seconds to send ``size_bytes`` from rank ``src`` to rank ``dst`` along their path: base latency +
        path latency + size / bottleneck (one NIC per GPU pair across servers: nccl-tests issue #267)."""
        if src == dst or size_bytes <= 0:
            self._group([src, dst] if src != dst else [src])
            return 0.0
        c = self.cost("send-recv", [src, dst], "direct")
        assert c is not None
        return c.time_s(size_bytes)

    def sweep(
        self, op: str, ranks: Sequence[int], sizes: Iterable[int], algo: str = "auto"
    ) -> list[SweepRow]:
        """nccl-tests-style rows (size, time, algbw, busbw, algorithm) for each size."""
        n = len(ranks)
        if n < 2:
            raise InputError(f"a collective needs at least 2 GPUs, got {n}")
        factor = bus_factor("send-recv" if op == "send-recv" else op, n)
        rows = []
        for size in sizes:
            c = self.best(op, size, ranks, algo)
            t = c.time_s(size)
            algbw = size / t / 1e9 if t > 0 else 0.0
            rows.append(SweepRow(int(size), t, algbw, algbw * factor, c.algo))
        return rows

    def ring_order_bw(self, ranks: Sequence[int]) -> float:
        """Bus bandwidth (B/s) of ONE ring visiting ``ranks`` in the given order, with no reordering and
        one channel: shows what link sharing does to a badly placed ring."""
        group = self._group(ranks)
        loads: dict[EdgeKey, float] = defaultdict(float)
        for a, b in zip(group, group[1:] + group[:1], strict=True):
            for k in self.router.gpu_path(a, b):
                loads[k] += 1.0
        return _bw(loads, self.router)

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
                hop = max(hop, _path_latency(r, r.fabric_path(hops[0][0], nic, hops[0][1], nic)))
        return loads, hop

    # ---- algorithms --------------------------------------------------------------------------------------
    def _compute(self, op: str, algo: str, group: tuple[int, ...]) -> CollectiveCost | None:
        n = len(group)
        if n < 2:
            return CollectiveCost(algo, 0.0, 0.0, math.inf)
        if op == "send-recv":
            return self._p2p(group[0], group[1])
        if op == "all-to-all":
            return self._all_to_all(group)
        if algo == "ring":
            return self._ring(op, group)
        if algo == "tree":
            return self._tree(group)
        if algo == "nvls":
            return self._nvls(group)
        if algo == "hierarchical":
            return self._hierarchical(op, group)
        raise InputError(f"unknown algorithm {algo!r}")

    def _p2p(self, a: int, b: int) -> CollectiveCost:
        path = self.router.gpu_path(a, b)
        bw = min(self.router.capacity_Bps(k) for k in path)
        lat = self.base_latency_s + _path_latency(self.router, path)
        return CollectiveCost("direct", lat, 1.0 / bw, bw)

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
        bw = _bw(total, r)
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
            bw = min(bw, _bw(loads, r))
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
        bw = min(bw, _bw(fabric, r))
        return bw, intra_hop, intra_hop + fab_hop

    # tree ---------------------------------------------------------------------------------------------------
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
                chain_hop = max(chain_hop, _path_latency(r, ((0, u, v) for u, v in r.local_path(a, b))))
            if loads:
                chain_bw = min(chain_bw, _bw(loads, r))
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
            s_per_byte = max(s_per_byte, 1.0 / _bw(net, r))
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
            intra_bw = min(intra_bw, _bw(part, r))
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
                    fab_hop = max(fab_hop, _path_latency(r, path))
                    for key in path:
                        fabric[key] += 1.0
        return min(intra_bw, _bw(fabric, r)), 2 * intra_hop + fab_hop

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
                        hop = max(hop, _path_latency(r, ((s, u, v) for u, v in r.local_path(a, b))))
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
                    hop = max(hop, 2 * _path_latency(r, path))
        bw = _bw(loads, r)  # bytes of (size/n) per second
        return CollectiveCost("direct", self.base_latency_s + hop, 1.0 / (n * bw), n * bw)


def size_sweep(begin: int, end: int, factor: int) -> list[int]:
    """Sizes begin, begin*factor, ... up to end (nccl-tests -b/-e/-f)."""
    if begin > end:
        raise InputError(f"begin size {begin} is larger than end size {end}")
    if factor < 2:
        raise InputError(f"step factor {factor} must be >= 2")
    out, s = [], begin
    while s <= end:
        out.append(s)
        s *= factor
    return out
