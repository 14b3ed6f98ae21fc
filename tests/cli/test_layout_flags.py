"""The layout flags and :class:`Layout` agree: the flags' defaults complete into Layout's own defaults, so a
default is declared once (on Layout) and the command line cannot drift from it."""

from __future__ import annotations

from dataclasses import MISSING, fields

from pipesim.cli.flags import FLAGS
from pipesim.cli.specs import LayoutFlags
from pipesim.specs.layout import Layout

# Flags whose None means "derived from the other flags" (LayoutFlags.layout), not Layout's default.
DERIVED = {"dp", "global_batch_size"}


def test_layout_flags_are_layouts_fields_plus_the_megatron_vpp_spelling() -> None:
    flag_fields = {f.name for f in fields(LayoutFlags)}
    layout_fields = {f.name for f in fields(Layout)}
    assert flag_fields - layout_fields == {"layers_per_virtual_stage"}
    # schedule is each command's own flag; SC21's scatter/gather is always on from the command line.
    assert layout_fields - flag_fields == {"schedule", "scatter_gather"}
    assert all(f.default is MISSING for f in fields(LayoutFlags))  # defaults live on Layout, not here


def test_every_layout_flag_defaults_to_layouts_default() -> None:
    declared = LayoutFlags.defaults()
    for f in fields(Layout):
        if f.name in declared and f.name not in DERIVED:
            assert declared[f.name] == f.default, f.name
    # A switch that can only turn a field on (is_flag without a --no- form) stands for a field that is off.
    switches = [n for n in declared if FLAGS[n][1].get("is_flag")]
    assert switches and all(getattr(Layout(), n) is False for n in switches)


def test_the_default_flags_make_the_default_layout() -> None:
    # dp 1 (no GPU count given) and 4 x pp microbatches of one sequence: Layout() with a global batch of 4.
    assert LayoutFlags(**LayoutFlags.defaults()).layout() == Layout(global_batch_size=4)
