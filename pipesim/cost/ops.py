"""The operator record every cost module shares: :class:`Op`, :class:`LayerOps` and their constructors.

A GEMM of shape (M, N, K) costs 2MNK FLOPs and moves at least 2(MK + KN + MN) bytes (2-byte tensors; other
precisions are rescaled by :func:`pipesim.cost.precision.at_precision`). Batched and grouped GEMMs carry
``batch``: the same shape ``batch`` times (attention heads, or the local experts of a grouped GEMM).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "Op",
    "LayerOps",
    "ACT_BYTES",
    "GROUPS",
    "gemm",
    "elementwise",
    "comm",
    "backward_gemms",
    "tp_in",
    "tp_out",
]

ACT_BYTES = 2  # bf16 / fp16 activations
# Process groups a communication op can run over (see pipesim.specs.placement.RankGrid).
GROUPS = ("tp", "cp", "ep", "etp")


@dataclass(frozen=True)
class Op:
    """One operator as one GPU runs it on one microbatch.

    ``kind``: gemm | attention | elementwise | comm. ``phase``: F (forward), I (backward for inputs), W
    (backward for weights). ``flops`` are executed FLOPs; ``hbm_bytes`` the bytes read and written in HBM
    (a lower bound for GEMMs). GEMMs carry ``shape`` = (M, N, K) and ``batch`` (batched GEMMs of the unfused
    attention, grouped expert GEMMs). Communication ops carry ``collective`` (a
    :data:`pipesim.comm.base.COLLECTIVES` name, or ``ring-p2p``: ``batch`` rounds of every member sending
    ``comm_bytes`` to its ring successor at once), ``comm_bytes`` (the nccl-tests buffer size) and ``group``
    (tp, cp, ep or etp). ``recompute`` marks a forward operator re-run in the backward pass. ``hidden_by``
    names the operator a collective runs concurrently with (only the excess is exposed). ``vector_flops``:
    nominal arithmetic of a memory-bound kernel (norm, activation, softmax, ...), which places it on the
    roofline; it is not part of ``flops`` (the matmul FLOPs the papers count) and does not enter its time.
    """

    name: str
    kind: str
    phase: str
    flops: float = 0.0
    hbm_bytes: float = 0.0
    shape: tuple[int, int, int] | None = None
    batch: int = 1
    collective: str | None = None
    comm_bytes: float = 0.0
    recompute: bool = False
    hidden_by: str | None = None
    vector_flops: float = 0.0
    group: str = "tp"

    def as_recompute(self) -> Op:
        """This forward op re-run during the backward (phase I, flagged recompute, never overlapped)."""
        return replace(self, name="recompute." + self.name, phase="I", recompute=True, hidden_by=None)


@dataclass(frozen=True)
class LayerOps:
    """The operators of one transformer layer: ``forward``, and ``backward`` = recompute ops (if any), the
    input-gradient ops (phase I) and the weight-gradient GEMMs (phase W)."""

    forward: tuple[Op, ...]
    backward: tuple[Op, ...]

    @property
    def all(self) -> tuple[Op, ...]:
        """Forward then backward operators."""
        return self.forward + self.backward


def gemm(name: str, phase: str, m: int, n: int, k: int, batch: int = 1) -> Op:
    """A (batched) GEMM: 2 M N K x batch FLOPs, 2 (MK + KN + MN) x batch bytes."""
    flops = 2.0 * m * n * k * batch
    hbm = ACT_BYTES * (m * k + k * n + m * n) * batch
    return Op(name, "gemm", phase, flops, float(hbm), (m, n, k), batch)


def elementwise(
    name: str, phase: str, elements: float, bytes_per_element: float, flops_per_element: float = 0.0
) -> Op:
    """A memory-bound kernel over ``elements`` elements."""
    return Op(
        name,
        "elementwise",
        phase,
        0.0,
        elements * bytes_per_element,
        vector_flops=elements * flops_per_element,
    )


def comm(
    name: str,
    phase: str,
    collective: str,
    size_bytes: float,
    hidden_by: str | None = None,
    group: str = "tp",
    rounds: int = 1,
) -> Op:
    """A communication op over ``group`` (``rounds``: ring-p2p rounds)."""
    return Op(
        name,
        "comm",
        phase,
        collective=collective,
        comm_bytes=size_bytes,
        hidden_by=hidden_by,
        group=group,
        batch=rounds,
    )


def tp_in(
    name: str, phase: str, t: int, sp: bool, tokens: int, h: int, hidden_by: str | None = None
) -> list[Op]:
    """The collective entering a column-parallel region of ``tokens`` x ``h`` activations over ``t`` ranks:
    with sequence parallelism an all-gather of the sequence-sharded input (forward); without it none, the
    forward being the identity (Megatron-LM's f operator, Shoeybi et al. 2019 Section 3; SP: Korthikanti et
    al. 2022 Section 4.2.2)."""
    if t == 1 or not sp:
        return []
    return [comm(name, phase, "all-gather", ACT_BYTES * tokens * h, hidden_by)]


def tp_out(
    name: str, phase: str, t: int, sp: bool, tokens: int, h: int, hidden_by: str | None = None
) -> list[Op]:
    """The collective leaving a row-parallel region: an all-reduce (Megatron-LM's g operator) or, with
    sequence parallelism, a reduce-scatter; none when ``t`` is 1."""
    if t == 1:
        return []
    return [comm(name, phase, "reduce-scatter" if sp else "all-reduce", ACT_BYTES * tokens * h, hidden_by)]


def backward_gemms(op: Op, dx: bool = True) -> tuple[Op | None, Op]:
    """The backward of y = x W for a forward GEMM (M, N, K): dX = dY W^T, shape (M, K, N), phase I (None when
    ``dx`` is False, e.g. for a layer's first GEMM on the embedding), and dW = x^T dY, shape (K, N, M), phase W;
    each costs the forward FLOPs."""
    assert op.shape is not None
    m, n, k = op.shape
    d_in = gemm(op.name + ".dx", "I", m, k, n, op.batch) if dx else None
    return d_in, gemm(op.name + ".dw", "W", k, n, m, op.batch)
