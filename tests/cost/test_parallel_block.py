"""A parallel attention/MLP block (GPT-J, GPT-NeoX, Phi-2) runs the same GEMMs as a sequential one and shares
its tensor-parallel collectives: one all-reduce forward and one backward per layer instead of two each
(Black et al., GPT-NeoX-20B, arXiv:2204.06745, Section 2.1)."""

from __future__ import annotations

from dataclasses import replace

from pipesim.cost.flops import layer_ops
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model

SEQUENTIAL = get_model("gpt-7.5b")  # h 4096
PARALLEL = replace(SEQUENTIAL, parallel_block=True, norms_per_layer=1)  # GPT-J style: one shared norm


def _comms(ops: tuple) -> list[tuple[str, str, float]]:  # type: ignore[type-arg]
    return [(o.name, o.collective, o.comm_bytes) for o in ops if o.kind == "comm"]


def test_one_all_reduce_each_way_instead_of_two() -> None:
    lay = Layout(tp=4, micro_batch_size=1, global_batch_size=1)
    seq, par = layer_ops(SEQUENTIAL, lay), layer_ops(PARALLEL, lay)
    size = 2.0 * 2048 * 4096  # b s h x 2 bytes, the same buffer either way
    assert _comms(seq.forward) == [("tp.out1", "all-reduce", size), ("tp.out2", "all-reduce", size)]
    assert _comms(par.forward) == [("tp.out2", "all-reduce", size)]  # the two branches' sum, reduced once
    assert [c[0] for c in _comms(seq.backward)] == ["tp.in2.bwd", "tp.in1.bwd"]
    assert _comms(par.backward) == [("tp.in1.bwd", "all-reduce", size)]  # both input gradients, summed first
    # Same GEMMs, one after the other: the FLOPs do not change.
    flops = lambda ops: sum(o.flops for o in ops.forward + ops.backward if o.kind == "gemm")  # noqa: E731
    assert flops(par) == flops(seq) > 0


def test_sequence_parallel_and_recompute() -> None:
    lay = Layout(tp=4, sequence_parallel=True, recompute="full", micro_batch_size=1, global_batch_size=1)
    par = layer_ops(PARALLEL, lay)
    # Shared norm: one input all-gather and one output reduce-scatter forward (the recomputed forward too).
    assert [c[0] for c in _comms(par.forward)] == ["tp.ag1", "tp.out2"]
    names = [c[0] for c in _comms(par.backward)]
    assert names == ["recompute.tp.ag1", "recompute.tp.out2", "tp.out2.bwd", "tp.in1.bwd", "tp.ag1.dw"]
    # GPT-NeoX keeps two norms: each branch gathers its own normed input, the outputs are still reduced once.
    neox = replace(SEQUENTIAL, parallel_block=True)
    assert [c[0] for c in _comms(layer_ops(neox, lay).forward)] == ["tp.ag1", "tp.ag2", "tp.out2"]


def test_no_tensor_parallelism_no_change() -> None:
    lay = Layout(micro_batch_size=1, global_batch_size=1)
    assert layer_ops(PARALLEL, lay).forward == layer_ops(replace(PARALLEL, parallel_block=False), lay).forward
