"""The tensor-parallel collectives of a parallel attention/MLP block (GPT-J, GPT-NeoX, Phi-2:
y = x + attn(norm1(x)) + mlp(norm2(x))).

On one GPU the two branches still run one after the other with the same GEMMs as a sequential block (no
concurrency; the shared norm of GPT-J and Phi-2 is ``norms_per_layer`` = 1 in the shape). What the parallel
form changes is the tensor-parallel communication: "each residual addition with op-sharding requires one
all-reduce in the forward pass and one in the backward pass. By computing the Attention and FFs in parallel,
the results can be reduced locally before performing a single all-reduce" (Black et al., "GPT-NeoX-20B: An
Open-Source Autoregressive Language Model", arXiv:2204.06745, Section 2.1, parallel attention + FF layers;
GPT-NeoX's Megatron-based ``gpt_j_residual``). So the attention's output collective (forward) and the MLP's
input-gradient collective (backward: the two branches' partial input gradients are summed first; a norm's
backward is linear in its output gradient, so with two norms their local backwards are summed before it) are
dropped and the remaining ones carry the sum, same bytes; with sequence parallelism, the attention's output
reduce-scatter and the all-gather of its output gradient likewise, and with a shared norm the MLP's input
all-gather (forward and weight-gradient re-gather: the attention's gathers the same tensor). PaLM's fused
input GEMMs (Chowdhery et al. 2022, Section 2) are a TPU implementation choice, not modelled.
"""

from __future__ import annotations

from pipesim.cost.ops import LayerOps
from pipesim.specs.layout import Layout
from pipesim.specs.model import LayerKind, ModelSpec

__all__ = ["shared_collectives"]

# Names of the collectives a parallel block does without (pipesim.cost.flops.build_layer_ops).
_DROPPED = ("tp.out1", "tp.out1.bwd", "tp.in2.bwd")
_DROPPED_SHARED_NORM = ("tp.ag2", "tp.ag2.dw")


def shared_collectives(ops: LayerOps, model: ModelSpec, layout: Layout, kind: LayerKind) -> LayerOps:
    """``ops`` of one dense layer without the TP collectives a parallel block shares (module docstring);
    unchanged for sequential blocks, tp = 1 and mixture-of-experts layers."""
    if not model.parallel_block or layout.tp == 1 or kind.moe:
        return ops
    drop = set(_DROPPED) | (set(_DROPPED_SHARED_NORM) if model.norms_per_layer == 1 else set())

    def keep(op_name: str) -> bool:
        base = op_name.removeprefix("recompute.")
        return base not in drop

    return LayerOps(
        tuple(op for op in ops.forward if keep(op.name)), tuple(op for op in ops.backward if keep(op.name))
    )
