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

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import networkx as nx

from pipesim.comm.algorithms import GroupAlgorithms
from pipesim.comm.base import COLLECTIVES, bus_factor
from pipesim.comm.costs import ALGORITHMS, CollectiveCost, SweepRow, bottleneck_bw, size_sweep
from pipesim.errors import InputError
from topologies.routing import EdgeKey

__all__ = [
    "ALGORITHMS",
    "CollectiveCost",
    "SweepRow",
    "TopologyCommModel",
    "size_sweep",
]


class TopologyCommModel(GroupAlgorithms):
    """:class:`pipesim.comm.base.CommModel` on a topology graph. ``gpus`` lists GPU node names in global-rank
    order (rank i runs on ``gpus[i]``); by default all GPUs of the graph in server-major order."""

    @classmethod
    def for_cluster(cls, graph: nx.Graph, world_size: int) -> TopologyCommModel:
        """Model for ranks 0..world_size-1 on the GPUs :func:`pipesim.specs.placement.rank_to_gpu` assigns
        them; raises :class:`TopologyError` if the cluster has fewer GPUs than the layout needs."""
        from pipesim.specs.placement import rank_to_gpu

        if world_size < 1:
            raise InputError(f"world_size={world_size} must be >= 1")
        return cls(graph, rank_to_gpu(graph, world_size))

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
            here = ", ".join(["auto", *self.algorithms(op, ranks)])
            raise InputError(
                f"algorithm {algo} is not available for {op} on these {len(group)} GPUs of "
                f"{self.graph.graph.get('name')}; valid here: {here}"
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
        return bottleneck_bw(loads, self.router)

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
