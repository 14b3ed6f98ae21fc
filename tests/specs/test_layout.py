"""Layout's own checks: every refusal is one line naming the value, the rule and the valid values."""

from __future__ import annotations

import pytest

from pipesim.errors import InputError
from pipesim.specs.layout import Layout


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("recompute", "most", "recompute='most'; valid: none, selective, full"),
        ("attention", "sdpa", "attention='sdpa'; valid: flash, unfused"),
        ("fp8_recipe", "mxfp8", "fp8-recipe='mxfp8'; valid: delayed, current, blockwise"),
        ("precision", "tf32", "precision='tf32'; valid: bf16, fp16, fp8, fp4"),
        ("cp_comm", "tree", "cp-comm='tree'; valid: ring, all-gather"),
        ("fsdp", "zero3", "fsdp='zero3'; valid: none, full, hybrid"),
    ],
)
def test_layout_refuses_an_unknown_choice_in_one_line(field: str, value: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        Layout(**{field: value})
    assert str(info.value) == message
