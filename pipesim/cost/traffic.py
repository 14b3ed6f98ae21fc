"""Bytes each pipeline stage communicates per microbatch and per step: the sizes behind the times.

The times come from :func:`pipesim.sim.scenario.stage_costs`; this module reports the buffer sizes of the
same operations (the nccl-tests convention: the size of the buffer one rank passes to the collective), from
the same sources, so a trace can say how much each transfer moved:

* tensor parallelism: the ``comm`` operators of :func:`pipesim.cost.flops.layer_ops` over the tensor- and
  expert-tensor-parallel groups (two all-reduces forward and two backward per layer, SC21 Section 3.2; with
  sequence parallelism reduce-scatters and all-gathers, Korthikanti et al. 2022 Section 4.2.2), plus the
  embedding's and the head's, split by pass;
* expert parallelism: the token dispatch and combine all-to-alls of each MoE layer (the ``ep`` operators of
  :func:`pipesim.cost.moe_ops.moe_block`: every routed copy of a token, 2 bytes per element, Megatron-Core's
  all-to-all token dispatcher), forward and backward;
* context parallelism: the key/value exchanges of each layer (the ``cp`` operators of
  :func:`pipesim.cost.moe_ops.cp_attention_comm`; a ring exchange counts its cp - 1 rounds, each sending one
  key/value block to the ring successor, Liu et al. 2023 "Ring Attention"; the all-gather variant its
  all-gather and reduce-scatter buffers);
* pipeline transfers: :func:`pipesim.cost.times.p2p_bytes` per microbatch and stage boundary;
* data parallelism: the stage's gradients, ``stage_params x Layout.grad_reduce_bytes`` (dense ones over the
  data x context-parallel group, routed-expert ones over the expert-data-parallel group), plus the tied word
  embedding's gradient on the first and last stage when they sit on different ranks (Megatron-LM's
  embedding all-reduce). ZeRO-3's per-layer gathers are not listed here.

A stage counts each layer kind's bytes times its layers in the stage (first-k-dense and interleaved MoE
layers), and the last stage each multi-token-prediction module as one more layer of the last layer's kind
and one more head plus its projection's collectives, as :class:`pipesim.cost.stages.StageCostModel` times them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipesim.cost.end_ops import embedding_ops, head_ops, mtp_ops
from pipesim.cost.flops import LayerOps, Op, layer_ops
from pipesim.cost.memory import stage_param_split
from pipesim.cost.times import p2p_bytes
from pipesim.specs.layout import Layout
from pipesim.specs.model import ModelSpec

# The groups whose collectives each traffic class counts (TP-like as pipesim.cost.times.pass_times times them).
_CLASSES = (("tp", "etp"), ("ep",), ("cp",))

__all__ = ["StageTraffic", "op_bytes", "stage_traffic"]


@dataclass(frozen=True)
class StageTraffic:
    """Bytes per global stage: TP collectives inside one microbatch's forward and full backward (and the part
    of the backward in its weight-gradient phase W, which a split backward runs apart), the expert
    all-to-alls and the context-parallel key/value exchanges of one microbatch's forward and backward (all
    in the backward's input-gradient phase I), the pipeline transfer per microbatch across each stage
    boundary, and the gradient reduction per step."""

    tp_forward_bytes: tuple[float, ...]
    tp_backward_bytes: tuple[float, ...]
    tp_weight_bytes: tuple[float, ...]
    p2p_bytes: tuple[float, ...]
    dp_bytes: tuple[float, ...]
    dp_collective: str
    ep_forward_bytes: tuple[float, ...] = ()
    ep_backward_bytes: tuple[float, ...] = ()
    cp_forward_bytes: tuple[float, ...] = ()
    cp_backward_bytes: tuple[float, ...] = ()


def op_bytes(op: Op) -> float:
    """Bytes one GPU passes to communication op ``op``: the collective's buffer (nccl-tests size), or for a
    ``ring-p2p`` exchange its rounds x the block sent each round."""
    return op.comm_bytes * (op.batch if op.collective == "ring-p2p" else 1)


def _comm_bytes(ops: LayerOps) -> tuple[float, ...]:
    """Bytes of the collectives among ``ops``: for each of :data:`_CLASSES` (TP, EP, CP) forward, backward
    (recompute included) and backward phase W, flat."""
    out: list[float] = []
    for groups in _CLASSES:
        fwd = [op for op in ops.forward if op.kind == "comm" and op.group in groups]
        bwd = [op for op in ops.backward if op.kind == "comm" and op.group in groups]
        out += [
            sum(map(op_bytes, fwd)),
            sum(map(op_bytes, bwd)),
            sum(op_bytes(op) for op in bwd if op.phase == "W"),
        ]
    return tuple(out)


def stage_traffic(model: ModelSpec, layout: Layout, stage_to_rank: Sequence[int]) -> StageTraffic:
    """The bytes of every stage of ``model`` under ``layout`` with the given stage -> rank placement."""
    n = len(stage_to_rank)
    layers = layout.layers_per_stage(model, n)
    per_kind = {k: _comm_bytes(layer_ops(model, layout, kind=k)) for k in model.kind_counts()}
    emb = _comm_bytes(embedding_ops(model, layout))
    head = _comm_bytes(head_ops(model, layout))
    rows: list[list[float]] = []
    dp = []
    tied = model.tied_embeddings and n > 1 and stage_to_rank[0] != stage_to_rank[-1]
    grad_b = layout.grad_reduce_bytes
    start = 0
    for s in range(n):
        first, last = s == 0, s == n - 1
        kinds = model.kind_counts(start, start + layers[s])
        start += layers[s]
        units = [(per_kind[k], c) for k, c in kinds.items()]
        if first:
            units.append((emb, 1))
        if last:
            units.append((head, 1 + model.mtp_layers))
            if (
                model.mtp_layers
            ):  # each MTP module: its projection, one more layer of the last kind (and head)
                units.append((per_kind[model.main_kind()], model.mtp_layers))
                units.append((_comm_bytes(mtp_ops(model, layout)), model.mtp_layers))
        rows.append([sum(c * u[i] for u, c in units) for i in range(len(emb))])
        dense, expert = stage_param_split(model, layout, kinds, first, last)
        # Dense gradients reduce over data x context parallel, expert ones over expert data parallel.
        grads = (dense if layout.dp * layout.cp > 1 else 0.0) + (expert if layout.edp > 1 else 0.0)
        grads *= grad_b
        if tied and s in (0, n - 1):  # over the first and last stage's ranks, whatever dp is
            grads += model.vocab_size * model.hidden_size / layout.tp * grad_b
        dp.append(grads)
    size = p2p_bytes(model, layout)
    col = [tuple(r[i] for r in rows) for i in range(len(emb))]
    return StageTraffic(
        tp_forward_bytes=col[0],
        tp_backward_bytes=col[1],
        tp_weight_bytes=col[2],
        p2p_bytes=(size,) * max(n - 1, 0),
        dp_bytes=tuple(dp),
        dp_collective="reduce-scatter" if layout.distributed_optimizer else "all-reduce",
        ep_forward_bytes=col[3],
        ep_backward_bytes=col[4],
        cp_forward_bytes=col[6],
        cp_backward_bytes=col[7],
    )
