"""Group-limited routing (DeepSeek-V3's node-limited routing, report arXiv:2412.19437 Section 2.1.2; V2's
device-limited routing): read from Hugging Face configs (``n_group`` / ``topk_group``), checked, exported to
Megatron-LM, and shown to leave the all-to-all dispatcher's bytes unchanged."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pipesim.cost.flops import layer_ops
from pipesim.errors import InputError
from pipesim.io.hf_config import model_from_hf_dict
from pipesim.io.megatron import megatron_args
from pipesim.specs.layout import Layout
from pipesim.specs.model import get_model

DATA = Path(__file__).parents[1] / "data" / "hf"
DS = get_model("deepseek-v3")


def _cfg(name: str) -> dict:  # type: ignore[type-arg]
    return json.loads((DATA / name).read_text())


def test_read_from_hf_configs_and_the_preset() -> None:
    v3 = model_from_hf_dict(_cfg("deepseek-r1.json"), "deepseek-r1.json")  # noaux_tc, n_group 8, topk_group 4
    assert (v3.moe_router_num_groups, v3.moe_router_group_topk) == (8, 4)
    assert (DS.moe_router_num_groups, DS.moe_router_group_topk) == (8, 4)
    v2 = model_from_hf_dict(_cfg("deepseek-v2.5.json"), "deepseek-v2.5.json")  # group_limited_greedy, M = 3
    assert (v2.moe_router_num_groups, v2.moe_router_group_topk) == (8, 3)
    plain = model_from_hf_dict({**_cfg("deepseek-r1.json"), "topk_method": "greedy"}, "x.json")
    assert plain.moe_router_num_groups == 0
    with pytest.raises(
        InputError, match="topk_method.*'sparse'.*known: greedy, group_limited_greedy, noaux_tc"
    ):
        model_from_hf_dict({**_cfg("deepseek-r1.json"), "topk_method": "sparse"}, "x.json")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"moe_router_num_groups": 7}, "moe_router_num_groups=7 must divide num_experts=256"),
        ({"moe_router_group_topk": 9}, "moe_router_group_topk=9 must be in 1..moe_router_num_groups=8"),
        ({"moe_router_num_groups": 64, "moe_router_group_topk": 1}, "moe_top_k=8 exceeds the 4 experts"),
    ],
)
def test_bad_groups_refused(kw: dict[str, int], message: str) -> None:
    with pytest.raises(InputError, match=message):
        replace(DS, **kw)


def test_megatron_export_names_the_groups() -> None:
    lay = Layout(tp=2, pp=16, ep=64, dp=32, micro_batch_size=1, global_batch_size=8192, seq_length=4096)
    args = dict(megatron_args(DS, lay))
    assert args["--moe-router-num-groups"] == "8" and args["--moe-router-group-topk"] == "4"


def test_all_to_all_bytes_unchanged_and_why() -> None:
    lay = Layout(tp=2, ep=64, dp=64, micro_batch_size=1, global_batch_size=64, seq_length=4096)
    kind = DS.layer_kinds()[-1]
    limited = layer_ops(DS, lay, kind=kind)
    free = layer_ops(replace(DS, moe_router_num_groups=0, moe_router_group_topk=0), lay, kind=kind)
    a2a = [o for o in limited.forward if o.collective == "all-to-all"]
    assert a2a == [o for o in free.forward if o.collective == "all-to-all"] and len(a2a) == 2
    # Each routed copy is sent on its own: 4096 / tp = 2048 tokens x k = 8 copies x h = 7168 x 2 bytes.
    assert a2a[0].comm_bytes == 2048 * 8 * 7168 * 2
    # Why the mean cross-node share is unchanged: EP 64 at tp 2 spans n = 16 servers, a group of 32 experts
    # spans c = 2 of them. Free routing: a copy stays on the GPU's server with probability 1/16. Node-limited:
    # the server's group is among the M = 4 of G = 8 with probability M/G, then k/M of the k copies go to that
    # group and 1/c of those to this server: (M/G) (1/M) (1/c) = 1/(G c) = 1/16 per copy as well.
