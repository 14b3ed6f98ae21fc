"""Bytes each pipeline stage communicates per microbatch and per step: the sizes behind the times.

The times come from :func:`pipesim.sim.scenario.stage_costs`; this module reports the buffer sizes of the
same operations (the nccl-tests convention: the size of the buffer one rank passes to the collective), from
the same sources, so a trace can say how much each transfer moved:

* tensor parallelism: the ``comm`` operators of :func:`pipesim.cost.flops.layer_ops` (two all-reduces
  forward and two backward per layer, SC21 Section 3.2; with sequence parallelism reduce-scatters and
  all-gathers, Korthikanti et al. 2022 Section 4.2.2), plus the embedding's and the head's, split by pass;
* pipeline transfers: :func:`pipesim.cost.times.p2p_bytes` per microbatch and stage boundary;
* data parallelism: the stage's gradients, ``stage_params x Layout.grad_reduce_bytes``, plus the tied word
  embedding's gradient on the first and last stage when they sit on different ranks (Megatron-LM's
  embedding all-reduce). ZeRO-3's per-layer gathers are not listed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipesim.cost.flops import LayerOps, embedding_ops, head_ops, layer_ops
from pipesim.cost.memory import stage_params
from pipesim.cost.times import p2p_bytes
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec

__all__ = ["StageTraffic", "stage_traffic"]


@dataclass(frozen=True)
class StageTraffic:
    """Bytes per global stage: TP collectives inside one microbatch's forward and full backward (and the part
    of the backward in its weight-gradient phase W, which a split backward runs apart), the pipeline
    transfer per microbatch across each stage boundary, and the gradient reduction per step."""

    tp_forward_bytes: tuple[float, ...]
    tp_backward_bytes: tuple[float, ...]
    tp_weight_bytes: tuple[float, ...]
    p2p_bytes: tuple[float, ...]
    dp_bytes: tuple[float, ...]
    dp_collective: str


def _comm_bytes(ops: LayerOps) -> tuple[float, float, float]:
    """(forward, backward, backward phase W) bytes of the collectives among ``ops``."""
    fwd = sum(op.comm_bytes for op in ops.forward if op.kind == "comm")
    bwd = sum(op.comm_bytes for op in ops.backward if op.kind == "comm")
    wgt = sum(op.comm_bytes for op in ops.backward if op.kind == "comm" and op.phase == "W")
    return fwd, bwd, wgt


def stage_traffic(model: ModelSpec, layout: Layout, stage_to_rank: Sequence[int]) -> StageTraffic:
    """The bytes of every stage of ``model`` under ``layout`` with the given stage -> rank placement."""
    n = len(stage_to_rank)
    layers = layout.layers_per_stage(model, n)
    layer = _comm_bytes(layer_ops(model, layout))
    emb = _comm_bytes(embedding_ops(model, layout))
    head = _comm_bytes(head_ops(model, layout))
    fwd, bwd, wgt, dp = [], [], [], []
    tied = model.tied_embeddings and n > 1 and stage_to_rank[0] != stage_to_rank[-1]
    grad_b = layout.grad_reduce_bytes
    for s in range(n):
        f, b, w = (layers[s] * x for x in layer)
        for unit, here in ((emb, s == 0), (head, s == n - 1)):
            if here:
                f, b, w = f + unit[0], b + unit[1], w + unit[2]
        fwd.append(f)
        bwd.append(b)
        wgt.append(w)
        grads = stage_params(model, layout, layers[s], s == 0, s == n - 1) * grad_b if layout.dp > 1 else 0.0
        if tied and s in (0, n - 1):  # over the first and last stage's ranks, whatever dp is
            grads += model.vocab_size * model.hidden_size / layout.tp * grad_b
        dp.append(grads)
    size = p2p_bytes(model, layout)
    return StageTraffic(
        tp_forward_bytes=tuple(fwd),
        tp_backward_bytes=tuple(bwd),
        tp_weight_bytes=tuple(wgt),
        p2p_bytes=(size,) * max(n - 1, 0),
        dp_bytes=tuple(dp),
        dp_collective="reduce-scatter" if layout.distributed_optimizer else "all-reduce",
    )
