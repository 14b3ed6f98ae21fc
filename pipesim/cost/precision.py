"""Bytes per element of each training precision, and the rescaling of an operator list (built with 2-byte
tensors, :mod:`pipesim.cost.ops`) to them."""

from __future__ import annotations

from dataclasses import replace

from pipesim.cost.ops import ACT_BYTES, LayerOps, Op

__all__ = ["ELEMENT_BYTES", "at_precision"]

# Bytes per element by precision: (GEMM operands, activations). fp8 as in Transformer Engine: GEMM inputs and
# weights are cast to 1-byte fp8, GEMM outputs and every other kernel stay in 2-byte bf16; fp4 (NVFP4: 4-bit
# E2M1 values and one 1-byte E4M3 scale per 16-element block, TE's NVFP4BlockScaling) 0.5 + 1/16 bytes per
# operand element; tf32 / fp32 keep every tensor in 4-byte fp32 (TF32 is a tensor-core mode over fp32
# storage). The operator lists are built with 2-byte tensors and rescaled by :func:`at_precision`.
ELEMENT_BYTES: dict[str, tuple[float, int]] = {
    "bf16": (2, 2),
    "fp16": (2, 2),
    "fp8": (1, 2),
    "fp4": (0.5 + 1 / 16, 2),
    "tf32": (4, 4),
    "fp32": (4, 4),
}


def at_precision(ops: LayerOps, precision: str) -> LayerOps:
    """``ops`` (built with 2-byte tensors) with the bytes of ``precision`` (:data:`ELEMENT_BYTES`): a GEMM moves
    operand bytes x (MK + KN) + activation bytes x MN per batch; every other kernel and every collective
    scales with the activation bytes (1-byte dropout masks included: an approximation for tf32 / fp32).
    bf16 and fp16 return ``ops`` unchanged."""
    operand, act = ELEMENT_BYTES[precision]
    if (operand, act) == (ACT_BYTES, ACT_BYTES):
        return ops
    k = act / ACT_BYTES

    def conv(op: Op) -> Op:
        if op.kind == "gemm" and op.shape is not None:
            m, n, kk = op.shape
            hbm = float((operand * (m * kk + kk * n) + act * m * n) * op.batch)
            return replace(op, hbm_bytes=hbm)
        return replace(op, hbm_bytes=op.hbm_bytes * k, comm_bytes=op.comm_bytes * k)

    return LayerOps(tuple(map(conv, ops.forward)), tuple(map(conv, ops.backward)))
