"""Megatron-LM arguments of a sharded layout say that the sharding is not among them (never silently dropped)."""

from __future__ import annotations

from pipesim.io.megatron import format_megatron_args
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model


def test_sharded_layouts_are_noted() -> None:
    model = get_model("gpt-1.7b")
    plain = format_megatron_args(model, Layout(dp=8, global_batch_size=8))
    assert "weights sharded" not in plain
    hybrid = format_megatron_args(model, Layout(dp=8, global_batch_size=8, fsdp="hybrid", fsdp_shard_size=4))
    assert "# weights sharded (hybrid FSDP, shard groups of 4)" in hybrid
    ds = format_megatron_args(model, Layout(dp=8, global_batch_size=8, zero_stage=3))
    assert "# weights sharded (DeepSpeed ZeRO-3)" in ds
